"""The Learner: trains one or more modules on batches by calling its algorithm's hooks.

Framework-neutral: everything torch- or TensorFlow-specific is in the backend it holds.
Two ways to write an algorithm, both supported: a plugin with hook implementations (the
learnerkit way), or a ``Learner`` subclass overriding ``compute_loss_for_module`` and
friends (the RLlib way). The ``*_for_module`` methods are where the two meet.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

import attrs

from learnerkit import _checkpoint, _learner_modules, _learner_state, _minibatches
from learnerkit._plugins import get_algorithm
from learnerkit.backends import make_backend
from learnerkit.batch import MultiAgentBatch, as_multi_agent_batch
from learnerkit.errors import LearnerkitError, PluginError
from learnerkit.learner_spec import LearnerSpec
from learnerkit.specs import Hyperparameters, ModuleSpec
from learnerkit.target_networks import TargetNetworks

ModuleID = str


def _merge(results: list[Mapping[str, Any] | None]) -> dict[str, Any]:
    # pluggy returns results in call order (algorithm, extras, defaults); merge from the
    # defaults up so that the algorithm's keys win.
    merged: dict[str, Any] = {}
    for result in reversed(results):
        if result:
            merged.update(result)
    return merged


class Learner:
    """Holds modules, their optimizers and algorithm state, and updates them from batches."""

    def __init__(self, spec: LearnerSpec, *, device: str | None = None) -> None:
        self.algorithm = get_algorithm(spec.algorithm)
        self.spec = spec
        self._device = device
        self._built = False

    @property
    def spec(self) -> LearnerSpec:
        """What this learner builds; ``add_module``, ``remove_module`` and
        ``set_modules_to_train`` replace it with the changed spec."""
        return self._spec

    @spec.setter
    def spec(self, spec: LearnerSpec) -> None:
        self._spec = spec
        self.hps: Hyperparameters = spec.hyperparameters  # the base, without module overrides
        self._hps: dict[ModuleID, Hyperparameters] = {}

    def hyperparameters_for(self, module_id: ModuleID) -> Hyperparameters:
        """Module ``module_id``'s hyperparameters: ``hps`` with its
        ``LearnerSpec.module_hyperparameters`` overrides. Every hook called for the module
        receives these."""
        hps = self._hps.get(module_id)
        if hps is None:
            hps = self._hps[module_id] = self.spec.hyperparameters_for(module_id)
        return hps

    @property
    def modules_to_train(self) -> frozenset[ModuleID]:
        """The module ids ``update()`` trains (``LearnerSpec.modules_to_train``)."""
        return self.spec.trainable_module_ids

    # Building ----------------------------------------------------------------------------
    def build(self) -> None:
        """Create modules, optimizers and algorithm state. Call once before anything else."""
        if self._built:
            return
        self.backend = make_backend(self.spec.framework, self._device)
        self._plugin_manager = _learner_modules.make_plugin_manager(self.spec, self.algorithm)
        self.hooks = self._plugin_manager.hook
        self._modules: dict[ModuleID, Any] = {}
        self._optimizers: dict[ModuleID, dict[str, Any]] = {}
        self._initial_lrs: dict[ModuleID, dict[str, float]] = {}
        self._algorithm_state: dict[ModuleID, dict[str, Any]] = {}
        self._loss_state: dict[ModuleID, Mapping[str, Any]] = {}
        self._num_updates: dict[ModuleID, int] = {}
        self._train_steps: dict[ModuleID, Any] = {}
        self._targets = TargetNetworks(self.backend) if self.algorithm.target_network else None
        self._generator = self.backend.make_generator(self.hps.seed)
        for module_id in self.spec.module_specs:
            _learner_modules.build_module(self, module_id)
        self._built = True

    # Modules while training (leagues, self-play) -----------------------------------------
    def add_module(
        self,
        module_id: ModuleID,
        module_spec: ModuleSpec,
        *,
        hyperparameters: Mapping[str, Any] | None = None,
        train: bool = True,
    ) -> None:
        """Add a module while training: built from ``hps.seed`` (or its override) like the
        others, with its optimizer(s), algorithm state, target network and update count.
        ``hyperparameters`` are its overrides (as in ``LearnerSpec.module_hyperparameters``);
        ``train=False`` adds it frozen (outside ``modules_to_train``)."""
        self._require_built()
        self.spec = self.spec.with_module(
            module_id, module_spec, hyperparameters=hyperparameters, train=train
        )
        try:
            _learner_modules.build_module(self, module_id)
            self._module_added(module_id)
        except BaseException:
            _learner_modules.drop_module(self, module_id)
            self.spec = self.spec.without_module(module_id)
            raise

    def remove_module(self, module_id: ModuleID) -> None:
        """Drop a module and everything that trains it; checkpoints no longer hold it."""
        self._require_built()
        self.spec = self.spec.without_module(module_id)
        self._module_removed(module_id)
        _learner_modules.drop_module(self, module_id)

    def set_modules_to_train(self, module_ids: Collection[ModuleID] | None) -> None:
        """Train only ``module_ids`` from now on (None: every module); see
        ``LearnerSpec.modules_to_train``."""
        self.spec = attrs.evolve(self.spec, modules_to_train=module_ids)

    def _module_added(self, module_id: ModuleID) -> None:
        """Wire a module added while training into data-parallel training (DDP)."""

    def _module_removed(self, module_id: ModuleID) -> None:
        """Unwire a module before it is dropped."""

    def _training_forward(self, module_id: ModuleID) -> Any:
        """The callable that runs the training forward pass (a DDP wrapper when distributed)."""
        return self._modules[module_id]

    def _make_train_step(self, module_id: ModuleID) -> Any:
        """The compiled minibatch step of one module."""
        hps = self.hyperparameters_for(module_id)
        return self.backend.make_train_step(
            self._training_forward(module_id),
            self._modules[module_id],
            self._optimizers[module_id],
            self._loss_fn(module_id),
            grad_clip=hps.grad_clip,
            grad_clip_by=hps.grad_clip_by,
            **self._train_step_options(),
        )

    def _train_step_options(self) -> dict[str, Any]:
        """Extra backend options of the train step (a data-parallel TF learner adds its
        gradient all-reduce)."""
        return {}

    def _loss_fn(self, module_id: ModuleID):
        return _learner_modules.loss_fn(self, module_id)

    def _require_built(self) -> None:
        if not self._built:
            raise LearnerkitError("call Learner.build() before using the learner")

    # The four per-module methods (override these to write an algorithm as a subclass) ----
    def configure_optimizers_for_module(self, *, module_id: ModuleID, hps: Hyperparameters) -> Any:
        return self.hooks.configure_optimizers(
            learner=self,
            module_id=module_id,
            module=self._modules[module_id],
            hyperparameters=hps,
            ops=self.backend.ops,
        )

    def compute_loss_for_module(
        self, *, module_id: ModuleID, hps: Hyperparameters, batch: Mapping, fwd_out: Mapping
    ) -> Mapping[str, Any]:
        return self.hooks.compute_loss(
            learner=self,
            module_id=module_id,
            module=self._modules[module_id],
            hyperparameters=hps,
            batch=batch,
            fwd_out=fwd_out,
            state=self._loss_state.get(module_id, self._algorithm_state[module_id]),
            ops=self.backend.ops,
        )

    def additional_update_for_module(
        self, *, module_id: ModuleID, hps: Hyperparameters, timestep: int, **kwargs: Any
    ) -> dict[str, Any]:
        return _merge(
            self.hooks.additional_update(
                learner=self,
                module_id=module_id,
                module=self._modules[module_id],
                hyperparameters=hps,
                state=self._algorithm_state[module_id],
                timestep=timestep,
                update_kwargs=kwargs,
            )
        )

    def compile_results(
        self, *, batch: MultiAgentBatch, metrics_per_module: Mapping[ModuleID, Mapping[str, float]]
    ) -> dict[ModuleID, dict[str, Any]]:
        return {
            module_id: _merge(
                self.hooks.compile_results(
                    learner=self,
                    module_id=module_id,
                    module=self._modules[module_id],
                    hyperparameters=self.hyperparameters_for(module_id),
                    batch=batch[module_id],
                    metrics=metrics,
                    state=self._algorithm_state[module_id],
                )
            )
            for module_id, metrics in metrics_per_module.items()
        }

    # Updating ----------------------------------------------------------------------------
    def update(
        self,
        batch: Any,
        *,
        minibatch_size: int | None = None,
        num_epochs: int = 1,
        shuffle: bool = True,
        sequence_length: int | None = None,
    ) -> dict[ModuleID, dict[str, Any]]:
        """Train on ``batch`` for ``num_epochs`` passes of ``minibatch_size`` rows (None: the
        whole batch per step) and return statistics per module id.

        With ``sequence_length=L`` the rows are consecutive sequences of L rows each (the
        fragments the asynchronous loop samples, for V-trace): minibatches, shuffling and
        shards keep them whole, so ``minibatch_size`` must be a multiple of L.

        A minibatch whose loss or gradients are not finite is never applied; by default that
        (or NaN/inf in the batch) raises NonFiniteError, leaving applied the minibatches and
        modules trained before it: see ``Hyperparameters.non_finite``.

        Rows of modules outside ``modules_to_train`` are ignored (neither checked nor
        trained): the results hold only the modules this update trained, so a frozen module
        has no entry (nor does any module absent from ``batch``).
        """
        self._require_built()
        if (minibatch_size is not None and minibatch_size < 1) or num_epochs < 1:
            raise ValueError(
                f"minibatch_size must be >= 1 (or None) and num_epochs >= 1, got "
                f"{minibatch_size} and {num_epochs}"
            )
        batch = self.trainable_part(as_multi_agent_batch(batch))
        self.validate_batch(batch, sequence_length=sequence_length)
        if sequence_length is not None and minibatch_size is not None:
            if minibatch_size % sequence_length:
                raise ValueError(
                    f"minibatch_size ({minibatch_size}) must be a multiple of sequence_length "
                    f"({sequence_length}): minibatches are made of whole sequences"
                )
        metrics = {}
        for module_id, module_batch in batch.items():
            metrics[module_id] = self._update_module(
                module_id, module_batch, minibatch_size, num_epochs, shuffle, sequence_length or 1
            )
            self._num_updates[module_id] += 1
        return self.compile_results(batch=batch, metrics_per_module=metrics)

    def trainable_part(self, batch: MultiAgentBatch) -> MultiAgentBatch:
        """``batch`` without the rows of frozen modules (ids unknown here stay, for
        ``validate_batch`` to refuse)."""
        frozen = set(self.spec.module_specs) - self.modules_to_train
        if not frozen & set(batch):
            return batch
        return MultiAgentBatch({mid: b for mid, b in batch.items() if mid not in frozen})

    def _update_module(self, module_id, module_batch, minibatch_size, num_epochs, shuffle, seq_len):
        return _minibatches.train_module(
            self, module_id, module_batch, minibatch_size, num_epochs, shuffle, seq_len
        )

    def validate_batch(self, batch: MultiAgentBatch, *, sequence_length: int | None = None) -> None:
        """Raise a BatchError if ``batch`` does not fit this learner's modules and algorithm
        (or, with ``sequence_length``, is not made of whole sequences), and a NonFiniteError
        if it holds NaN or inf values (unless ``Hyperparameters.non_finite`` is ``"skip"``)."""
        _minibatches.validate_batch(self, batch, sequence_length)

    def additional_update(self, *, timestep: int = 0, **kwargs: Any) -> dict[ModuleID, dict]:
        """Run non-gradient updates (schedules, adaptive coefficients, target networks) for
        every module in ``modules_to_train``: a frozen module's state stays as it is."""
        self._require_built()
        return {
            module_id: self.additional_update_for_module(
                module_id=module_id,
                hps=self.hyperparameters_for(module_id),
                timestep=timestep,
                **kwargs,
            )
            for module_id in self._modules
            if module_id in self.modules_to_train
        }

    # Accessors ---------------------------------------------------------------------------
    @property
    def module(self) -> Mapping[ModuleID, Any]:
        """The modules by id (``learner.module["default_policy"]``)."""
        self._require_built()
        return self._modules

    def optimizer(self, module_id: ModuleID, name: str = "default") -> Any:
        """One of the module's optimizers: ``"default"`` when ``configure_optimizers``
        returned a lone optimizer, else the name it gave in its mapping."""
        try:
            return self._optimizers[module_id][name]
        except KeyError:
            raise KeyError(
                f"module {module_id!r} has no optimizer {name!r}; it has "
                f"{sorted(self._optimizers.get(module_id, ()))}"
            ) from None

    def optimizers(self, module_id: ModuleID) -> Mapping[str, Any]:
        """The module's optimizers by name."""
        return self._optimizers[module_id]

    def initial_learning_rate(self, module_id: ModuleID, name: str = "default") -> float:
        """The learning rate ``configure_optimizers`` gave an optimizer (before schedules)."""
        return self._initial_lrs[module_id][name]

    def algorithm_state(self, module_id: ModuleID) -> dict[str, Any]:
        return self._algorithm_state[module_id]

    def get_parameters(self, module: Any) -> list[Any]:
        return self.backend.parameters(module)

    def named_parameters(self, module: Any) -> dict[str, Any]:
        """The trainable parameters by name: torch's parameter names, TF's variable names. The
        default modules name theirs alike in both (``pi.0.weight`` / ``pi.0.kernel``,
        ``vf.2.bias``, ``encoder.*``, ``log_std``), so a plugin can pick e.g. the value
        tower's (``vf.*``) for an optimizer of its own."""
        names = self.backend.parameter_names(module)
        return {names[id(p)]: p for p in self.get_parameters(module)}

    def num_updates(self, module_id: ModuleID) -> int:
        """How many ``update()`` calls have trained this module (checkpoints keep it)."""
        return self._num_updates[module_id]

    # Target networks (algorithms that declare target_network=True) -----------------------
    def target_module(self, module_id: ModuleID) -> Any:
        """The module's target copy: frozen, moved only by ``update_target_module``."""
        return self._require_targets().modules[module_id]

    def update_target_module(self, module_id: ModuleID, tau: float = 1.0) -> None:
        """``target <- tau * module + (1 - tau) * target`` (1.0: a hard copy)."""
        self._require_targets().update(module_id, self._modules[module_id], tau)

    def num_target_updates(self, module_id: ModuleID) -> int:
        return self._require_targets().num_updates[module_id]

    def _require_targets(self) -> TargetNetworks:
        self._require_built()
        if self._targets is None:
            raise PluginError(
                f"algorithm {self.algorithm.name!r} has no target networks: declare "
                "Algorithm(target_network=True) to get one per module"
            )
        return self._targets

    # State -------------------------------------------------------------------------------
    def get_module_state(self) -> dict[ModuleID, dict[str, Any]]:
        """Module weights only, as numpy arrays, per module id."""
        self._require_built()
        return {mid: self.backend.get_module_state(m) for mid, m in self._modules.items()}

    def set_module_state(self, state: Mapping[ModuleID, Mapping[str, Any]]) -> None:
        self._require_built()
        _learner_state.check_module_ids(self, state, "weights")
        for module_id, weights in state.items():
            self.backend.set_module_state(
                self._modules[module_id], weights, f"module {module_id!r}"
            )

    def get_state(self) -> dict[str, Any]:
        """Weights, optimizer states and algorithm state: everything to resume training."""
        self._require_built()
        return _learner_state.get_state(self)

    def set_state(self, state: Mapping[str, Any], *, source: str = "state") -> None:
        """Take a state from ``get_state`` (or a checkpoint) of a learner with the same
        modules; a mismatch is a CheckpointError naming the module ids."""
        self._require_built()
        _learner_state.set_state(self, state, source)

    def save_state(self, path: str | os.PathLike) -> None:
        """Write the state to the directory ``path`` (atomically; no pickle)."""
        _checkpoint.save(path, self.get_state())

    def load_state(self, path: str | os.PathLike) -> None:
        self.set_state(_checkpoint.load(path), source=f"checkpoint {path}")
