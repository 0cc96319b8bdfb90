"""The interface every backend meets, and the framework-neutral code written once over it.

A Learner holds one ``Backend`` (``make_backend(framework)``) and asks it for everything
framework-specific: building modules, the compiled minibatch step, tensors, state as numpy.
``TorchBackend`` and ``TFBackend`` both meet this Protocol, member for member and signature
for signature (``tests/test_protocols.py`` checks); a third framework would too.

Acting (``policy_fn``, ``value_fn``) is not the backend's business beyond one primitive,
``numpy_call``: run a module function on numpy input and hand numpy back. The numpy copy of
the default module that env runners act with is built by the runner itself
(``learnerkit.rollouts.acting``): a backend never imports sampling code or gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import numpy as np

    from learnerkit._batch import SampleBatch
    from learnerkit._specs import ModuleSpec
    from learnerkit.ops import Ops

__all__ = [
    "AllReduce",
    "Backend",
    "Forward",
    "GradientHooks",
    "Gradients",
    "LossFn",
    "TrainStep",
    "policy_fn",
    "value_fn",
]

Forward = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""A module's training forward pass: minibatch columns in, ``fwd_out`` out."""
LossFn = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]
"""``(minibatch, fwd_out, state) -> {"total_loss": ..., other statistics}``."""
AllReduce = Callable[[list["np.ndarray"]], list["np.ndarray"]]
"""Gradients (numpy arrays) in, their mean over the data-parallel learners out."""
TrainStep = Callable[..., Any]
"""``(tensors, minibatches, state, stop_on_skip) -> step output`` (``metrics_table`` reads
it): one optimizer step per minibatch of row indices."""
Gradients = dict[Hashable, Any]
"""Gradients by parameter reference (``Backend.param_ref``: torch's parameter itself, TF's
``variable.ref()``), as RLlib's ``ParamDict``."""


class GradientHooks(NamedTuple):
    """A train step's three gradient stages, when a Learner customises them (its
    ``compute_gradients``, ``postprocess_gradients``, ``apply_gradients``, bound to one
    module); a step given none runs its own inlined default, the fast path."""

    compute: Callable[[Mapping[str, Any], Any], Gradients]
    """``(loss_out, tape) -> gradients``: one backward pass (``tape``: TF's, else None)."""
    postprocess: Callable[[Gradients], Gradients]
    """The all-reduced, finite gradients in, the gradients to apply out (surgery, clipping)."""
    apply: Callable[[Gradients], None]
    """Step every optimizer with its parameters' gradients."""
    check_postprocessed: bool
    """Re-check finiteness after ``postprocess`` (it is custom, so may make NaN or inf)."""
    persistent_tape: bool = False
    """TF: record a persistent tape (a custom ``compute`` may take several gradients)."""


class Backend(Protocol):
    """Everything framework-specific a Learner needs."""

    framework: str
    """``"torch"`` or ``"tf"``."""
    ops: Ops
    """The array functions losses use."""
    device: Any
    """Where modules and tensors live."""

    # Modules and optimizers
    def build_module(self, spec: ModuleSpec, seed: int) -> Any:
        """The module ``spec`` describes, its weights drawn from ``seed`` alone."""

    def parameters(self, module: Any) -> list[Any]:
        """The module's trainable parameters."""

    def freeze(self, module: Any) -> None:
        """No gradients for ``module`` (a target network)."""

    def polyak_update(self, target: Any, source: Any, tau: float) -> None:
        """``target <- tau * source + (1 - tau) * target``; a bitwise copy at ``tau=1``."""

    def optimizer_parameters(self, optimizer: Any) -> list[Any] | None:
        """The parameters an optimizer steps (None where the framework does not say)."""

    def parameter_names(self, module: Any) -> dict[int, str]:
        """Parameter names by ``id`` of the parameter."""

    def param_ref(self, param: Any) -> Hashable:
        """A hashable key for ``param`` in a ``Gradients`` mapping."""

    # Gradient stages (``GradientHooks``' defaults)
    def compute_gradients(self, module: Any, total_loss: Any, tape: Any) -> Gradients:
        """One backward pass of ``total_loss`` over the module's trainable parameters (none
        for parameters it does not reach), seeded so that a non-finite loss makes every
        gradient NaN."""

    def clip_gradients(
        self, module: Any, optimizers: Mapping[str, Any], gradients: Gradients, clip: float, by: str
    ) -> Gradients:
        """``gradients`` clipped as the fast path clips them (``grad_clip_by``; a global norm
        per optimizer), bit for bit; new tensors, the given ones untouched."""

    def apply_gradients(
        self, module: Any, optimizers: Mapping[str, Any], gradients: Gradients
    ) -> None:
        """Each optimizer steps its parameters by their ``gradients`` (one absent: not
        stepped; a key that is no parameter's: a PluginError)."""

    # Data
    def to_tensors(self, batch: SampleBatch) -> dict[str, Any]:
        """Numeric columns as tensors on the device; every float becomes float32."""

    def permutation(self, n: int, generator: Any) -> Any:
        """A random order of ``range(n)`` drawn from ``generator``."""

    def arange(self, n: int) -> Any: ...

    def state_for_step(self, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """Algorithm state as the train step takes it."""

    def make_generator(self, seed: int) -> Any:
        """The random generator minibatch shuffling draws from."""

    def get_generator_state(self, generator: Any) -> Any:
        """``generator``'s state as numpy or JSON values (checkpoints keep it, so that a
        resumed run shuffles as the uninterrupted one would)."""

    def set_generator_state(self, generator: Any, state: Any, where: str) -> None:
        """Restore ``get_generator_state``'s value; a CheckpointError naming ``where`` if it
        is not one."""

    def make_loss_generator(self, seed: int) -> Any:
        """The generator a loss draws its random numbers from (``Learner.loss_generator``):
        a ``torch.Generator`` on the device, a ``tf.random.Generator``."""

    def get_loss_generator_state(self, generator: Any) -> Any:
        """``make_loss_generator``'s generator's state as a numpy array (checkpoints keep
        it, so that a resumed run draws as the uninterrupted one would)."""

    def set_loss_generator_state(self, generator: Any, state: Any, where: str) -> None:
        """Restore ``get_loss_generator_state``'s value in place (a compiled step keeps
        drawing from the same generator); a CheckpointError naming ``where`` if it is not
        one."""

    # The minibatch step
    def make_train_step(
        self,
        forward: Forward,
        module: Any,
        optimizers: Mapping[str, Any],
        loss_fn: LossFn,
        *,
        grad_clip: float | None,
        grad_clip_by: str = "global_norm",
        allreduce_gradients: AllReduce | None = None,
        gradient_hooks: GradientHooks | None = None,
    ) -> TrainStep:
        """The module's minibatch steps: for each minibatch one gradient of the total loss,
        averaged over data-parallel learners by ``allreduce_gradients`` (when given) before
        the finiteness check and clipping, then every optimizer steps its parameters.
        ``gradient_hooks``: the Learner's custom gradient stages, run in that order (the
        all-reduce and finiteness check between ``compute`` and ``postprocess``)."""

    def metrics_table(self, step_output: Any) -> tuple[list[str], np.ndarray]:
        """A train step's output as ``(keys, table)``: a row per step, a column per key."""

    def per_row_values(self, step_output: Any) -> tuple[list[str], list[Any]]:
        """The per-row values the loss returned (``learnerkit.hookspecs.PER_ROW``) in a train
        step's output: their names and, per step in order, ``(row indices [size], values
        [names, size])`` as numpy; ``([], [])`` when the loss returned none."""

    # State as numpy
    def get_module_state(self, module: Any) -> dict[str, np.ndarray]: ...

    def check_module_state(self, module: Any, state: Any, where: str) -> None:
        """A CheckpointError naming ``where`` unless ``state`` holds every weight of
        ``module`` with its shape and a castable dtype; changes nothing."""

    def set_module_state(self, module: Any, state: Mapping[str, Any], where: str) -> None: ...

    def get_optimizer_state(self, optimizer: Any) -> dict[str, Any]: ...

    def check_optimizer_state(self, optimizer: Any, state: Any, where: str) -> None:
        """A CheckpointError naming ``where`` unless ``set_optimizer_state`` would take
        ``state`` and the next step would run from it; changes nothing."""

    def set_optimizer_state(self, optimizer: Any, state: Mapping[str, Any], where: str) -> None:
        """Load ``state``; a CheckpointError naming ``where`` if it does not fit."""

    # Acting
    def numpy_call(self, fn: Callable[[Any], Any], obs: np.ndarray) -> Any:
        """``fn`` (a module method) run on ``obs`` as float32 on the device; its output, a
        tensor or a mapping of tensors, as numpy."""


def policy_fn(
    backend: Backend, module: Any, explore: bool = True
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A numpy-in, numpy-out policy over ``module`` (its ``forward_exploration``, or with
    ``explore=False`` its greedy ``forward_inference``), for env runners and evaluation."""
    act = module.forward_exploration if explore else module.forward_inference

    def policy(obs: np.ndarray) -> dict[str, np.ndarray]:
        return backend.numpy_call(act, obs)

    # A tf.function method holds its module by a weak reference only: without this, a
    # policy whose learner is gone acted, after the next garbage collection, with a module
    # of None ("'NoneType' object has no attribute ...").
    policy.module = module  # type: ignore[attr-defined]
    return policy


def value_fn(backend: Backend, module: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The module's value function, numpy in and out."""
    value = module.value

    def values(obs: np.ndarray) -> np.ndarray:
        return backend.numpy_call(value, obs)

    values.module = module  # type: ignore[attr-defined]  # kept alive, as in policy_fn
    return values
