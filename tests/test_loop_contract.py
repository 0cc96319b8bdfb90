"""The loop contract is public and complete: ``TrainingLoop`` names everything the host asks
of a loop, the built-in loops and the third-party example use only public names, and
nothing in the host names a loop (it goes by what a loop declares)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest
from conftest import PLUGIN_PACKAGES

from learnerkit.loops import contract

PACKAGE = Path(__file__).parent.parent / "learnerkit"
BUILT_IN_LOOPS = ["loops/_on_policy.py", "loops/_asynchronous.py", "loops/_offline.py"]
EXAMPLE = PLUGIN_PACKAGES / "learnerkit-fullbatch" / "learnerkit_fullbatch"
LOOP_OBJECTS = {"loop_cls", "loop"}  # how the host's modules hold a loop class or a loop


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _members_used_by_the_host() -> set[str]:
    """Attributes the trainer and the run's set-up read from a loop class or a loop, by
    attribute access or by name (``getattr``/``hasattr``)."""
    used = set()
    for name in ("loops/_trainer.py", "loops/_setup.py"):
        for node in ast.walk(_tree(PACKAGE / name)):
            if isinstance(node, ast.Attribute):
                holder = node.value  # `loop_cls.x`, or `self.loop.x`
                held = getattr(holder, "attr", getattr(holder, "id", None))
                if held in LOOP_OBJECTS:
                    used.add(node.attr)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                "getattr",
                "hasattr",
            ):
                obj, attr = node.args[0], node.args[1]
                if getattr(obj, "id", None) in LOOP_OBJECTS and isinstance(attr, ast.Constant):
                    used.add(attr.value)
    return used


def test_the_protocol_names_every_member_the_host_asks_of_a_loop():
    members = {n for n in vars(contract.TrainingLoop) if not n.startswith("_")}
    used = _members_used_by_the_host()
    assert {"step", "start", "get_state", "learner_group_options"} <= used  # the scan works
    assert used <= members, f"the host reads {sorted(used - members)} not in TrainingLoop"
    assert set(contract.REQUIRED_LOOP_METHODS) <= members


def _imports(path: Path) -> list[tuple[str, str]]:
    return [
        (node.module, alias.name)
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    ]


@pytest.mark.parametrize(
    "path",
    [PACKAGE / p for p in BUILT_IN_LOOPS] + sorted(EXAMPLE.glob("*.py")),
    ids=lambda p: p.name,
)
def test_a_loop_uses_only_public_names(path):
    for module, name in _imports(path):
        if not module.startswith("learnerkit."):
            continue
        assert not any(part.startswith("_") for part in module.split(".")), (module, name)
        parent = importlib.import_module(module)
        if hasattr(parent, "__path__") and importlib.util.find_spec(f"{module}.{name}"):
            continue  # a module, public by its name
        exported = getattr(parent, "__all__", None)
        if exported is not None:
            assert name in exported, f"{path.name} imports {name} from {module}, not public"


def test_everything_the_contract_exports_exists():
    for name in contract.__all__:
        assert getattr(contract, name) is not None, name


def test_nothing_in_the_host_names_a_loop():
    # Loops are named where they are declared, and in their own modules' prose; the host
    # decides everything from LoopInfo.
    names = {"on_policy", "async", "offline"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() == "loops/builtin.py":
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert found == []


def test_combine_results_totals_counts_and_averages():
    results = [
        {"loss": 1.0, "num_rows": 10, "updates_total": 3, "note": "x"},
        {"loss": 3.0, "num_rows": 5, "updates_total": 4, "note": "y"},
    ]
    assert contract.combine_results(results) == {
        "loss": 2.0,
        "num_rows": 15.0,
        "updates_total": 4.0,
    }
    assert contract.combine_results([]) == {}


def test_the_sampling_contract_is_re_exported_as_it_is():
    # Defined once, by the rollouts layer; the loops' contract hands on the same objects.
    for name in ("EnvRunners", "EnvRunnerSpec", "Fragment", "on_policy_batch", "sequence_batch"):
        assert getattr(contract, name).__module__.startswith("learnerkit.rollouts."), name
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        contract.nonsense  # noqa: B018
