"""The standard batch column names (the strings RLlib uses, so data and habits carry over)
and the module id of single-agent batches.

No numpy here: plugins import these names when ``learnerkit list-plugins`` lists them.
"""

from __future__ import annotations

DEFAULT_MODULE_ID = "default_policy"


class Columns:
    """Names of the standard batch columns (the same strings RLlib uses)."""

    OBS = "obs"
    NEXT_OBS = "new_obs"
    ACTIONS = "actions"
    REWARDS = "rewards"
    TERMINATEDS = "terminateds"
    TRUNCATEDS = "truncateds"
    PREV_ACTIONS = "prev_actions"
    PREV_REWARDS = "prev_rewards"
    EPS_ID = "eps_id"
    AGENT_INDEX = "agent_index"
    T = "t"
    VF_PREDS = "vf_preds"
    ACTION_DIST_INPUTS = "action_dist_inputs"
    ACTION_LOGP = "action_logp"
    ADVANTAGES = "advantages"
    VALUE_TARGETS = "value_targets"
    # Value of the observation after the last step of a rollout fragment, per step; used by
    # algorithms (IMPALA, APPO) that compute their targets inside the loss.
    VALUES_BOOTSTRAPPED = "values_bootstrapped"
    # Recurrent modules (docs/guides/recurrent.md). The state a module's step started from,
    # one flat vector per row, recorded by the env runner; a forward pass over sequences
    # reads it at each sequence's first row only.
    STATE_IN = "state_in"
    # The state a module's step ends in (what an acting step returns, never a batch column).
    STATE_OUT = "state_out"
    # In a recurrent module's forward_train output: V of each row's ``new_obs`` computed
    # with the state that row's step ended in (a recurrent ``value(obs)`` cannot know it).
    NEXT_VF_PREDS = "next_vf_preds"


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
