"""Multi-agent replay: one buffer per module, made on demand, because modules learn apart
and may be added while training runs."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

import numpy as np

from learnerkit._batch import MultiAgentBatch
from learnerkit.errors import ConfigError
from learnerkit.replay._buffers import PrioritizedReplayBuffer, UniformReplayBuffer

__all__ = ["MultiAgentReplayBuffer"]

ReplayBuffer = UniformReplayBuffer | PrioritizedReplayBuffer


class MultiAgentReplayBuffer(Mapping[str, ReplayBuffer]):
    """Buffers by module id; ``make_buffer(module_id)`` builds one the first time a module's
    rows are added (or restored). A stream is one agent's steps in one env, e.g.
    ``(runner_index, env_index, agent_id)``."""

    def __init__(self, make_buffer: Callable[[str], ReplayBuffer]) -> None:
        self._make = make_buffer
        self._buffers: dict[str, ReplayBuffer] = {}

    def __getitem__(self, module_id: str) -> ReplayBuffer:
        return self._buffers[module_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._buffers)

    def __len__(self) -> int:
        return len(self._buffers)

    def buffer(self, module_id: str) -> ReplayBuffer:
        """The module's buffer, made now if it has none."""
        if module_id not in self._buffers:
            self._buffers[module_id] = self._make(module_id)
        return self._buffers[module_id]

    def add(self, module_id: str, columns: Mapping[str, Any], *, stream: Hashable) -> None:
        """Add one stream's next ``[T, ...]`` steps to the module's buffer (see
        ``UniformReplayBuffer.add``)."""
        self.buffer(module_id).add(columns, stream=stream)

    def remove(self, module_id: str) -> None:
        """Drop a module's buffer (the module was removed)."""
        self._buffers.pop(module_id, None)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())

    def sample(
        self, batch_size: int, rng: np.random.Generator, *, beta: float | None = None
    ) -> MultiAgentBatch:
        """``batch_size`` rows from each module's buffer that has sampleable rows, modules
        in sorted order (reproducible). ``beta`` is for the prioritized buffers (required
        when there are any) and not passed to uniform ones."""
        batches = {}
        for module_id in sorted(self._buffers):
            buffer = self._buffers[module_id]
            if len(buffer) == 0:
                continue
            if isinstance(buffer, PrioritizedReplayBuffer):
                if beta is None:
                    raise ConfigError(
                        f"module {module_id!r} has a prioritized buffer: pass sample(..., "
                        "beta=...) (annealed from about 0.4 to 1)"
                    )
                batches[module_id] = buffer.sample(batch_size, rng, beta=beta)
            else:
                batches[module_id] = buffer.sample(batch_size, rng)
        return MultiAgentBatch(batches)

    def get_state(self) -> dict[str, Any]:
        return {"modules": {mid: b.get_state() for mid, b in self._buffers.items()}}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._buffers = {}
        for module_id, module_state in state["modules"].items():
            self.buffer(module_id).set_state(module_state)
