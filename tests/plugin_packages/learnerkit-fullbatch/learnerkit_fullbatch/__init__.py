"""The declaration of the "full_batch" loop: light, as listing plugins imports it."""

import attrs

from learnerkit import LoopInfo, SamplingSettings
from learnerkit.fields import in_unit_interval, positive_int


@attrs.frozen(kw_only=True)
class FullBatchSettings(SamplingSettings):
    """What the loop reads, besides where and how much to sample."""

    lambda_: float = attrs.field(default=1.0, converter=float, validator=in_unit_interval)
    """GAE's lambda for the batch's advantages (1: Monte-Carlo returns minus values)."""
    num_updates: int = attrs.field(default=4, validator=positive_int)
    """Gradient steps on each sampled batch, each on the whole batch."""


full_batch = LoopInfo(
    "full_batch",
    FullBatchSettings,
    "learnerkit_fullbatch.loop:FullBatchLoop",
    "sample a batch, take num_updates full-batch gradient steps on it",
)
