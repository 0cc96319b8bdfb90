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


ACTOR_CRITIC_OUTPUTS = (
    Columns.ACTIONS,
    Columns.ACTION_LOGP,
    Columns.VF_PREDS,
    Columns.ACTION_DIST_INPUTS,
)
"""What an actor-critic policy returns for each observation while sampling (the on-policy
and asynchronous loops' ``LoopInfo.policy_outputs``); a loop may ask for less."""
