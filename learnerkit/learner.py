"""The Learner: trains one or more modules on batches by calling its algorithm's hooks.

Framework-neutral: everything torch- or TensorFlow-specific is in the backend it holds.
Two ways to write an algorithm, both supported: a plugin with hook implementations (the
learnerkit way), or a ``Learner`` subclass overriding ``compute_loss_for_module`` and
friends (the RLlib way). The ``*_for_module`` methods are where the two meet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pluggy

from learnerkit import _checkpoint, _defaults, _finite
from learnerkit._plugins import get_algorithm, new_plugin_manager
from learnerkit.backends import make_backend
from learnerkit.batch import MultiAgentBatch, as_multi_agent_batch
from learnerkit.errors import BatchError, CheckpointError, LearnerkitError, PluginError
from learnerkit.specs import Hyperparameters, LearnerSpec
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
        self.spec = spec
        self.algorithm = get_algorithm(spec.algorithm)
        self.hps: Hyperparameters = spec.hyperparameters
        self._device = device
        self._built = False

    # Building ----------------------------------------------------------------------------
    def build(self) -> None:
        """Create modules, optimizers and algorithm state. Call once before anything else."""
        if self._built:
            return
        self.backend = make_backend(self.spec.framework, self._device)
        self._plugin_manager = self._make_plugin_manager()
        self.hooks = self._plugin_manager.hook
        self._modules: dict[ModuleID, Any] = {}
        self._optimizers: dict[ModuleID, Any] = {}
        self._algorithm_state: dict[ModuleID, dict[str, Any]] = {}
        self._loss_state: dict[ModuleID, Mapping[str, Any]] = {}
        for module_id, module_spec in self.spec.module_specs.items():
            # Every data-parallel copy builds from the same seed, so weights start identical.
            self._modules[module_id] = self.backend.build_module(module_spec, self.hps.seed)
            self._optimizers[module_id] = self.configure_optimizers_for_module(
                module_id=module_id, hps=self.hps
            )
            initial = self.algorithm.initial_state
            self._algorithm_state[module_id] = dict(initial(self.hps)) if initial else {}
        self._num_updates = dict.fromkeys(self._modules, 0)
        self._targets = (
            TargetNetworks(
                self.backend,
                self._modules,
                lambda mid: self.backend.build_module(self.spec.module_specs[mid], self.hps.seed),
            )
            if self.algorithm.target_network
            else None
        )
        self._generator = self.backend.make_generator(self.hps.seed)
        self._train_steps = {mid: self._make_train_step(mid) for mid in self._modules}
        self._built = True

    def _make_plugin_manager(self) -> pluggy.PluginManager:
        pm = new_plugin_manager()
        # Registration order sets call order (last registered is called first): defaults,
        # then extras, then the algorithm, whose compute_loss therefore always wins.
        pm.register(_defaults, name="learnerkit-defaults")
        for plugin in self.spec.extra_plugins:
            try:
                pm.register(plugin)
            except pluggy.PluginValidationError as exc:
                raise PluginError(
                    f"extra plugin {plugin!r} breaks the plugin contract: {exc}"
                ) from exc
        pm.register(self.algorithm.plugin, name=f"algorithm-{self.algorithm.name}")
        try:
            pm.check_pending()  # a misspelt hook name in an extra plugin
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"an extra plugin breaks the plugin contract: {exc}") from exc
        return pm

    def _training_forward(self, module_id: ModuleID) -> Any:
        """The callable that runs the training forward pass (a DDP wrapper when distributed)."""
        return self._modules[module_id]

    def _make_train_step(self, module_id: ModuleID) -> Any:
        """The compiled minibatch step of one module."""
        return self.backend.make_train_step(
            self._training_forward(module_id),
            self._modules[module_id],
            self._optimizers[module_id],
            self._loss_fn(module_id),
            self.hps.grad_clip,
            **self._train_step_options(),
        )

    def _train_step_options(self) -> dict[str, Any]:
        """Extra backend options of the train step (a data-parallel TF learner adds its
        gradient all-reduce)."""
        return {}

    def _loss_fn(self, module_id: ModuleID):
        def loss_fn(batch, fwd_out, state):
            self._loss_state[module_id] = state
            try:
                out = self.compute_loss_for_module(
                    module_id=module_id, hps=self.hps, batch=batch, fwd_out=fwd_out
                )
            finally:
                # Outside a train step, compute_loss_for_module reads the algorithm state.
                del self._loss_state[module_id]
            if out is None:
                raise PluginError(
                    f"compute_loss of plugin {self.algorithm.name!r} returned no total loss"
                )
            if not isinstance(out, Mapping):  # a bare loss, as in RLlib's examples
                return {"total_loss": out}
            if "total_loss" not in out:
                raise PluginError(
                    f"compute_loss of plugin {self.algorithm.name!r} returned {sorted(out)} "
                    "without 'total_loss'"
                )
            return out

        return loss_fn

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
                    hyperparameters=self.hps,
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
        """
        self._require_built()
        if (minibatch_size is not None and minibatch_size < 1) or num_epochs < 1:
            raise ValueError(
                f"minibatch_size must be >= 1 (or None) and num_epochs >= 1, got "
                f"{minibatch_size} and {num_epochs}"
            )
        batch = as_multi_agent_batch(batch)
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

    def _update_module(self, module_id, module_batch, minibatch_size, num_epochs, shuffle, seq_len):
        n = module_batch.count
        size = minibatch_size or n
        tensors = self.backend.to_tensors(module_batch)
        state = self.backend.state_for_step(self._algorithm_state[module_id])
        step = self._train_steps[module_id]
        raising = self.hps.non_finite == "raise"
        steps, halted = [], False
        for indices in self._minibatch_indices(n, size, num_epochs, shuffle, seq_len):
            stats = step(tensors, indices, state, halted)
            steps.append(stats)
            if raising:
                # Under "raise", once a step is not applied no later step of this update is:
                # torch knows at once (a python bool) and stops; TF gets the flag as a tensor
                # for its next step, without a host sync.
                halted = stats["skipped"]
                if halted is True:
                    break
        keys, table = self.backend.metrics_table(steps)
        return _finite.summarize(
            keys,
            table,
            module_id=module_id,
            policy=self.hps.non_finite,
            steps_per_epoch=-(-n // size),
            batch=module_batch,
        )

    def _minibatch_indices(self, n, size, num_epochs, shuffle, seq_len):
        for _ in range(num_epochs):
            order = self._row_order(n, shuffle, seq_len)
            for start in range(0, n, size):
                yield order[start : start + size]

    def _row_order(self, n: int, shuffle: bool, seq_len: int) -> Any:
        """The rows of one epoch: shuffled whole sequences of ``seq_len`` rows."""
        if not shuffle:
            return self.backend.arange(n)
        if seq_len == 1:
            return self.backend.permutation(n, self._generator)
        starts = self.backend.permutation(n // seq_len, self._generator)[:, None] * seq_len
        return (starts + self.backend.arange(seq_len)).reshape(-1)

    def validate_batch(self, batch: MultiAgentBatch, *, sequence_length: int | None = None) -> None:
        """Raise a BatchError if ``batch`` does not fit this learner's modules and algorithm
        (or, with ``sequence_length``, is not made of whole sequences), and a NonFiniteError
        if it holds NaN or inf values (unless ``Hyperparameters.non_finite`` is ``"skip"``)."""
        specs = self.spec.module_specs
        for module_id, module_batch in batch.items():
            if module_id not in specs:
                raise BatchError(
                    f"batch has module id {module_id!r}, but this learner trains {sorted(specs)}"
                )
            if module_batch.count == 0:
                raise BatchError(f"batch for module {module_id!r} is empty")
            if sequence_length is not None and module_batch.count % sequence_length:
                raise BatchError(
                    f"batch for module {module_id!r} has {module_batch.count} rows, not a "
                    f"multiple of sequence_length={sequence_length}: it must be made of whole "
                    "sequences (fragments) of that many consecutive rows"
                )
            module_batch.check_columns(
                self.algorithm.required_columns, module_id=module_id, algorithm=self.algorithm.name
            )
            module_batch.check_spaces(
                module_id=module_id,
                observation_space=specs[module_id].observation_space,
                action_space=specs[module_id].action_space,
            )
            module_batch.check_dtypes(self.algorithm.required_columns, module_id=module_id)
            if self.hps.non_finite == "raise":
                _finite.check_batch(module_batch, module_id)

    def additional_update(self, *, timestep: int = 0, **kwargs: Any) -> dict[ModuleID, dict]:
        """Run non-gradient updates (schedules, adaptive coefficients) for every module."""
        self._require_built()
        return {
            module_id: self.additional_update_for_module(
                module_id=module_id, hps=self.hps, timestep=timestep, **kwargs
            )
            for module_id in self._modules
        }

    # Accessors ---------------------------------------------------------------------------
    @property
    def module(self) -> Mapping[ModuleID, Any]:
        """The modules by id (``learner.module["default_policy"]``)."""
        self._require_built()
        return self._modules

    def optimizer(self, module_id: ModuleID) -> Any:
        return self._optimizers[module_id]

    def algorithm_state(self, module_id: ModuleID) -> dict[str, Any]:
        return self._algorithm_state[module_id]

    def get_parameters(self, module: Any) -> list[Any]:
        return self.backend.parameters(module)

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
        self._check_module_ids(state, "weights")
        for module_id, weights in state.items():
            self.backend.set_module_state(
                self._modules[module_id], weights, f"module {module_id!r}"
            )

    def get_state(self) -> dict[str, Any]:
        """Weights, optimizer states and algorithm state: everything to resume training."""
        self._require_built()
        return {
            "algorithm": self.algorithm.name,
            "framework": self.spec.framework,
            "modules": self.get_module_state(),
            "optimizers": {
                mid: self.backend.get_optimizer_state(opt) for mid, opt in self._optimizers.items()
            },
            "algorithm_state": {mid: dict(s) for mid, s in self._algorithm_state.items()},
            "num_updates": dict(self._num_updates),
            **({"target_networks": self._targets.get_state()} if self._targets else {}),
        }

    def set_state(self, state: Mapping[str, Any], *, source: str = "state") -> None:
        self._require_built()
        for key in ("algorithm", "framework"):
            mine = self.algorithm.name if key == "algorithm" else self.spec.framework
            if state.get(key) != mine:
                raise CheckpointError(
                    f"{source} was written by {key} {state.get(key)!r}; this learner runs {mine!r}"
                )
        self._check_module_ids(state["modules"], source)
        self.set_module_state(state["modules"])
        for module_id, opt_state in state["optimizers"].items():
            self.backend.set_optimizer_state(
                self._optimizers[module_id], opt_state, f"module {module_id!r} in {source}"
            )
        for module_id, algo_state in state["algorithm_state"].items():
            self._algorithm_state[module_id].clear()
            self._algorithm_state[module_id].update(algo_state)
        # Checkpoints from before update counting start the count again.
        self._num_updates.update({k: int(v) for k, v in state.get("num_updates", {}).items()})
        if self._targets is not None:
            self._targets.set_state(state.get("target_networks"), source)

    def _check_module_ids(self, state: Mapping[str, Any], source: str) -> None:
        if set(state) != set(self._modules):
            raise CheckpointError(
                f"{source} has modules {sorted(state)}; this learner has {sorted(self._modules)}"
            )

    def save_state(self, path: str | os.PathLike) -> None:
        """Write the state to the directory ``path`` (atomically; no pickle)."""
        _checkpoint.save(path, self.get_state())

    def load_state(self, path: str | os.PathLike) -> None:
        self.set_state(_checkpoint.load(path), source=f"checkpoint {path}")
