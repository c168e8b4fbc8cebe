"""target=local with `-c hotReload=true`: LocalStack's hot-reload convention (bucket
`hot-reload`, key = absolute host path) pointing at the repository root, so edits under
functions/ apply at the next cold start and handlers stay `functions.<service>.handler.<name>`."""

from __future__ import annotations

import pytest

from tests.infra.infra_synth import REPO_ROOT, synth


@pytest.fixture(scope="module")
def hot_reload_synth(tmp_path_factory):
    return synth("local", tmp_path_factory.mktemp("cdk-hot"), hotReload="true", nag="false")


def test_functions_use_the_hot_reload_bucket(hot_reload_synth):
    functions = [r for r in hot_reload_synth.of_type("AWS::Lambda::Function").values()
                 if str(r["Properties"].get("FunctionName", "")).startswith("Valerix-")]  # fmt: skip
    from infra.constructs.service_functions import FUNCTION_SPECS

    backup_functions = 3  # infra/constructs/local_backup.py
    assert len(functions) == len(FUNCTION_SPECS) + backup_functions
    for fn in functions:
        assert fn["Properties"]["Code"] == {"S3Bucket": "hot-reload", "S3Key": str(REPO_ROOT)}
    zips = [a for a in hot_reload_synth.assets["files"].values() if a["source"].get("packaging") == "zip"]
    assert not zips, "no function asset to upload"
