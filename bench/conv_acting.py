"""Per-step cost of acting with a conv module: the env runners' numpy copy against the
framework module with one thread (what a Ray env runner gets), at the sizes that matter.

    python bench/conv_acting.py [--envs 1 8] [--repeats 200]

Prints microseconds per ``forward_exploration`` call on a batch of ``--envs`` observations,
for Atari frames (84x84x4, the Nature CNN) and the test task's 16x16x3 images, and the
ratio framework / numpy (above 1: numpy is faster)."""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

from learnerkit._specs import ModuleSpec
from learnerkit.backends import make_backend, policy_fn
from learnerkit.rollouts.acting import NumpyActorCritic


def per_call_us(fn, obs: np.ndarray, repeats: int) -> float:
    for _ in range(5):
        fn(obs)
    best = float("inf")
    for _ in range(3):  # best of three rounds: the host is shared
        start = time.perf_counter()
        for _ in range(repeats):
            fn(obs)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--frameworks", nargs="+", default=["torch", "tf"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    for fw in args.frameworks:
        if fw == "tf":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        for shape in [(84, 84, 4), (16, 16, 3)]:
            space = gym.spaces.Box(0, 255, shape, np.uint8)
            spec = ModuleSpec(space, gym.spaces.Discrete(6))
            backend = make_backend(fw)
            module = backend.build_module(spec, 0)
            weights = backend.get_module_state(module)
            copy = NumpyActorCritic.from_weights(weights, spec, fw, np.random.default_rng(0))
            framework_policy = policy_fn(backend, module)
            for n in args.envs:
                obs = np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)
                t_np = per_call_us(copy.forward_exploration, obs, args.repeats)
                t_fw = per_call_us(framework_policy, obs, args.repeats)
                print(
                    f"{fw:5s} {'x'.join(map(str, shape)):8s} envs={n:2d}  numpy {t_np:8.0f} us"
                    f"  {fw} {t_fw:8.0f} us  {fw}/numpy {t_fw / t_np:5.2f}"
                )


if __name__ == "__main__":
    main()
