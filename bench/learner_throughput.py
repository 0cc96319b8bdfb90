"""Samples per second of ``Learner.update`` against a plain training loop, per framework.

Both sides do the same arithmetic on the same batch: the default MLP actor-critic (separate
policy and value MLPs, ``hiddens`` [256, 256], tanh: RLlib's default CartPole model, 134,915
parameters) on CartPole shapes, 4000 samples, minibatches of 128, several epochs. Each epoch
reshuffles; each minibatch step gathers its rows, runs the forward pass, the loss, the
gradients, their global norm, and an Adam step. Two cases (``--cases``):

- ``nll``: the negative log-likelihood of the batch's actions (an algorithm registered here);
- ``ppo``: the ``ppo`` plugin's loss with RLlib's CartPole loss settings (clip 0.3, KL loss
  0.2, vf coefficient 1, vf clip 10, per-minibatch advantage normalisation, gradients
  clipped to norm 0.5), against a PPO step written as a careful user would (CleanRL's
  ``ppo.py``: the same loss, its statistics (losses, entropy, KL, clip fraction, gradient
  norm) kept as tensors and read once per update, explained variance once per update).

The Learner runs it through its plugin machinery; the plain loops are what one writes by
hand: ``randperm`` + index + ``backward`` + fused Adam for torch, a ``tf.function`` around a
``tf.GradientTape`` for TensorFlow, called once per minibatch (as Keras' ``fit`` does by
default). The TF Learner runs an update's equal-sized minibatches in one call (a graph
loop): on CPU a call costs about as much as this model's step, which is why it beats the
plain TF loop by a quarter or more.

Both sides are warmed up, then timed back to back ``--repeats`` times (alternating which goes
first); the medians are reported with their ratio, and the median of the back-to-back ratios,
which is steadier on a busy machine (RLlib's Learner measured 0.50 of a plain torch loop).

    python bench/learner_throughput.py            # full run
    python bench/learner_throughput.py --quick    # a few seconds per framework
    python bench/learner_throughput.py --cases ppo --frameworks torch
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
    return updating(spec, batch, mb, epochs)


def updating(spec: LearnerSpec, batch: SampleBatch, mb: int, epochs: int):
    """A function running one ``Learner.update`` of a learner built from ``spec``."""
    learner = Learner(spec)
    learner.build()

    def run() -> float:
        results = learner.update(batch, minibatch_size=mb, num_epochs=epochs)
        return results["default_policy"]["total_loss"]

    return run


# Plain loops ---------------------------------------------------------------------------
def _torch_mlp(sizes: list[int], out_gain: float):
    """The default module's tower: orthogonal init, tanh between layers."""
    from torch import nn

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


def _tf_model(hiddens: list[int], epsilon: float):
    """Policy and value towers as variables, their forward function, and a built Adam."""
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
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=epsilon)
    optimizer.build(params)
    return pi, vf, apply, params, optimizer


def plain_torch_runner(hiddens: list[int], batch: SampleBatch, mb: int, epochs: int):
    import torch

    torch.manual_seed(0)
    pi, vf = _torch_mlp([4, *hiddens, 2], 0.01), _torch_mlp([4, *hiddens, 1], 1.0)
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
    import tensorflow as tf

    rng = np.random.default_rng(0)
    pi, vf, apply, params, optimizer = _tf_model(hiddens, 1e-8)
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


# The PPO case ------------------------------------------------------------------------------
# RLlib's PPO loss settings for CartPole (clip 0.3, KL loss 0.2, vf coefficient 1, vf clip 10).
CLIP, KL_COEFF, VF_COEFF, VF_CLIP, GRAD_CLIP, ADAM_EPS = 0.3, 0.2, 1.0, 10.0, 0.5, 1e-5


def make_ppo_batch(n: int, seed: int = 0) -> SampleBatch:
    """What a PPO fragment holds: old logits with the actions sampled from them and their
    log-probabilities, old values, advantages and value targets."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    logits = rng.normal(scale=0.5, size=(n, 2)).astype(np.float32)
    log_probs = logits - np.logaddexp(logits[:, :1], logits[:, 1:])
    actions = (rng.random(n) < np.exp(log_probs[:, 1])).astype(np.int64)
    vf_preds = rng.normal(size=n).astype(np.float32)
    advantages = rng.normal(size=n).astype(np.float32)
    return SampleBatch(
        {
            Columns.OBS: obs,
            Columns.ACTIONS: actions,
            Columns.ACTION_DIST_INPUTS: logits,
            Columns.ACTION_LOGP: log_probs[np.arange(n), actions],
            Columns.VF_PREDS: vf_preds,
            Columns.ADVANTAGES: advantages,
            Columns.VALUE_TARGETS: vf_preds + advantages,
        }
    )


def ppo_learner_runner(
    framework: str, hiddens: list[int], batch: SampleBatch, mb: int, epochs: int
):
    from learnerkit_ppo import PPOHyperparameters

    spec = LearnerSpec(
        algorithm="ppo",
        framework=framework,
        module_spec=ModuleSpec(OBS_SPACE, ACTION_SPACE, model_config={"hiddens": hiddens}),
        hyperparameters=PPOHyperparameters(
            learning_rate=LEARNING_RATE,
            clip_param=CLIP,
            use_kl_loss=True,
            kl_coeff=KL_COEFF,
            vf_loss_coeff=VF_COEFF,
            vf_clip_param=VF_CLIP,
            grad_clip=GRAD_CLIP,
            adam_epsilon=ADAM_EPS,
        ),
    )
    return updating(spec, batch, mb, epochs)


def plain_torch_ppo_runner(hiddens: list[int], batch: SampleBatch, mb: int, epochs: int):
    import torch

    torch.manual_seed(0)
    pi, vf = _torch_mlp([4, *hiddens, 2], 0.01), _torch_mlp([4, *hiddens, 1], 1.0)
    params = [*pi.parameters(), *vf.parameters()]
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE, eps=ADAM_EPS, fused=True)
    columns = {k: torch.from_numpy(v) for k, v in batch.items()}
    n = len(columns[Columns.OBS])
    generator = torch.Generator().manual_seed(0)

    def run() -> float:
        stats = []
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, mb):
                idx = order[start : start + mb]
                b = {k: v[idx] for k, v in columns.items()}
                obs = b[Columns.OBS]
                log_probs = torch.log_softmax(pi(obs), -1)
                values = vf(obs).squeeze(-1)
                logp = log_probs.gather(-1, b[Columns.ACTIONS].unsqueeze(-1)).squeeze(-1)
                adv = b[Columns.ADVANTAGES]
                adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
                ratio = torch.exp(logp - b[Columns.ACTION_LOGP])
                pg_loss = -torch.min(adv * ratio, adv * ratio.clamp(1 - CLIP, 1 + CLIP)).mean()
                vf_loss = (values - b[Columns.VALUE_TARGETS]).square().clamp(max=VF_CLIP).mean()
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
                old_log_probs = torch.log_softmax(b[Columns.ACTION_DIST_INPUTS], -1)
                kl = (old_log_probs.exp() * (old_log_probs - log_probs)).sum(-1).mean()
                loss = pg_loss + VF_COEFF * vf_loss + KL_COEFF * kl
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
                optimizer.step()
                with torch.no_grad():
                    clipfrac = ((ratio - 1).abs() > CLIP).float().mean()
                    row = [loss, pg_loss, vf_loss, entropy, kl, clipfrac, norm]
                    stats.append(torch.stack(row))
        means = torch.stack(stats).mean(0).tolist()  # the one host sync of the update
        values, targets = columns[Columns.VF_PREDS], columns[Columns.VALUE_TARGETS]
        explained_var = 1 - float((targets - values).var() / targets.var())
        return means[0] + 0 * explained_var

    return run


def plain_tf_ppo_runner(hiddens: list[int], batch: SampleBatch, mb: int, epochs: int):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    pi, vf, apply, params, optimizer = _tf_model(hiddens, ADAM_EPS)
    columns = {k: tf.constant(v) for k, v in batch.items()}
    n = batch.count

    @tf.function(reduce_retracing=True)
    def step(indices):
        b = {k: tf.gather(v, indices) for k, v in columns.items()}
        obs = b[Columns.OBS]
        with tf.GradientTape() as tape:
            log_probs = tf.nn.log_softmax(apply(pi, obs))
            values = tf.squeeze(apply(vf, obs), -1)
            logp = tf.gather(log_probs, b[Columns.ACTIONS], axis=-1, batch_dims=1)
            adv = b[Columns.ADVANTAGES]
            adv = (adv - tf.reduce_mean(adv)) / (tf.math.reduce_std(adv) + 1e-8)
            ratio = tf.exp(logp - b[Columns.ACTION_LOGP])
            clipped = tf.clip_by_value(ratio, 1 - CLIP, 1 + CLIP)
            pg_loss = -tf.reduce_mean(tf.minimum(adv * ratio, adv * clipped))
            errors = tf.square(values - b[Columns.VALUE_TARGETS])
            vf_loss = tf.reduce_mean(tf.minimum(errors, VF_CLIP))
            entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(log_probs) * log_probs, -1))
            old_log_probs = tf.nn.log_softmax(b[Columns.ACTION_DIST_INPUTS])
            kl = tf.reduce_mean(
                tf.reduce_sum(tf.exp(old_log_probs) * (old_log_probs - log_probs), -1)
            )
            loss = pg_loss + VF_COEFF * vf_loss + KL_COEFF * kl
        grads = tape.gradient(loss, params)
        clipped_grads, norm = tf.clip_by_global_norm(grads, GRAD_CLIP)
        optimizer.apply_gradients(zip(clipped_grads, params, strict=True))
        clipfrac = tf.reduce_mean(tf.cast(tf.abs(ratio - 1) > CLIP, tf.float32))
        return tf.stack([loss, pg_loss, vf_loss, entropy, kl, clipfrac, norm])

    def run() -> float:
        stats = []
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, mb):
                stats.append(step(order[start : start + mb]))
        means = tf.reduce_mean(tf.stack(stats), 0).numpy()  # the one host sync of the update
        values, targets = columns[Columns.VF_PREDS], columns[Columns.VALUE_TARGETS]
        explained_var = 1 - float(
            tf.math.reduce_variance(targets - values) / tf.math.reduce_variance(targets)
        )
        return float(means[0]) + 0 * explained_var

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


CASES = {
    # name: (learner runner, plain runners by framework, batch maker, default epochs)
    "nll": (
        learner_runner,
        {"torch": plain_torch_runner, "tf": plain_tf_runner},
        make_batch,
        10,
    ),
    "ppo": (
        ppo_learner_runner,
        {"torch": plain_torch_ppo_runner, "tf": plain_tf_ppo_runner},
        make_ppo_batch,
        4,
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--frameworks", nargs="+", default=["torch", "tf"])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--minibatch-size", type=int, default=128)
    parser.add_argument(
        "--epochs", type=int, default=None, help="default 10 for nll, 4 for ppo (2 with --quick)"
    )
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
    repeats = args.repeats or (3 if args.quick else 7)
    learnerkit.register_algorithm(nll_plugin(), replace=True)
    for case in args.cases:
        make_learner, plain, make, default_epochs = CASES[case]
        epochs = args.epochs or (2 if args.quick else default_epochs)
        batch = make(args.samples)
        samples = args.samples * epochs
        print(
            f"{case}: {args.samples} samples x {epochs} epochs, minibatch {args.minibatch_size}, "
            f"hiddens {args.hiddens}, median of {repeats}, threads {args.threads or 'default'}"
        )
        for framework in args.frameworks:
            learner_run = make_learner(framework, args.hiddens, batch, args.minibatch_size, epochs)
            plain_run = plain[framework](args.hiddens, batch, args.minibatch_size, epochs)
            learner_times, plain_times = time_pair(learner_run, plain_run, repeats)
            learner_rate = samples / statistics.median(learner_times)
            plain_rate = samples / statistics.median(plain_times)
            paired = statistics.median(
                p / q for p, q in zip(plain_times, learner_times, strict=True)
            )
            print(
                f"{framework:>5}: Learner.update {learner_rate:10,.0f} samples/s | plain loop "
                f"{plain_rate:10,.0f} samples/s | ratio {learner_rate / plain_rate:.2f} "
                f"(median of back-to-back ratios {paired:.2f})"
            )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
