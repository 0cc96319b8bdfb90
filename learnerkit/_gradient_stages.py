"""Whether a Learner's minibatch steps go through its gradient stages, and the hooks that
route the backend's train step through them. A pure function handed the learner (its
public stage methods) and the base class whose defaults it compares against; it never
imports the Learner.

A Learner that overrides none of ``compute_gradients``, ``postprocess_gradients`` and
``apply_gradients`` (and whose plugins implement no ``postprocess_gradients``) gets None:
the backend's inlined step, which does the default stages at no cost (issue 10).
"""

from __future__ import annotations

from typing import Any

from learnerkit.backends._base import GradientHooks


def gradient_hooks(
    learner: Any,
    base: type,
    *,
    module_id: str,
    hps: Any,
    plugins_postprocess: bool,
) -> GradientHooks | None:
    """The module's train step through ``learner``'s gradient stages when its class
    overrides one of ``base``'s or ``plugins_postprocess`` (a plugin implements
    ``postprocess_gradients``); else None. ``hps``: the module's hyperparameters, as its
    loss sees them."""
    cls = type(learner)
    custom_compute = cls.compute_gradients is not base.compute_gradients
    custom_post = cls.postprocess_gradients is not base.postprocess_gradients or plugins_postprocess
    custom_apply = cls.apply_gradients is not base.apply_gradients
    if not (custom_compute or custom_post or custom_apply):
        return None
    return GradientHooks(
        compute=lambda loss_out, tape: learner.compute_gradients(
            loss_out, module_id=module_id, tape=tape
        ),
        postprocess=lambda gradients: learner.postprocess_gradients(
            gradients, module_id=module_id, hps=hps
        ),
        apply=lambda gradients: learner.apply_gradients(gradients, module_id=module_id),
        check_postprocessed=custom_post,
        persistent_tape=custom_compute,
    )
