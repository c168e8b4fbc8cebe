"""cdk-nag (v3) helpers.

cdk-nag 3 runs as a CDK policy-validation plugin (`Validations.of(app).add_plugins(...)`);
a violation that is not acknowledged interrupts synthesis. Acknowledgments are CDK's native
`Validations.of(construct).acknowledge(...)`, one per finding (`AwsSolutions-IAM5[Resource::*]`),
and every one of them carries a written reason.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

MIN_REASON_LENGTH = 40
PLUGIN_PREFIX = "AwsSolutions::"


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one AwsSolutions finding (`AwsSolutions-L1`, `AwsSolutions-IAM5[Resource::*]`)."""
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"cdk-nag acknowledgment {rule_id} on {scope.node.path} needs a real reason")
    if "::" not in rule_id.split("[", 1)[0]:
        rule_id = PLUGIN_PREFIX + rule_id  # the plugin-qualified id cdk-nag reports
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def acknowledge_all(scope: IConstruct, rules: dict[str, str]) -> None:
    for rule_id, reason in rules.items():
        acknowledge(scope, rule_id, reason)
