"""Small state stores: DynamoDB tables (idempotency, circuit breaker, gremlin counters)
and the SSM parameter holding the gremlin document."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ssm as ssm
from constructs import Construct

# Everything off: the gremlin only acts after an explicit PUT /gremlin.
GREMLIN_DEFAULT_DOCUMENT = {
    "latency": {"enabled": False},
    "error": {"enabled": False},
    "crash": {"enabled": False},
}


def _table(scope: Construct, construct_id: str, *, ttl_attribute: str | None) -> dynamodb.Table:
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=ttl_attribute,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        # Short-lived coordination state (idempotency records, breaker state, counters):
        # nothing to keep when the stack goes.
        removal_policy=RemovalPolicy.DESTROY,
    )


class StateStores(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, parameter_prefix: str) -> None:
        super().__init__(scope, construct_id)

        # Powertools idempotency persistence: pk `id` (string), TTL `expiration`.
        self.idempotency_table = _table(self, "IdempotencyTable", ttl_attribute="expiration")
        # Powertools circuit_breaker DynamoDBPersistenceLayer defaults: key_attr `id`
        # (circuit name), expiry_attr `expiration` (TTL).
        self.circuit_breaker_table = _table(self, "CircuitBreakerTable", ttl_attribute="expiration")
        # Gremlin `every: N` counters: pk `id`.
        self.gremlin_state_table = _table(self, "GremlinStateTable", ttl_attribute=None)

        self.gremlin_parameter = ssm.StringParameter(
            self,
            "GremlinParameter",
            parameter_name=f"{parameter_prefix}/gremlin",
            description="Valerix gremlin document (latency / error / crash injection for inventory)",
            string_value=json.dumps(GREMLIN_DEFAULT_DOCUMENT, separators=(",", ":")),
            tier=ssm.ParameterTier.STANDARD,
        )
