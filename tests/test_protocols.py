"""The declared seams are met, member for member and signature for signature: both
backends meet ``Backend``, a built Learner meets the hook contract's ``HookLearner``, and
the data-parallel implementations meet ``DataParallel`` (the Ray learners' ones, internal, are
read from their source). Parameters are compared by name, kind and default (annotations
differ between frameworks on purpose)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

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


def test_the_single_process_data_parallel_meets_the_seam():
    assert mismatches(DataParallel, SingleProcess) == []


# The Ray learners' implementations, internal: read from their source, not imported.
COLLECTIVES = Path(__file__).parent.parent / "learnerkit" / "_distributed" / "collectives.py"


def members_in_source(class_name: str) -> dict[str, ast.AST]:
    """The members ``class_name`` in ``COLLECTIVES`` defines or inherits from a class there
    (methods as their ``def``, attributes as their assignment)."""
    classes = {
        node.name: node
        for node in ast.parse(COLLECTIVES.read_text()).body
        if isinstance(node, ast.ClassDef)
    }
    members: dict[str, ast.AST] = {}

    def collect(name: str) -> None:
        for base in classes[name].bases:
            if isinstance(base, ast.Name) and base.id in classes:
                collect(base.id)
        for node in classes[name].body:
            if isinstance(node, ast.FunctionDef):
                members[node.name] = node
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                members[node.target.id] = node
            elif isinstance(node, ast.Assign):
                members.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))

    collect(class_name)
    return members


def source_parameters(function: ast.FunctionDef) -> list[tuple[str, object, object]]:
    kind = inspect.Parameter
    args = function.args
    positional = [(a, kind.POSITIONAL_ONLY) for a in args.posonlyargs]
    positional += [(a, kind.POSITIONAL_OR_KEYWORD) for a in args.args]
    defaults = [kind.empty] * (len(positional) - len(args.defaults))
    defaults += [ast.literal_eval(d) for d in args.defaults]
    found = [(a.arg, k, d) for (a, k), d in zip(positional, defaults, strict=True)]
    if args.vararg:
        found.append((args.vararg.arg, kind.VAR_POSITIONAL, kind.empty))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        found.append((a.arg, kind.KEYWORD_ONLY, kind.empty if d is None else ast.literal_eval(d)))
    if args.kwarg:
        found.append((args.kwarg.arg, kind.VAR_KEYWORD, kind.empty))
    return found


@pytest.mark.parametrize("name", ["TorchDataParallel", "TFDataParallel"])
def test_the_ray_learners_data_parallel_implementations_meet_the_seam(name):
    members = members_in_source(name)
    found = []
    for member in sorted(protocol_members(DataParallel)):
        declared = vars(DataParallel).get(member)
        if member not in members:
            found.append(f"{member}: missing")
        elif inspect.isfunction(declared):
            given = members[member]
            if not isinstance(given, ast.FunctionDef):
                found.append(f"{member}: not a method")
            elif source_parameters(given) != parameters(declared):
                found.append(f"{member}: {source_parameters(given)} != {parameters(declared)}")
    assert found == []
