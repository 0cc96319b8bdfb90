"""Declarations that break the loop contract, and a second claim on a loop's name."""

from learnerkit import Hyperparameters, LoopInfo, SamplingSettings

# The entry point names a module-level object that is not a LoopInfo.
not_a_loop = {"name": "not_a_loop"}

# Uses env runners, but its settings have no sampling settings to build them from.
unsampled_settings = LoopInfo(
    "unsampled_settings", Hyperparameters, "learnerkit_broken_loops.code:Loop"
)

# learnerkit-fullbatch declares a loop of this name too.
full_batch = LoopInfo("full_batch", SamplingSettings, "learnerkit_broken_loops.code:Loop")

# Written for a plugin API this learnerkit does not provide.
future_loop = LoopInfo(
    "future_loop", SamplingSettings, "learnerkit_broken_loops.code:Loop", requires_api="~=7.1"
)
