"""cfn-lint passes on both synthesized templates (run as a subprocess on the written files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# W3005 ("dependency already enforced by GetAtt"): CDK adds DependsOn from every Lambda function
# to its role so that the role's separate AWS::IAM::Policy exists first; the role half of that
# DependsOn is redundant but harmless, and CDK's own providers (BucketDeployment, triggers) do it too.
IGNORED_CHECKS = ["W3005"]


def test_cfn_lint_passes_on_both_templates(local_synth, aws_synth, fis_synth):
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    # templates first: --ignore-checks takes one or more values and would swallow them
    cmd = [
        str(cfn_lint),
        str(local_synth.template_path),
        str(aws_synth.template_path),
        str(fis_synth.template_path),
        "--format",
        "parseable",
    ]
    cmd += ["--ignore-checks", *IGNORED_CHECKS]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"cfn-lint rc={result.returncode}\n{result.stdout}\n{result.stderr}"
