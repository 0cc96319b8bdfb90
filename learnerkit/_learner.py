"""The Learner: trains one or more modules on batches by calling its algorithm's hooks.

Framework-neutral: everything torch- or TensorFlow-specific is in the backend it holds.
Two ways to write an algorithm, both supported: a plugin with hook implementations (the
learnerkit way), or a ``Learner`` subclass overriding ``compute_loss_for_module`` and
friends (the RLlib way); they meet in its base, ``learnerkit._algorithm_stages``.

The Learner is the one owner of what it keeps per module: a table of records
(``_learner_modules.ModuleRecord``: module, optimizers, algorithm state, update count,
train step, target network...) that it hands to the pure helpers of ``_learner_modules``,
``_minibatches`` and ``_learner_state``. Data-parallel training extends it only through
its ``data_parallel`` seam (``learnerkit.data_parallel``).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

import attrs

from learnerkit import (
    _checkpoint,
    _learner_modules,
    _learner_state,
    _minibatches,
    _state_checks,
)
from learnerkit._algorithm_stages import AlgorithmStages
from learnerkit._batch import MultiAgentBatch, as_multi_agent_batch
from learnerkit._learner_modules import ModuleRecord, ModulesView
from learnerkit._learner_spec import LearnerSpec, require_learner_spec
from learnerkit._plugins import get_algorithm
from learnerkit._specs import Hyperparameters, ModuleSpec
from learnerkit._target_networks import move_target
from learnerkit.backends import make_backend
from learnerkit.data_parallel import DataParallel, SingleProcess
from learnerkit.errors import ConfigError, LearnerkitError, PluginError
from learnerkit.fields import _is_integer
from learnerkit.hookspecs import PER_ROW

ModuleID = str


class Learner(AlgorithmStages):
    """Holds modules, their optimizers and algorithm state, and updates them from batches.
    What a subclass overrides to write an algorithm (``compute_loss_for_module``, the
    gradient stages...) is in ``AlgorithmStages``, its base."""

    def __init__(
        self,
        spec: LearnerSpec,
        *,
        device: str | None = None,
        data_parallel: DataParallel | None = None,
    ) -> None:
        """``device``: where the backend puts modules and tensors (None: the CPU).
        ``data_parallel``: the training this learner is one copy of (default: none; see
        ``learnerkit.data_parallel``)."""
        self.algorithm = get_algorithm(require_learner_spec(spec, "Learner").algorithm)
        self._table: dict[ModuleID, ModuleRecord] = {}
        self.spec = spec
        self._device = device
        self.data_parallel = SingleProcess() if data_parallel is None else data_parallel
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
        for module_id, record in self._table.items():
            record.hps = spec.hyperparameters_for(module_id)

    def hyperparameters_for(self, module_id: ModuleID) -> Hyperparameters:
        """Module ``module_id``'s hyperparameters: ``hps`` with its
        ``LearnerSpec.module_hyperparameters`` overrides. Every hook called for the module
        receives these."""
        record = self._table.get(module_id)
        return record.hps if record is not None else self.spec.hyperparameters_for(module_id)

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
        self._generator = self.backend.make_generator(self.hps.seed)
        self._loss_seed = _learner_state.loss_generator_seed(self.hps.seed)
        self._loss_generator = self.backend.make_loss_generator(self._loss_seed)
        for module_id in self.spec.module_specs:
            self._build_module(module_id)
        self._built = True

    def _build_module(self, module_id: ModuleID) -> None:
        _learner_modules.build_record(
            self._table,
            module_id,
            self.spec.module_specs[module_id],
            self.spec.hyperparameters_for(module_id),
            backend=self.backend,
            algorithm=self.algorithm,
            data_parallel=self.data_parallel,
            configure_optimizers=self.configure_optimizers_for_module,
            compute_loss=self.compute_loss_for_module,
            gradient_hooks=self._gradient_hooks,
        )

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
            self._build_module(module_id)
        except BaseException:
            self.spec = self.spec.without_module(module_id)
            raise

    def remove_module(self, module_id: ModuleID) -> None:
        """Drop a module and everything that trains it; checkpoints no longer hold it."""
        self._require_built()
        self.spec = self.spec.without_module(module_id)
        self.data_parallel.module_removed(module_id)
        del self._table[module_id]

    def set_modules_to_train(self, module_ids: Collection[ModuleID] | None) -> None:
        """Train only ``module_ids`` from now on (None: every module); see
        ``LearnerSpec.modules_to_train``."""
        self.spec = attrs.evolve(self.spec, modules_to_train=module_ids)

    def _require_built(self) -> None:
        if not self._built:
            raise LearnerkitError("call Learner.build() before using the learner")

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

        A loss that returns per-row values (``learnerkit.hookspecs.PER_ROW``) finds them in
        ``results[module_id]["per_row"]``: a float32 array per name, one value per row of
        ``batch``, NaN for rows that no applied step trained on.
        """
        self._require_built()
        _minibatches.check_sizes(minibatch_size, num_epochs)
        batch = self.trainable_part(as_multi_agent_batch(batch))
        self.validate_batch(batch, sequence_length=sequence_length)
        _minibatches.check_whole_sequences(minibatch_size, sequence_length)
        schedule = (minibatch_size, num_epochs, shuffle, sequence_length or 1)
        metrics, per_row = {}, {}
        for module_id, module_batch in batch.items():
            record = self._table[module_id]
            model_config = self.spec.module_specs[module_id].model_config
            module_batch = _minibatches.with_loss_mask(module_batch, model_config)
            metrics[module_id], per_row[module_id] = _minibatches.train_module(
                record, self.backend, self._generator, module_id, module_batch, *schedule
            )
            record.num_updates += 1
        results = self.compile_results(batch=batch, metrics_per_module=metrics)
        for module_id, values in per_row.items():
            if values:  # aligned to the batch's rows: see hookspecs.PER_ROW
                results[module_id][PER_ROW] = values
        return results

    def trainable_part(self, batch: MultiAgentBatch) -> MultiAgentBatch:
        """``batch`` without the rows of frozen modules (ids unknown here stay, for
        ``validate_batch`` to refuse)."""
        frozen = set(self.spec.module_specs) - self.modules_to_train
        if not frozen & set(batch):
            return batch
        return MultiAgentBatch({mid: b for mid, b in batch.items() if mid not in frozen})

    def validate_batch(self, batch: MultiAgentBatch, *, sequence_length: int | None = None) -> None:
        """Raise a BatchError if ``batch`` does not fit this learner's modules and algorithm
        (or, with ``sequence_length``, is not made of whole sequences), and a NonFiniteError
        if it holds NaN or inf values (unless ``Hyperparameters.non_finite`` is ``"skip"``)."""
        _minibatches.validate_batch(
            batch,
            sequence_length,
            specs=self.spec.module_specs,
            algorithm=self.algorithm,
            hyperparameters_for=self.hyperparameters_for,
        )

    def additional_update(self, *, timestep: int = 0, **kwargs: Any) -> dict[ModuleID, dict]:
        """Run non-gradient updates (schedules, adaptive coefficients, target networks) for
        every module in ``modules_to_train``: a frozen module's state stays as it is.
        ``timestep``: the env steps sampled so far (offline: rows trained), an integer >= 0,
        at which schedules are read."""
        self._require_built()
        check_timestep(timestep)
        return {
            module_id: self.additional_update_for_module(
                module_id=module_id,
                hps=self.hyperparameters_for(module_id),
                timestep=timestep,
                **kwargs,
            )
            for module_id in self._table
            if module_id in self.modules_to_train
        }

    # Accessors ---------------------------------------------------------------------------
    @property
    def module(self) -> Mapping[ModuleID, Any]:
        """The modules by id (``learner.module["default_policy"]``)."""
        self._require_built()
        return ModulesView(self._table)

    def optimizer(self, module_id: ModuleID, name: str = "default") -> Any:
        """One of the module's optimizers: ``"default"`` when ``configure_optimizers``
        returned a lone optimizer, else the name it gave in its mapping."""
        record = self._table.get(module_id)
        try:
            return record.optimizers[name]  # type: ignore[union-attr]
        except (AttributeError, KeyError):
            raise KeyError(
                f"module {module_id!r} has no optimizer {name!r}; it has "
                f"{sorted(record.optimizers if record else ())}"
            ) from None

    def optimizers(self, module_id: ModuleID) -> Mapping[str, Any]:
        """The module's optimizers by name."""
        return self._table[module_id].optimizers

    def initial_learning_rate(self, module_id: ModuleID, name: str = "default") -> float:
        """The learning rate ``configure_optimizers`` gave an optimizer (before schedules)."""
        return self._table[module_id].initial_lrs[name]

    def algorithm_state(self, module_id: ModuleID) -> dict[str, Any]:
        return self._table[module_id].algorithm_state

    @property
    def loss_generator(self) -> Any:
        """The generator a loss draws its random numbers from (a ``torch.Generator`` on the
        learner's device; a ``tf.random.Generator``), seeded from ``hps.seed``. Its state
        is part of ``get_state`` and checkpoints, so a resumed run draws what the
        uninterrupted one would have: draw from it, never from the framework's global
        generator (docs/guides/randomness.md). Data-parallel learners each hold one seeded
        alike."""
        self._require_built()
        return self._loss_generator

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
        return self._table[module_id].num_updates

    # Target networks (algorithms that declare target_network=True) -----------------------
    def target_module(self, module_id: ModuleID) -> Any:
        """The module's target copy: frozen, moved only by ``update_target_module``."""
        return self._with_target(module_id).target

    def update_target_module(self, module_id: ModuleID, tau: float = 1.0) -> None:
        """``target <- tau * module + (1 - tau) * target`` (1.0: a hard copy)."""
        move_target(self.backend, self._with_target(module_id), tau)

    def num_target_updates(self, module_id: ModuleID) -> int:
        return self._with_target(module_id).num_target_updates

    def _with_target(self, module_id: ModuleID) -> ModuleRecord:
        self._require_built()
        if not self.algorithm.target_network:
            raise PluginError(
                f"algorithm {self.algorithm.name!r} has no target networks: declare "
                "Algorithm(target_network=True) to get one per module"
            )
        return self._table[module_id]

    # State -------------------------------------------------------------------------------
    def get_module_state(self) -> dict[ModuleID, dict[str, Any]]:
        """Module weights only, as numpy arrays, per module id."""
        self._require_built()
        return {mid: self.backend.get_module_state(r.module) for mid, r in self._table.items()}

    def set_module_state(self, state: Mapping[ModuleID, Mapping[str, Any]]) -> None:
        """Load module weights (``get_module_state``'s form) of the modules ``state`` has;
        the others keep theirs (as RLlib's ``set_weights``). All of them or none: an unknown
        module id, or weights that do not fit, is a CheckpointError naming it, with nothing
        loaded. Optimizer states and target networks are left as they are."""
        self._require_built()
        _learner_state.set_module_state(self._table, self.backend, state)

    def get_state(self) -> dict[str, Any]:
        """Weights, optimizer states, algorithm state, the shuffle generator and the loss
        generator: everything to resume training exactly."""
        self._require_built()
        return _learner_state.get_state(
            self._table,
            self.backend,
            self.algorithm,
            self.spec,
            self.get_module_state(),
            self.backend.get_generator_state(self._generator),
            self.backend.get_loss_generator_state(self._loss_generator),
        )

    def set_state(self, state: Mapping[str, Any], *, source: str = "state") -> None:
        """Take a state from ``get_state`` (or a checkpoint) of a learner with the same
        modules: all of it, or nothing. The whole state is checked first (structure, module
        ids, every array's shape and dtype, every optimizer state against its parameters,
        scalar types); a mismatch is a CheckpointError naming it, with the learner exactly
        as it was."""
        self._require_built()
        _learner_state.load_state(
            self._table,
            self.backend,
            self.algorithm,
            self.spec,
            state,
            source,
            get_state=self.get_state,
            set_module_state=self.set_module_state,
            generator=self._generator,
            loss_generator=self._loss_generator,
            loss_seed=self._loss_seed,
        )

    def save_state(self, path: str | os.PathLike) -> None:
        """Write the state to the directory ``path`` (atomically; no pickle). A temporary
        file left there by a save that was killed is removed first."""
        _checkpoint.save(path, self.get_state())

    def load_module_state(
        self,
        path: str | os.PathLike,
        modules: ModuleID | Collection[ModuleID] | Mapping[ModuleID, ModuleID] | None = None,
    ) -> None:
        """Load weights of some modules from a checkpoint (``save_state``'s) into this
        learner, leaving everything else as it is (``set_module_state``): ``modules`` is a
        module id, several, a mapping of checkpoint module id to this learner's module id
        (a league's snapshot into another slot), or None for every module the checkpoint
        holds. A checkpoint of another framework, or lacking a module, is a CheckpointError
        with nothing loaded."""
        source = f"checkpoint {path}"
        state = _checkpoint.load(path)
        weights = _state_checks.module_weights(
            state, modules, framework=self.spec.framework, source=source
        )
        self.set_module_state(weights)

    def load_state(self, path: str | os.PathLike) -> None:
        """Load a checkpoint written by ``save_state``: all of it or nothing (``set_state``);
        a missing, corrupt or mismatched one is a CheckpointError."""
        self.set_state(_checkpoint.load(path), source=f"checkpoint {path}")


def check_timestep(timestep: Any) -> None:
    """``additional_update``'s ``timestep``, which schedules and adaptive coefficients are
    read at: a ConfigError unless it is an integer >= 0."""
    if not (_is_integer(timestep) and timestep >= 0):
        raise ConfigError(
            "additional_update(timestep=...) is the env steps sampled so far (offline: the "
            f"rows trained), an integer >= 0; got {timestep!r}"
        )
