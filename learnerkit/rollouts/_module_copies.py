"""A runner's own copy of a module (`RunnerModule`): the numpy policy and value function it
samples with, refreshed from the weights the learners send."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from learnerkit._columns import DEFAULT_MODULE_ID
from learnerkit._specs import ModuleSpec
from learnerkit.rollouts._contract import Weights
from learnerkit.rollouts._recurrent import is_recurrent_copy
from learnerkit.rollouts._sampling import Policy, ValueFn
from learnerkit.rollouts.acting import numpy_copy_class

if TYPE_CHECKING:
    from learnerkit.rollouts._contract import EnvRunnerSpec

__all__ = ["RunnerModule"]


class RunnerModule:
    """A runner's own copy of one module: a numpy policy and value function over it.

    A module with a numpy copy (``acting.numpy_copy_class``: the default modules'
    ``NumpyActorCritic``, or any class's ``NumpyModule``) acts through a copy of the weights
    last given, drawing actions from ``np.random.default_rng(sampling_seed)`` (``seed`` when
    not given): a runner that gets weights before it samples never imports its framework.
    Until then, and for a module without one, the module is built in its framework from
    ``seed`` (as the learner builds it); ``framework_setup`` runs just before that import
    (a Ray runner limits its threads)."""

    def __init__(
        self,
        framework: str,
        module_spec: ModuleSpec,
        seed: int,
        *,
        sampling_seed: int | Sequence[int] | None = None,
        framework_setup: Callable[[], None] | None = None,
    ) -> None:
        self.framework, self.module_spec, self.seed = framework, module_spec, seed
        self.copy_class = numpy_copy_class(module_spec)
        self._rng = np.random.default_rng(seed if sampling_seed is None else sampling_seed)
        self._framework_setup = framework_setup
        self.backend: Any = None
        self.module: Any = None  # the framework module, once built
        self._weights: Weights | None = None  # a numpy copy's weights, acted with
        self._acting: tuple[Policy, ValueFn | None] | None = None
        self._copy: Any = None  # the numpy copy acted with
        self.version = 0

    @classmethod
    def from_spec(
        cls,
        spec: EnvRunnerSpec,
        module_id: str = DEFAULT_MODULE_ID,
        *,
        sampling_seed: int | Sequence[int] | None = None,
        framework_setup: Callable[[], None] | None = None,
    ) -> RunnerModule:
        return cls(
            spec.framework,
            spec.module_specs[module_id],
            spec.seed,
            sampling_seed=sampling_seed,
            framework_setup=framework_setup,
        )

    @property
    def recurrent(self) -> bool:
        """Whether the module acts with a state (its numpy copy declares ``initial_state``)."""
        return self.copy_class is not None and is_recurrent_copy(self.copy_class)

    def numpy_copy(self) -> Any:
        """The numpy copy acted with now (a new one after each ``set_weights``); None for a
        module that acts through its framework."""
        self._bound()
        return self._copy

    @property
    def policy(self) -> Policy:
        return self._bound()[0]

    @property
    def value(self) -> ValueFn | None:
        """The value function (None for a numpy copy that has none)."""
        return self._bound()[1]

    def _bound(self) -> tuple[Policy, ValueFn | None]:
        if self._acting is None:
            self._build()
            self._bind_module()
        return self._acting

    def _build(self) -> None:
        if self.module is None:
            if self._framework_setup is not None:
                self._framework_setup()
            from learnerkit.backends import make_backend

            self.backend = make_backend(self.framework)
            self.module = self.backend.build_module(self.module_spec, self.seed)

    def _bind_module(self) -> None:
        if self.copy_class is not None:
            self._act_with(self.backend.get_module_state(self.module))
        else:
            from learnerkit.backends import policy_fn, value_fn

            self._acting = (
                policy_fn(self.backend, self.module),
                value_fn(self.backend, self.module),
            )

    def _act_with(self, weights: Weights) -> None:
        acting = self.copy_class.from_weights(weights, self.module_spec, self.framework, self._rng)
        self._copy = acting
        self._acting = (acting.forward_exploration, getattr(acting, "value", None))

    def generator_state(self) -> dict[str, Any]:
        """The state of the generator a numpy copy draws actions from (checkpoints keep
        it). A module acting through its framework draws from the framework's global
        generator instead, which is not saved."""
        return self._rng.bit_generator.state

    def set_generator_state(self, state: Mapping[str, Any]) -> None:
        """Restore `generator_state`'s value (in place: a numpy copy built already draws
        from it too); a ValueError if it is another kind of generator's."""
        if state.get("bit_generator") != type(self._rng.bit_generator).__name__:
            raise ValueError(
                f"a {state.get('bit_generator')!r} generator's state, not a "
                f"{type(self._rng.bit_generator).__name__!r} one's"
            )
        self._rng.bit_generator.state = dict(state)

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The names and shapes weights for this module must have."""
        layout = getattr(self.copy_class, "weight_layout", None)
        if layout is not None:
            return dict(layout(self.module_spec, self.framework))
        return {name: tuple(np.shape(w)) for name, w in self.get_weights().items()}

    def get_weights(self) -> dict[str, np.ndarray]:
        if self._weights is not None:
            return dict(self._weights)
        self._build()
        return self.backend.get_module_state(self.module)

    def set_weights(self, weights: Weights, version: int) -> None:
        if self.copy_class is not None:
            self._act_with(weights)
            self._weights, self.module = dict(weights), None
        else:
            self._build()
            self.backend.set_module_state(self.module, weights, "the env runner's module")
            self._bind_module()
        self.version = version
