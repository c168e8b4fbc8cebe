"""CDK assertion tests of the Valerix stack, for both targets (see infra/ and docs/ARCHITECTURE.md)."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from infra.outputs import (
    ADMIN_API_KEY,
    ADMIN_API_KEY_ID,
    ADMIN_KEY_SECRET_ARN,
    API_URL,
    CIRCUIT_BREAKER_TABLE_NAME,
    COMPLETION_DLQ_URL,
    COMPLETION_QUEUE_URL,
    FUNCTION_NAME_OUTPUTS,
    GREMLIN_PARAMETER_NAME,
    GREMLIN_STATE_TABLE_NAME,
    IDEMPOTENCY_TABLE_NAME,
    INVENTORY_DB_SECRET_ARN,
    INVENTORY_DLQ_URL,
    INVENTORY_QUEUE_URL,
    LOG_GROUP_NAMES,
    ORDER_DB_SECRET_ARN,
    WEBSITE_BUCKET_NAME,
    WEBSITE_URL,
)

EXPECTED_FUNCTIONS = {
    # output key prefix: (handler, POWERTOOLS_SERVICE_NAME, needs a database)
    "OrderApi": ("functions.order.handler.api_handler", "order", True),
    "OrderCompletion": ("functions.order.handler.completion_handler", "order", True),
    "OrderMigrate": ("functions.order.handler.migrate_handler", "order", True),
    "InventoryApi": ("functions.inventory.handler.api_handler", "inventory", True),
    "InventoryReserve": ("functions.inventory.handler.reserve_handler", "inventory", True),
    "InventoryQueue": ("functions.inventory.handler.queue_handler", "inventory", True),
    "InventoryMigrate": ("functions.inventory.handler.migrate_handler", "inventory", True),
    "OrderSweeper": ("functions.order.handler.sweeper_handler", "order", True),
    "Gremlin": ("functions.gremlin.handler.api_handler", "gremlin", False),
}

EXPECTED_ROUTES = {
    ("/orders", "POST"): "OrderApi",
    ("/orders", "GET"): "OrderApi",
    ("/orders/{orderId}", "GET"): "OrderApi",
    ("/health/order", "GET"): "OrderApi",
    ("/products", "GET"): "InventoryApi",
    ("/products/{productId}", "GET"): "InventoryApi",
    ("/admin/products/{productId}", "PUT"): "InventoryApi",
    ("/health/inventory", "GET"): "InventoryApi",
    ("/gremlin", "GET"): "Gremlin",
    ("/gremlin", "PUT"): "Gremlin",
    ("/gremlin", "DELETE"): "Gremlin",
}
ADMIN_ROUTES = {("/admin/products/{productId}", "PUT"), ("/gremlin", "PUT"), ("/gremlin", "DELETE")}

REQUIRED_OUTPUTS = [
    API_URL, WEBSITE_URL, WEBSITE_BUCKET_NAME, ADMIN_API_KEY_ID, INVENTORY_QUEUE_URL, INVENTORY_DLQ_URL,
    COMPLETION_QUEUE_URL, COMPLETION_DLQ_URL, IDEMPOTENCY_TABLE_NAME, CIRCUIT_BREAKER_TABLE_NAME,
    GREMLIN_STATE_TABLE_NAME, GREMLIN_PARAMETER_NAME, ORDER_DB_SECRET_ARN, INVENTORY_DB_SECRET_ARN,
    ADMIN_KEY_SECRET_ARN, LOG_GROUP_NAMES, *(FUNCTION_NAME_OUTPUTS[key] for key in EXPECTED_FUNCTIONS),
]  # fmt: skip


# ---------------------------------------------------------------------------------- helpers
def all_functions(s) -> dict[str, dict]:
    """Every function of the stack (service, sweeper, backup), not CDK's internal providers."""
    return {
        logical_id: res
        for logical_id, res in s.of_type("AWS::Lambda::Function").items()
        if str(res["Properties"].get("FunctionName", "")).startswith("Valerix-")
    }


def functions_by_key(s) -> dict[str, tuple[str, dict]]:
    """Output key prefix -> (logical id, resource) of the service functions."""
    out = {}
    for logical_id, res in s.of_type("AWS::Lambda::Function").items():
        name = res["Properties"].get("FunctionName")
        for key in EXPECTED_FUNCTIONS:
            suffix = {"OrderApi": "order-api", "OrderCompletion": "order-completion",
                      "OrderMigrate": "order-migrate", "InventoryApi": "inventory-api",
                      "InventoryReserve": "inventory-reserve",
                      "InventoryQueue": "inventory-queue", "InventoryMigrate": "inventory-migrate",
                      "OrderSweeper": "order-sweeper", "Gremlin": "gremlin"}[key]  # fmt: skip
            if name == f"Valerix-{suffix}":
                out[key] = (logical_id, res)
    return out


def env_of(res: dict) -> dict:
    return res["Properties"]["Environment"]["Variables"]


def ref_id(value) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def resource_paths(s) -> dict[str, str]:
    """API Gateway Resource logical id -> full path."""
    resources = s.of_type("AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        if logical_id not in paths:
            props = resources[logical_id]["Properties"]
            parent = ref_id(props["ParentId"])
            prefix = path_of(parent) if parent is not None and parent in resources else ""
            paths[logical_id] = f"{prefix}/{props['PathPart']}"
        return paths[logical_id]

    for logical_id in resources:
        path_of(logical_id)
    return paths


def api_methods(s) -> dict[tuple[str, str], dict]:
    paths = resource_paths(s)
    out = {}
    for res in s.of_type("AWS::ApiGateway::Method").values():
        props = res["Properties"]
        resource = ref_id(props["ResourceId"])
        path = paths.get(resource or "", "/")
        out[(path, props["HttpMethod"])] = props
    return out


def statements_of_role(s, role_logical_id: str | None) -> list[dict]:
    out = []
    for res in s.of_type("AWS::IAM::Policy").values():
        if any(ref_id(r) == role_logical_id for r in res["Properties"].get("Roles", [])):
            out.extend(res["Properties"]["PolicyDocument"]["Statement"])
    role = s.resources[role_logical_id]["Properties"]
    for policy in role.get("Policies", []):
        out.extend(policy["PolicyDocument"]["Statement"])
    return out


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------------- synth
def test_both_targets_synthesize_cleanly(any_synth):
    assert any_synth.error is None, any_synth.error
    assert any_synth.template_path.exists()


def test_no_api_gateway_v2_anywhere(any_synth):
    assert not [r for r in any_synth.resources.values() if r["Type"].startswith("AWS::ApiGatewayV2::")]


# ---------------------------------------------------------------------------------- functions
def test_service_functions_with_contract_handlers(any_synth):
    fns = functions_by_key(any_synth)
    assert set(fns) == set(EXPECTED_FUNCTIONS)
    for key, (_, res) in fns.items():
        handler, service, _ = EXPECTED_FUNCTIONS[key]
        props = res["Properties"]
        assert props["Handler"] == handler
        assert props["Runtime"] == "python3.12"
        env = env_of(res)
        assert env["POWERTOOLS_SERVICE_NAME"] == service
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Valerix"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_each_function_has_its_own_role_and_log_group_with_retention(any_synth):
    fns = functions_by_key(any_synth)
    roles = {ref_id(res["Properties"]["Role"]) for _, res in fns.values()}
    assert len(roles) == len(fns)
    log_groups = any_synth.of_type("AWS::Logs::LogGroup")
    for key, (_, res) in fns.items():
        log_group_id = ref_id(res["Properties"]["LoggingConfig"]["LogGroup"])
        log_group = log_groups[log_group_id]["Properties"]
        assert log_group["LogGroupName"] == f"/aws/lambda/{res['Properties']['FunctionName']}"
        assert log_group["RetentionInDays"] == 14
        role = any_synth.resources[ref_id(res["Properties"]["Role"])]["Properties"]
        assert not role.get("ManagedPolicyArns"), f"{key}: no managed policies on function roles"


def test_environment_variables_follow_the_architecture(any_synth):
    fns = functions_by_key(any_synth)
    env = {key: env_of(res) for key, (_, res) in fns.items()}
    for key, (_, _, needs_db) in EXPECTED_FUNCTIONS.items():
        assert ("DB_SECRET_ARN" in env[key]) is needs_db, key
    assert {"INVENTORY_RESERVE_FUNCTION", "INVENTORY_QUEUE_URL", "COMPLETION_QUEUE_URL", "IDEMPOTENCY_TABLE",
            "CIRCUIT_BREAKER_TABLE"} <= set(env["OrderApi"])  # fmt: skip
    assert "INVENTORY_API_URL" not in env["OrderApi"]
    assert env["OrderApi"]["INVENTORY_CALL_BUDGET_MS"] == "2000"
    assert env["OrderApi"]["CIRCUIT_FAILURE_THRESHOLD"] == "5"
    assert env["OrderApi"]["CIRCUIT_RECOVERY_TIMEOUT_SECONDS"] == "10"
    assert "INVENTORY_QUEUE_URL" in env["InventoryApi"]
    # the gremlin acts on the reservation, which is the reserve function's alone
    assert {"GREMLIN_PARAMETER_NAME", "GREMLIN_STATE_TABLE"} <= set(env["InventoryReserve"])
    assert env["InventoryReserve"]["GREMLIN_CACHE_SECONDS"] == "1"
    assert "GREMLIN_PARAMETER_NAME" not in env["InventoryApi"]
    assert {"COMPLETION_QUEUE_URL", "IDEMPOTENCY_TABLE"} <= set(env["InventoryQueue"])
    assert {"GREMLIN_PARAMETER_NAME", "GREMLIN_STATE_TABLE"} <= set(env["Gremlin"])
    # order secrets for order functions, inventory secrets for inventory functions (run-time
    # functions share their service's app login; the migrate functions: test_infra_db_roles.py)
    order_secret = {json.dumps(env[k]["DB_SECRET_ARN"]) for k in ("OrderApi", "OrderCompletion", "OrderSweeper")}
    inv_secret = {json.dumps(env[k]["DB_SECRET_ARN"]) for k in ("InventoryApi", "InventoryReserve", "InventoryQueue")}
    assert len(order_secret) == 1 and len(inv_secret) == 1 and order_secret != inv_secret


def test_order_api_names_the_reserve_function(any_synth):
    fns = functions_by_key(any_synth)
    reserve_id = fns["InventoryReserve"][0]
    assert ref_id(env_of(fns["OrderApi"][1])["INVENTORY_RESERVE_FUNCTION"]) == reserve_id


def test_timeouts_and_memory(any_synth):
    fns = functions_by_key(any_synth)
    timeout = {key: res["Properties"]["Timeout"] for key, (_, res) in fns.items()}
    assert timeout["InventoryQueue"] >= 60 + 20, "must outlive the gremlin's 60 s maximum delay"
    assert timeout["InventoryReserve"] > 60, "an injected delay (60 s at most) is a delay, not a timeout"
    assert timeout["InventoryApi"] <= 29 + 1 and timeout["OrderApi"] <= 29
    for _, res in fns.values():
        assert 128 <= res["Properties"]["MemorySize"] <= 1024


def test_vpc_placement(any_synth):
    fns = functions_by_key(any_synth)
    for key, (_, res) in fns.items():
        in_vpc = "VpcConfig" in res["Properties"]
        expected = any_synth.target == "aws" and EXPECTED_FUNCTIONS[key][2]
        assert in_vpc is expected, key


# ---------------------------------------------------------------------------------- queues
def test_queues_have_dlqs_and_consistent_visibility(any_synth):
    queues = any_synth.of_type("AWS::SQS::Queue")
    assert len(queues) == 4
    work = {k: q for k, q in queues.items() if "RedrivePolicy" in q["Properties"]}
    assert len(work) == 2
    dlqs = {ref_id(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]) for q in work.values()}
    assert dlqs == set(queues) - set(work)
    fns = dict(any_synth.of_type("AWS::Lambda::Function").items())
    mappings = any_synth.of_type("AWS::Lambda::EventSourceMapping")
    for logical_id, q in work.items():
        props = q["Properties"]
        assert props["RedrivePolicy"]["maxReceiveCount"] == 5
        assert props["SqsManagedSseEnabled"] is True
        consumer = [m for m in mappings.values() if ref_id(m["Properties"]["EventSourceArn"]) == logical_id]
        assert len(consumer) == 1
        fn = fns[ref_id(consumer[0]["Properties"]["FunctionName"])]
        assert props["VisibilityTimeout"] >= 6 * fn["Properties"]["Timeout"]


def test_only_each_queues_consumer_may_send_to_its_dead_letter_queue(any_synth):
    """A record that can never succeed goes to its queue's DLQ at once (functions/common/queue.py):
    the consumer may send there; no other function may put anything in a DLQ."""
    fns = functions_by_key(any_synth)
    mappings = any_synth.of_type("AWS::Lambda::EventSourceMapping").values()
    consumer_of = {ref_id(m["Properties"]["EventSourceArn"]): ref_id(m["Properties"]["FunctionName"]) for m in mappings}
    queues = any_synth.of_type("AWS::SQS::Queue")
    dlq_of = {
        logical_id: ref_id(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        for logical_id, q in queues.items()
        if "RedrivePolicy" in q["Properties"]
    }
    senders: dict[str, set[str]] = {dlq: set() for dlq in dlq_of.values()}
    for function_id, res in fns.values():
        for st in statements_of_role(any_synth, ref_id(res["Properties"]["Role"])):
            if "sqs:SendMessage" in as_list(st["Action"]):
                for resource in as_list(st["Resource"]):
                    if ref_id(resource) in senders:
                        senders[ref_id(resource)].add(function_id)
    assert senders == {dlq: {consumer_of[queue]} for queue, dlq in dlq_of.items()}


def test_event_source_mappings_report_batch_item_failures(any_synth):
    mappings = any_synth.of_type("AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 2
    fns = functions_by_key(any_synth)
    targets = {ref_id(m["Properties"]["FunctionName"]) for m in mappings.values()}
    assert targets == {fns["InventoryQueue"][0], fns["OrderCompletion"][0]}
    for m in mappings.values():
        assert m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# ---------------------------------------------------------------------------------- dynamodb / ssm
def test_dynamodb_tables(any_synth):
    tables = any_synth.of_type("AWS::DynamoDB::Table")
    assert len(tables) == 3
    ttl = []
    for t in tables.values():
        p = t["Properties"]
        assert p["BillingMode"] == "PAY_PER_REQUEST"
        assert p["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
        assert p["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
        assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        ttl.append(p.get("TimeToLiveSpecification", {}).get("AttributeName"))
    assert sorted(ttl, key=str) == sorted(["expiration", "expiration", None], key=str)
    outputs = any_synth.template_dict["Outputs"]
    for key in (IDEMPOTENCY_TABLE_NAME, CIRCUIT_BREAKER_TABLE_NAME, GREMLIN_STATE_TABLE_NAME):
        assert ref_id(outputs[key]["Value"]) in tables


def test_gremlin_parameter_defaults_to_all_off(any_synth):
    (param,) = any_synth.of_type("AWS::SSM::Parameter").values()
    assert param["Properties"]["Type"] == "String"
    assert json.loads(param["Properties"]["Value"]) == {
        "latency": {"enabled": False}, "error": {"enabled": False}, "crash": {"enabled": False}
    }  # fmt: skip


# ---------------------------------------------------------------------------------- api
def test_rest_api_routes_are_lambda_proxy_integrations(any_synth):
    methods = api_methods(any_synth)
    fns = functions_by_key(any_synth)
    routes = {k: v for k, v in methods.items() if k[1] != "OPTIONS"}
    assert set(routes) == set(EXPECTED_ROUTES)
    for route, props in routes.items():
        integration = props["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["IntegrationHttpMethod"] == "POST"
        fn_logical_id = fns[EXPECTED_ROUTES[route]][0]
        target = integration["Uri"]["Fn::Join"][1][-2]
        # target=aws: the SnapStart alias of the function (test_infra_snapstart.py)
        alias = any_synth.of_type("AWS::Lambda::Alias").get(target.get("Ref", ""))
        if alias is not None:
            target = alias["Properties"]["FunctionName"]
        assert fn_logical_id in json.dumps(target), route


def test_api_key_required_on_admin_methods_only(any_synth):
    methods = api_methods(any_synth)
    required = {route for route, props in methods.items() if props.get("ApiKeyRequired")}
    assert required == ADMIN_ROUTES
    t = any_synth.template
    t.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    t.resource_count_is("AWS::ApiGateway::UsagePlan", 1)
    t.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    t.has_resource_properties("AWS::ApiGateway::UsagePlan", {"ApiStages": Match.any_value()})
    key = next(iter(any_synth.of_type("AWS::ApiGateway::ApiKey").values()))["Properties"]
    secret_id, secret = admin_key_secret(any_synth)
    if any_synth.target == "local":
        assert key["Value"] == any_synth.context["adminApiKey"]
        assert secret["Properties"]["SecretString"] == any_synth.context["adminApiKey"]
        assert any_synth.template_dict["Outputs"][ADMIN_API_KEY]["Value"] == any_synth.context["adminApiKey"]
    else:
        # generated by Secrets Manager; the API key's value is resolved from that secret at deploy
        generated = secret["Properties"]["GenerateSecretString"]
        assert generated["PasswordLength"] >= 20 and generated["ExcludePunctuation"] is True
        assert "SecretString" not in secret["Properties"]
        value = json.dumps(key["Value"])
        assert "{{resolve:secretsmanager:" in value and secret_id in value
        assert ADMIN_API_KEY not in any_synth.template_dict["Outputs"]


def admin_key_secret(s) -> tuple[str, dict]:
    secrets = {
        k: r
        for k, r in s.of_type("AWS::SecretsManager::Secret").items()
        if r["Properties"].get("Name") == "Valerix/admin-api-key"
    }
    assert len(secrets) == 1, "one admin key secret"
    return next(iter(secrets.items()))


def test_admin_functions_read_the_admin_key_secret_and_nothing_else_does(any_synth):
    secret_id, _ = admin_key_secret(any_synth)
    fns = functions_by_key(any_synth)
    admin_functions = {"InventoryApi", "Gremlin"}
    for key, (_, res) in fns.items():
        env = env_of(res)
        statements = statements_of_role(any_synth, ref_id(res["Properties"]["Role"]))
        on_admin_secret = [st for st in statements if secret_id in json.dumps(st.get("Resource"))]
        if key in admin_functions:
            assert ref_id(env["ADMIN_KEY_SECRET_ARN"]) == secret_id, key
            assert on_admin_secret, key
            for st in on_admin_secret:  # read only (CDK may merge it with the DB secret's grant)
                assert set(as_list(st["Action"])) == {
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:DescribeSecret",
                }, key
                assert {"Ref": secret_id} in as_list(st["Resource"]), key
        else:
            assert "ADMIN_KEY_SECRET_ARN" not in env, key
            assert not on_admin_secret, key
    # and no other function of the stack (backups, ...) may read it either
    for logical_id, res in all_functions(any_synth).items():
        if logical_id in {fns[k][0] for k in admin_functions}:
            continue
        statements = statements_of_role(any_synth, ref_id(res["Properties"]["Role"]))
        assert not [st for st in statements if secret_id in json.dumps(st.get("Resource"))], logical_id


def test_cors_preflight_on_every_resource_and_stage_throttling(any_synth):
    methods = api_methods(any_synth)
    paths_with_routes = {path for path, _ in EXPECTED_ROUTES}
    preflight = {path for path, method in methods if method == "OPTIONS"}
    assert paths_with_routes <= preflight
    for (_path, method), props in methods.items():
        if method == "OPTIONS":
            assert props["Integration"]["Type"] == "MOCK"
            assert not props.get("ApiKeyRequired")
    (stage,) = any_synth.of_type("AWS::ApiGateway::Stage").values()
    settings = stage["Properties"]["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
    assert stage["Properties"]["StageName"] == "prod"
    assert "AccessLogSetting" in stage["Properties"]


def test_no_route_admits_more_requests_at_once_than_its_function_has_environments(any_synth):
    """Lambda throttling behind a proxy integration is a bare 500 from API Gateway: each route's
    burst (and rate) stays within its function's reserved concurrency, so a burst gets the
    gateway's 429 first. Functions without reserved concurrency keep the stage's limits."""
    (stage,) = any_synth.of_type("AWS::ApiGateway::Stage").values()
    settings = stage["Properties"]["MethodSettings"]
    (stage_wide,) = [s for s in settings if s["ResourcePath"] == "/*"]
    # "/~1orders~1{orderId}": API Gateway's escaping of the path "/orders/{orderId}"
    per_method = {
        (s["ResourcePath"].removeprefix("/").replace("~1", "/"), s["HttpMethod"]): s
        for s in settings
        if s is not stage_wide
    }
    fns = functions_by_key(any_synth)
    for (path, method), key in EXPECTED_ROUTES.items():
        reserved = fns[key][1]["Properties"].get("ReservedConcurrentExecutions")
        if reserved is None:
            assert (path, method) not in per_method, (path, method)
            continue
        setting = per_method[(path, method)]
        assert 0 < setting["ThrottlingBurstLimit"] <= reserved, (path, method, setting)
        assert 0 < setting["ThrottlingRateLimit"] <= reserved, (path, method, setting)
        # a method's settings replace the stage's: its logs and metrics must not be lost
        assert setting["MetricsEnabled"] is True and setting["LoggingLevel"] == "ERROR", setting
    order_burst = per_method[("/orders", "POST")]["ThrottlingBurstLimit"]
    assert order_burst == fns["OrderApi"][1]["Properties"]["ReservedConcurrentExecutions"]
    assert order_burst < stage_wide["ThrottlingBurstLimit"]  # the stage alone let a burst through


def test_throttled_and_busy_answers_say_retry_after_and_are_readable_by_the_dashboard(any_synth):
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in any_synth.of_type("AWS::ApiGateway::GatewayResponse").values()
    }
    for response_type, status in (("THROTTLED", "429"), ("INTEGRATION_FAILURE", "503")):
        answer = responses[response_type]
        assert answer["StatusCode"] == status
        headers = answer["ResponseParameters"]
        assert headers["gatewayresponse.header.Retry-After"] == "'1'"
        assert (
            headers["gatewayresponse.header.Access-Control-Allow-Origin"]
            == responses["DEFAULT_4XX"]["ResponseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"]
        )
        body = answer["ResponseTemplates"]["application/json"]
        assert json.loads(body.replace("$context.requestId", "req-1"))["message"].startswith(
            ("too many requests", "the service is busy")
        )
        assert "Idempotency-Key" in body


# ---------------------------------------------------------------------------------- databases
def test_rds_only_on_aws(aws_synth, local_synth):
    local_synth.template.resource_count_is("AWS::RDS::DBInstance", 0)
    local_synth.template.resource_count_is("AWS::EC2::VPC", 0)
    aws_synth.template.resource_count_is("AWS::RDS::DBInstance", 2)
    aws_synth.template.resource_count_is("AWS::EC2::VPC", 1)
    instances = aws_synth.of_type("AWS::RDS::DBInstance")
    assert sorted(i["Properties"]["DBName"] for i in instances.values()) == ["inventory_db", "order_db"]
    subnets = aws_synth.of_type("AWS::EC2::Subnet")
    for instance in instances.values():
        p = instance["Properties"]
        assert p["Engine"] == "postgres"
        assert p["StorageEncrypted"] is True
        assert p["PubliclyAccessible"] is False
        assert p["BackupRetentionPeriod"] >= 1
        assert "MasterUserPassword" in p and "resolve:secretsmanager" in json.dumps(p["MasterUserPassword"])
        group = aws_synth.resources[ref_id(p["DBSubnetGroupName"])]["Properties"]
        for subnet in group["SubnetIds"]:
            tags = {t["Key"]: t["Value"] for t in subnets[ref_id(subnet)]["Properties"]["Tags"]}
            assert tags["aws-cdk:subnet-type"] == "Isolated"
        assert len(p["VPCSecurityGroups"]) == 1


def test_db_security_groups_admit_only_their_service(aws_synth):
    ingress = aws_synth.of_type("AWS::EC2::SecurityGroupIngress")
    # Each database admits its own migrate function, its proxy, the backup/restore functions and
    # the reconcile function; each proxy admits its service's run-time functions
    # (tests/infra/test_infra_db_proxy.py: who exactly).
    assert len(ingress) == 2 * 5
    for rule in ingress.values():
        p = rule["Properties"]
        assert "SourceSecurityGroupId" in p and "CidrIp" not in p
        assert p["FromPort"] == p["ToPort"]
        port = p["FromPort"]
        if isinstance(port, dict):  # proxy -> instance (CDK's rule): the instance's own port
            instance, attribute = port["Fn::GetAtt"]
            port = attribute == "Endpoint.Port" and int(aws_synth.resources[instance]["Properties"]["Port"])
        assert port == 5432


def test_local_secrets_hold_the_local_postgres_endpoints(local_synth):
    admin_id, _ = admin_key_secret(local_synth)
    secrets = {k: v for k, v in local_synth.of_type("AWS::SecretsManager::Secret").items() if k != admin_id}
    masters = {k: s for k, s in secrets.items() if "SecretString" in s["Properties"]}
    values = sorted((json.loads(s["Properties"]["SecretString"]) for s in masters.values()), key=lambda v: v["dbname"])
    assert values[0] == json.loads(local_synth.context["inventoryDbSecret"])
    assert values[1] == json.loads(local_synth.context["orderDbSecret"])
    # the role secrets (owner/app/reader) point at the same servers; Secrets Manager makes the passwords
    for res in set(secrets) - set(masters):
        template = json.loads(secrets[res]["Properties"]["GenerateSecretString"]["SecretStringTemplate"])
        master = json.loads(local_synth.context[f"{template['dbname'].removesuffix('_db')}DbSecret"])
        assert {k: template[k] for k in ("host", "port", "dbname")} == {
            k: master[k] for k in ("host", "port", "dbname")
        }
    outputs = local_synth.template_dict["Outputs"]
    # the outputs name the run-time (app) logins, never the master
    for key in (ORDER_DB_SECRET_ARN, INVENTORY_DB_SECRET_ARN):
        assert ref_id(outputs[key]["Value"]) not in masters
        template = secrets[ref_id(outputs[key]["Value"])]["Properties"]["GenerateSecretString"]["SecretStringTemplate"]
        assert json.loads(template)["username"].endswith("_app")


def test_backup_plan_only_on_aws(aws_synth, local_synth):
    local_synth.template.resource_count_is("AWS::Backup::BackupPlan", 0)
    local_synth.template.resource_count_is("AWS::Backup::BackupVault", 0)
    (plan,) = aws_synth.of_type("AWS::Backup::BackupPlan").values()
    vaults = aws_synth.of_type("AWS::Backup::BackupVault")
    assert len(vaults) == 2
    kms_vaults = {k for k, v in vaults.items() if "EncryptionKeyArn" in v["Properties"]}
    assert len(kms_vaults) == 1
    (copy_vault,) = kms_vaults
    (local_vault,) = set(vaults) - kms_vaults
    key = aws_synth.resources[ref_id(vaults[copy_vault]["Properties"]["EncryptionKeyArn"])]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True

    rules = {r["RuleName"]: r for r in plan["Properties"]["BackupPlan"]["BackupPlanRule"]}
    every4h = rules["Every4Hours"]
    assert every4h["ScheduleExpression"] == "cron(0 */4 * * ? *)"
    assert ref_id(every4h["TargetBackupVault"]) == local_vault
    assert not every4h.get("CopyActions")
    daily = rules["DailyWithCopy"]
    assert daily["ScheduleExpression"] == "cron(30 3 * * ? *)"
    assert ref_id(daily["TargetBackupVault"]) == local_vault
    (copy,) = daily["CopyActions"]
    assert ref_id(copy["DestinationBackupVaultArn"]) == copy_vault

    (selection,) = aws_synth.of_type("AWS::Backup::BackupSelection").values()
    selected = json.dumps(selection["Properties"]["BackupSelection"]["Resources"])
    for db in aws_synth.of_type("AWS::RDS::DBInstance"):
        assert db in selected


# ---------------------------------------------------------------------------------- website
def test_website_bucket_is_public_read_only(any_synth):
    buckets = any_synth.of_type("AWS::S3::Bucket")
    (website_id,) = [k for k, b in buckets.items() if "WebsiteConfiguration" in b["Properties"]]
    assert buckets[website_id]["Properties"]["WebsiteConfiguration"]["IndexDocument"] == "index.html"
    policy = next(p for p in any_synth.of_type("AWS::S3::BucketPolicy").values()
                  if ref_id(p["Properties"]["Bucket"]) == website_id)  # fmt: skip
    public = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
              if s["Effect"] == "Allow" and s.get("Principal") in ("*", {"AWS": "*"})]  # fmt: skip
    assert len(public) == 1
    assert as_list(public[0]["Action"]) == ["s3:GetObject"]
    assert json.dumps(public[0]["Resource"]).endswith('"/*"]]}')
    block = buckets[website_id]["Properties"]["PublicAccessBlockConfiguration"]
    assert block["BlockPublicAcls"] is True and block["IgnorePublicAcls"] is True
    assert ref_id(any_synth.template_dict["Outputs"][WEBSITE_BUCKET_NAME]["Value"]) == website_id


def test_bucket_deployment_and_triggers_only_on_aws(aws_synth, local_synth):
    aws_synth.template.resource_count_is("Custom::CDKBucketDeployment", 1)
    aws_synth.template.resource_count_is("Custom::Trigger", 2)
    # LocalStack community runs no custom resources: the local template must have none.
    assert not [r for r in local_synth.resources.values() if r["Type"].startswith("Custom::")]
    triggers = aws_synth.of_type("Custom::Trigger")
    fns = functions_by_key(aws_synth)
    versions = aws_synth.of_type("AWS::Lambda::Version")
    handlers = {ref_id(versions[ref_id(t["Properties"]["HandlerArn"])]["Properties"]["FunctionName"])
                for t in triggers.values()}  # fmt: skip
    assert handlers == {fns["OrderMigrate"][0], fns["InventoryMigrate"][0]}
    dbs = set(aws_synth.of_type("AWS::RDS::DBInstance"))
    for t in triggers.values():
        assert dbs & set(t.get("DependsOn", [])), "migrations run after the database exists"


def test_website_config_json_is_generated_on_aws(aws_synth):
    (deployment,) = aws_synth.of_type("Custom::CDKBucketDeployment").values()
    markers = json.dumps(deployment["Properties"].get("SourceMarkers", []))
    assert "ApiRestApi" in markers, "config.json carries the API URL"


# ---------------------------------------------------------------------------------- outputs
def test_outputs(any_synth):
    outputs = any_synth.template_dict["Outputs"]
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    assert not missing
    for key in outputs:
        assert "Export" not in outputs[key], "outputs are export-free"
    fns = functions_by_key(any_synth)
    for key, (logical_id, _) in fns.items():
        assert ref_id(outputs[FUNCTION_NAME_OUTPUTS[key]]["Value"]) == logical_id
    joined = outputs[LOG_GROUP_NAMES]["Value"]["Fn::Join"]
    assert joined[0] == ","
    log_groups = {ref_id(v) for v in joined[1]}
    assert log_groups == {
        ref_id(res["Properties"]["LoggingConfig"]["LogGroup"]) for res in all_functions(any_synth).values()
    }


# ---------------------------------------------------------------------------------- iam
DATA_SERVICES = ("dynamodb", "sqs", "s3", "ssm", "secretsmanager", "kms", "rds", "logs")


def test_no_wildcard_actions_on_data_resources(any_synth):
    for logical_id, res in any_synth.resources.items():
        if res["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role"):
            continue
        docs = [res["Properties"].get("PolicyDocument")] if res["Type"] != "AWS::IAM::Role" else [
            p["PolicyDocument"] for p in res["Properties"].get("Policies", [])]  # fmt: skip
        for doc in filter(None, docs):
            for st in doc["Statement"]:
                for action in as_list(st.get("Action", [])):
                    assert action != "*", logical_id
                    service, _, name = action.partition(":")
                    assert name != "*", f"{logical_id}: {action}"
                    if service in DATA_SERVICES and st["Effect"] == "Allow":
                        assert st.get("Resource") != "*", f"{logical_id}: {action} on *"


def test_service_roles_are_least_privilege(any_synth):
    fns = functions_by_key(any_synth)
    for key, (_, res) in fns.items():
        for st in statements_of_role(any_synth, ref_id(res["Properties"]["Role"])):
            actions = as_list(st["Action"])
            assert st["Effect"] == "Allow"
            for action in actions:
                assert "*" not in action, f"{key}: {action}"
            if st.get("Resource") == "*" or "*" in as_list(st.get("Resource")):
                # ENI management for the VPC, and sending X-Ray segments (target=aws): neither
                # supports resource-level permissions.
                assert all((a.startswith("ec2:") and "NetworkInterface" in a) or a == "ec2:DescribeSubnets"
                           or a.endswith("PrivateIpAddresses")
                           or a in ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
                           for a in actions), f"{key}: {actions}"  # fmt: skip

    # spot checks of who may do what
    def actions_of(key):
        return {a for st in statements_of_role(any_synth, ref_id(fns[key][1]["Properties"]["Role"]))
                for a in as_list(st["Action"])}  # fmt: skip

    assert "sqs:SendMessage" in actions_of("OrderApi")
    assert "sqs:SendMessage" in actions_of("InventoryQueue")
    assert "sqs:SendMessage" not in actions_of("InventoryApi")
    assert "ssm:PutParameter" in actions_of("Gremlin")
    assert "ssm:PutParameter" not in actions_of("InventoryApi")
    assert "sqs:ReceiveMessage" in actions_of("OrderCompletion")
    assert not any(a.startswith("dynamodb:") for a in actions_of("OrderMigrate"))
    # Gremlin reads one secret: the admin key (checked in test_admin_functions_read_the_admin_key_secret...)
    admin_id, _ = admin_key_secret(any_synth)
    gremlin_secret_reads = [
        st
        for st in statements_of_role(any_synth, ref_id(fns["Gremlin"][1]["Properties"]["Role"]))
        if any(a.startswith("secretsmanager:") for a in as_list(st["Action"]))
    ]
    assert [as_list(st["Resource"]) for st in gremlin_secret_reads] == [[{"Ref": admin_id}]]


def test_the_apig4_acknowledgment_says_what_the_stack_does(any_synth):
    """cdk-nag's "no authorization" finding is acknowledged with a reason naming the admin routes:
    exactly those require the API key at the gateway, and their functions check it themselves."""
    import aws_cdk as cdk

    reasons = [
        reason
        for entries in any_synth.metadata.values()
        for entry in entries
        if entry["type"] == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
        for rule, reason in entry["data"].items()
        if rule.endswith("AwsSolutions-APIG4")
    ]
    assert len(reasons) == 1
    reason = reasons[0]
    methods = api_methods(any_synth)
    keyed = {route for route, props in methods.items() if props.get("ApiKeyRequired")}
    assert keyed == ADMIN_ROUTES
    assert "PUT /admin/products/{productId}" in reason and "PUT and DELETE /gremlin" in reason
    assert "mutating routes require" not in reason  # the old, untrue claim
    fns = functions_by_key(any_synth)
    for route in ADMIN_ROUTES:
        assert "ADMIN_KEY_SECRET_ARN" in env_of(fns[EXPECTED_ROUTES[route]][1]), route
