"""Recurrent PPO on the masked CartPole: wall time and env steps to a last-100-episode mean
return of 300, with peak memory.

learnerkit PPO with ``use_lstm`` (its preset for ``learnerkit/StatelessCartPole-v1``;
IMPALA's with ``--impala``)
against sb3-contrib's ``RecurrentPPO`` (rl-baselines3-zoo's ``ppo_lstm`` settings for
CartPoleNoVel-v1, on the same env) and RLlib's PPO with ``use_lstm`` on its
``StatelessCartPole`` (new API stack, the settings of its tuned example; in the interpreter
of ``--rllib-python``), in the same run on the same machine, each in a fresh subprocess
(wall time includes start-up; peak memory is the child's max RSS, RLlib's driver only).
Optional rows: learnerkit PPO in TensorFlow (``--tf``), IMPALA with an LSTM (``--impala``)
and PPO feed-forward with the same settings (``--feed-forward``, which should miss).

``--acting`` instead measures what one env-runner step of the recurrent module costs in
its numpy copy, in torch and in TensorFlow (8 envs), which is why runners act in numpy.

    python bench/lstm_cartpole.py [--seeds 0 1 ...] [--budget 1000000] [--tf] [--impala]
        [--feed-forward] [--skip-sb3] [--skip-rllib] [--rllib-python PATH] [--acting]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TARGET = 300.0
ENV = "learnerkit/StatelessCartPole-v1"

LEARNERKIT = """
import json
from learnerkit.loops import TrainConfig, train
s = train(TrainConfig(algorithm={algorithm!r}, env_id={env!r}, framework={framework!r},
                      seed={seed}, stop_reward={target}, stop_timesteps={budget},
                      out_dir={out!r}, progress=False, overrides={overrides!r},
                      model_config={model_config!r}))
print("RESULT", json.dumps({{"steps": s.timesteps_total, "reached": s.reached_stop_reward,
                             "return": s.episode_return_mean}}))
"""

# The presets' recurrent module (PPO's and IMPALA's for the env), for --acting.
LSTM = {"use_lstm": True, "lstm_cell_size": 64, "max_seq_len": 32, "hiddens": [64]}

SB3 = """
import json, torch
torch.set_num_threads(1)
import learnerkit.envs  # registers learnerkit/StatelessCartPole-v1
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

def linear(v):
    return lambda progress: progress * v

class Stop(BaseCallback):
    def _on_step(self):
        buf = self.model.ep_info_buffer
        return not (len(buf) == 100 and sum(e["r"] for e in buf) / 100 >= {target})

env = make_vec_env({env!r}, n_envs=8, seed={seed})
# rl-baselines3-zoo hyperparams/ppo_lstm.yml, CartPoleNoVel-v1
model = RecurrentPPO(
    "MlpLstmPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
    n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2),
    policy_kwargs=dict(ortho_init=False, activation_fn=torch.nn.ReLU, lstm_hidden_size=64,
                       enable_critic_lstm=True, net_arch=dict(pi=[64], vf=[64])),
    seed={seed}, verbose=0)
model.learn(total_timesteps={budget}, callback=Stop())
buf = model.ep_info_buffer
mean = sum(e["r"] for e in buf) / max(len(buf), 1)
reached = len(buf) == 100 and mean >= {target}
print("RESULT", json.dumps({{"steps": model.num_timesteps, "reached": reached, "return": mean}}))
"""

RLLIB = """
import json, logging, os
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
import ray
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.connectors.env_to_module import MeanStdFilter
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.examples.envs.classes.stateless_cartpole import StatelessCartPole
ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
# rllib/tuned_examples/ppo/stateless_cartpole_ppo.py (one learner).
config = (PPOConfig().environment(StatelessCartPole).framework("torch")
          .env_runners(num_env_runners=0, num_envs_per_env_runner=8,
                       env_to_module_connector=lambda env, spaces, device: MeanStdFilter())
          .training(lr=3e-4, num_epochs=6, vf_loss_coeff=0.05)
          .rl_module(model_config=DefaultModelConfig(vf_share_layers=True, use_lstm=True,
                                                     max_seq_len=20))
          .debugging(seed={seed}))
algo = config.build_algo()
steps, ret = 0, None
while steps < {budget}:
    r = algo.train()
    steps = r["num_env_steps_sampled_lifetime"]
    ret = r["env_runners"].get("episode_return_mean")
    if ret is not None and ret >= {target}:
        break
reached = bool(ret is not None and ret >= {target})
print("RESULT", json.dumps({{"steps": int(steps), "reached": reached, "return": float(ret or 0)}}))
"""


def run_child(code: str, python: str = sys.executable) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([python, "-c", code], stdout=out, stderr=err, env=env)
        # wait4 gives this child's own peak RSS (getrusage(CHILDREN) would be a max over all).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if os.waitstatus_to_exitcode(status) != 0 or not lines:
        return {
            "error": (stderr or stdout).strip().splitlines()[-1:] or ["no output"],
            "wall": wall,
        }
    result = json.loads(lines[-1][len("RESULT ") :])
    return {**result, "wall": wall, "peak_mb": usage.ru_maxrss / 1024}


def rllib_available(python: str) -> str | None:
    probe = subprocess.run([python, "-c", "import ray.rllib"], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"RLlib not measured: `import ray.rllib` fails in {python} ({last})"


def measure_acting(num_envs: int = 8, calls: int = 2000) -> None:
    """Microseconds per acting step of the preset's recurrent module on ``num_envs`` envs."""
    import gymnasium as gym
    import numpy as np
    import tensorflow as tf
    import torch

    from learnerkit import Columns, ModuleSpec
    from learnerkit.backends import make_backend
    from learnerkit.rollouts.acting import numpy_copy_class

    torch.set_num_threads(1)
    env = gym.make(ENV)
    spec = ModuleSpec(env.observation_space, env.action_space, model_config=LSTM)
    rng = np.random.default_rng(0)
    torch_module = make_backend("torch").build_module(spec, 0)
    tf_module = make_backend("tf").build_module(spec, 0)
    weights = make_backend("torch").get_module_state(torch_module)
    copy = numpy_copy_class(spec).from_weights(weights, spec, "torch", rng)
    inputs = {
        Columns.OBS: rng.standard_normal((num_envs, 2)).astype(np.float32),
        Columns.STATE_IN: copy.initial_state(num_envs),
        Columns.PREV_ACTIONS: np.zeros(num_envs, np.int64),
        Columns.PREV_REWARDS: np.zeros(num_envs, np.float32),
    }

    def torch_step():
        tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
        return {k: v.numpy() for k, v in torch_module.forward_exploration(tensors).items()}

    def tf_step():
        tensors = {k: tf.convert_to_tensor(v) for k, v in inputs.items()}
        return {k: v.numpy() for k, v in tf_module.forward_exploration(tensors).items()}

    results = {
        "numpy copy": _time(lambda: copy.forward_exploration(inputs), calls),
        "torch module": _time(torch_step, calls),
        "TF module (tf.function)": _time(tf_step, calls),
    }
    print(f"one acting step of the recurrent module ({LSTM}), {num_envs} envs:")
    for name, us in results.items():
        print(f"  {name:<24} {us:7.1f} us")
    print(f"  fastest: {min(results, key=results.get)}")


def _time(fn, calls: int) -> float:
    for _ in range(50):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=int, default=1_000_000, help="env steps per run")
    parser.add_argument("--tf", action="store_true", help="also learnerkit PPO in TensorFlow")
    parser.add_argument("--impala", action="store_true", help="also learnerkit IMPALA")
    parser.add_argument("--feed-forward", action="store_true", help="also PPO without LSTM")
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--skip-rllib", action="store_true")
    parser.add_argument(
        "--rllib-python",
        default=sys.executable,
        help="interpreter with ray[rllib] installed (it may live in its own venv)",
    )
    parser.add_argument("--acting", action="store_true", help="measure acting steps only")
    args = parser.parse_args()
    if args.acting:
        measure_acting()
        return

    def learnerkit(algorithm, framework, overrides, model_config):
        return (
            LEARNERKIT,
            {
                "algorithm": algorithm,
                "framework": framework,
                "overrides": overrides,
                "model_config": model_config,
            },
        )

    contenders = {"learnerkit-ppo": learnerkit("ppo", "torch", {}, {})}
    if args.tf:
        contenders["learnerkit-ppo-tf"] = learnerkit("ppo", "tf", {}, {})
    if args.impala:
        contenders["learnerkit-impala"] = learnerkit("impala", "torch", {}, {})
    if args.feed_forward:
        contenders["learnerkit-ppo-ff"] = learnerkit("ppo", "torch", {}, {"use_lstm": False})
    notes = []
    if not args.skip_sb3:
        contenders["sb3-recurrent-ppo"] = (SB3, {})
    if not args.skip_rllib:
        reason = rllib_available(args.rllib_python)
        if reason is None:
            contenders["rllib"] = (RLLIB, {})
        else:
            notes.append(reason)
    rows = []
    for seed in args.seeds:  # seeds outer: a load that comes and goes hits every contender
        for name, (template, extra) in contenders.items():
            code = template.format(
                seed=seed,
                target=TARGET,
                budget=args.budget,
                env=ENV,
                out=f"/tmp/lk-bench-lstm-{name}-{seed}",
                **extra,
            )
            result = run_child(code, args.rllib_python if name == "rllib" else sys.executable)
            rows.append((name, seed, result))
            if "error" in result:
                print(f"{name:<18} seed {seed}: failed: {result['error']}", flush=True)
                continue
            print(
                f"{name:<18} seed {seed}: {'reached' if result['reached'] else 'MISSED '} "
                f"{TARGET:g} after {result['steps']:>7} steps (return {result['return']:.1f}), "
                f"{result['wall']:6.1f} s wall, peak {result['peak_mb']:.0f} MB",
                flush=True,
            )
    print(f"\nmedian over seeds (wall includes start-up; target mean return {TARGET:g})")
    medians = {}
    for name in contenders:
        ok = [r for n, _, r in rows if n == name and "error" not in r and r["reached"]]
        if ok:
            walls = sorted(r["wall"] for r in ok)
            medians[name] = walls[len(walls) // 2]
            steps = sorted(r["steps"] for r in ok)[len(ok) // 2]
            print(f"  {name:<18} {medians[name]:7.1f} s  {steps:>8} steps  reached {len(ok)}")
    peers = [medians[p] for p in ("sb3-recurrent-ppo", "rllib") if p in medians]
    if "learnerkit-ppo" in medians and peers:
        ratio = medians["learnerkit-ppo"] / min(peers)
        print(f"  learnerkit / fastest peer wall-time ratio: {ratio:.2f} (target <= 0.5)")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
