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


@pytest.fixture(scope="session", params=["local", "aws"])
def any_synth(request) -> Synth:
    return request.getfixturevalue(f"{request.param}_synth")
