"""The contract kit (``learnerkit.testing``) finds what it promises to find: plugins that
break the contract in one way each fail the check that covers it, with a message naming the
problem and the fix (the built-in plugins passing it: ``test_builtin_plugins_contract.py``).
torch only: the kit's framework handling is the Learner's."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import bc_loss, make_plugin

from learnerkit import Columns, OnPolicySettings
from learnerkit.loss_mask import loss_mask, masked_mean
from learnerkit.testing import (
    EPISODE_LENGTH,
    TWO_STATE_ENV_ID,
    Subject,
    check_bad_batches,
    check_hooks,
    check_loss_and_gradients,
    check_loss_mask,
    check_registers,
    check_state_round_trip,
    register_two_state_env,
    run_contract,
)


def run_of(register, tmp_path, allow_no_gradient=(), reads_loss_mask=False, **hooks):
    columns = (Columns.OBS, Columns.ACTIONS)
    register(
        make_plugin("planted", required_columns=columns, reads_loss_mask=reads_loss_mask, **hooks)
    )
    subject = Subject(algorithm="planted", allow_no_gradient=allow_no_gradient)
    return subject, run_contract(subject, "torch", tmp_path / "state")


def test_a_plugin_that_keeps_the_contract_passes_every_check(register, tmp_path):
    subject, run = run_of(register, tmp_path, allow_no_gradient=("vf.*",), compute_loss=bc_loss)
    check_registers(subject)
    check_hooks(run)
    check_loss_and_gradients(run)
    check_state_round_trip(run)
    check_bad_batches(subject, "torch", learner=run.learner)


def test_a_loss_that_leaves_parameters_without_a_gradient_is_named(register, tmp_path):
    _, run = run_of(register, tmp_path, compute_loss=bc_loss)  # the value tower untrained
    with pytest.raises(AssertionError, match=r"left \['vf\.0\.bias'.*allow_no_gradient"):
        check_loss_and_gradients(run)


def test_a_hook_returning_the_wrong_type_is_named(register, tmp_path):
    def compile_results(metrics):
        return list(metrics)

    _, run = run_of(register, tmp_path, compute_loss=bc_loss, compile_results=compile_results)
    with pytest.raises(AssertionError, match=r"compile_results .* expected a mapping or None"):
        check_hooks(run)


def test_a_loss_reading_an_undeclared_column_is_told_to_declare_it(register, tmp_path):
    def compute_loss(batch, fwd_out, ops):
        loss = ops.mean(fwd_out[Columns.VF_PREDS] * batch[Columns.ADVANTAGES])
        return {"total_loss": loss}

    subject, run = run_of(register, tmp_path, compute_loss=compute_loss)
    with pytest.raises(AssertionError, match=r"without 'advantages' raised KeyError.*required_col"):
        check_bad_batches(subject, "torch", learner=run.learner)


def test_an_error_while_training_fails_each_check_with_it(register, tmp_path):
    def compute_loss(fwd_out):
        raise RuntimeError("the loss is broken")

    _, run = run_of(register, tmp_path, compute_loss=compute_loss)
    for check in (check_hooks, check_loss_and_gradients, check_state_round_trip):
        with pytest.raises(AssertionError, match=r"planted .torch.: .*the loss is broken"):
            check(run)


def masked_bc_loss(module, batch, fwd_out, ops):
    """Behaviour cloning over the rows the loss mask keeps."""
    dist = module.action_dist(fwd_out[Columns.ACTION_DIST_INPUTS])
    loss = -masked_mean(dist.logp(batch[Columns.ACTIONS]), loss_mask(batch), ops)
    return {"total_loss": loss, "policy_loss": loss}


def test_a_loss_that_reads_the_mask_passes_the_mask_check(register, tmp_path):
    _, run = run_of(register, tmp_path, reads_loss_mask=True, compute_loss=masked_bc_loss)
    check_loss_mask(run)


def test_a_loss_declaring_the_mask_but_ignoring_it_is_named(register, tmp_path):
    _, run = run_of(register, tmp_path, reads_loss_mask=True, compute_loss=bc_loss)
    with pytest.raises(AssertionError, match=r"rows whose loss_mask is 0 changed.*masked_mean"):
        check_loss_mask(run)


def test_the_mask_check_says_when_it_cannot_tell(register, tmp_path):
    def logits_only(module, batch, fwd_out, ops):  # reads no column the check changes
        loss = ops.mean(ops.square(fwd_out[Columns.ACTION_DIST_INPUTS]))
        return {"total_loss": loss, "policy_loss": loss}

    _, run = run_of(register, tmp_path, reads_loss_mask=True, compute_loss=logits_only)
    with pytest.raises(AssertionError, match="cannot tell whether the loss reads the mask"):
        check_loss_mask(run)


def test_the_two_state_task_rewards_matching_the_state():
    env = gym.make(register_two_state_env())
    assert env.spec.id == TWO_STATE_ENV_ID
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(int(np.argmax(obs)))
        total, done = total + reward, terminated or truncated
    assert total == EPISODE_LENGTH


def test_a_contract_subject_builds_hyperparameters_with_its_overrides(register):
    register(make_plugin("tuned", compute_loss=bc_loss, hyperparameters=OnPolicySettings))
    subject = Subject(algorithm="tuned", hyperparameters={"minibatch_size": 32})
    assert subject.hps().minibatch_size == 32 and subject.batch().count == subject.rows
