"""The plugin contract: the hooks a Learner calls, in the order it calls them (the four
RLlib has, and the optional ``postprocess_gradients``).

An algorithm plugin is a module (found through the ``learnerkit.algorithms`` entry point)
whose functions are marked ``@learnerkit.hookimpl``. Hooks are called with keyword
arguments only, and an implementation names just the arguments it needs, so a spec can grow
new arguments without breaking plugins.

Each Learner has its own plugin manager holding the host defaults, any extra plugins its
spec names, and its one algorithm: installed algorithms never answer each other's hooks.
Call order is the algorithm first, then extra plugins (last added first), then the host
defaults (``learnerkit._defaults``).

Tensors are the framework's own (torch or TensorFlow). ``ops`` is a small backend-neutral
set of array functions (``learnerkit.Ops``) so that one loss serves both frameworks.

``learner`` is typed by ``HookLearner``, declared here: what a hook may call on the Learner
that calls it. The contract names no Learner class, so it sits below the Learner and the
registries that import it (``learnerkit.Learner`` meets the Protocol; a test checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from learnerkit._batch import SampleBatch
    from learnerkit._specs import Hyperparameters
    from learnerkit.ops import Ops

__all__ = [
    "OPTIMIZER_LOSSES",
    "PER_ROW",
    "PROJECT_NAME",
    "HookLearner",
    "additional_update",
    "compile_results",
    "compute_loss",
    "configure_optimizers",
    "hookimpl",
    "hookspec",
    "postprocess_gradients",
]

PROJECT_NAME = "learnerkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

PER_ROW = "per_row"
"""The key under which ``compute_loss`` may return per-row values (one float per row of the
minibatch, such as each row's TD error for prioritized replay), and under which
``update()`` returns them for each module, aligned to the rows of the batch it was given."""


OPTIMIZER_LOSSES = "optimizer_losses"
"""The key under which ``compute_loss`` may return one loss per optimizer of the module
(``{"actor": ..., "critic": ..., "alpha": ...}`` for SAC): each optimizer then steps its
own parameters with the gradient of its own loss alone, instead of every optimizer taking
its share of the gradient of ``total_loss`` (issue 20)."""


class HookLearner(Protocol):
    """The Learner as a hook sees it (its ``learner`` argument): what an implementation may
    read or call. ``learnerkit.Learner`` documents each member."""

    backend: Any
    """The framework backend (``backend.ops``: the array functions; parameters, state)."""

    @property
    def hps(self) -> Hyperparameters:
        """The base hyperparameters, without per-module overrides."""

    @property
    def module(self) -> Mapping[str, Any]:
        """The modules by id."""

    @property
    def modules_to_train(self) -> frozenset[str]: ...

    @property
    def loss_generator(self) -> Any:
        """The generator a loss draws random numbers from (docs/guides/randomness.md)."""

    def hyperparameters_for(self, module_id: str) -> Hyperparameters: ...

    def optimizer(self, module_id: str, name: str = "default") -> Any: ...

    def optimizers(self, module_id: str) -> Mapping[str, Any]: ...

    def initial_learning_rate(self, module_id: str, name: str = "default") -> float: ...

    def get_parameters(self, module: Any) -> list[Any]: ...

    def get_param_ref(self, param: Any) -> Any:
        """The key of ``param`` in a gradients mapping (``postprocess_gradients``)."""

    def named_parameters(self, module: Any) -> dict[str, Any]: ...

    def algorithm_state(self, module_id: str) -> dict[str, Any]: ...

    def num_updates(self, module_id: str) -> int: ...

    def target_module(self, module_id: str) -> Any: ...

    def update_target_module(self, module_id: str, tau: float = 1.0) -> None: ...

    def num_target_updates(self, module_id: str) -> int: ...


@hookspec(firstresult=True)
def configure_optimizers(
    learner: HookLearner,
    module_id: str,
    module: Any,
    hyperparameters: Hyperparameters,
    ops: Ops,
) -> Any:
    """Create the optimizer(s) for one module.

    Called once per module by ``Learner.build()`` and by ``add_module``. First non-None
    result wins.

    :param learner: the Learner being built.
    :param module_id: which module (``"default_policy"`` for a single-agent batch).
    :param module: the framework module (``torch.nn.Module`` or ``tf.Module``) to optimize.
    :param hyperparameters: this module's validated hyperparameters (the algorithm's, with
        its ``LearnerSpec.module_hyperparameters`` overrides).
    :param ops: the backend's array functions; ``ops.adam(module, learning_rate=...)`` builds
        an Adam optimizer in either framework.
    :return: an optimizer of the module's framework (named ``"default"``), or a mapping of
        name to optimizer, each built on a share of the parameters with
        ``ops.adam(module, lr, parameters=...)`` (every trainable parameter in exactly one,
        else a PluginError). One backward of the total loss feeds them all; each steps its
        own parameters; ``learner.optimizer(module_id, name)`` returns one.

    The host default returns Adam with ``hyperparameters.learning_rate``.
    """


@hookspec(firstresult=True)
def compute_loss(
    learner: HookLearner,
    module_id: str,
    module: Any,
    hyperparameters: Hyperparameters,
    batch: Mapping[str, Any],
    fwd_out: Mapping[str, Any],
    state: Mapping[str, Any],
    ops: Ops,
) -> Mapping[str, Any]:
    """Compute the loss of one module on one minibatch.

    Called for every minibatch of every epoch, inside the gradient tape (TensorFlow) or before
    ``backward()`` (torch). First non-None result wins: this is the algorithm's own hook.

    :param learner: the Learner calling the hook. A loss that draws random numbers (SAC's
        actions) draws them from ``learner.loss_generator``, whose state checkpoints keep.
    :param module_id: which module.
    :param module: the framework module.
    :param hyperparameters: this module's hyperparameters (with its overrides).
    :param batch: the minibatch, column name to framework tensor.
    :param fwd_out: the module's ``forward_train`` output, with at least
        ``Columns.ACTION_DIST_INPUTS`` and, for actor-critic modules, ``Columns.VF_PREDS``.
        ``module.action_dist(dist_inputs)`` turns them into a distribution.
    :param state: the module's algorithm state (for example PPO's current ``kl_coeff``), as
        framework scalars; kept by the Learner and changed by ``additional_update``.
    :param ops: the backend's array functions (``ops.mean``, ``ops.square``...).
    :return: a mapping with ``"total_loss"`` (the scalar to minimise) and any other scalar
        statistics to average over minibatches and report (``"policy_loss"``, ``"entropy"``...);
        optionally, under ``PER_ROW`` (``"per_row"``), a mapping of name to a ``[B]`` tensor
        of per-row values for the minibatch's B rows (no gradient is taken through them);
        optionally, under ``OPTIMIZER_LOSSES`` (``"optimizer_losses"``), a mapping of
        optimizer name (``configure_optimizers``' names) to a scalar loss.

    Recurrent modules (``model_config["use_lstm"]``, or a module class that declares
    ``initial_state(n)``; docs/guides/recurrent.md): the loop trains them with
    ``update(..., sequence_length=L)``, so the minibatch holds whole sequences of L
    consecutive steps of one env each, rows ``[B * L]`` (L is the module's ``max_seq_len``,
    or the async loop's whole fragments, a multiple of it). The state is the module's
    business: ``batch`` carries ``Columns.STATE_IN`` (the state each step started from;
    ``forward_train`` reads it at each sequence's first row), ``PREV_ACTIONS`` and
    ``PREV_REWARDS``, and ``forward_train`` resets the state where ``terminateds`` or
    ``truncateds`` end an episode inside a sequence. In gymnasium envs nothing is padded,
    so every row is a real step and plain means over ``fwd_out`` are right. ``batch`` then
    carries ``Columns.LOSS_MASK`` (0.0 on the rows to leave out, 1.0 elsewhere) with
    burn-in (``model_config["lstm_burn_in"]=N``: the first N steps of each sequence only
    warm the state up) and on the on-policy loop in PettingZoo envs (agents' segments
    padded to whole sequences); the loss takes every mean and statistic over it
    (``learnerkit.loss_mask.masked_mean``); an algorithm whose loss does declares
    ``Algorithm(reads_loss_mask=True)``, and a mask is refused for any other. A loss that
    bootstraps from the values of ``Columns.NEXT_OBS`` takes ``fwd_out["next_vf_preds"]``
    where the module gives it (a recurrent ``value(obs)`` cannot know the state), and a
    forward pass of another module (a target network) is handed the whole ``batch``.

    Without ``OPTIMIZER_LOSSES``, one backward pass of ``total_loss`` feeds every optimizer
    and each steps its share of the parameters. With it, each optimizer named steps its own
    parameters with the gradient of its own loss only (an actor's loss that runs through the
    critics never moves them); an optimizer left out of the mapping does not step, and a name
    that is no optimizer of the module is a PluginError. ``"total_loss"`` may then be left
    out: it is reported as the sum of the losses. The step is skipped as non-finite when any
    of the losses or their gradients is. torch computes one backward pass per loss through
    the shared graph (``backward(inputs=...)``: only that optimizer's gradients), TensorFlow
    one gradient per loss from a persistent tape. Ray learners average each optimizer's
    gradients over the learners after the backward passes (torch: a module with several
    optimizers on GPUs runs its forward pass without DDP's averaging, which expects one
    backward pass per forward pass). A Learner with its own gradient stages does not take it yet.

    Per-row values travel back to the caller of ``update()``, not into the averaged
    statistics: ``results[module_id]["per_row"][name]`` is a float32 numpy array with one
    value per row of the batch given to ``update`` (its shuffling and minibatches undone),
    NaN for the rows no applied step trained on (a minibatch skipped as non-finite; on Ray
    learners, the remainder dropped when the batch was cut into equal contiguous shards,
    whose values the group concatenates in order). A row trained in several epochs keeps
    its last value. The replay loop sets prioritized replay's priorities from
    ``per_row["td_error"]``. An algorithm that returns none pays nothing.
    """


@hookspec
def postprocess_gradients(
    learner: HookLearner,
    module_id: str,
    module: Any,
    hyperparameters: Hyperparameters,
    gradients: dict[Any, Any],
    ops: Ops,
) -> None:
    """Change one module's gradients before they are clipped and applied (gradient
    surgery: masking, noise, projections). Optional: an algorithm without it pays nothing.

    Called for each minibatch step, on its gradients averaged over data-parallel learners
    (so every learner changes the same gradients alike and they stay identical), before
    ``grad_clip``; the result is applied only when those gradients are finite (torch does
    not call it otherwise). Every implementation runs, the algorithm's first,
    then extra plugins', each seeing the changes of those before it. TensorFlow calls it
    while tracing the compiled step: use ``ops`` and tensor operations, no ``.numpy()``.
    Gradients it makes non-finite skip the step (``Hyperparameters.non_finite``). A
    ``Learner`` subclass overrides ``postprocess_gradients`` (and ``compute_gradients``,
    ``apply_gradients``) instead.

    :param learner: the Learner calling the hook; ``learner.get_param_ref(param)`` keys a
        parameter of ``learner.named_parameters(module)`` in ``gradients``.
    :param module_id: which module.
    :param module: the framework module.
    :param hyperparameters: this module's hyperparameters (with its overrides).
    :param gradients: the gradients by parameter reference (the module's trainable
        parameters that the loss reaches); change it in place: assign new tensors of the
        same shapes to its entries, or delete one to leave that parameter unstepped.
    :param ops: the backend's array functions.
    :return: None (a returned value is a PluginError: change ``gradients`` in place).
    """


@hookspec
def additional_update(
    learner: HookLearner,
    module_id: str,
    module: Any,
    hyperparameters: Hyperparameters,
    state: dict[str, Any],
    timestep: int,
    update_kwargs: Mapping[str, Any],
) -> Mapping[str, Any] | None:
    """Make a non-gradient update to one module: schedules, adaptive coefficients, target
    networks.

    Called for every module in ``modules_to_train`` by
    ``Learner.additional_update(timestep=..., **kwargs)`` (frozen modules stay as they
    are). Every
    implementation runs; the mappings they return are merged into that module's results.

    :param learner: the Learner calling the hook. With ``Algorithm(target_network=True)``,
        ``learner.update_target_module(module_id, tau)`` moves the module's target network
        and ``learner.num_updates(module_id)`` counts the updates that trained the module.
    :param module_id: which module.
    :param module: the framework module.
    :param hyperparameters: this module's hyperparameters (with its overrides).
    :param state: the module's algorithm state (python floats or numpy arrays); change it in
        place and the next ``compute_loss`` sees it, checkpoints keep it.
    :param timestep: the number of environment steps sampled so far (drives schedules).
    :param update_kwargs: the other keyword arguments given to ``additional_update``, for
        example ``{"sampled_kl_values": {"default_policy": 0.01}}`` (what the training loops
        pass is on the docs' "Training loops" page).
    :return: statistics to report (``{"kl_coeff": 0.3}``), or None.

    The host default steps ``hyperparameters.lr_schedule`` and reports ``learning_rate``;
    a module with several optimizers has each follow the schedule scaled by its initial rate
    over ``learning_rate`` (so a value-function optimizer built at 10x stays at 10x), and
    reports ``learning_rate_<name>`` for each.
    """


@hookspec
def compile_results(
    learner: HookLearner,
    module_id: str,
    module: Any,
    hyperparameters: Hyperparameters,
    batch: SampleBatch,
    metrics: Mapping[str, float],
    state: Mapping[str, Any],
) -> Mapping[str, Any] | None:
    """Turn one module's update into the statistics ``update()`` returns for it.

    Called once per module trained, at the end of ``Learner.update``. Every implementation
    runs; the
    mappings they return are merged (the algorithm's keys win over the defaults').

    :param learner: the Learner calling the hook.
    :param module_id: which module.
    :param module: the framework module.
    :param hyperparameters: this module's hyperparameters (with its overrides).
    :param batch: the whole (numpy) batch this learner trained the module on.
    :param metrics: the means, over the minibatches that were applied, of what
        ``compute_loss`` returned, plus ``"gradient_norm"`` (before clipping) and the count
        ``"non_finite_minibatches_skipped"`` (see ``Hyperparameters.non_finite``).
    :param state: the module's algorithm state (as ``additional_update`` left it).
    :return: a mapping of statistic name to python number or numpy array, or None. Names
        say how statistics combine over data-parallel learners and over updates: ``num_*``
        are counts (summed), ``*_total`` running totals (the latest kept), anything else is
        averaged.

    The host default returns ``metrics`` with ``learning_rate`` and ``num_samples`` added.
    """
