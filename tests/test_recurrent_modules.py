"""Recurrent default modules (``model_config["use_lstm"]``): the learner's forward pass over
whole sequences replays exactly what the env runner computed step by step (state carried
per env, reset where an episode ended, previous action and reward), in both frameworks and
with or without a value trunk of its own, over vector or image observations (the conv
encoder first); V-trace's bootstrap values match the runner's; a
runner's carried state survives an exact resume; bad settings are refused with the fix."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import TWO_ACTIONS

from learnerkit import Columns, ConfigError, ModuleSpec
from learnerkit.backends import make_backend
from learnerkit.envs import PIXEL_GRID_ID
from learnerkit.loops.contract import EnvRunnerSpec, on_policy_batch, probe_spaces
from learnerkit.model_config import (
    check_fragments_hold_sequences,
    refuse_recurrent,
    resolve_model_config,
    sequence_length_of,
)
from learnerkit.rollouts import make_sampler
from learnerkit.rollouts.acting import default_module_layout, numpy_copy_class

MASKED_CARTPOLE = "learnerkit/StatelessCartPole-v1"
SEQ_LEN = 8
LSTM = {
    "use_lstm": True,
    "lstm_cell_size": 16,
    "max_seq_len": SEQ_LEN,
    "hiddens": [16],
    "lstm_use_prev_action": True,
    "lstm_use_prev_reward": True,
}


def _numpy(x):
    return np.asarray(x.detach() if hasattr(x, "detach") else x)


def _sampled(framework, env_id, model_config, fragments=2):
    """A runner acting with a module's weights; its last fragment, and the module."""
    obs_space, action_space = probe_spaces(env_id)
    module_spec = ModuleSpec(obs_space, action_space, model_config=model_config)
    spec = EnvRunnerSpec(
        env_id=env_id,
        framework=framework,
        module_spec=module_spec,
        num_envs=4,
        rollout_fragment_length=4 * SEQ_LEN,
    )
    backend = make_backend(framework)
    module = backend.build_module(module_spec, 3)
    sampler = make_sampler(spec, 0)
    sampler.set_weights({"default_policy": backend.get_module_state(module)}, 1)
    for _ in range(fragments):
        fragment = sampler.sample(0)
    sampler.close()
    return fragment, backend, module


@pytest.mark.parametrize("share", [False, True], ids=["own_value_trunk", "shared_trunk"])
def test_the_learner_replays_what_the_runner_sampled(framework, share):
    fragment, backend, module = _sampled(
        framework, MASKED_CARTPOLE, {**LSTM, "vf_share_layers": share}
    )
    batch = on_policy_batch([fragment], gamma=0.99, lambda_=0.95, sequence_length=SEQ_LEN)
    ended = batch[Columns.TERMINATEDS] | batch[Columns.TRUNCATEDS]
    assert ended.reshape(-1, SEQ_LEN)[:, :-1].any(), "no episode ended inside a sequence"
    out = module.forward_train(backend.to_tensors(batch))
    np.testing.assert_allclose(
        _numpy(out[Columns.ACTION_DIST_INPUTS]), batch[Columns.ACTION_DIST_INPUTS], atol=1e-5
    )
    np.testing.assert_allclose(_numpy(out[Columns.VF_PREDS]), batch[Columns.VF_PREDS], atol=1e-5)


def test_a_continuous_policy_replays_its_previous_actions(framework):
    fragment, backend, module = _sampled(framework, "Pendulum-v1", LSTM, fragments=1)
    batch = on_policy_batch([fragment], gamma=0.99, lambda_=0.95, sequence_length=SEQ_LEN)
    out = module.forward_train(backend.to_tensors(batch))
    np.testing.assert_allclose(
        _numpy(out[Columns.ACTION_DIST_INPUTS]), batch[Columns.ACTION_DIST_INPUTS], atol=1e-5
    )


def test_the_values_vtrace_bootstraps_from_are_the_runners(framework):
    fragment, backend, module = _sampled(framework, MASKED_CARTPOLE, LSTM)
    sequences = fragment.rollout.to_sequences()  # whole fragments, with new_obs
    out = module.forward_train(backend.to_tensors(sequences))
    runner_next = np.swapaxes(fragment.rollout.next_values, 0, 1).reshape(-1)
    learner_next = np.where(sequences[Columns.TERMINATEDS], 0.0, _numpy(out[Columns.NEXT_VF_PREDS]))
    np.testing.assert_allclose(learner_next, runner_next, atol=1e-5)


def test_each_episode_starts_from_the_initial_state():
    fragment, _, _ = _sampled("torch", MASKED_CARTPOLE, LSTM)
    batch = fragment.rollout.to_sequences()
    ended = batch[Columns.TERMINATEDS] | batch[Columns.TRUNCATEDS]
    first = np.flatnonzero(ended[:-1]) + 1
    first = first[first % (4 * SEQ_LEN) != 0]  # the next row is another env's
    assert len(first)
    assert not batch[Columns.STATE_IN][first].any()
    assert not batch[Columns.PREV_ACTIONS][first].any()
    assert not batch[Columns.PREV_REWARDS][first].any()
    later = np.setdiff1d(np.arange(1, batch.count), first)
    assert batch[Columns.STATE_IN][later].any(axis=1).all()


@pytest.mark.parametrize("share", [False, True])
def test_the_weight_layout_is_known_without_the_framework(framework, share):
    spec = ModuleSpec(
        gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        TWO_ACTIONS,
        model_config={**LSTM, "vf_share_layers": share},
    )
    backend = make_backend(framework)
    weights = backend.get_module_state(backend.build_module(spec, 0))
    assert default_module_layout(spec, framework) == {k: v.shape for k, v in weights.items()}
    assert numpy_copy_class(spec).__name__ == "NumpyLSTMActorCritic"


def test_a_runner_resumes_with_the_state_it_carried():
    obs_space, action_space = probe_spaces(MASKED_CARTPOLE)
    module_spec = ModuleSpec(obs_space, action_space, model_config=LSTM)
    spec = EnvRunnerSpec(
        env_id=MASKED_CARTPOLE,
        framework="torch",
        module_spec=module_spec,
        num_envs=2,
        rollout_fragment_length=SEQ_LEN,
    )
    backend = make_backend("torch")
    weights = {"default_policy": backend.get_module_state(backend.build_module(module_spec, 1))}
    first, second = make_sampler(spec, 0), make_sampler(spec, 0)
    try:
        for sampler in (first, second):
            sampler.set_weights(weights, 1)
        first.sample(0)
        assert second.set_runner_state(first.get_runner_state()) is None
        a, b = first.sample(0).rollout, second.sample(0).rollout
        np.testing.assert_array_equal(a.extra[Columns.STATE_IN], b.extra[Columns.STATE_IN])
        np.testing.assert_array_equal(a.actions, b.actions)
    finally:
        first.close()
        second.close()


def test_recurrent_settings_are_checked():
    assert sequence_length_of({"use_lstm": True, "max_seq_len": 16}) == 16
    assert sequence_length_of({"max_seq_len": 16}) is None
    with pytest.raises(ConfigError, match=r"max_seq_len.*positive int"):
        resolve_model_config({"use_lstm": True, "max_seq_len": 0})
    with pytest.raises(ConfigError, match=r"use_lstm.*True or False"):
        resolve_model_config({"use_lstm": "yes"})
    with pytest.raises(ConfigError, match="multiple of max_seq_len"):
        check_fragments_hold_sequences({"default_policy": {"use_lstm": True}}, 50)
    check_fragments_hold_sequences({"default_policy": {"use_lstm": True}}, 60)
    with pytest.raises(ConfigError, match="OfflineLoop trains rows one by one"):
        refuse_recurrent({"default_policy": {"use_lstm": True}}, "OfflineLoop")
    refuse_recurrent({"default_policy": {"use_lstm": False}}, "OfflineLoop")


class _StatefulWithoutCopy:
    """A recurrent module class that offers no numpy copy."""

    def __init__(self, observation_space, action_space, model_config):
        pass

    def initial_state(self, n):
        return np.zeros((n, 2))


def test_a_recurrent_module_without_a_numpy_copy_is_refused():
    spec = EnvRunnerSpec(
        env_id=MASKED_CARTPOLE,
        framework="torch",
        module_spec=ModuleSpec(*probe_spaces(MASKED_CARTPOLE), module_class=_StatefulWithoutCopy),
        num_envs=1,
        rollout_fragment_length=SEQ_LEN,
    )
    with pytest.raises(ConfigError, match="no numpy copy"):
        make_sampler(spec, 0)


@pytest.mark.slow  # three short training runs
def test_recurrent_ppo_stopped_and_resumed_reproduces_the_uninterrupted_run(tmp_path):
    import csv

    from learnerkit.cli import main

    timings = {"time_total_s", "env_steps_per_s", "sample_time_s", "learn_time_s"}
    base = ["train", "ppo", "--quiet", "--seed", "3", "--env", MASKED_CARTPOLE]
    base += ["--num-env-runners", "0"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([*base, "--stop-timesteps", "2048", "--out", str(whole)]) == 0
    assert main([*base, "--stop-timesteps", "1024", "--out", str(parts)]) == 0
    assert main(["train", "--quiet", "--resume", str(parts), "--stop-timesteps", "2048"]) == 0

    def rows(run_dir):
        with open(run_dir / "metrics.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k not in timings} for r in csv.DictReader(f)]

    assert rows(parts) == rows(whole)
    with (
        np.load(whole / "checkpoint" / "learner_state.npz") as want,
        np.load(parts / "checkpoint" / "learner_state.npz") as have,
    ):
        for name in want.files:
            np.testing.assert_array_equal(have[name], want[name], err_msg=name)


PIXELS = {**LSTM, "conv_filters": [[8, 3, 2]]}  # one small convolution keeps it cheap


@pytest.mark.parametrize("share", [False, True], ids=["own_value_trunk", "shared_trunk"])
def test_a_pixel_module_replays_what_the_runner_sampled(framework, share):
    fragment, backend, module = _sampled(
        framework, PIXEL_GRID_ID, {**PIXELS, "vf_share_layers": share}
    )
    batch = on_policy_batch([fragment], gamma=0.99, lambda_=0.95, sequence_length=SEQ_LEN)
    assert batch[Columns.OBS].dtype == np.uint8  # scaled inside the module, not before
    ended = batch[Columns.TERMINATEDS] | batch[Columns.TRUNCATEDS]
    assert ended.reshape(-1, SEQ_LEN)[:, :-1].any(), "no episode ended inside a sequence"
    tensors = backend.to_tensors(batch)
    out = module.forward_train(tensors)
    logp = module.action_dist(out[Columns.ACTION_DIST_INPUTS]).logp(tensors[Columns.ACTIONS])
    np.testing.assert_allclose(_numpy(logp), batch[Columns.ACTION_LOGP], atol=1e-5)
    np.testing.assert_allclose(_numpy(out[Columns.VF_PREDS]), batch[Columns.VF_PREDS], atol=1e-5)
    # V-trace's bootstrap values, from the image after each row.
    sequences = fragment.rollout.to_sequences()
    out = module.forward_train(backend.to_tensors(sequences))
    runner_next = np.swapaxes(fragment.rollout.next_values, 0, 1).reshape(-1)
    learner_next = np.where(sequences[Columns.TERMINATEDS], 0.0, _numpy(out[Columns.NEXT_VF_PREDS]))
    np.testing.assert_allclose(learner_next, runner_next, atol=1e-5)


@pytest.mark.parametrize("share", [False, True], ids=["own_value_trunk", "shared_trunk"])
def test_a_pixel_module_puts_the_conv_encoder_before_each_trunk(framework, share):
    pixels = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    spec = ModuleSpec(pixels, TWO_ACTIONS, model_config={**PIXELS, "vf_share_layers": share})
    backend = make_backend(framework)
    weights = backend.get_module_state(backend.build_module(spec, 0))
    assert default_module_layout(spec, framework) == {k: v.shape for k, v in weights.items()}
    convs = {name.split(".")[0] for name in weights if "conv" in name}
    assert convs == ({"conv"} if share else {"conv", "vf_conv"})
    # The state round trip: another module given these weights computes the same.
    other = backend.build_module(spec, 1)
    backend.set_module_state(other, weights, "the test")
    have = backend.get_module_state(other)
    for name, value in weights.items():
        np.testing.assert_array_equal(have[name], value, err_msg=name)
    assert numpy_copy_class(spec).__name__ == "NumpyLSTMActorCritic"
    flattened = ModuleSpec(pixels, TWO_ACTIONS, model_config={**LSTM, "conv_filters": []})
    layout = default_module_layout(flattened, framework)
    assert layout["encoder.0.bias"] == (16,)
    assert not any("conv" in name for name in layout)
