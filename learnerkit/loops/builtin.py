"""learnerkit's own training loops, declared as any loop package declares its loops, and
registered the same way: by entry points of the group ``learnerkit.training_loops`` in
learnerkit's ``pyproject.toml``. Light: listing plugins imports this module; a loop's code
(``target``) is imported when it trains.
"""

from __future__ import annotations

from learnerkit._columns import Columns
from learnerkit.settings import AsyncSettings, OfflineSettings, OnPolicySettings, ReplaySettings
from learnerkit.training_loops import LoopInfo

__all__ = ["ASYNC", "OFFLINE", "ON_POLICY", "REPLAY"]

ON_POLICY = LoopInfo(
    "on_policy",
    OnPolicySettings,
    "learnerkit.loops._on_policy:OnPolicyLoop",
    "synchronous sampling, GAE, several epochs of minibatches per batch",
    multi_agent=True,
)
ASYNC = LoopInfo(
    "async",
    AsyncSettings,
    "learnerkit.loops._asynchronous:AsyncLoop",
    "continuous sampling, async updates on fragments for off-policy correction",
    multi_agent=True,
    sequences=True,
)
OFFLINE = LoopInfo(
    "offline",
    OfflineSettings,
    "learnerkit.loops._offline:OfflineLoop",
    "epochs over a Minari dataset streamed in chunks, periodic evaluation episodes",
    uses_env_runners=False,
    reads_dataset=True,
)
REPLAY = LoopInfo(
    "replay",
    ReplaySettings,
    "learnerkit.loops._replay:ReplayLoop",
    "continuous sampling into a replay buffer, minibatches drawn at training_intensity",
    # What off-policy acting needs: the actions. Exploration is the module's own
    # (epsilon-greedy, a stochastic policy); no log-probabilities or values are recorded.
    policy_outputs=(Columns.ACTIONS,),
)
