"""What a Learner keeps for each module, as one record, and the pure functions that build
it: its plugin manager, its optimizers checked against its parameters, the loss its train
step calls.

The Learner owns the table of records (``Learner._table``) and hands a record, or the
table, to the functions here and in ``_minibatches`` and ``_learner_state``; none of them
knows the Learner. A module added while training gets its record exactly as one given at
the start, and ``remove_module`` drops the record: nothing of the module is left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from learnerkit import _defaults
from learnerkit._defaults import DEFAULT_OPTIMIZER
from learnerkit._plugins import new_plugin_manager
from learnerkit._target_networks import make_target
from learnerkit.errors import ConfigError, PluginError
from learnerkit.hookspecs import OPTIMIZER_LOSSES, PER_ROW
from learnerkit.model_config import burn_in_of

if TYPE_CHECKING:
    from learnerkit._learner_spec import LearnerSpec
    from learnerkit._plugins import Algorithm
    from learnerkit._specs import Hyperparameters, ModuleSpec
    from learnerkit.backends._base import Backend, GradientHooks, LossFn, TrainStep
    from learnerkit.data_parallel import DataParallel


@attrs.define(eq=False)
class ModuleRecord:
    """Everything a Learner keeps for one module: built together, dropped together."""

    module: Any
    hps: Hyperparameters
    """The module's hyperparameters (the spec's, with its overrides)."""
    optimizers: dict[str, Any] = attrs.Factory(dict)
    initial_lrs: dict[str, float] = attrs.Factory(dict)
    """Each optimizer's learning rate as ``configure_optimizers`` built it."""
    algorithm_state: dict[str, Any] = attrs.Factory(dict)
    num_updates: int = 0
    train_step: Any = None
    target: Any = None
    """The target network (algorithms with ``target_network=True``)."""
    num_target_updates: int = 0
    step_state: Mapping[str, Any] | None = None
    """The algorithm state as the running train step sees it (framework scalars); None
    outside a step, where ``compute_loss`` sees ``algorithm_state``."""


class ModulesView(Mapping):
    """The modules of a table of records by id, read-only and live (``Learner.module``)."""

    def __init__(self, table: Mapping[str, ModuleRecord]) -> None:
        self._table = table

    def __getitem__(self, module_id: str) -> Any:
        return self._table[module_id].module

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


def merge_results(results: list[Mapping[str, Any] | None]) -> dict[str, Any]:
    """A merged hook's results as one mapping. pluggy returns them in call order
    (algorithm, extras, defaults): merged from the defaults up, the algorithm's keys win."""
    merged: dict[str, Any] = {}
    for result in reversed(results):
        if result:
            merged.update(result)
    return merged


def make_plugin_manager(spec: LearnerSpec, algorithm: Algorithm) -> pluggy.PluginManager:
    """A plugin manager for one Learner: the host defaults, the spec's extra plugins, and
    its one algorithm (installed algorithms never answer each other's hooks)."""
    pm = new_plugin_manager()
    # Registration order sets call order (last registered is called first): defaults,
    # then extras, then the algorithm, whose compute_loss therefore always wins.
    pm.register(_defaults, name="learnerkit-defaults")
    for plugin in spec.extra_plugins:
        try:
            pm.register(plugin)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"extra plugin {plugin!r} breaks the plugin contract: {exc}") from exc
    pm.register(algorithm.plugin, name=f"algorithm-{algorithm.name}")
    try:
        pm.check_pending()  # a misspelt hook name in an extra plugin
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"an extra plugin breaks the plugin contract: {exc}") from exc
    return pm


def build_record(
    table: dict[str, ModuleRecord],
    module_id: str,
    module_spec: ModuleSpec,
    hps: Hyperparameters,
    *,
    backend: Backend,
    algorithm: Algorithm,
    data_parallel: DataParallel,
    configure_optimizers: Callable[..., Any],
    compute_loss: Callable[..., Any],
    gradient_hooks: Callable[[str, ModuleRecord], GradientHooks | None] = lambda *_: None,
) -> None:
    """Build module ``module_id`` and everything that trains it into a record of ``table``:
    its optimizers (``configure_optimizers``, the Learner's ``*_for_module`` method, which
    finds the module in the table), their initial learning rates, its algorithm state,
    target network and train step (through ``gradient_hooks(module_id, record)``' stages,
    when it gives some); then tell ``data_parallel``. Nothing of it is left if any part
    fails."""
    refuse_unmasked_burn_in(module_spec, module_id, algorithm)
    # Every data-parallel copy builds from the same seed, so weights start identical.
    record = table[module_id] = ModuleRecord(backend.build_module(module_spec, hps.seed), hps)
    try:
        where = f"configure_optimizers of plugin {algorithm.name!r} for module {module_id!r}"
        configured = configure_optimizers(module_id=module_id, hps=hps)
        record.optimizers = named_optimizers(configured, backend, record.module, where)
        record.initial_lrs = {
            name: backend.ops.get_learning_rate(opt) for name, opt in record.optimizers.items()
        }
        initial = algorithm.initial_state
        record.algorithm_state = dict(initial(hps)) if initial else {}
        if algorithm.target_network:
            build = partial(backend.build_module, module_spec, hps.seed)
            record.target = make_target(backend, record.module, build)
        loss = loss_fn(record, compute_loss, module_id, algorithm.name)
        hooks = gradient_hooks(module_id, record)
        record.train_step = make_train_step(record, backend, data_parallel, loss, module_id, hooks)
        data_parallel.module_added(module_id, record.module)
    except BaseException:
        del table[module_id]
        data_parallel.module_removed(module_id)
        raise


def refuse_unmasked_burn_in(module_spec: ModuleSpec, module_id: str, algorithm: Algorithm) -> None:
    """A ConfigError for burn-in (``lstm_burn_in``) under an algorithm whose loss does not
    read ``Columns.LOSS_MASK``: it would train on the warm-up rows."""
    burn_in = burn_in_of(module_spec.model_config)
    if burn_in and not algorithm.reads_loss_mask:
        raise ConfigError(
            f"module {module_id!r} trains with lstm_burn_in={burn_in}, but the loss of "
            f"{algorithm.name!r} does not declare that it respects Columns.LOSS_MASK "
            "(Algorithm(reads_loss_mask=True)), so it would train on the burnt-in steps: "
            "set lstm_burn_in=0, or train with an algorithm that reads the mask (ppo, "
            "impala, appo)"
        )


def named_optimizers(configured: Any, backend: Backend, module: Any, where: str) -> dict[str, Any]:
    """``configure_optimizers``' result as ``{name: optimizer}`` (a lone optimizer is named
    ``"default"``), checked to cover every trainable parameter exactly once."""
    if configured is None:
        raise PluginError(f"{where} returned no optimizer")
    if isinstance(configured, Mapping):
        if not configured:
            raise PluginError(f"{where} returned an empty mapping of optimizers")
        optimizers = {str(name): opt for name, opt in configured.items()}
    else:
        optimizers = {DEFAULT_OPTIMIZER: configured}
    if len(optimizers) == 1:
        return optimizers  # one optimizer trains the whole module, as it always has
    owners: dict[int, list[str]] = {id(p): [] for p in backend.parameters(module)}
    for name, opt in optimizers.items():
        params = backend.optimizer_parameters(opt)
        if params is None:
            raise PluginError(
                f"{where}: optimizer {name!r} does not say which parameters it covers; build "
                "each of several optimizers with ops.adam(module, learning_rate, parameters=...)"
            )
        for p in params:
            if id(p) not in owners:
                raise PluginError(
                    f"{where}: optimizer {name!r} covers a parameter that is not a trainable "
                    "parameter of this module"
                )
            owners[id(p)].append(name)
    names = backend.parameter_names(module)
    uncovered = [names.get(i, "?") for i, o in owners.items() if not o]
    shared = {names.get(i, "?"): o for i, o in owners.items() if len(o) > 1}
    if uncovered or shared:
        raise PluginError(
            f"{where}: every trainable parameter must belong to exactly one optimizer; "
            f"covered by none: {uncovered}, by several: {shared}. Pass each optimizer its "
            "share with ops.adam(module, learning_rate, parameters=...)"
        )
    return optimizers


def make_train_step(
    record: ModuleRecord,
    backend: Backend,
    data_parallel: DataParallel,
    loss_fn: LossFn,
    module_id: str,
    gradient_hooks: GradientHooks | None = None,
) -> TrainStep:
    """The record's compiled minibatch step, through the module's forward pass as the
    data-parallel seam runs it (and its gradient all-reduce, if it has one). A module with
    several optimizers trains through the seam's forward pass for several backward passes,
    with the all-reduce after them."""
    hps = record.hps
    if len(record.optimizers) > 1:  # the loss may give each optimizer a backward pass
        forward, allreduce = data_parallel.training_with_several_backward_passes(
            module_id, record.module
        )
    else:
        forward = data_parallel.training_forward(module_id, record.module)
        allreduce = data_parallel.allreduce_gradients
    return backend.make_train_step(
        forward,
        record.module,
        record.optimizers,
        loss_fn,
        grad_clip=hps.grad_clip,
        grad_clip_by=hps.grad_clip_by,
        allreduce_gradients=allreduce,
        gradient_hooks=gradient_hooks,
    )


def loss_fn(
    record: ModuleRecord, compute_loss: Callable[..., Any], module_id: str, algorithm: str
) -> LossFn:
    """The loss a train step calls: ``compute_loss`` (the Learner's
    ``compute_loss_for_module``) for one module, which sees the step's state
    (``record.step_state``) while the step runs."""
    hps = record.hps

    def loss_fn(batch, fwd_out, state):
        record.step_state = state
        try:
            out = compute_loss(module_id=module_id, hps=hps, batch=batch, fwd_out=fwd_out)
        finally:
            # Outside a train step, compute_loss_for_module reads the algorithm state.
            record.step_state = None
        if out is None:
            raise PluginError(f"compute_loss of plugin {algorithm!r} returned no total loss")
        if not isinstance(out, Mapping):  # a bare loss, as in RLlib's examples
            return {"total_loss": out}
        if OPTIMIZER_LOSSES in out:
            losses = check_optimizer_losses(out[OPTIMIZER_LOSSES], record.optimizers, algorithm)
            if "total_loss" not in out:  # reported only: each optimizer follows its own loss
                out = {**out, "total_loss": sum(losses.values())}
        if "total_loss" not in out:
            raise PluginError(
                f"compute_loss of plugin {algorithm!r} returned {sorted(out)} without 'total_loss'"
            )
        if PER_ROW in out:
            check_per_row(out[PER_ROW], algorithm)
        return out

    return loss_fn


def check_optimizer_losses(
    losses: Any, optimizers: Mapping[str, Any], algorithm: str
) -> Mapping[str, Any]:
    """``compute_loss``'s per-optimizer losses (``OPTIMIZER_LOSSES``): a non-empty mapping
    of the module's optimizer names to scalars, checked when the step is built or traced."""
    where = f"compute_loss of plugin {algorithm!r}"
    if not isinstance(losses, Mapping) or not losses:
        raise PluginError(
            f"{where} returned {OPTIMIZER_LOSSES!r} = {losses!r}; it must be a non-empty "
            f"mapping of optimizer name ({sorted(optimizers)}) to a scalar loss"
        )
    unknown = sorted(set(losses) - set(optimizers))
    if unknown:
        raise PluginError(
            f"{where} returned {OPTIMIZER_LOSSES!r} for {unknown}, which are not optimizers "
            f"of the module; configure_optimizers named {sorted(optimizers)}"
        )
    for name, loss in losses.items():
        shape = tuple(getattr(loss, "shape", ()))
        if shape:
            raise PluginError(
                f"{where} returned {OPTIMIZER_LOSSES!r}[{name!r}] of shape {shape}; each "
                "optimizer's loss is a scalar (reduce it first)"
            )
    return losses


def check_per_row(per_row: Any, algorithm: str) -> None:
    """``compute_loss``'s per-row values: a mapping of name to a tensor of one dimension
    (one value per row of the minibatch), checked when the step is built or traced."""
    where = f"compute_loss of plugin {algorithm!r}"
    if not isinstance(per_row, Mapping) or not per_row:
        raise PluginError(
            f"{where} returned {PER_ROW!r} = {per_row!r}; it must be a non-empty mapping of "
            "name to a [B] tensor of one value per row of the minibatch"
        )
    for name, value in per_row.items():
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != 1:
            raise PluginError(
                f"{where} returned {PER_ROW!r}[{name!r}] of shape {shape}; per-row values are "
                "one number per row of the minibatch, shape [B] (reduce other axes first)"
            )
