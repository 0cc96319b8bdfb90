"""Samples per second of ``Learner.update`` against a plain training loop, per framework.

Both sides do the same arithmetic on the same batch: the default MLP actor-critic (policy
and value MLPs, ``hiddens`` [256, 256]) on CartPole shapes, 4000 samples, minibatches of 128,
several epochs. Each epoch reshuffles; each minibatch step gathers its rows, runs the
forward pass, the negative log-likelihood of the batch's actions, the gradients, their
global norm, and an Adam step. The Learner runs it through its plugin machinery (an
algorithm registered here whose loss is that plain NLL); the plain loops are what one
writes by hand: ``randperm`` + index + ``backward`` for torch, a ``tf.function`` around a
``tf.GradientTape`` for TensorFlow.

Both sides are warmed up, then timed back to back ``--repeats`` times (alternating which goes
first); the medians are reported with their ratio, and the median of the back-to-back ratios,
which is steadier on a busy machine (RLlib's Learner measured 0.50 of a plain torch loop).

    python bench/learner_throughput.py            # full run
    python bench/learner_throughput.py --quick    # a few seconds per framework
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import types
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import learnerkit
from learnerkit import Columns, Hyperparameters, Learner, LearnerSpec, ModuleSpec, SampleBatch

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACTION_SPACE = gym.spaces.Discrete(2)
ALGORITHM = "bench_nll"
LEARNING_RATE = 1e-3


def nll_plugin() -> types.ModuleType:
    """An algorithm whose whole loss is the negative log-likelihood of the batch's actions."""
    plugin = types.ModuleType("bench_nll_plugin")

    @learnerkit.hookimpl
    def compute_loss(module, batch, fwd_out, ops):
        logp = ops.take_along_last(
            ops.log_softmax(fwd_out[Columns.ACTION_DIST_INPUTS]), batch[Columns.ACTIONS]
        )
        return {"total_loss": -ops.mean(logp)}

    plugin.compute_loss = compute_loss
    plugin.algorithm = learnerkit.Algorithm(
        name=ALGORITHM,
        hyperparameters=Hyperparameters,
        frameworks=("torch", "tf"),
        required_columns=(Columns.OBS, Columns.ACTIONS),
    )
    return plugin


def make_batch(n: int, seed: int = 0) -> SampleBatch:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    return SampleBatch(
        {Columns.OBS: obs, Columns.ACTIONS: (obs[:, 0] + obs[:, 2] > 0).astype(np.int64)}
    )


def learner_runner(framework: str, hiddens: list[int], batch: SampleBatch, mb: int, epochs: int):
    spec = LearnerSpec(
        algorithm=ALGORITHM,
        framework=framework,
        module_spec=ModuleSpec(OBS_SPACE, ACTION_SPACE, model_config={"hiddens": hiddens}),
        hyperparameters=Hyperparameters(learning_rate=LEARNING_RATE),
    )
    learner = Learner(spec)
    learner.build()

    def run() -> float:
        results = learner.update(batch, minibatch_size=mb, num_epochs=epochs)
        return results["default_policy"]["total_loss"]

    return run


# Plain loops ---------------------------------------------------------------------------
def plain_torch_runner(hiddens: list[int], batch: SampleBatch, mb: int, epochs: int):
    import torch
    from torch import nn

    def mlp(sizes: list[int], out_gain: float) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            linear = nn.Linear(sizes[i], sizes[i + 1])
            last = i == len(sizes) - 2
            nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if not last:
                layers.append(nn.Tanh())
        return nn.Sequential(*layers)

    torch.manual_seed(0)
    pi, vf = mlp([4, *hiddens, 2], 0.01), mlp([4, *hiddens, 1], 1.0)
    params = [*pi.parameters(), *vf.parameters()]
    # The same optimizer settings as the Learner's default (torch's fused Adam kernel).
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE, eps=1e-8, fused=True)
    obs = torch.from_numpy(batch[Columns.OBS])
    actions = torch.from_numpy(batch[Columns.ACTIONS])
    n = len(obs)
    generator = torch.Generator().manual_seed(0)

    def run() -> float:
        losses, norms = [], []
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, mb):
                idx = order[start : start + mb]
                o, a = obs[idx], actions[idx]
                logits = pi(o)
                vf(o)  # the value head runs in the Learner's forward too
                loss = -torch.log_softmax(logits, -1).gather(-1, a.unsqueeze(-1)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norms.append(
                    torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
                )
                optimizer.step()
                losses.append(loss.detach())
        return float(torch.stack(losses).mean())

    return run


def plain_tf_runner(hiddens: list[int], batch: SampleBatch, mb: int, epochs: int):
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    init = keras.initializers.Orthogonal

    def mlp(sizes: list[int], out_gain: float) -> list[tuple[tf.Variable, tf.Variable]]:
        layers = []
        for i in range(len(sizes) - 1):
            gain = out_gain if i == len(sizes) - 2 else math.sqrt(2)
            kernel = init(gain=gain, seed=int(rng.integers(1 << 30)))((sizes[i], sizes[i + 1]))
            layers.append((tf.Variable(kernel), tf.Variable(tf.zeros([sizes[i + 1]]))))
        return layers

    def apply(layers, x):
        for i, (kernel, bias) in enumerate(layers):
            x = tf.matmul(x, kernel) + bias
            if i < len(layers) - 1:
                x = tf.tanh(x)
        return x

    pi, vf = mlp([4, *hiddens, 2], 0.01), mlp([4, *hiddens, 1], 1.0)
    params = [v for layer in (*pi, *vf) for v in layer]
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=1e-8)
    optimizer.build(params)
    obs = tf.constant(batch[Columns.OBS])
    actions = tf.constant(batch[Columns.ACTIONS])
    n = int(obs.shape[0])

    @tf.function(reduce_retracing=True)
    def step(indices):
        o, a = tf.gather(obs, indices), tf.gather(actions, indices)
        with tf.GradientTape() as tape:
            logits = apply(pi, o)
            apply(vf, o)
            logp = tf.gather(tf.nn.log_softmax(logits), a, axis=-1, batch_dims=1)
            loss = -tf.reduce_mean(logp)
        grads = tape.gradient(loss, params)
        norm = tf.linalg.global_norm([g for g in grads if g is not None])
        optimizer.apply_gradients(
            [(g, p) for g, p in zip(grads, params, strict=True) if g is not None]
        )
        return loss, norm

    def run() -> float:
        losses = []
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, mb):
                loss, _ = step(order[start : start + mb])
                losses.append(loss)
        return float(tf.reduce_mean(tf.stack(losses)))

    return run


def set_threads(threads: int, frameworks: list[str]) -> None:
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(threads)
    if "tf" in frameworks:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


# Timing ----------------------------------------------------------------------------------
def time_pair(
    learner_run: Callable[[], float], plain_run: Callable[[], float], repeats: int
) -> tuple[list[float], list[float]]:
    """Wall-clock seconds of each side, run back to back in alternating order (so that drift
    in the machine's load, or running second, favours neither side)."""
    learner_run(), plain_run()  # warm-up: tracing, allocator, caches
    learner_times, plain_times = [], []
    for repeat in range(repeats):
        pairs = [(learner_run, learner_times), (plain_run, plain_times)]
        for run, times in pairs if repeat % 2 == 0 else pairs[::-1]:
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return learner_times, plain_times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    parser.add_argument("--frameworks", nargs="+", default=["torch", "tf"])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--minibatch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (2 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="default 7 (3 with --quick)")
    parser.add_argument("--hiddens", type=int, nargs="+", default=[256, 256])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per framework (default: the frameworks' own choice); 1 gives steadier "
        "figures on a busy machine, where torch's spinning OpenMP threads slow down badly",
    )
    args = parser.parse_args(argv)
    if args.threads:
        set_threads(args.threads, args.frameworks)
    epochs = args.epochs or (2 if args.quick else 10)
    repeats = args.repeats or (3 if args.quick else 7)

    learnerkit.register_algorithm(nll_plugin(), replace=True)
    batch = make_batch(args.samples)
    samples = args.samples * epochs
    print(
        f"{args.samples} samples x {epochs} epochs, minibatch {args.minibatch_size}, "
        f"hiddens {args.hiddens}, median of {repeats}, threads {args.threads or 'default'}"
    )
    plain = {"torch": plain_torch_runner, "tf": plain_tf_runner}
    for framework in args.frameworks:
        learner_run = learner_runner(framework, args.hiddens, batch, args.minibatch_size, epochs)
        plain_run = plain[framework](args.hiddens, batch, args.minibatch_size, epochs)
        learner_times, plain_times = time_pair(learner_run, plain_run, repeats)
        learner_rate = samples / statistics.median(learner_times)
        plain_rate = samples / statistics.median(plain_times)
        paired = statistics.median(p / q for p, q in zip(plain_times, learner_times, strict=True))
        print(
            f"{framework:>5}: Learner.update {learner_rate:10,.0f} samples/s | plain loop "
            f"{plain_rate:10,.0f} samples/s | ratio {learner_rate / plain_rate:.2f} "
            f"(median of back-to-back ratios {paired:.2f})"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
