"""IMPALA learns: `learnerkit train impala` with its defaults reaches a last-100-episode mean
of 450 on CartPole-v1 within 500k env steps (the issue's bar), on torch for several seeds,
sampling in the driver and in two Ray env runners, and on TensorFlow.

A run can collapse for good: the policy turns deterministic (entropy ~0.001, return 9)
after passing 400 and never recovers. With one step size for the whole module, 1 of 55 runs
sampling in the driver missed 450 within 500k this way (seed 13), and seed 1 once in CI;
with the value tower at 5x (`vf_lr_ratio`, the default) 0 of 23 (seeds 0-16 in the driver,
0-5 with 2 Ray env runners, medians 94k and ~130k env steps). Asynchronous runs vary with
timing, so these tests ask for two seeds of three, and TensorFlow for one of two, and print
every run: one collapse is the known rare case, two are a bug."""

from __future__ import annotations

import pytest

from learnerkit.loops import TrainConfig, evaluate_checkpoint, train

pytestmark = pytest.mark.slow

BUDGET = 500_000


def _train(out_dir, **kwargs):
    return train(TrainConfig(algorithm="impala", out_dir=str(out_dir), progress=False, **kwargs))


def _solved(summary) -> bool:
    return summary.reached_stop_reward and summary.timesteps_total <= BUDGET


def test_impala_solves_cartpole_on_torch_for_at_least_two_of_three_seeds(tmp_path):
    summaries = [_train(tmp_path / f"seed{seed}", seed=seed) for seed in (0, 1, 2)]
    for s in summaries:
        print(f"seed {s.seed}: {s.episode_return_mean:.1f} after {s.timesteps_total} steps")
    assert sum(_solved(s) for s in summaries) >= 2, summaries


def test_impala_solves_cartpole_on_tensorflow_and_its_checkpoint_evaluates(tmp_path):
    summary = _train(tmp_path / "seed0", framework="tf", seed=0)
    if not _solved(summary):  # the rare collapse: one more seed (see the module docstring)
        print(f"seed 0 missed: {summary}")
        summary = _train(tmp_path / "seed1", framework="tf", seed=1)
    assert _solved(summary), summary
    mean, _ = evaluate_checkpoint(summary.checkpoint, num_episodes=3)
    assert mean > 200
