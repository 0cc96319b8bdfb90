"""The contract checks of ``learnerkit.testing``, one function each, on a ``Subject``: an
algorithm with the settings and spaces to test it in. Each raises AssertionError saying
what broke and where to look; none needs pytest.

Everything runs through the public API (``Learner``, ``LearnerGroup``, the registry); the
batches are synthetic: every column a built-in loop produces, with the dtypes it gives.
"""

from __future__ import annotations

import fnmatch
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import gymnasium as gym
import numpy as np
import pluggy

import learnerkit
from learnerkit import Algorithm, Columns, LearnerkitError, hookspecs
from learnerkit.replay import ReplayColumns

BOX_OBS = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
TWO_ACTIONS = gym.spaces.Discrete(2)


@attrs.frozen(kw_only=True)
class Subject:
    """An algorithm under test and what to test it with."""

    algorithm: str
    hyperparameters: Mapping[str, Any] = attrs.field(factory=dict)
    """Overrides of the algorithm's defaults (small sizes keep the checks fast)."""
    observation_space: Any = BOX_OBS
    action_space: Any = TWO_ACTIONS
    rows: int = 64
    """Rows per batch (sequence loops: two fragments of ``rollout_fragment_length``)."""
    allow_no_gradient: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """``fnmatch`` patterns of parameter names the loss may leave without a gradient (BC
    does not train the default module's value tower: ``("vf.*",)``)."""
    additional_update_kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    """Extra keyword arguments for ``additional_update`` (the built-in loops' are given)."""

    @property
    def declared(self) -> Algorithm:
        return learnerkit.get_algorithm(self.algorithm)

    def hps(self) -> Any:
        return self.declared.hyperparameters(**self.hyperparameters)

    def spec(self, framework: str, **kwargs: Any) -> learnerkit.LearnerSpec:
        module_spec = learnerkit.ModuleSpec(self.observation_space, self.action_space)
        return learnerkit.LearnerSpec(
            algorithm=self.algorithm,
            framework=framework,
            module_spec=module_spec,
            hyperparameters=self.hps(),
            **kwargs,
        )

    def learner(self, framework: str) -> learnerkit.Learner:
        spec = self.spec(framework)
        learner = (spec.learner_class or learnerkit.Learner)(spec)
        learner.build()
        return learner

    def sequence_length(self) -> int | None:
        """The loop's sequence length, for a loop that trains on whole sequences."""
        loop = self.declared.training_loop
        info = _loop_or_none(loop) if loop is not None else None
        if info is None or not info.sequences:
            return None
        return getattr(self.hps(), "rollout_fragment_length", None)

    def batch(self, seed: int = 0) -> learnerkit.SampleBatch:
        length = self.sequence_length()
        rows = 2 * length if length else self.rows
        return synthetic_batch(
            rows, self.observation_space, self.action_space, seed, sequence_length=length
        )

    def update(self, learner: Any, batch: Any) -> dict[str, Any]:
        return learner.update(batch, num_epochs=1, sequence_length=self.sequence_length())

    def additional_update(self, learner: Any, timestep: int) -> dict[str, Any]:
        kwargs = {
            "sampled_kl_values": {mid: 0.01 for mid in learner.module},
            "num_updates": 1,
            **self.additional_update_kwargs,
        }
        return learner.additional_update(timestep=timestep, **kwargs)


def _loop_or_none(name: str) -> Any:
    try:
        return learnerkit.get_training_loop(name)
    except LearnerkitError:
        return None


def synthetic_batch(
    rows: int,
    observation_space: Any,
    action_space: Any,
    seed: int = 0,
    *,
    sequence_length: int | None = None,
) -> learnerkit.SampleBatch:
    """A batch with every column the built-in loops produce, consistent where a loss relies
    on it (``action_logp`` is the log-probability of ``actions`` under
    ``action_dist_inputs``; ``value_targets`` = ``vf_preds + advantages``)."""
    rng = np.random.default_rng(seed)

    def observations() -> np.ndarray:
        low = np.nan_to_num(observation_space.low, neginf=-1.0, posinf=1.0)
        high = np.nan_to_num(observation_space.high, neginf=-1.0, posinf=1.0)
        shape = (rows, *observation_space.shape)
        return rng.uniform(low, high, size=shape).astype(observation_space.dtype)

    if hasattr(action_space, "n"):
        logits = rng.normal(size=(rows, int(action_space.n))).astype(np.float32)
        actions = rng.integers(0, action_space.n, size=rows)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        action_logp = log_probs[np.arange(rows), actions]
    else:
        size = int(np.prod(action_space.shape))
        mean = rng.normal(scale=0.1, size=(rows, size)).astype(np.float32)
        log_std = np.full((rows, size), -0.5, np.float32)
        logits = np.concatenate([mean, log_std], axis=1)
        actions = (mean + np.exp(log_std) * rng.normal(size=mean.shape)).astype(np.float32)
        actions = np.clip(actions, action_space.low, action_space.high).reshape(rows, -1)
        z = (actions - mean) / np.exp(log_std)
        action_logp = (-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(axis=1)
    terminateds = np.zeros(rows, bool)
    ends = sequence_length or 16
    terminateds[ends - 1 :: ends] = True  # episodes end inside the batch, as sampled ones do
    vf_preds = rng.normal(size=rows).astype(np.float32)
    advantages = rng.normal(size=rows).astype(np.float32)
    return learnerkit.SampleBatch(
        {
            Columns.OBS: observations(),
            Columns.NEXT_OBS: observations(),
            Columns.ACTIONS: actions,
            Columns.REWARDS: rng.normal(size=rows).astype(np.float32),
            Columns.TERMINATEDS: terminateds,
            Columns.TRUNCATEDS: np.zeros(rows, bool),
            Columns.VF_PREDS: vf_preds,
            Columns.ACTION_DIST_INPUTS: logits,
            Columns.ACTION_LOGP: action_logp.astype(np.float32),
            Columns.ADVANTAGES: advantages,
            Columns.VALUE_TARGETS: vf_preds + advantages,
            ReplayColumns.DISCOUNTS: np.where(terminateds, 0.0, 0.99).astype(np.float32),
            ReplayColumns.WEIGHTS: np.ones(rows, np.float32),
            ReplayColumns.BATCH_INDEXES: np.arange(rows, dtype=np.int64),
        }
    )


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


# Hooks -------------------------------------------------------------------------------------
ARGUMENT_CHECKS: dict[str, Callable[[Any], bool]] = {
    "learner": lambda v: isinstance(v, learnerkit.Learner),
    "module_id": lambda v: isinstance(v, str),
    "module": lambda v: v is not None,
    "batch": lambda v: isinstance(v, Mapping) or hasattr(v, "keys"),
    "fwd_out": lambda v: isinstance(v, Mapping),
    "state": lambda v: isinstance(v, Mapping),
    "ops": lambda v: hasattr(v, "framework"),
    "timestep": lambda v: isinstance(v, (int, np.integer)),
    "update_kwargs": lambda v: isinstance(v, Mapping),
    "metrics": lambda v: isinstance(v, Mapping),
}
RESULT_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "compute_loss": (
        lambda r: isinstance(r, Mapping) and "total_loss" in r,
        'a mapping with "total_loss"',
    ),
    "additional_update": (lambda r: r is None or isinstance(r, Mapping), "a mapping or None"),
    "compile_results": (lambda r: r is None or isinstance(r, Mapping), "a mapping or None"),
    "configure_optimizers": (lambda r: True, "an optimizer, a mapping of them, or None"),
}


@attrs.define
class HookCall:
    hook: str
    arguments: dict[str, Any]
    result: Any


def _spy_on(plugin: Any, calls: list[HookCall]) -> Any:
    """A plugin module whose hooks wrap ``plugin``'s, recording each call."""
    spied = types.ModuleType(f"{getattr(plugin, '__name__', 'plugin')}_spied")
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    for caller in pm.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                wrapped = _wrap(caller.name, impl.function, impl.argnames, calls)
                setattr(spied, caller.name, learnerkit.hookimpl(**impl.opts)(wrapped))
    return spied


def _wrap(hook: str, function: Callable, argnames: tuple[str, ...], calls: list) -> Callable:
    def spy(*args: Any) -> Any:
        result = function(*args)
        calls.append(HookCall(hook, dict(zip(argnames, args, strict=True)), result))
        ok, expected = RESULT_CHECKS[hook]
        # Here, before the host trips over it with an error of its own.
        assert ok(result), f"the {hook} hook returned {result!r}; expected {expected}"
        return result

    # pluggy reads the argument names through __wrapped__: the spy asks for what the hook asks.
    spy.__wrapped__ = function  # type: ignore[attr-defined]
    return spy


@contextmanager
def spied_algorithm(subject: Subject) -> Iterator[list[HookCall]]:
    """Registers, for the block, a copy of the algorithm whose hooks record their calls."""
    original = subject.declared
    calls: list[HookCall] = []
    spied = _spy_on(original.plugin, calls)
    spied.algorithm = attrs.evolve(original, plugin=None, package=None, version=None)
    learnerkit.register_algorithm(spied, replace=True)
    try:
        yield calls
    finally:
        learnerkit.unregister_algorithm(subject.algorithm)
        if original.package == "(registered in code)":
            learnerkit.register_algorithm(original.plugin, replace=True)


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
    assert_same_state(states["next"], states["next_after_set_state"], "the update after set_state")


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
