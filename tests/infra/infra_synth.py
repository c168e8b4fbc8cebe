"""Synthesize the Valerix CDK app (helper for tests/infra).

Synthesis runs the real app (`infra.app.build_app`) with the context from cdk.json plus the
target, the cdk-nag AwsSolutions plugin included. A validation failure does not raise: the
template is written before validation, and the nag test reads the report.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_VALIDATION", "false")  # cfn-lint covers it (test_infra_cfn_lint.py)


REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = REPO_ROOT / "cdk.json"

LOCAL_CONTEXT = {
    "adminApiKey": "infra-test-admin-key-0123456789",
    "orderDbSecret": json.dumps(
        {"host": "127.0.0.1", "port": 55433, "username": "order_user", "password": "pw-order",
         "dbname": "order_db", "engine": "postgres"}
    ),
    "inventoryDbSecret": json.dumps(
        {"host": "127.0.0.1", "port": 55434, "username": "inventory_user", "password": "pw-inventory",
         "dbname": "inventory_db", "engine": "postgres"}
    ),
    "localstackEndpoint": "http://127.0.0.1:4566",
}  # fmt: skip


@dataclass
class Synth:
    target: str
    stack: Any
    outdir: Path
    template_dict: dict
    validation_report: dict
    error: str | None
    context: dict = field(default_factory=dict)

    @property
    def template(self):
        from aws_cdk.assertions import Template

        return Template.from_json(self.template_dict)

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{self.stack.stack_name}.template.json"

    @property
    def resources(self) -> dict[str, dict]:
        return self.template_dict["Resources"]

    def of_type(self, cfn_type: str) -> dict[str, dict]:
        return {k: r for k, r in self.resources.items() if r["Type"] == cfn_type}

    @property
    def metadata(self) -> dict:
        return json.loads((self.outdir / f"{self.stack.stack_name}.metadata.json").read_text())

    @property
    def assets(self) -> dict:
        return json.loads((self.outdir / f"{self.stack.stack_name}.assets.json").read_text())


def synth(target: str, outdir: Path, **extra_context: Any) -> Synth:
    import aws_cdk as cdk
    from jsii.errors import JSIIError

    from infra.app import build_app

    # Path metadata (aws:cdk:path) as the CDK CLI adds it: the nag claim checks find resources by path.
    context = {**json.loads(CDK_JSON.read_text())["context"], "target": target, "aws:cdk:enable-path-metadata": True}
    if target == "local":
        context.update(LOCAL_CONTEXT)
    context.update(extra_context)
    app = cdk.App(context=context, outdir=str(outdir))
    app, stack = build_app(app)
    error = None
    try:
        app.synth()
    except (RuntimeError, JSIIError) as exc:  # the validation plugin (cdk-nag) reports by failing synth
        error = str(exc)
    template_path = outdir / f"{stack.stack_name}.template.json"
    report_path = outdir / "validation-report.json"
    return Synth(
        target=target,
        stack=stack,
        outdir=outdir,
        template_dict=json.loads(template_path.read_text()),
        validation_report=json.loads(report_path.read_text()) if report_path.exists() else {},
        error=error,
        context=context,
    )
