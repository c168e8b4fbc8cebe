"""functions/common/snapstart.py: after a SnapStart restore every environment re-seeds `random`;
without AWS's `snapshot_restore_py` (locally, or no SnapStart) registering is a no-op."""

from __future__ import annotations

import random
import sys
import types

import pytest

from functions.common import snapstart


class FakeRuntime:
    """Stands in for AWS's `snapshot_restore_py`: records the after-restore hooks, runs them on
    `restore()` as the runtime does when it resumes a snapshot."""

    def __init__(self) -> None:
        self.hooks: list = []
        self.module = types.ModuleType("snapshot_restore_py")
        self.module.__dict__["register_after_restore"] = self.hooks.append

    def restore(self) -> None:
        for hook in self.hooks:
            hook()


@pytest.fixture
def fresh_registration(monkeypatch):
    monkeypatch.setattr(snapstart, "_registered", False)
    state = random.getstate()
    yield
    random.setstate(state)


@pytest.fixture
def aws_runtime(monkeypatch, fresh_registration) -> FakeRuntime:
    runtime = FakeRuntime()
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime.module)
    return runtime


def draws(n: int = 5) -> list[float]:
    return [random.random() for _ in range(n)]


def test_restored_environments_draw_different_numbers(aws_runtime):
    assert snapstart.reseed_random_after_restore() is True
    assert aws_runtime.hooks == [snapstart.reseed_random]
    random.seed(1234)  # the state INIT left in the snapshot
    snapshot = random.getstate()
    without_hook = draws()
    restored = []
    for _ in range(2):  # two environments resumed from the same snapshot
        random.setstate(snapshot)
        aws_runtime.restore()
        restored.append(draws())
    assert restored[0] != without_hook and restored[1] != without_hook
    assert restored[0] != restored[1]


def test_registered_once_however_many_handlers_are_built(aws_runtime):
    for _ in range(3):
        assert snapstart.reseed_random_after_restore() is True
    assert len(aws_runtime.hooks) == 1


def test_building_an_api_handler_registers_the_hook(aws_runtime):
    from functions.common.api import create_app, make_api_handler

    make_api_handler(create_app("unit"))
    assert aws_runtime.hooks == [snapstart.reseed_random]


def test_without_the_runtime_library_it_is_a_no_op(monkeypatch, fresh_registration):
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import raises ImportError
    random.seed(1234)
    expected = draws()
    random.seed(1234)
    assert snapstart.reseed_random_after_restore() is False
    assert draws() == expected
    assert snapstart._registered is False
