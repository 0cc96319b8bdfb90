"""The pieces of torch's minibatch steps that ``TorchBackend.make_train_step`` assembles:
the runner of a run of minibatch steps, the step through a Learner's gradient stages
(``hooked_steps``), and the fast path's gradient all-reduce and clipping."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from learnerkit.backends._base import AllReduce, Forward, GradientHooks, LossFn
from learnerkit.errors import PluginError
from learnerkit.hookspecs import OPTIMIZER_LOSSES, PER_ROW


def run_steps(step: Callable[..., dict[str, Any]], names: list[str]) -> Callable[..., Any]:
    def run(tensors, minibatches, state, stop_on_skip):
        per_step, per_row_steps = [], []
        for indices in minibatches:
            stats = step(tensors, indices, state, per_row_steps)
            per_step.append(stats)
            if stop_on_skip and stats["skipped"]:
                break
        return per_step, (list(names), per_row_steps)

    return run


def hooked_steps(
    forward: Forward,
    loss_fn: LossFn,
    allreduce: AllReduce | None,
    hooks: GradientHooks,
    params: Sequence[torch.Tensor],
) -> Callable[..., Any]:
    """The train step through a Learner's gradient stages: ``compute`` (one backward),
    the all-reduce of ``params``' gradients (unless DDP's, on GPUs, ran during backward),
    the finiteness check of the averaged gradients, then, unless skipped, ``postprocess``
    (re-checked when custom) and ``apply``. Every data-parallel learner postprocesses the
    same gradients, so they stay identical."""
    names: list[str] = []

    def step(tensors, indices, state, per_row_steps):
        loss_out = minibatch_loss(loss_fn, forward, tensors, indices, state, per_row_steps, names)
        if OPTIMIZER_LOSSES in loss_out:
            raise PluginError(
                f"compute_loss returned {OPTIMIZER_LOSSES!r}, which a Learner with its own "
                "gradient stages (compute_gradients, postprocess_gradients, apply_gradients) "
                "does not take yet"
            )
        gradients = hooks.compute(loss_out, None)
        if allreduce is not None and params:
            means = mean_gradients(allreduce, params, [gradients.get(p) for p in params])
            if means is not None:
                gradients = {p: m for p, m in zip(params, means, strict=True) if m is not None}
        grad_norm = torch.nn.utils.get_total_norm(list(gradients.values()))
        skipped = not math.isfinite(grad_norm.item())
        if not skipped:
            gradients = hooks.postprocess(gradients)
            if hooks.check_postprocessed:
                norm = torch.nn.utils.get_total_norm(list(gradients.values()))
                skipped = not math.isfinite(norm.item())
            if not skipped:
                hooks.apply(gradients)
        stats = detached_stats(loss_out)
        stats["gradient_norm"] = grad_norm
        stats["skipped"] = skipped
        return stats

    return run_steps(step, names)


def clip_coef(clip: float, norm: torch.Tensor) -> torch.Tensor:
    """``torch.nn.utils.clip_grads_with_norm_``'s scale: ``min(clip / (norm + 1e-6), 1)``."""
    return torch.clamp(float(clip) / (norm + 1e-6), max=1.0)


def mean_gradients(
    allreduce: AllReduce, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]
) -> list[torch.Tensor | None] | None:
    """The mean over the learners (``allreduce``, one call) of each parameter's gradient,
    ``grads`` holding None where this learner's loss did not reach the parameter; None for a
    group of one (the seam hands back what it was given: the gradients are their own mean).

    Every parameter takes part, with a zero gradient where not reached, and one more array
    says which ones were: a parameter no learner's loss reached gets None (its optimizer
    leaves it alone, as a lone learner's would), and one that some reached gets the mean on
    every learner. So the learners all-reduce the same arrays whatever their shards' losses
    used, as DDP's ``find_unused_parameters`` does."""
    reached = np.array([g is not None for g in grads], np.float32)
    arrays = [
        (g if g is not None else torch.zeros_like(p)).detach().cpu().numpy()
        for p, g in zip(params, grads, strict=True)
    ]
    arrays.append(reached)
    averaged = allreduce(arrays)
    if averaged is arrays:
        return None
    *means, reached_anywhere = averaged
    return [
        torch.as_tensor(np.asarray(mean)).to(p.device) if anywhere else None
        for p, mean, anywhere in zip(params, means, reached_anywhere, strict=True)
    ]


def allreduce_grads(allreduce: AllReduce, params: Sequence[torch.Tensor]) -> None:
    """Replace the parameters' gradients by their mean over the learners
    (``mean_gradients``), in place where a parameter has one."""
    if not params:
        return
    means = mean_gradients(allreduce, params, [p.grad for p in params])
    if means is None:
        return
    for p, mean in zip(params, means, strict=True):
        if mean is None:
            continue
        if p.grad is None:
            p.grad = mean
        else:
            p.grad.copy_(mean)


def clip_grads(
    groups: Sequence[Sequence[torch.Tensor]], clip: float, by: str, grad_norm: torch.Tensor
) -> None:
    """Clip the gradients of each optimizer's parameters ``groups`` in place, as RLlib does
    (``torch.nn.utils`` functions: a norm is scaled by ``clip / (norm + 1e-6)`` when above)."""
    if by == "value":
        for group in groups:
            torch.nn.utils.clip_grad_value_(group, clip)
    elif by == "norm":
        for group in groups:
            for p in group:
                if p.grad is not None:
                    norm = torch.linalg.vector_norm(p.grad)
                    torch.nn.utils.clip_grads_with_norm_([p], clip, norm)
    elif len(groups) == 1:
        torch.nn.utils.clip_grads_with_norm_(groups[0], clip, grad_norm)
    else:  # global norm per optimizer
        for group in groups:
            grads = [p.grad for p in group if p.grad is not None]
            if grads:
                norm = torch.nn.utils.get_total_norm(grads)
                torch.nn.utils.clip_grads_with_norm_(group, clip, norm)


def backward_per_optimizer(
    losses: Mapping[str, torch.Tensor],
    names: Sequence[str],
    groups: Sequence[Sequence[torch.Tensor]],
) -> None:
    """Each optimizer's loss backward into that optimizer's parameters only
    (``backward(inputs=...)``: autograd computes no other parameter's gradient), through the
    one graph of the forward pass (kept until the last). Any non-finite loss seeds them all
    with NaN (see the single-loss case in ``make_train_step``). Data-parallel learners run
    the forward pass of such a module without DDP's averaging (GPUs) and all-reduce afterwards
    (``DataParallel.training_with_several_backward_passes``)."""
    pending = [
        (losses[name], group)
        for name, group in zip(names, groups, strict=True)
        if name in losses and losses[name].requires_grad and group
    ]
    seed = torch.stack([loss.detach() for loss in losses.values()]).sum().mul(0.0).add_(1.0)
    for i, (loss, group) in enumerate(pending):
        (loss * seed).backward(inputs=list(group), retain_graph=i < len(pending) - 1)


def minibatch_loss(
    loss_fn: LossFn,
    forward: Forward,
    tensors: dict[str, torch.Tensor],
    indices: Any,
    state: Any,
    per_row_steps: list,
    names: list[str],
) -> dict[str, Any]:
    """The loss on ``tensors[indices]``, its per-row values (if any) kept with their rows
    for the caller of ``update()``."""
    minibatch = {k: v[indices] for k, v in tensors.items()}
    loss_out = loss_fn(minibatch, forward(minibatch), state)
    per_row = loss_out.get(PER_ROW)
    if per_row is not None:
        per_row_steps.append((indices, [v.detach() for v in per_row.values()]))
        names[:] = list(per_row)
    return loss_out


def detached_stats(loss_out: dict[str, Any]) -> dict[str, Any]:
    """A step's loss statistics, detached; per-row values and per-optimizer losses go
    elsewhere."""
    return {
        k: v.detach() if torch.is_tensor(v) else v
        for k, v in loss_out.items()
        if k not in (PER_ROW, OPTIMIZER_LOSSES)
    }
