"""The declared seams are met, member for member and signature for signature: both
backends meet ``Backend``, a built Learner meets the hook contract's ``HookLearner``, and
the data-parallel implementations meet ``DataParallel``. Parameters are compared by name,
kind and default (annotations differ between frameworks on purpose)."""

from __future__ import annotations

import importlib
import inspect

import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin

from learnerkit import Learner, LearnerSpec, ModuleSpec
from learnerkit.backends import Backend, make_backend
from learnerkit.data_parallel import DataParallel, SingleProcess
from learnerkit.hookspecs import HookLearner


def protocol_members(protocol: type) -> set[str]:
    declared = {name for name in vars(protocol) if not name.startswith("_")}
    return declared | set(getattr(protocol, "__annotations__", {}))


def parameters(function) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def mismatches(protocol: type, implementation: object) -> list[str]:
    """What ``implementation`` (a class or an instance) lacks of ``protocol``, or declares
    with other parameters."""
    found = []
    for name in sorted(protocol_members(protocol)):
        if not hasattr(implementation, name):
            found.append(f"{name}: missing")
            continue
        declared = vars(protocol).get(name)
        if inspect.isfunction(declared):
            cls = implementation if isinstance(implementation, type) else type(implementation)
            given = inspect.getattr_static(cls, name)
            if not inspect.isfunction(given):
                found.append(f"{name}: not a method")
            elif parameters(given) != parameters(declared):
                found.append(f"{name}: {parameters(given)} != {parameters(declared)}")
    return found


@pytest.mark.parametrize(("framework", "package"), [("torch", "torch"), ("tf", "tensorflow")])
def test_both_backends_meet_the_backend_protocol(framework, package):
    pytest.importorskip(package)
    backend = make_backend(framework)  # device: an instance's
    assert mismatches(Backend, backend) == []


def test_the_backend_protocol_declares_what_the_learner_uses():
    # The members a Learner and its helpers call, and the acting primitive.
    assert {
        "build_module",
        "make_train_step",
        "metrics_table",
        "get_module_state",
        "set_optimizer_state",
        "numpy_call",
        "ops",
    } <= protocol_members(Backend)
    for removed in ("policy_fn", "value_fn", "numpy_actor_critic"):
        assert removed not in protocol_members(Backend)


def test_a_built_learner_meets_the_hook_contracts_learner_protocol(register, framework):
    register(make_plugin("cloning", compute_loss=bc_loss))
    learner = Learner(
        LearnerSpec(
            algorithm="cloning",
            framework=framework,
            module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        )
    )
    learner.build()
    assert mismatches(HookLearner, learner) == []


@pytest.mark.parametrize("name", ["SingleProcess", "TorchDataParallel", "TFDataParallel"])
def test_the_data_parallel_implementations_meet_the_seam(name):
    if name == "SingleProcess":
        implementation = SingleProcess
    else:
        implementation = getattr(
            importlib.import_module("learnerkit.distributed.collectives"), name
        )
    assert mismatches(DataParallel, implementation) == []
