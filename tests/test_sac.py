"""SAC (issue 20): its three optimizers keep to their own losses bit for bit, the squashed
Gaussian's log-probabilities, the numpy copy runners act with, the polyak target per
gradient step, and its settings."""

from __future__ import annotations

import math

import attrs
import gymnasium as gym
import numpy as np
import pytest

from learnerkit import (
    OPTIMIZER_LOSSES,
    ConfigError,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    SampleBatch,
    ScalingConfig,
    get_algorithm,
)
from learnerkit.rollouts.acting import numpy_copy_class

MID = "default_policy"
OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACTIONS = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))


def hps(**overrides):
    return get_algorithm("sac").hyperparameters(**overrides)


def replay_batch(n: int, seed: int = 0) -> SampleBatch:
    rng = np.random.default_rng(seed)
    return SampleBatch(
        {
            "obs": rng.normal(size=(n, 3)).astype(np.float32),
            "new_obs": rng.normal(size=(n, 3)).astype(np.float32),
            "actions": rng.uniform(ACTIONS.low, ACTIONS.high, (n, 2)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "terminateds": np.zeros(n, bool),
            "discounts": np.full(n, 0.99, np.float32),
            "weights": np.ones(n, np.float32),
        }
    )


def zeroing(name: str) -> type[Learner]:
    """SAC's Learner with one of its three losses times 0 (its optimizer's gradient 0)."""

    class Zeroed(Learner):
        def compute_loss_for_module(self, **kwargs):
            out = super().compute_loss_for_module(**kwargs)
            losses = dict(out[OPTIMIZER_LOSSES])
            losses[name] = losses[name] * 0.0
            return {**out, OPTIMIZER_LOSSES: losses}

    return Zeroed


def one_step(framework: str, learner_class: type[Learner] = Learner) -> tuple[dict, dict]:
    """SAC's weights before and after one gradient step on a fixed batch."""
    spec = LearnerSpec(
        algorithm="sac",
        framework=framework,
        module_spec=ModuleSpec(OBS, ACTIONS, model_config={"hiddens": (16, 16)}),
        hyperparameters=hps(),
    )
    built = learner_class(spec)
    built.build()  # the loss draws from the learner's generator: each build draws alike
    before = built.get_module_state()[MID]
    built.update(replay_batch(64))  # one step: a second would see the other losses' moves
    return before, built.get_module_state()[MID]


def part(state: dict, prefix: str) -> dict:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.slow)])
def test_the_actor_loss_never_moves_the_critics_nor_the_critic_loss_the_actor(framework):
    before, full = one_step(framework)
    _, no_actor = one_step(framework, zeroing("actor"))
    _, no_critic = one_step(framework, zeroing("critic"))
    for prefix in ("qf.", "qf_twin.", "log_alpha"):  # with or without the actor's loss
        for name, value in part(full, prefix).items():
            np.testing.assert_array_equal(value, no_actor[name], err_msg=name)
    for prefix in ("pi.", "log_alpha"):  # with or without the critics' loss
        for name, value in part(full, prefix).items():
            np.testing.assert_array_equal(value, no_critic[name], err_msg=name)
    for prefix in ("pi.", "qf.", "qf_twin.", "log_alpha"):  # every loss moves its own
        name = next(iter(part(full, prefix)))
        assert not np.array_equal(full[name], before[name]), name
    for name, value in part(no_actor, "pi.").items():  # a zero gradient leaves Adam still
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("framework", ["torch", pytest.param("tf", marks=pytest.mark.slow)])
def test_a_learner_set_to_a_state_takes_the_same_next_step(framework):
    """The loss's actions are drawn from the learner's generator, which the state holds."""
    spec = LearnerSpec(
        algorithm="sac",
        framework=framework,
        module_spec=ModuleSpec(OBS, ACTIONS, model_config={"hiddens": (16,)}),
        hyperparameters=hps(),
    )
    original, resumed = Learner(spec), Learner(spec)
    original.build()
    resumed.build()
    original.update(replay_batch(32))
    resumed.set_state(original.get_state())
    original.update(replay_batch(32, seed=1))
    resumed.update(replay_batch(32, seed=1))
    for name, value in original.get_module_state()[MID].items():
        np.testing.assert_array_equal(resumed.get_module_state()[MID][name], value, err_msg=name)


@pytest.mark.ray
def test_two_ray_learners_stay_bitwise_identical_and_step_as_one_learner():
    """Each optimizer's own loss on 2 torch Ray learners: each learner trains on its
    half of the batch, and the gradients are averaged after the three backward passes. Both
    halves hold the same rows and the learners' loss generators are seeded alike, so they
    draw the same actions: the averaged gradients are those of one learner on those rows,
    with the group's state (its generator included), and so are the weights after."""
    spec = LearnerSpec(
        algorithm="sac",
        module_spec=ModuleSpec(OBS, ACTIONS, model_config={"hiddens": (16,)}),
        hyperparameters=hps(),
        scaling=ScalingConfig(num_learners=2, num_cpus_per_learner=0.5),
    )
    half = replay_batch(32)
    with LearnerGroup(spec) as group:
        single = Learner(attrs.evolve(spec, scaling=ScalingConfig()))
        single.build()
        single.set_state(group.get_state())
        before = single.get_module_state()[MID]
        group.update(SampleBatch({k: np.concatenate([v, v]) for k, v in half.items()}))
        first, second = group.foreach_learner(lambda learner: learner.get_module_state()[MID])
    single.update(half)
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value, err_msg=name)
        np.testing.assert_allclose(value, single.get_module_state()[MID][name], atol=1e-6)
    for prefix in ("pi.", "qf.", "qf_twin.", "log_alpha"):  # each optimizer stepped
        name = next(iter(part(first, prefix)))
        assert not np.array_equal(first[name], before[name]), name


def test_log_probabilities_are_the_tanh_squashed_gaussians():
    import torch
    from learnerkit_sac.torch_sac import TorchSACModule

    torch.manual_seed(0)
    module = TorchSACModule(OBS, ACTIONS, {"hiddens": (8,)})
    obs = torch.randn(32, 3)
    mean, log_std = module.mean_log_std(obs)
    u, logp = module.sample(mean, log_std, torch.Generator().manual_seed(1))
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        torch.distributions.TanhTransform(cache_size=1),
    )
    x = mean + log_std.exp() * noise
    reference = dist.log_prob(torch.tanh(x)).sum(-1)
    torch.testing.assert_close(u, torch.tanh(x))
    torch.testing.assert_close(logp, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_runners_numpy_copy_acts_as_the_module_does(framework):
    from learnerkit_sac.sac_module import NumpySACPolicy

    spec = LearnerSpec(algorithm="sac", framework=framework, module_spec=ModuleSpec(OBS, ACTIONS))
    learner = Learner(spec)
    learner.build()
    module = learner.module[MID]
    assert numpy_copy_class(spec.module_specs[MID]) is NumpySACPolicy  # what runners act with
    copy = NumpySACPolicy.from_weights(
        learner.get_module_state()[MID],
        spec.module_specs[MID],
        framework,
        np.random.default_rng(0),
    )
    obs = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    mean = learner.backend.numpy_call(module.forward_inference, obs)["actions"]
    np.testing.assert_allclose(copy.forward_inference(obs)["actions"], mean, atol=1e-5)
    sampled = copy.forward_exploration(np.repeat(obs[:1], 4000, 0))["actions"]
    assert sampled.shape == (4000, 2)
    assert np.all(sampled >= ACTIONS.low) and np.all(sampled <= ACTIONS.high)
    assert sampled.std(0).min() > 0.05  # a sample, not the mean


def test_the_target_critics_move_by_tau_per_gradient_step():
    learner = Learner(
        LearnerSpec(
            algorithm="sac",
            framework="torch",
            module_spec=ModuleSpec(OBS, ACTIONS, model_config={"hiddens": (8,)}),
            hyperparameters=hps(tau=0.1),
        )
    )
    learner.build()
    learner.update(replay_batch(64), minibatch_size=16)  # 4 gradient steps
    target = learner.backend.get_module_state(learner.target_module(MID))["qf.0.weight"]
    online = learner.get_module_state()[MID]["qf.0.weight"]
    learner.additional_update(timestep=64, num_gradient_steps=4)
    moved = learner.backend.get_module_state(learner.target_module(MID))["qf.0.weight"]
    fraction = 1 - 0.9**4
    np.testing.assert_allclose(moved, target + fraction * (online - target), rtol=1e-5, atol=1e-7)
    learner.additional_update(timestep=64, num_gradient_steps=4)  # no step since: no move
    assert learner.num_target_updates(MID) == 1


def test_settings_are_checked():
    assert hps().target_entropy_for(6) == -6.0
    assert hps(target_entropy=-2).target_entropy_for(6) == -2.0
    with pytest.raises(ConfigError, match="target_entropy must be 'auto' or a number"):
        hps(target_entropy="high")
    with pytest.raises(ConfigError, match=r"tau must be in \(0, 1\]"):
        hps(tau=0.0)
    learner = Learner(
        LearnerSpec(
            algorithm="sac", framework="torch", module_spec=ModuleSpec(OBS, gym.spaces.Discrete(3))
        )
    )
    with pytest.raises(ConfigError, match="SAC needs a Box action space"):
        learner.build()
    assert math.isclose(get_algorithm("sac").hyperparameters().tau, 0.005)
