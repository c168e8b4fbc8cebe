#!/usr/bin/env python3
"""CDK entry point (cdk.json: `.venv/bin/python infra/app.py`).

    npx cdk synth -c target=local          # LocalStack (`make up` runs cdklocal deploy)
    npx cdk synth -c target=aws            # real AWS: VPC + RDS + AWS Backup
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# CDK's built-in CloudFormation schema validation adds ~20 s per synth on this machine and
# duplicates cfn-lint, which the infra tests run on both templates. `CDK_VALIDATION=true`
# turns it back on.
os.environ.setdefault("CDK_VALIDATION", "false")
# Run as a script, Python puts infra/ first on sys.path, where infra/constructs would shadow
# the `constructs` library: replace it with the repository root.
_INFRA_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _INFRA_DIR]
sys.path.insert(0, str(_INFRA_DIR.parent))

import aws_cdk as cdk  # noqa: E402

from infra.config import ValerixConfig  # noqa: E402
from infra.nag import acknowledge_serverless_findings, nag_plugins  # noqa: E402
from infra.stack import ValerixStack  # noqa: E402


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
