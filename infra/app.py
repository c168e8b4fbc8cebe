#!/usr/bin/env python3
"""CDK entry point (cdk.json: `.venv/bin/python -m infra.app`: run as a module, so infra/ is not
first on sys.path, where infra/constructs would shadow the `constructs` library).

    npx cdk synth -c target=local          # LocalStack (`make up` runs cdklocal deploy)
    npx cdk synth -c target=aws            # real AWS: VPC + RDS + AWS Backup
"""

from __future__ import annotations

import os

# Set before aws_cdk is imported: jsii reads them when its runtime starts.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# CDK's built-in CloudFormation schema validation adds ~20 s per synth on this machine and
# duplicates cfn-lint, which the infra tests run on both templates. `CDK_VALIDATION=true`
# turns it back on.
os.environ.setdefault("CDK_VALIDATION", "false")

import aws_cdk as cdk

from infra.config import ValerixConfig
from infra.nag import acknowledge_serverless_findings, nag_plugins
from infra.stack import ValerixStack


def build_app(app: cdk.App | None = None) -> tuple[cdk.App, ValerixStack]:
    app = app or cdk.App()
    config = ValerixConfig.from_context(app.node)
    env = cdk.Environment(account=config.account, region=config.region) if (config.account or config.region) else None
    stack = ValerixStack(
        app,
        config.stack_name,
        config=config,
        env=env,
        description=f"Valerix order flow (target={config.target})",
    )
    cdk.Tags.of(stack).add("project", "valerix")
    cdk.Tags.of(stack).add("valerix:target", config.target)
    acknowledge_serverless_findings(stack)
    if config.nag:
        cdk.Validations.of(app).add_plugins(*nag_plugins(app))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
