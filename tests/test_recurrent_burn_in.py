"""Burn-in (``model_config["lstm_burn_in"]``): the first steps of each training sequence only
warm the recorded state up. PPO, IMPALA and APPO train exactly as if those rows held
anything else (they count in no loss or statistic, ``Columns.LOSS_MASK``), while the same
change counts without burn-in; no gradient flows back through them; bad settings and an
algorithm whose loss ignores the mask are refused with the fix; PPO with burn-in still
learns the memory task."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch
from memory_task import MEMORY, PPO_MEMORY_SETTINGS, SMALL_LSTM

from learnerkit import (
    BatchError,
    Columns,
    ConfigError,
    Learner,
    LearnerSpec,
    ModuleSpec,
    SampleBatch,
    get_algorithm,
)
from learnerkit.backends import make_backend
from learnerkit.loops import TrainConfig, train
from learnerkit.loops.contract import EnvRunnerSpec, on_policy_batch, probe_spaces
from learnerkit.model_config import resolve_model_config
from learnerkit.rollouts import make_sampler

ENV = "learnerkit/StatelessCartPole-v1"
SEQ, BURN_IN = 8, 3
FRAGMENT = 2 * SEQ
LSTM = {"use_lstm": True, "lstm_cell_size": 8, "max_seq_len": SEQ, "hiddens": [8]}


def _fragment():
    """A fragment sampled by a recurrent module (the torch one's weights)."""
    framework = "torch"
    obs_space, action_space = probe_spaces(ENV)
    module_spec = ModuleSpec(obs_space, action_space, model_config=LSTM)
    runner = EnvRunnerSpec(
        env_id=ENV,
        framework=framework,
        module_spec=module_spec,
        num_envs=3,
        rollout_fragment_length=FRAGMENT,
    )
    backend = make_backend(framework)
    sampler = make_sampler(runner, 0)
    module = backend.build_module(module_spec, 1)
    sampler.set_weights({"default_policy": backend.get_module_state(module)}, 1)
    fragment = sampler.sample(0)
    sampler.close()
    return fragment


def _train_once(algorithm, framework, batch, burn_in):
    """One full-batch step from the same start; its statistics and the weights after."""
    settings = {
        "ppo": {"num_envs_per_env_runner": 3, "minibatch_size": 3 * FRAGMENT},
        "impala": {"minibatch_size": None},
        "appo": {"minibatch_size": None},
    }
    hps = get_algorithm(algorithm).hyperparameters(
        seed=0, rollout_fragment_length=FRAGMENT, **settings.get(algorithm, {})
    )
    spec = LearnerSpec(
        algorithm=algorithm,
        framework=framework,
        module_spec=ModuleSpec(*probe_spaces(ENV), model_config={**LSTM, "lstm_burn_in": burn_in}),
        hyperparameters=hps,
    )
    learner = Learner(spec)
    learner.build()
    seq_len = SEQ if algorithm == "ppo" else FRAGMENT
    results = learner.update(batch, sequence_length=seq_len, shuffle=False)
    return results["default_policy"], learner.get_module_state()["default_policy"]


def _with_other_burnt_in_rows(batch, rows):
    """``batch`` with other actions, behaviour outputs and targets at ``rows``."""
    changed = dict(batch)
    changed[Columns.ACTIONS] = batch[Columns.ACTIONS].copy()
    changed[Columns.ACTIONS][rows] = 1 - batch[Columns.ACTIONS][rows]
    for column, shift in (
        (Columns.ACTION_LOGP, -1.0),
        (Columns.ACTION_DIST_INPUTS, 2.0),
        (Columns.VF_PREDS, 3.0),
        (Columns.ADVANTAGES, 5.0),
        (Columns.VALUE_TARGETS, 5.0),
    ):
        if column in batch:
            changed[column] = batch[column].copy()
            changed[column][rows] += shift
    return changed


# The losses are framework-neutral (ops); TensorFlow's own part, the module's, is below.
@pytest.mark.parametrize("algorithm", ["ppo", "impala", "appo"])
def test_burnt_in_rows_count_in_no_loss_or_statistic(algorithm):
    framework = "torch"
    fragment = _fragment()
    if algorithm == "ppo":  # sequences of SEQ: every sequence's first steps
        batch = on_policy_batch([fragment], gamma=0.99, lambda_=0.95, sequence_length=SEQ)
        burnt_in = np.arange(batch.count) % SEQ < BURN_IN
    else:
        # Whole fragments, V-trace along each: the burnt-in steps of a later sequence are
        # real steps whose importance weights reach the targets before them, so change only
        # those at a fragment's start, which nothing before them reads.
        batch = fragment.rollout.to_sequences()
        burnt_in = np.arange(batch.count) % FRAGMENT < BURN_IN
    changed = _with_other_burnt_in_rows(batch, burnt_in)
    stats, weights = _train_once(algorithm, framework, batch, BURN_IN)
    stats_changed, weights_changed = _train_once(algorithm, framework, changed, BURN_IN)
    for key in ("total_loss", "policy_loss", "vf_loss", "entropy", "vf_explained_var"):
        assert stats_changed[key] == pytest.approx(stats[key], rel=1e-5, abs=1e-6), key
    for name, value in weights.items():
        np.testing.assert_allclose(weights_changed[name], value, rtol=1e-5, atol=1e-6)
    # Without burn-in the same change is trained on.
    plain, _ = _train_once(algorithm, framework, batch, 0)
    plain_changed, _ = _train_once(algorithm, framework, changed, 0)
    assert plain_changed["policy_loss"] != pytest.approx(plain["policy_loss"], abs=1e-6)


def _obs_gradient(framework, burn_in):
    """The gradient of the trained rows' outputs with respect to each row's observation."""
    fragment = _fragment()
    batch = on_policy_batch([fragment], gamma=0.99, lambda_=0.95, sequence_length=SEQ)
    spec = ModuleSpec(*probe_spaces(ENV), model_config={**LSTM, "lstm_burn_in": burn_in})
    backend = make_backend(framework)
    module = backend.build_module(spec, 0)
    tensors = backend.to_tensors(batch)
    trained = np.arange(batch.count) % SEQ >= BURN_IN
    if framework == "torch":
        import torch

        obs = tensors[Columns.OBS].clone().requires_grad_(True)
        out = module.forward_train({**tensors, Columns.OBS: obs})
        keep = torch.as_tensor(trained, dtype=torch.float32)
        (
            out[Columns.ACTION_DIST_INPUTS].sum(-1) * keep + out[Columns.VF_PREDS] * keep
        ).sum().backward()
        return obs.grad.abs().sum(-1).numpy()
    import tensorflow as tf

    obs = tf.Variable(tensors[Columns.OBS])
    with tf.GradientTape() as tape:
        out = module.forward_train({**tensors, Columns.OBS: obs})
        keep = tf.constant(trained, tf.float32)
        total = tf.reduce_sum(tf.reduce_sum(out[Columns.ACTION_DIST_INPUTS], -1) * keep)
        total += tf.reduce_sum(out[Columns.VF_PREDS] * keep)
    return tf.reduce_sum(tf.abs(tape.gradient(total, obs)), -1).numpy()


def test_no_gradient_flows_back_through_the_warm_up(framework):
    burnt_in = np.arange(3 * FRAGMENT) % SEQ < BURN_IN
    assert np.all(_obs_gradient(framework, BURN_IN)[burnt_in] == 0.0)
    assert np.all(_obs_gradient(framework, 0)[burnt_in] > 0.0)  # without burn-in it does


def test_burn_in_settings_are_checked():
    with pytest.raises(ConfigError, match=r"smaller than max_seq_len"):
        resolve_model_config({**LSTM, "lstm_burn_in": SEQ})
    with pytest.raises(ConfigError, match=r"use_lstm is False"):
        resolve_model_config({"lstm_burn_in": 2})
    with pytest.raises(ConfigError, match=r"int >= 0"):
        resolve_model_config({**LSTM, "lstm_burn_in": -1})
    assert resolve_model_config({**LSTM, "lstm_burn_in": SEQ - 1})["lstm_burn_in"] == SEQ - 1


def test_an_algorithm_whose_loss_ignores_the_mask_is_refused(register):
    register(make_plugin("maskless", compute_loss=bc_loss))
    spec = LearnerSpec(
        algorithm="maskless",
        module_spec=ModuleSpec(*probe_spaces(ENV), model_config={**LSTM, "lstm_burn_in": 2}),
    )
    with pytest.raises(ConfigError, match=r"reads_loss_mask=True.*set lstm_burn_in=0"):
        Learner(spec).build()


def test_a_masked_batch_is_refused_for_an_algorithm_whose_loss_ignores_the_mask(register):
    register(make_plugin("maskless", compute_loss=bc_loss))
    learner = Learner(
        LearnerSpec(algorithm="maskless", module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS))
    )
    learner.build()
    batch = random_batch(8)
    masked = SampleBatch({**batch, Columns.LOSS_MASK: np.ones(8, np.float32)})
    learner.update(batch)
    with pytest.raises(BatchError, match=r"'loss_mask'.*reads_loss_mask=True"):
        learner.update(masked)


@pytest.mark.slow  # a training run
def test_ppo_with_burn_in_repeats_what_it_saw(tmp_path):
    summary = train(
        TrainConfig(
            algorithm="ppo",
            env_id=MEMORY,
            seed=0,
            out_dir=str(tmp_path),
            stop_reward=17.0,
            stop_timesteps=12_000,
            overrides=PPO_MEMORY_SETTINGS,
            model_config={**SMALL_LSTM, "lstm_burn_in": 4},
        )
    )
    assert summary.reached_stop_reward, summary.episode_return_mean
