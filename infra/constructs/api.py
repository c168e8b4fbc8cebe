"""The public REST API (API Gateway v1): Lambda proxy routes, CORS, stage and method throttling,
access/execution logging, and the admin API key + usage plan.

Under a burst, API Gateway answers before a function is throttled where it can, and says "retry"
where it cannot (both with `Retry-After`):
- a method throttle per route (routes.method_throttles) keeps one route from admitting more
  requests at once than its function has environments (its reserved concurrency): the excess
  gets 429 from the gateway, never reaching Lambda;
- a function throttled all the same (several routes share its environments; slow requests hold
  them longer) is an integration failure, which API Gateway would answer with a bare 500 -- a
  client cannot tell that from a bug. It is a 503 here: the dashboard and any client retry it,
  with the same Idempotency-Key for an order, which never creates a second one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.service_function import retention_days
from infra.nag import acknowledge_all

CORS_ALLOW_HEADERS = ["Content-Type", "Idempotency-Key", "X-Api-Key", "Authorization"]
CORS_ALLOW_METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
RETRY_AFTER_SECONDS = 1
THROTTLED_MESSAGE = "too many requests at once: retry after a second (an order with the same Idempotency-Key)"
BUSY_MESSAGE = "the service is busy: retry after a second (an order with the same Idempotency-Key)"


class ValerixApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_name: str,
        stage_name: str,
        cors_origins: Sequence[str],
        throttle_rate_limit: int,
        throttle_burst_limit: int,
        log_retention_days: int,
        admin_api_key_value: str,
        method_throttles: Mapping[str, apigw.ThrottleSettings] | None = None,
        tracing: bool = False,
    ) -> None:
        """`tracing`: X-Ray tracing on the stage (target=aws; LocalStack community has no X-Ray).
        `method_throttles`: "/path/METHOD" -> the limits of that route (routes.method_throttles)."""
        super().__init__(scope, construct_id)
        self.stage_name = stage_name
        self._integrations: dict[str, apigw.LambdaIntegration] = {}

        self.access_log_group = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention_days(log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=api_name,
            description="Valerix public API: orders, inventory, gremlin, health",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                throttling_rate_limit=throttle_rate_limit,
                throttling_burst_limit=throttle_burst_limit,
                # A method's settings replace the stage's for it: logging and metrics are repeated.
                method_options={
                    key: apigw.MethodDeploymentOptions(
                        throttling_rate_limit=throttle.rate_limit,
                        throttling_burst_limit=throttle.burst_limit,
                        metrics_enabled=True,
                        logging_level=apigw.MethodLoggingLevel.ERROR,
                        data_trace_enabled=False,
                    )
                    for key, throttle in (method_throttles or {}).items()
                },
                metrics_enabled=True,
                tracing_enabled=tracing,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(cors_origins),
                allow_methods=CORS_ALLOW_METHODS,
                allow_headers=CORS_ALLOW_HEADERS,
                max_age=Duration.hours(1),
            ),
        )

        # RestApi adds an output with its execute-api URL; the stack's ApiUrl output replaces it
        # (it is right on both targets: LocalStack serves /_aws/execute-api/{id}/{stage}).
        self.rest_api.node.try_remove_child("Endpoint")

        # Errors produced by API Gateway itself (missing API key, throttling, ...) must be
        # readable by the dashboard too.
        cors_headers = {
            "Access-Control-Allow-Origin": f"'{cors_origins[0]}'",
            "Access-Control-Allow-Headers": "'" + ",".join(CORS_ALLOW_HEADERS) + "'",
            "Vary": "'Origin'",
        }
        for response_id, response_type in (
            ("Default4xx", apigw.ResponseType.DEFAULT_4_XX),
            ("Default5xx", apigw.ResponseType.DEFAULT_5_XX),
        ):
            self.rest_api.add_gateway_response(
                response_id,
                type=response_type,
                response_headers=cors_headers,
                templates={"application/json": '{"message": $context.error.messageString}'},
            )
        retry_headers = {**cors_headers, "Retry-After": f"'{RETRY_AFTER_SECONDS}'"}
        for response_id, response_type, status, message in (
            ("Throttled", apigw.ResponseType.THROTTLED, "429", THROTTLED_MESSAGE),
            ("IntegrationFailure", apigw.ResponseType.INTEGRATION_FAILURE, "503", BUSY_MESSAGE),
        ):
            self.rest_api.add_gateway_response(
                response_id,
                type=response_type,
                status_code=status,
                response_headers=retry_headers,
                templates={"application/json": f'{{"message": "{message}", "requestId": "$context.requestId"}}'},
            )

        # Admin API key: its value comes from the admin-key secret (infra/constructs/admin_key.py),
        # which the admin functions also check.
        self.admin_api_key = self.rest_api.add_api_key(
            "AdminApiKey",
            description="Admin key for PUT/DELETE /gremlin and /admin/*",
            value=admin_api_key_value,
        )
        self.admin_usage_plan = self.rest_api.add_usage_plan(
            "AdminUsagePlan",
            name=f"{api_name}-admin",
            description="Admin callers (x-api-key)",
            throttle=apigw.ThrottleSettings(rate_limit=10, burst_limit=20),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)],
        )
        self.admin_usage_plan.add_api_key(self.admin_api_key)

        acknowledge_all(
            self.rest_api,
            {
                "AwsSolutions-APIG2": "Requests are validated by the FastAPI/pydantic apps so that "
                "invalid input gets the contract's JSON 400/422 naming the field; gateway validation "
                "would answer with a different error shape.",
                "AwsSolutions-APIG3": "No WAF: not emulated locally and out of the demo's budget; "
                "stage throttling and the admin usage plan limit abuse. Add a WebACL for production.",
                "AwsSolutions-APIG4": "The shop API is public by contract (anonymous customers order and "
                "read the catalogue). The admin routes (PUT /admin/products/{productId}, PUT and DELETE "
                "/gremlin) require the admin API key at the gateway, and their functions check it again "
                "against the admin-key secret (constant-time compare) before doing anything.",
                "AwsSolutions-COG4": "No Cognito user pool: the contract has anonymous customers and "
                "an API-key protected admin surface.",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]": "API Gateway's account-level CloudWatch role "
                "uses the AWS managed push-to-logs policy, the documented setup for execution/access logging.",
            },
        )

    def _integration(self, fn: lambda_.IFunction) -> apigw.LambdaIntegration:
        key = fn.node.path
        if key not in self._integrations:
            self._integrations[key] = apigw.LambdaIntegration(fn, proxy=True, allow_test_invoke=False)
        return self._integrations[key]

    def route(self, path: str, method: str, fn: lambda_.IFunction, *, api_key_required: bool = False) -> apigw.Method:
        resource = self.rest_api.root.resource_for_path(path)
        return resource.add_method(method, self._integration(fn), api_key_required=api_key_required)

    @property
    def rest_api_id(self) -> str:
        return self.rest_api.rest_api_id
