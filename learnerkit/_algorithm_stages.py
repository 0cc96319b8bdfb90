"""The per-module stages an algorithm customises, with their defaults: the base of the
Learner.

Two ways to write an algorithm meet here. A plugin implements hooks, which the defaults
below call (the learnerkit way); a ``Learner`` subclass overrides these methods (the RLlib
way): building a module's optimizers, its loss, its non-gradient updates, the results, and
the gradient stages of a minibatch step. They live apart from the Learner's bookkeeping
(building, updating, state) so that what a subclass may override reads as one page.

``AlgorithmStages`` is not used alone: the ``Learner`` (its one subclass here) owns the
table of module records, the backend, the algorithm and its hooks that these read.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from learnerkit import _gradient_stages
from learnerkit._learner_modules import merge_results
from learnerkit.errors import PluginError

if TYPE_CHECKING:
    from learnerkit._batch import MultiAgentBatch
    from learnerkit._learner_modules import ModuleRecord
    from learnerkit._plugins import Algorithm
    from learnerkit._specs import Hyperparameters
    from learnerkit.backends._base import Backend, GradientHooks, Gradients

__all__ = ["AlgorithmStages"]

ModuleID = str


class AlgorithmStages:
    """The overridable stages of a Learner; each default calls the algorithm's hook or the
    backend."""

    # Owned and set by the Learner (``Learner.__init__`` and ``build``).
    algorithm: Algorithm
    backend: Backend
    hooks: Any
    _table: dict[ModuleID, ModuleRecord]

    if TYPE_CHECKING:

        def hyperparameters_for(self, module_id: ModuleID) -> Hyperparameters: ...

    # The four per-module methods (override these to write an algorithm as a subclass) ----
    def configure_optimizers_for_module(self, *, module_id: ModuleID, hps: Hyperparameters) -> Any:
        return self.hooks.configure_optimizers(
            learner=self,
            module_id=module_id,
            module=self._table[module_id].module,
            hyperparameters=hps,
            ops=self.backend.ops,
        )

    def compute_loss_for_module(
        self, *, module_id: ModuleID, hps: Hyperparameters, batch: Mapping, fwd_out: Mapping
    ) -> Mapping[str, Any]:
        record = self._table[module_id]
        state = record.step_state
        return self.hooks.compute_loss(
            learner=self,
            module_id=module_id,
            module=record.module,
            hyperparameters=hps,
            batch=batch,
            fwd_out=fwd_out,
            state=record.algorithm_state if state is None else state,
            ops=self.backend.ops,
        )

    def additional_update_for_module(
        self, *, module_id: ModuleID, hps: Hyperparameters, timestep: int, **kwargs: Any
    ) -> dict[str, Any]:
        record = self._table[module_id]
        return merge_results(
            self.hooks.additional_update(
                learner=self,
                module_id=module_id,
                module=record.module,
                hyperparameters=hps,
                state=record.algorithm_state,
                timestep=timestep,
                update_kwargs=kwargs,
            )
        )

    def compile_results(
        self, *, batch: MultiAgentBatch, metrics_per_module: Mapping[ModuleID, Mapping[str, float]]
    ) -> dict[ModuleID, dict[str, Any]]:
        return {
            module_id: merge_results(
                self.hooks.compile_results(
                    learner=self,
                    module_id=module_id,
                    module=self._table[module_id].module,
                    hyperparameters=self.hyperparameters_for(module_id),
                    batch=batch[module_id],
                    metrics=metrics,
                    state=self._table[module_id].algorithm_state,
                )
            )
            for module_id, metrics in metrics_per_module.items()
        }

    # The gradient stages of a minibatch step (override for gradient surgery) ------------
    # As RLlib's Learner, per module: compute -> (all-reduce, finiteness check) ->
    # postprocess -> apply. A Learner that overrides none (and whose plugins implement no
    # postprocess_gradients) trains through the backend's inlined step, which does exactly
    # the defaults below. In TensorFlow they run while the step is traced into a graph
    # (once per batch layout): use tensor operations, not .numpy() or python side effects.
    def compute_gradients(
        self, loss_out: Mapping[str, Any], *, module_id: ModuleID, tape: Any = None
    ) -> Gradients:
        """The gradients of one minibatch's loss, by ``get_param_ref(param)``: one backward
        pass of ``loss_out["total_loss"]`` (``loss_out`` is what ``compute_loss`` returned,
        every term still differentiable; ``tape`` is TF's GradientTape, persistent when this
        is overridden, else None). The default seeds backward so that a non-finite loss
        makes every gradient NaN, which the non-finite check then catches; an override
        should keep that (call ``super()``) or leave such a step to that check. On Ray
        learners the gradients are averaged over the learners after this (torch's DDP on
        GPUs: during backward) and before ``postprocess_gradients``."""
        return self.backend.compute_gradients(
            self._table[module_id].module, loss_out["total_loss"], tape
        )

    def postprocess_gradients(
        self, gradients: Gradients, *, module_id: ModuleID, hps: Hyperparameters
    ) -> Gradients:
        """The gradients to apply, from the averaged ones (every data-parallel learner gets
        the same, so all stay identical; its result is applied only when those are finite,
        and torch calls it only then): the plugins'
        ``postprocess_gradients`` hooks change them in place, then they are clipped by
        ``hps.grad_clip`` / ``grad_clip_by`` (a global norm per optimizer). An override
        calling ``super()`` keeps both; gradients it makes non-finite skip the step as a
        non-finite loss does (``Hyperparameters.non_finite``)."""
        record = self._table[module_id]
        hook = self.hooks.postprocess_gradients
        if hook.get_hookimpls():
            returned = hook(
                learner=self,
                module_id=module_id,
                module=record.module,
                hyperparameters=hps,
                gradients=gradients,
                ops=self.backend.ops,
            )
            if any(result is not None for result in returned):
                raise PluginError(
                    f"postprocess_gradients of plugin {self.algorithm.name!r} or an extra "
                    "plugin returned a value; it changes `gradients` in place (assign its "
                    "entries) and returns None"
                )
        if hps.grad_clip is None:
            return gradients
        return self.backend.clip_gradients(
            record.module, record.optimizers, gradients, hps.grad_clip, hps.grad_clip_by
        )

    def apply_gradients(self, gradients: Gradients, *, module_id: ModuleID) -> None:
        """Step each of the module's optimizers with its parameters' ``gradients`` (a
        parameter without one is left as it is; a key that is no parameter's reference
        is a PluginError)."""
        record = self._table[module_id]
        self.backend.apply_gradients(record.module, record.optimizers, gradients)

    def get_param_ref(self, param: Any) -> Hashable:
        """The key of ``param`` (a parameter of ``get_parameters``/``named_parameters``)
        in a gradients mapping: torch's parameter itself, TF's ``variable.ref()``."""
        return self.backend.param_ref(param)

    def _gradient_hooks(self, module_id: ModuleID, record: ModuleRecord) -> GradientHooks | None:
        """The module's train step through this Learner's gradient stages, when a subclass
        overrides one or a plugin implements ``postprocess_gradients``; else None: the
        backend's inlined step, which does the default stages at no cost (issue 10)."""
        return _gradient_stages.gradient_hooks(
            self,
            AlgorithmStages,
            module_id=module_id,
            hps=record.hps,  # as the loss sees it (``_learner_modules.loss_fn``)
            plugins_postprocess=bool(self.hooks.postprocess_gradients.get_hookimpls()),
        )
