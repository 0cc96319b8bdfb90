"""The torch backend: module building, the minibatch step, and state as numpy
(``learnerkit.backends._base.Backend``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import torch

from learnerkit._batch import SampleBatch, training_arrays
from learnerkit._checkpoint import check_arrays
from learnerkit._import_path import resolve
from learnerkit._specs import ModuleSpec
from learnerkit.backends._base import AllReduce, Forward, GradientHooks, Gradients, LossFn
from learnerkit.backends.torch._ops import TORCH_OPS, TorchOps
from learnerkit.backends.torch._optimizer_state import as_torch_state, check_torch_optimizer_state
from learnerkit.backends.torch._train_step import (
    allreduce_grads,
    backward_per_optimizer,
    clip_coef,
    clip_grads,
    detached_stats,
    hooked_steps,
    minibatch_loss,
    run_steps,
)
from learnerkit.errors import CheckpointError, PluginError
from learnerkit.hookspecs import OPTIMIZER_LOSSES


class TorchBackend:
    """Everything framework-specific a Learner needs, for torch."""

    framework = "torch"
    ops = TORCH_OPS

    def __init__(self, device: str | None = None) -> None:
        self.device = torch.device(device or "cpu")
        if self.device.type != "cpu":
            self.ops = TorchOps(self.device)

    # Modules and optimizers --------------------------------------------------------------
    def build_module(self, spec: ModuleSpec, seed: int) -> torch.nn.Module:
        from learnerkit.backends.torch._recurrent import TorchLSTMActorCritic
        from learnerkit.backends.torch.modules import TorchMLPActorCritic

        default = TorchLSTMActorCritic if spec.model_config.get("use_lstm") else TorchMLPActorCritic
        module_class = resolve(spec.module_class, "ModuleSpec.module_class") or default
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = module_class(spec.observation_space, spec.action_space, spec.model_config)
        return module.to(self.device)

    def parameters(self, module: torch.nn.Module) -> list[torch.Tensor]:
        return [p for p in module.parameters() if p.requires_grad]

    def freeze(self, module: torch.nn.Module) -> None:
        """No gradients for ``module`` (a target network)."""
        module.requires_grad_(False)

    @torch.no_grad()
    def polyak_update(self, target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
        """``target <- tau * source + (1 - tau) * target``; a bitwise copy at ``tau=1``."""
        pairs = zip(target.state_dict().values(), source.state_dict().values(), strict=True)
        for t, s in pairs:
            if tau == 1.0 or not t.is_floating_point():
                t.copy_(s)
            else:
                t.lerp_(s, tau)

    # Data --------------------------------------------------------------------------------
    def to_tensors(self, batch: SampleBatch) -> dict[str, torch.Tensor]:
        """Numeric columns as tensors on the device; every float becomes float32."""
        tensors = {}
        for name, array in training_arrays(batch):
            if not array.flags.writeable:
                # Arrays from Ray's object store (a fragment of a Ray env runner) are
                # read-only; training only reads its tensors, so share them all the same.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="The given NumPy array is not")
                    tensors[name] = torch.from_numpy(array).to(self.device)
            else:
                tensors[name] = torch.from_numpy(array).to(self.device)
        return tensors

    def permutation(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(n, generator=generator).to(self.device)

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.device)

    def state_for_step(self, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """Algorithm state as the train step takes it (python numbers work as they are)."""
        return state

    def make_generator(self, seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    def get_generator_state(self, generator: torch.Generator) -> np.ndarray:
        """The generator's state as numpy (checkpoints keep it, for an exact resume)."""
        return generator.get_state().numpy().copy()

    def set_generator_state(self, generator: torch.Generator, state: Any, where: str) -> None:
        """Restore ``get_generator_state``'s value; a CheckpointError if it is not one."""
        _set_generator_state(generator, state, f"{where}: the shuffling generator's state")

    def make_loss_generator(self, seed: int) -> torch.Generator:
        # On the device: torch draws a CUDA tensor only from a CUDA generator.
        return torch.Generator(device=self.device).manual_seed(seed)

    def get_loss_generator_state(self, generator: torch.Generator) -> np.ndarray:
        return self.get_generator_state(generator)

    def set_loss_generator_state(self, generator: torch.Generator, state: Any, where: str) -> None:
        _set_generator_state(generator, state, f"{where}: the loss generator's state")

    def optimizer_parameters(self, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        """The parameters an optimizer steps."""
        return [p for group in optimizer.param_groups for p in group["params"]]

    def parameter_names(self, module: torch.nn.Module) -> dict[int, str]:
        """Parameter names by ``id`` of the parameter (for error messages)."""
        return {id(p): name for name, p in module.named_parameters()}

    def param_ref(self, param: torch.Tensor) -> Hashable:
        """The parameter itself (a tensor hashes by identity), as RLlib's torch learner."""
        return param

    # Gradient stages (the Learner's defaults when one of them is customised) -------------
    def compute_gradients(
        self, module: torch.nn.Module, total_loss: torch.Tensor, tape: Any
    ) -> Gradients:
        """Backward of ``total_loss`` seeded as the fast path's (NaN for a non-finite loss)."""
        params = self.parameters(module)
        for p in params:
            p.grad = None
        (total_loss * total_loss.detach().mul(0.0).add_(1.0)).backward()
        return {p: p.grad for p in params if p.grad is not None}

    def clip_gradients(
        self,
        module: torch.nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        gradients: Gradients,
        clip: float,
        by: str,
    ) -> Gradients:
        """The fast path's ``clip_grads`` on new tensors (the same arithmetic, bit for bit)."""
        out = dict(gradients)
        groups = [
            [p for p in self.optimizer_parameters(opt) if p in gradients]
            for opt in optimizers.values()
        ]
        for group in groups:
            grads = [gradients[p] for p in group]
            if not grads:
                continue
            if by == "value":
                clipped = [g.clamp(-clip, clip) for g in grads]
            elif by == "norm":
                clipped = [g * clip_coef(clip, torch.linalg.vector_norm(g)) for g in grads]
            else:
                coef = clip_coef(clip, torch.nn.utils.get_total_norm(grads))
                clipped = [g * coef for g in grads]
            out.update(zip(group, clipped, strict=True))
        return out

    def apply_gradients(
        self,
        module: torch.nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        gradients: Gradients,
    ) -> None:
        """Set each parameter's ``.grad`` from ``gradients`` (None where absent), then step."""
        params = self.parameters(module)
        unknown = len(gradients) - sum(p in gradients for p in params)
        if unknown:
            raise PluginError(
                f"{unknown} gradient(s) are keyed by something other than a trainable "
                "parameter of the module (key gradients by learner.get_param_ref(param))"
            )
        for p in params:
            p.grad = gradients.get(p)
        for opt in optimizers.values():
            opt.step()

    # The minibatch step ------------------------------------------------------------------
    def make_train_step(
        self,
        forward: Forward,
        module: torch.nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        loss_fn: LossFn,
        *,
        grad_clip: float | None,
        grad_clip_by: str = "global_norm",
        allreduce_gradients: AllReduce | None = None,
        gradient_hooks: GradientHooks | None = None,
    ) -> Callable[..., list[dict[str, Any]]]:
        """A function ``(tensors, minibatches, state, stop_on_skip)`` running one optimizer
        step on ``tensors[indices]`` for each ``indices`` of ``minibatches``: one backward
        of the total loss (or, when the loss returns ``OPTIMIZER_LOSSES``, one backward of
        each optimizer's loss into its own parameters only), gradients clipped
        (``grad_clip_by``; a global norm per optimizer), then every optimizer steps its
        parameters. Returns each step's
        statistics: detached loss statistics, the pre-clipping global gradient norm over
        the whole module, and ``skipped``: True when the step applied nothing, because the
        loss or the gradient norm was not finite (weights and optimizer states are then
        exactly as before). With ``stop_on_skip`` the steps end at the first skipped one.

        ``allreduce_gradients`` maps the gradients, as numpy arrays, to their mean over
        data-parallel learners; it runs after backward, before the finiteness check and
        clipping, as in TensorFlow's step (Ray learners on the CPU). (DDP, on GPUs, averages
        during backward and passes None.)

        ``gradient_hooks`` (a Learner customising its gradient stages) replace backward,
        clipping and the optimizer steps by its ``compute``, ``postprocess`` and ``apply``
        (``train_step.hooked_steps``); without them the step is the inlined fast path below."""
        if gradient_hooks is not None:
            return hooked_steps(
                forward, loss_fn, allreduce_gradients, gradient_hooks, self.parameters(module)
            )
        opts = list(optimizers.values())
        opt_names = list(optimizers)
        groups = [self.optimizer_parameters(opt) for opt in opts]
        params = [p for group in groups for p in group]

        def step(tensors, indices, state, per_row_steps):
            loss_out = minibatch_loss(
                loss_fn, forward, tensors, indices, state, per_row_steps, names
            )
            # What zero_grad(set_to_none=True) does, without its profiler scope: 20x cheaper.
            for p in params:
                p.grad = None
            total_loss = loss_out["total_loss"]
            # A non-finite loss makes every gradient NaN, even where its non-finite part has
            # no gradient: backward runs on the loss times NaN (times 1 for a finite loss,
            # which leaves the gradients bit for bit). On Ray learners the gradients are
            # averaged over the learners (after backward, or by DDP during it on GPUs), so a
            # NaN on any one reaches them all and every learner, deciding on the averaged
            # gradients' norm alone, skips the same steps: a decision on the local loss could
            # differ between learners, and one stepping while another does not would make
            # their weights diverge.
            # loss * 0 + 1: 1 for a finite loss, NaN for inf or NaN, in two kernels (issue 10).
            # Multiplied in rather than passed as backward's gradient, which makes torch
            # import its symbolic shapes and sympy to check it (0.3 s, ~25 MB).
            losses = loss_out.get(OPTIMIZER_LOSSES)
            if losses is None:
                seed = total_loss.detach().mul(0.0).add_(1.0)
                (total_loss * seed).backward()
            else:
                backward_per_optimizer(losses, opt_names, groups)
            if allreduce_gradients is not None:
                allreduce_grads(allreduce_gradients, params)
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads)
            # One host sync per step (issue 9): the optimizer cannot step conditionally.
            skipped = not math.isfinite(grad_norm.item())
            if not skipped:
                if grad_clip is not None:
                    # After the all-reduce (or DDP's, during backward): every learner clips alike.
                    clip_grads(groups, grad_clip, grad_clip_by, grad_norm)
                for opt in opts:
                    opt.step()
            stats = detached_stats(loss_out)
            stats["gradient_norm"] = grad_norm
            stats["skipped"] = skipped
            return stats

        names: list[str] = []  # the per-row values' names, once a step returned some
        return run_steps(step, names)

    def metrics_table(self, step_output: Any) -> tuple[list[str], np.ndarray]:
        """The minibatch steps' statistics as one array (a row per step, a column per key),
        with one device sync."""
        per_step, _ = step_output
        keys = list(per_step[0])
        # The scalar tensors in one stack per step, python numbers (``skipped``, a plugin's
        # constants) straight into numpy: a tensor per value cost ~1% of an update (issue 10).
        tensor_keys = [k for k in keys if torch.is_tensor(per_step[0][k])]
        table = np.empty((len(per_step), len(keys)), dtype=np.float64)
        if tensor_keys:
            stacked = torch.stack([torch.stack([s[k] for k in tensor_keys]) for s in per_step])
            table[:, [keys.index(k) for k in tensor_keys]] = stacked.float().cpu().numpy()
        for j, k in enumerate(keys):
            if k not in tensor_keys:
                table[:, j] = [float(s[k]) for s in per_step]
        return keys, table

    def per_row_values(self, step_output: Any) -> tuple[list[str], list[Any]]:
        """The per-row values the loss returned (``PER_ROW``): their names and, for each
        step in order, ``(row indices [size], values [names, size])`` as numpy, with one
        device sync; no names and no steps when the loss returned none."""
        _, (names, steps) = step_output
        if not steps:
            return [], []
        sizes = [len(indices) for indices, _ in steps]
        indices = torch.cat([i for i, _ in steps]).cpu().numpy()
        values = torch.cat([torch.stack(v).float() for _, v in steps], dim=1).cpu().numpy()
        out, start = [], 0
        for size in sizes:
            out.append((indices[start : start + size], values[:, start : start + size]))
            start += size
        return names, out

    # State as numpy ----------------------------------------------------------------------
    def get_module_state(self, module: torch.nn.Module) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}

    def check_module_state(self, module: torch.nn.Module, state: Any, where: str) -> None:
        """A CheckpointError naming ``where`` unless ``state`` has every weight of
        ``module``, each of its shape and a castable dtype."""
        own = {k: (tuple(v.shape), _numpy_dtype(v.dtype)) for k, v in module.state_dict().items()}
        check_arrays(own, state, where)

    def set_module_state(
        self, module: torch.nn.Module, state: Mapping[str, Any], where: str
    ) -> None:
        self.check_module_state(module, state, where)
        own = module.state_dict()
        module.load_state_dict(
            {k: torch.tensor(np.asarray(v), dtype=own[k].dtype) for k, v in state.items()}
        )

    def get_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        sd = optimizer.state_dict()
        return {
            "state": {
                str(i): {
                    k: v.detach().cpu().numpy().copy() if torch.is_tensor(v) else v
                    for k, v in s.items()
                }
                for i, s in sd["state"].items()
            },
            "param_groups": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
                for g in sd["param_groups"]
            ],
        }

    def check_optimizer_state(
        self, optimizer: torch.optim.Optimizer, state: Any, where: str
    ) -> None:
        """A CheckpointError naming ``where`` unless ``state`` fits ``optimizer``: its
        parameter groups, hyperparameters of the same kinds, and per-parameter states of
        the parameters' shapes that one optimizer step accepts (``torch_state``)."""
        try:
            check_torch_optimizer_state(optimizer, state)
        except CheckpointError as exc:
            raise CheckpointError(
                f"optimizer state of {where} does not fit this learner: {exc}"
            ) from exc

    def set_optimizer_state(
        self, optimizer: torch.optim.Optimizer, state: Mapping[str, Any], where: str
    ) -> None:
        self.check_optimizer_state(optimizer, state, where)
        optimizer.load_state_dict(as_torch_state(state))

    # Acting ------------------------------------------------------------------------------
    @torch.no_grad()
    def numpy_call(self, fn: Callable[[torch.Tensor], Any], obs: np.ndarray) -> Any:
        """``fn`` run on ``obs`` as a float32 tensor on the device (uint8 pixels as uint8,
        a quarter of the bytes to copy: the module scales them), recording no graph (it
        acts: nothing is trained through it); its output as numpy."""
        dtype = torch.uint8 if np.asarray(obs).dtype == np.uint8 else torch.float32
        out = fn(torch.as_tensor(obs, dtype=dtype, device=self.device))
        if isinstance(out, Mapping):
            return {k: v.cpu().numpy() for k, v in out.items()}
        return out.cpu().numpy()


def _set_generator_state(generator: torch.Generator, state: Any, what: str) -> None:
    array = np.asarray(state)
    own = generator.get_state()
    if array.dtype != np.uint8 or array.shape != tuple(own.shape):
        raise CheckpointError(
            f"{what} is {array.dtype}{list(array.shape)}; this torch generator's is "
            f"uint8{list(own.shape)} (written by another framework, or on another device?)"
        )
    try:
        generator.set_state(torch.from_numpy(array.copy()))
    except RuntimeError as exc:
        raise CheckpointError(f"{what} is invalid: {exc}") from exc


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype
