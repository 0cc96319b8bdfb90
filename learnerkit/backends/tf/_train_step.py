"""TensorFlow's minibatch steps: one compiled ``tf.function`` per batch layout that runs a
run of equal-sized minibatches in a graph loop; each step takes the rows of one minibatch,
computes the total loss's gradient (all-reduced over data-parallel learners), clips it and
has each optimizer apply its share, unless the loss or the gradient norm is not finite
(then nothing changes: the non-finite guard).

The loop is in the graph because a call into a compiled function costs about as much as a
small model's whole step on CPU: one call per minibatch made the PPO learner 0.90 of a
plain per-minibatch loop, one call per update 1.2x (issue 10).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from learnerkit.backends._base import AllReduce, GradientHooks
from learnerkit.errors import PluginError
from learnerkit.hookspecs import OPTIMIZER_LOSSES, PER_ROW


def _spec(x: tf.Tensor, batch_dim: bool) -> tf.TensorSpec:
    shape = [None, *x.shape[1:]] if batch_dim else x.shape
    return tf.TensorSpec(shape, x.dtype)


def _numpy_allreduce(allreduce: AllReduce, grads: list[Any]) -> list[tf.Tensor]:
    """``allreduce`` called from a compiled step: one python call with every gradient."""
    # A sparse gradient (an embedding's IndexedSlices) is reduced as the dense tensor it is.
    grads = [tf.convert_to_tensor(g) for g in grads]
    out = tf.numpy_function(
        lambda *arrays: allreduce(list(arrays)),
        grads,
        [g.dtype for g in grads],
        stateful=True,  # a collective: never pruned, merged or reordered
        name="allreduce_gradients",
    )
    for averaged, g in zip(out, grads, strict=True):
        averaged.set_shape(g.shape)
    return list(out)


class _Retrace(Exception):
    """The loss returned ``OPTIMIZER_LOSSES`` under a tape that was not persistent."""


class StepOutput(NamedTuple):
    """What a call of the steps returns: ``metrics_table`` and ``per_row_values`` read it."""

    keys: list[str]
    tables: list[tf.Tensor]
    """Per run of equal-sized minibatches, ``[steps, len(keys) + len(names) * size]``."""
    runs: list[np.ndarray]
    """Per run, its minibatches' row indices, ``[steps, size]``."""
    names: list[str]


def _equal_size_runs(minibatches: Iterable[Any]) -> Iterator[np.ndarray]:
    """Consecutive minibatches of the same size, stacked: one ``[k, size]`` array each."""
    run: list[Any] = []
    for indices in minibatches:
        if run and len(indices) != len(run[0]):
            yield np.stack(run)
            run = []
        run.append(indices)
    if run:
        yield np.stack(run)


class TrainStep:
    """Minibatch steps as a ``tf.function``, compiled once per batch layout.

    The layout (column names, dtypes, trailing shapes, state keys and the state's python
    values) picks the compiled function; the numbers of rows and of minibatches are left
    unknown in its input signature, so batch and minibatch sizes never retrace.
    """

    def __init__(
        self,
        device,
        forward,
        groups,
        loss_fn,
        grad_clip,
        grad_clip_by,
        allreduce=None,
        hooks: GradientHooks | None = None,
    ) -> None:
        self.device = device
        self.hooks = hooks
        self.allreduce = allreduce
        self.forward = forward
        # (name, optimizer, its variables), in the module's optimizer order
        self.names = [name for name, _, _ in groups]
        self.groups = [(optimizer, variables) for _, optimizer, variables in groups]
        self.params = [v for _, variables in self.groups for v in variables]
        # Which optimizer steps each variable (variables are not hashable: by id).
        self.owner = {id(v): i for i, (_, variables) in enumerate(self.groups) for v in variables}
        # One gradient per optimizer's loss (OPTIMIZER_LOSSES) needs a persistent tape; the
        # first trace that meets such a loss switches to one and traces again.
        self.per_optimizer = False
        self.loss_fn = loss_fn
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.grad_clip_by = grad_clip_by
        self._compiled: dict[Any, Any] = {}
        self._functions: list[Any] = []
        with tf.device(device):
            self._no_halt = tf.constant(0.0)

    def __call__(
        self, tensors, minibatches: Iterable[Any], state, stop_on_skip: bool
    ) -> StepOutput:
        """Run a step on each minibatch's rows of ``tensors``, in order. ``stop_on_skip``:
        once a step is skipped, no later step applies anything (each reports skipped).
        Returns the statistics' keys and, per run of equal-sized minibatches, a
        ``[steps, keys]`` tensor (followed, when the loss returns per-row values, by each
        step's ``[names, size]`` values flattened), the run's row indices and the per-row
        values' names: nothing is read back to the host here."""
        dynamic = {k: v for k, v in state.items() if tf.is_tensor(v)}
        static = {k: v for k, v in state.items() if not tf.is_tensor(v)}
        key = (
            tuple((k, v.dtype, tuple(v.shape[1:])) for k, v in tensors.items()),
            tuple((k, v.dtype, tuple(v.shape)) for k, v in dynamic.items()),
            repr(sorted(static.items())),
            stop_on_skip,
        )
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(tensors, dynamic, static, stop_on_skip)
        fn, columns, keys, names = compiled
        # The update's columns go into the step's variables once: each call then takes only
        # row indices (binding a dozen tensor arguments per call cost ~5% of a PPO step).
        for name, tensor in tensors.items():
            columns[name].assign(tensor)
        halt, tables, runs = self._no_halt, [], []
        for rows in _equal_size_runs(minibatches):
            table = fn(tf.convert_to_tensor(rows, tf.int64), dynamic, halt)
            tables.append(table)
            runs.append(rows)
            if stop_on_skip:  # a halted step reports skipped: the last one tells
                halt = table[-1, keys.index("skipped")]
        return StepOutput(keys, tables, runs, list(names))

    def _compile(self, tensors, dynamic, static, stop_on_skip):
        with tf.device(self.device):
            columns = {
                k: tf.Variable(v, trainable=False, shape=[None, *v.shape[1:]])
                for k, v in tensors.items()
            }
        signature = [
            tf.TensorSpec([None, None], tf.int64),
            {k: _spec(v, batch_dim=False) for k, v in dynamic.items()},
            tf.TensorSpec([], tf.float32),
        ]
        keys: list[str] = []  # the statistics' names, known once the step is traced
        names: list[str] = []  # the per-row values' names (PER_ROW), likewise

        def step(indices, dynamic, halt):
            with tf.device(self.device):
                minibatch = {k: tf.gather(v, indices) for k, v in columns.items()}
                with tf.GradientTape(persistent=self._persistent) as tape:
                    loss_out = self.loss_fn(
                        minibatch, self.forward(minibatch), {**static, **dynamic}
                    )
                    total_loss = loss_out["total_loss"]
                losses = loss_out.get(OPTIMIZER_LOSSES)
                if losses is not None and self.hooks is not None:
                    raise PluginError(
                        f"compute_loss returned {OPTIMIZER_LOSSES!r}, which a Learner with "
                        "its own gradient stages (compute_gradients, postprocess_gradients, "
                        "apply_gradients) does not take yet"
                    )
                if losses is not None and not self.per_optimizer:
                    self.per_optimizer = True
                    raise _Retrace
                if self.hooks is not None:
                    grad_norm, applied = self._hooked(loss_out, tape, halt)
                    return self._row(loss_out, grad_norm, applied, keys, names)
                # A non-finite loss makes every gradient NaN (it seeds the gradients with NaN,
                # else 1), even where its non-finite part has no gradient: the all-reduce
                # below then carries it to every learner, which all decide on the averaged
                # gradients' norm alone and so skip the same steps. A decision on the local
                # loss could differ between learners and make their weights diverge.
                if losses is None:
                    seed = tf.where(tf.math.is_finite(total_loss), 1.0, np.nan)
                    grads = tape.gradient(
                        total_loss, self.params, output_gradients=tf.cast(seed, total_loss.dtype)
                    )
                else:
                    grads = self._per_optimizer_gradients(tape, losses)
                pairs = [(g, p) for g, p in zip(grads, self.params, strict=True) if g is not None]
                if self.allreduce is not None and pairs:
                    averaged = _numpy_allreduce(self.allreduce, [g for g, _ in pairs])
                    pairs = list(zip(averaged, [p for _, p in pairs], strict=True))
                grad_norm = tf.linalg.global_norm([g for g, _ in pairs])
                apply = tf.logical_and(tf.math.is_finite(grad_norm), halt <= 0.0)
                if pairs:  # a loss that touches no weight leaves them (and Adam's count) be
                    # Decided in the graph (no host sync): a skipped step changes no weight,
                    # no Adam moment and no step count.
                    tf.cond(apply, lambda: self._apply(pairs, grad_norm), lambda: None)
                return self._row(loss_out, grad_norm, apply, keys, names)

        def steps(rows, dynamic, halt):
            count = tf.shape(rows)[0]

            def body(i, halt, table):
                stats = step(rows[i], dynamic, halt)
                if stop_on_skip:
                    halt = tf.maximum(halt, stats[keys.index("skipped")])
                return i + 1, halt, table.write(i, stats)

            table = tf.TensorArray(tf.float32, size=count)
            # One iteration at a time: a step reads the weights the previous one wrote.
            _, _, table = tf.while_loop(
                lambda i, *_: i < count, body, (0, halt, table), parallel_iterations=1
            )
            return table.stack()

        try:
            concrete = self._trace(steps, signature)
        except _Retrace:  # the loss has one per optimizer: again with a persistent tape
            concrete = self._trace(steps, signature)
        return concrete, columns, keys, names

    def _trace(self, steps, signature):
        function = tf.function(steps, input_signature=signature, autograph=False)
        concrete = function.get_concrete_function()
        self._functions.append(function)  # the concrete function only borrows it
        # Calling the concrete function skips tf.function's polymorphic dispatch.
        return concrete

    def _per_optimizer_gradients(self, tape, losses):
        """Each optimizer's loss differentiated with respect to its own variables only (None
        for an optimizer without a loss); any non-finite loss seeds them all with NaN."""
        total = tf.add_n([tf.cast(loss, tf.float32) for loss in losses.values()])
        seed = tf.where(tf.math.is_finite(total), 1.0, np.nan)
        grads = []
        for name, (_, variables) in zip(self.names, self.groups, strict=True):
            loss = losses.get(name)
            if loss is None:
                grads.extend([None] * len(variables))
                continue
            grads.extend(tape.gradient(loss, variables, output_gradients=tf.cast(seed, loss.dtype)))
        return grads

    @property
    def _persistent(self) -> bool:
        return self.per_optimizer or (self.hooks is not None and self.hooks.persistent_tape)

    @staticmethod
    def _row(loss_out, grad_norm, applied, keys: list[str], names: list[str]):
        """One step's statistics as a row of floats (and, after them, its per-row values)."""
        stats = {
            k: tf.reduce_mean(tf.cast(v, tf.float32))
            for k, v in loss_out.items()
            if k not in (PER_ROW, OPTIMIZER_LOSSES)
        }
        stats["gradient_norm"] = tf.cast(grad_norm, tf.float32)
        stats["skipped"] = 1.0 - tf.cast(applied, tf.float32)
        keys[:] = list(stats)
        row = tf.stack(list(stats.values()))
        per_row = loss_out.get(PER_ROW)
        if not per_row:
            return row
        # Appended to the step's statistics: the table's width is only known once
        # the loss is traced, and a run's minibatches are all of one size.
        names[:] = list(per_row)
        values = tf.stack([tf.cast(tf.stop_gradient(v), tf.float32) for v in per_row.values()])
        return tf.concat([row, tf.reshape(values, [-1])], 0)

    def _hooked(self, loss_out, tape, halt):
        """The gradient stages of a Learner that customises them, traced into the step:
        ``compute``, the all-reduce, the finiteness check of the averaged gradients,
        ``postprocess`` (its result re-checked when it is custom) and, in a ``tf.cond``,
        ``apply``. (``postprocess`` is in the graph's main line, computed for a skipped
        step too and then unused: a nested ``tf.cond`` breaks Keras' optimizers.) Returns
        the gradient norm and whether the step applied."""
        hooks = self.hooks
        gradients = hooks.compute(loss_out, tape)
        if self.allreduce is not None and gradients:
            averaged = _numpy_allreduce(self.allreduce, list(gradients.values()))
            gradients = dict(zip(gradients, averaged, strict=True))
        grad_norm = tf.linalg.global_norm(list(gradients.values()))
        apply = tf.logical_and(tf.math.is_finite(grad_norm), halt <= 0.0)
        if not gradients:
            return grad_norm, apply
        processed = hooks.postprocess(dict(gradients))
        if hooks.check_postprocessed and processed:
            finite = tf.math.is_finite(tf.linalg.global_norm(list(processed.values())))
            apply = tf.logical_and(apply, finite)

        def do_apply():
            hooks.apply(processed)
            return tf.constant(True)

        return grad_norm, tf.cond(apply, do_apply, lambda: tf.constant(False))

    def _apply(self, pairs, grad_norm):
        per_optimizer = [[] for _ in self.groups]
        for g, v in pairs:
            per_optimizer[self.owner[id(v)]].append((g, v))
        for (optimizer, _), own in zip(self.groups, per_optimizer, strict=True):
            if not own:  # none of its variables has a gradient: its step count stays
                continue
            if self.grad_clip is not None:
                norm = grad_norm if len(self.groups) == 1 else None
                own = clip_pairs(own, self.grad_clip, self.grad_clip_by, norm)
            optimizer.apply_gradients(own)


def clip_pairs(pairs, clip: float, by: str, global_norm):
    """Clip ``(gradient, variable)`` pairs as RLlib's TF learners do: ``tf.clip_by_value``,
    ``tf.clip_by_norm`` per tensor, or ``tf.clip_by_global_norm`` (the norm given, or theirs)."""
    grads, variables = [g for g, _ in pairs], [v for _, v in pairs]
    if by == "value":
        grads = [tf.clip_by_value(g, -clip, clip) for g in grads]
    elif by == "norm":
        grads = [tf.clip_by_norm(g, clip) for g in grads]
    else:
        grads, _ = tf.clip_by_global_norm(grads, clip, use_norm=global_norm)
    return list(zip(grads, variables, strict=True))
