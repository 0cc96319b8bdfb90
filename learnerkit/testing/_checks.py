"""The contract checks of ``learnerkit.testing``, one function each, on a ``Subject``: an
algorithm with the settings and spaces to test it in. Each raises AssertionError saying
what broke and where to look; none needs pytest.

Everything runs through the public API (``Learner``, ``LearnerGroup``, the registry); the
batches are synthetic (``_subject``); the hooks' calls are recorded by ``_hook_spy``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

import learnerkit
from learnerkit import Algorithm, Columns, LearnerkitError
from learnerkit.testing._hook_spy import ARGUMENT_CHECKS, RESULT_CHECKS, HookCall, spied_algorithm
from learnerkit.testing._subject import BOX_OBS, TWO_ACTIONS, Subject, synthetic_batch

__all__ = [
    "BOX_OBS",
    "TWO_ACTIONS",
    "ContractRun",
    "Subject",
    "assert_same_state",
    "check_bad_batches",
    "check_hooks",
    "check_loss_and_gradients",
    "check_loss_mask",
    "check_ray_learner_group",
    "check_registers",
    "check_state_round_trip",
    "run_contract",
    "synthetic_batch",
]


# Registration ------------------------------------------------------------------------------
def check_registers(subject: Subject) -> Algorithm:
    """The algorithm loads (strictly) and lists with status ok, with its hooks."""
    algorithm = learnerkit.get_algorithm(subject.algorithm)
    rows = {row.name: row for row in learnerkit.list_plugins()}
    row = rows.get(subject.algorithm)
    assert row is not None, f"{subject.algorithm!r} is not in learnerkit.list_plugins()"
    assert row.status == "ok", f"{subject.algorithm!r} lists as {row.status}: {row.error}"
    assert "compute_loss" in row.hooks, row.hooks
    return algorithm


# The shared run ------------------------------------------------------------------------------
@attrs.define
class ContractRun:
    """The learner work the checks share, done once per framework (a TensorFlow learner
    traces its step on first use, so fewer learners keep the checks fast): learner A, its
    hooks recorded, trains one batch and makes an additional update; a fresh B loads A's
    ``save_state`` with ``load_state``, then takes A's ``get_state`` with ``set_state``; then
    A and B train one more batch each. An exception on the way is kept and raised by every
    check that needs it."""

    subject: Subject
    framework: str
    implemented: tuple[str, ...] = ()
    calls: list[HookCall] = attrs.field(factory=list)
    trainable: dict[str, set[str]] = attrs.field(factory=dict)
    before: dict[str, Any] = attrs.field(factory=dict)
    results: dict[str, Any] = attrs.field(factory=dict)
    after: dict[str, Any] = attrs.field(factory=dict)
    states: dict[str, Any] = attrs.field(factory=dict)
    """``"trained"``, ``"set_state"``, ``"load_state"``, then ``"next"`` and
    ``"next_after_set_state"`` (the states after one more update of A and of B)."""
    learner: Any = None
    """Learner B, for checks that need one more (bad batches)."""
    error: BaseException | None = None

    def raise_error(self) -> None:
        if self.error is not None:
            where = f"{self.subject.algorithm} ({self.framework})"
            raise AssertionError(f"{where}: {type(self.error).__name__}: {self.error}") from (
                self.error
            )


def run_contract(subject: Subject, framework: str, directory: Path) -> ContractRun:
    """Do the work the hook, loss and state checks assert on (see ``ContractRun``)."""
    run = ContractRun(subject=subject, framework=framework)
    try:
        run.implemented = tuple(_hooks(subject))
        with spied_algorithm(subject) as calls:
            run.calls = calls
            a, b = subject.learner(framework), subject.learner(framework)
            run.trainable = {mid: set(a.named_parameters(m)) for mid, m in a.module.items()}
            run.before = a.get_module_state()
            batch = subject.batch()
            run.results = subject.update(a, batch)
            run.after = a.get_module_state()
            subject.additional_update(a, timestep=batch.count)
            run.states["trained"] = a.get_state()
            a.save_state(directory)
            b.load_state(directory)
            run.states["load_state"] = b.get_state()
            b.set_state(run.states["trained"])
            run.states["set_state"] = b.get_state()
            following = subject.batch(seed=1)
            subject.update(a, following)
            subject.update(b, following)
            run.states["next"], run.states["next_after_set_state"] = a.get_state(), b.get_state()
            run.learner = b
    except Exception as exc:  # reported by each check that needs the run
        run.error = exc
    return run


def check_hooks(run: ContractRun) -> None:
    """Every hook the algorithm implements was called (build, update, additional_update)
    with arguments of the documented types, and returned what its spec documents."""
    run.raise_error()
    subject, framework = run.subject, run.framework
    missing = sorted(set(run.implemented) - {call.hook for call in run.calls})
    assert not missing, f"{subject.algorithm} ({framework}): hooks never called: {missing}"
    for call in run.calls:
        where = f"{subject.algorithm}.{call.hook} ({framework})"
        for name, value in call.arguments.items():
            check = ARGUMENT_CHECKS.get(name)
            assert check is None or check(value), f"{where}: argument {name}={value!r}"
            if name == "hyperparameters":
                assert isinstance(value, subject.declared.hyperparameters), where
            if name == "ops":
                assert value.framework == framework, f"{where}: ops of {value.framework}"
        ok, expected = RESULT_CHECKS[call.hook]
        assert ok(call.result), f"{where} returned {call.result!r}; expected {expected}"


def _hooks(subject: Subject) -> list[str]:
    rows = {row.name: row for row in learnerkit.list_plugins()}
    return list(rows[subject.algorithm].hooks)


# Loss and gradients ------------------------------------------------------------------------
def check_loss_and_gradients(run: ContractRun) -> None:
    """The update's loss was finite, and every trainable parameter moved (got a gradient),
    except those ``Subject.allow_no_gradient`` names."""
    run.raise_error()
    subject, framework = run.subject, run.framework
    for mid, stats in run.results.items():
        loss = float(np.asarray(stats["total_loss"]))
        assert np.isfinite(loss), f"{subject.algorithm} ({framework}): total_loss is {loss}"
        frozen = [
            name
            for name in sorted(run.trainable[mid])
            if np.array_equal(run.before[mid][name], run.after[mid][name])
            and not any(fnmatch.fnmatch(name, p) for p in subject.allow_no_gradient)
        ]
        assert not frozen, (
            f"{subject.algorithm} ({framework}), module {mid!r}: one update left {frozen} "
            "unchanged: the loss gives them no gradient (if that is meant, name them in "
            "allow_no_gradient)"
        )


# The loss mask -------------------------------------------------------------------------------
# What a masked row may not pass on to the update: everything of the row but what runs the
# module's forward pass (observations, episode flags, a recurrent state), which a warm-up
# row must still feed to the rows after it.
_SCRAMBLED = (
    Columns.ACTIONS,
    Columns.ACTION_LOGP,
    Columns.ACTION_DIST_INPUTS,
    Columns.REWARDS,
    Columns.VF_PREDS,
    Columns.ADVANTAGES,
    Columns.VALUE_TARGETS,
)


def check_loss_mask(run: ContractRun) -> None:
    """An algorithm that declares ``reads_loss_mask=True`` leaves masked rows out of its
    update: with ``Columns.LOSS_MASK`` 0 on the first quarter of each sequence (burn-in's
    rows; every fourth row for an algorithm of single rows), scrambling those rows' actions,
    log-probabilities, rewards, values and advantages leaves the weights after an update
    bitwise the same, while scrambling them unmasked changes them (the check is not
    vacuous). Nothing to check for an algorithm that does not declare it: the host refuses
    a masked batch for it."""
    run.raise_error()
    subject, framework = run.subject, run.framework
    if not subject.declared.reads_loss_mask:
        return
    batch = dict(subject.batch(seed=2).items())
    rows = len(batch[Columns.OBS])
    length = subject.sequence_length()
    if length:
        masked = np.arange(rows) % length < max(1, length // 4)
    else:
        masked = np.arange(rows) % 4 == 0
    scrambled = _scramble(batch, masked, subject.batch(seed=3))
    learner = subject.learner(framework)

    def weights_after(columns: dict[str, Any]) -> dict[str, Any]:
        learner.set_state(run.states["trained"])
        subject.update(learner, learnerkit.SampleBatch(columns))
        return learner.get_module_state()

    mask = {Columns.LOSS_MASK: (~masked).astype(np.float32)}
    where = f"{subject.algorithm} ({framework})"
    reference = weights_after({**batch, **mask})
    try:
        assert_same_state(reference, weights_after({**scrambled, **mask}), "weights")
    except AssertionError as exc:
        raise AssertionError(
            f"{where}: changing rows whose loss_mask is 0 changed the update ({exc}): take "
            "every mean, sum and statistic of the loss over the unmasked rows "
            "(learnerkit.loss_mask.masked_mean), or drop reads_loss_mask=True"
        ) from exc
    unmasked = weights_after(batch), weights_after(scrambled)
    changed = any(
        not np.array_equal(unmasked[0][m][name], unmasked[1][m][name])
        for m in unmasked[0]
        for name in unmasked[0][m]
    )
    assert changed, (
        f"{where}: the rows this check masks change nothing even unmasked (columns "
        f"{list(_SCRAMBLED)}): it cannot tell whether the loss reads the mask"
    )


def _scramble(batch: dict[str, Any], rows: np.ndarray, other: Any) -> dict[str, Any]:
    """``batch`` with ``rows`` of the columns a masked row may not pass on taken from
    ``other`` (another synthetic batch, so every value stays valid)."""
    out = dict(batch)
    for name in _SCRAMBLED:
        if name in batch:
            column = np.array(batch[name], copy=True)
            column[rows] = np.asarray(other[name])[rows]
            out[name] = column
    return out


# State -------------------------------------------------------------------------------------
def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Nested states equal bitwise: same keys, arrays of the same dtype, shape and bytes."""
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            if key == "name" and where.endswith("['config']"):
                continue  # a Keras optimizer's generated name ("adam_14") is not its state
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        same = a == b or (isinstance(a, float) and np.isnan(a) and np.isnan(b))
        assert same, f"{where}: {a!r} != {b!r}"


def check_state_round_trip(run: ContractRun) -> None:
    """``get_state``/``set_state`` and ``save_state``/``load_state`` carried everything: the
    restored learners held the state bitwise, and the next update of A and B was the same."""
    run.raise_error()
    states = run.states
    assert_same_state(states["trained"], states["set_state"], "set_state(get_state())")
    assert_same_state(states["trained"], states["load_state"], "load_state(save_state())")
    assert_same_state(
        states["next"],
        states["next_after_set_state"],
        "the update after set_state (a loss drawing random numbers draws them from "
        "learner.loss_generator, whose state the learner's holds: docs/guides/randomness.md)",
    )


# Bad batches -------------------------------------------------------------------------------
def check_bad_batches(
    subject: Subject, framework: str, *, every_column: bool = True, learner: Any = None
) -> None:
    """A batch without a column the loss reads, with NaN, or with ragged columns raises a
    learnerkit error (a BatchError naming the column), never a framework's or a KeyError.
    ``every_column=False`` leaves out the batches missing one column each (on TensorFlow
    each that trains is a new trace: check them on one framework). ``learner``: a built one
    to use (``ContractRun.learner``)."""
    learner = learner or subject.learner(framework)
    columns = dict(subject.batch().items())
    bad = {}
    # Every column but obs, which every module's forward reads (the host does not check it).
    for name in [c for c in columns if c != Columns.OBS] if every_column else ():
        bad[f"without {name!r}"] = {k: v for k, v in columns.items() if k != name}
    nan = {**columns, Columns.OBS: np.full_like(columns[Columns.OBS], np.nan)}
    bad["NaN observations"] = nan
    bad["ragged rows"] = {**columns, Columns.REWARDS: columns[Columns.REWARDS][:-1]}
    for what, batch in bad.items():
        try:
            subject.update(learner, learnerkit.SampleBatch(batch))
        except LearnerkitError:
            continue
        except Exception as exc:  # the contract: only learnerkit errors
            raise AssertionError(
                f"{subject.algorithm} ({framework}): a batch {what} raised "
                f"{type(exc).__name__}: {exc}; a column the loss reads belongs in "
                "Algorithm(required_columns=...), so that such a batch is a BatchError"
            ) from exc
        if what in ("NaN observations", "ragged rows"):
            raise AssertionError(f"{subject.algorithm} ({framework}): a batch with {what} trained")


# Ray ---------------------------------------------------------------------------------------
def check_ray_learner_group(subject: Subject, framework: str, num_learners: int = 2) -> None:
    """A LearnerGroup of ``num_learners`` Ray learners stays bitwise identical after an
    update and an additional_update (starts Ray, or uses the session already up)."""
    scaling = learnerkit.ScalingConfig(num_learners=num_learners, num_cpus_per_learner=0.5)
    group = learnerkit.LearnerGroup(subject.spec(framework, scaling=scaling))
    try:
        batch = subject.batch()
        group.update(batch, num_epochs=1, sequence_length=subject.sequence_length())
        kl = {learnerkit.DEFAULT_MODULE_ID: 0.01}
        group.additional_update(timestep=batch.count, sampled_kl_values=kl, num_updates=1)
        # Everything but the shuffle generator, which is each learner's own.
        states = group.foreach_learner(
            lambda learner: {k: v for k, v in learner.get_state().items() if "shuffle" not in k}
        )
    finally:
        group.shutdown()
    for rank, state in enumerate(states[1:], start=1):
        assert_same_state(states[0], state, f"learner {rank} vs learner 0")
