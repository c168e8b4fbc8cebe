"""Session fixtures: the Valerix app synthesized once per target (see infra_synth.py)."""

from __future__ import annotations

import pytest

from tests.infra.infra_synth import Synth, synth


@pytest.fixture(scope="session")
def local_synth(tmp_path_factory) -> Synth:
    return synth("local", tmp_path_factory.mktemp("cdk-local"))


@pytest.fixture(scope="session")
def aws_synth(tmp_path_factory) -> Synth:
    return synth("aws", tmp_path_factory.mktemp("cdk-aws"))


# A layer version ARN of the shape the FIS extension's public SSM parameter holds.
FIS_LAYER_ARN = "arn:aws:lambda:eu-central-1:211125425201:layer:aws-fis-extension-x86_64:9"


@pytest.fixture(scope="session")
def fis_synth(tmp_path_factory) -> Synth:
    """target=aws with the AWS FIS experiment templates (context fisExperiments)."""
    return synth(
        "aws", tmp_path_factory.mktemp("cdk-aws-fis"), fisExperiments="true", fisExtensionLayerArn=FIS_LAYER_ARN
    )


@pytest.fixture(scope="session", params=["local", "aws"])
def any_synth(request) -> Synth:
    return request.getfixturevalue(f"{request.param}_synth")
