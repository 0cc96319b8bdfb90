"""The standard batch column names (the strings RLlib uses, so data and habits carry over)
and the module id of single-agent batches.

No numpy here: plugins import these names when ``learnerkit list-plugins`` lists them.
"""

from __future__ import annotations

import warnings
from typing import Any

from learnerkit.errors import LearnerkitDeprecationWarning

DEFAULT_MODULE_ID = "default_policy"

# Names no loop ever supplied: found with a warning until 0.3 (issue 25).
DEPRECATED_COLUMNS = {
    "VALUES_BOOTSTRAPPED": (
        "values_bootstrapped",
        "Columns.VALUES_BOOTSTRAPPED is deprecated and goes in 0.3: no training loop supplies "
        "it; the async loop gives Columns.NEXT_OBS, and a loss computes its bootstrap values "
        "with module.value(batch[Columns.NEXT_OBS])",
    ),
}


class _WarnsOnDeprecatedNames(type):
    def __getattr__(cls, name: str) -> Any:
        if name in DEPRECATED_COLUMNS:
            value, message = DEPRECATED_COLUMNS[name]
            warnings.warn(message, LearnerkitDeprecationWarning, stacklevel=2)
            return value
        raise AttributeError(f"type object 'Columns' has no attribute {name!r}")


class Columns(metaclass=_WarnsOnDeprecatedNames):
    """Names of the standard batch columns (the same strings RLlib uses).

    Which of them a batch holds is the training loop's to say (the "Training loops" page);
    an algorithm lists the ones its loss reads in ``Algorithm(required_columns=...)``.
    """

    OBS = "obs"
    """The observation each step acted on; every loop supplies it."""
    NEXT_OBS = "new_obs"
    """The observation each step reached: the episode's final observation where it ended
    (terminated or truncated). Supplied by the async, offline and replay loops."""
    ACTIONS = "actions"
    """The action taken (int64 for Discrete spaces, float32 for Box); every loop."""
    REWARDS = "rewards"
    """The reward of the step (float32); the replay loop's rows hold the n-step return."""
    TERMINATEDS = "terminateds"
    """True where the episode terminated at this step (nothing to bootstrap after it)."""
    TRUNCATEDS = "truncateds"
    """True where the episode was cut at this step (a time limit, an abandoned episode):
    the value of ``NEXT_OBS`` still counts."""
    PREV_ACTIONS = "prev_actions"
    """The action taken at the step before (zero at an episode's first step): recorded for a
    recurrent module (on-policy and async loops, ``use_lstm``)."""
    PREV_REWARDS = "prev_rewards"
    """The reward of the step before (zero at an episode's first step): recorded for a
    recurrent module (on-policy and async loops, ``use_lstm``)."""
    EPS_ID = "eps_id"
    """The episode a row belongs to (int64): multi-agent batches only."""
    AGENT_INDEX = "agent_index"
    """The agent a row belongs to, as its index in the env's agents (int64): multi-agent
    batches only."""
    T = "t"
    """The step's index within its episode (int64): multi-agent batches only."""
    VF_PREDS = "vf_preds"
    """The value the behaviour policy predicted for ``OBS`` while sampling (on-policy and
    async loops); also the key of the values in a module's ``forward_train`` output."""
    ACTION_DIST_INPUTS = "action_dist_inputs"
    """The behaviour policy's distribution inputs (logits, or means and log-stds) while
    sampling; also the key of the current ones in ``forward_train``'s output."""
    ACTION_LOGP = "action_logp"
    """The behaviour policy's log-probability of the action taken (on-policy and async
    loops): importance ratios are ``exp(logp_now - ACTION_LOGP)``."""
    ADVANTAGES = "advantages"
    """GAE advantages (on-policy loop; ``learnerkit.rollouts.gae``)."""
    VALUE_TARGETS = "value_targets"
    """GAE value targets, ``advantages + vf_preds`` (on-policy loop)."""
    STATE_IN = "state_in"
    """A recurrent module's state at the start of the step, one flat vector per row (the
    default LSTM module's: ``[h, c]`` of each trunk), recorded by env runners; a forward pass
    over whole sequences reads it at each sequence's first row (docs/guides/recurrent.md)."""
    STATE_OUT = "state_out"
    """The state a recurrent module's acting step ends in: in the step's outputs, never a
    batch column."""
    LOSS_MASK = "loss_mask"
    """1.0 for the rows a loss counts, 0.0 for those it must leave out (float32): the padding
    the on-policy loop adds to PettingZoo agents' segments for a recurrent module, and, by
    ``Learner.update``, the first steps of each sequence of a module with burn-in
    (``lstm_burn_in``), which only warm up the state (docs/guides/recurrent.md). A loss
    reading it takes masked means (``learnerkit.loss_mask``); RLlib's name."""
    NEXT_VF_PREDS = "next_vf_preds"
    """In a recurrent module's ``forward_train`` output: V of each row's ``NEXT_OBS`` from
    the state the row's step ended in (a recurrent ``value(obs)`` cannot know it)."""


ACTOR_CRITIC_OUTPUTS = (
    Columns.ACTIONS,
    Columns.ACTION_LOGP,
    Columns.VF_PREDS,
    Columns.ACTION_DIST_INPUTS,
)
"""What an actor-critic policy returns for each observation while sampling (the on-policy
and asynchronous loops' ``LoopInfo.policy_outputs``); a loop may ask for less."""

RECURRENT_INPUTS = (Columns.STATE_IN, Columns.PREV_ACTIONS, Columns.PREV_REWARDS)
"""What an env runner records per row for a recurrent module, besides the policy outputs:
the state the step started from, and the previous action and reward (zero at an episode's
first step)."""
