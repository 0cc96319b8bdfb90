"""The child interpreter that writes a run's TensorBoard events: ``python _output_child.py
TENSORBOARD_DIR``, reading JSON lines ``{"scalars": [STEP, {NAME: VALUE, ...}]}`` from
stdin (one metrics row each, never answered) until stdin closes.

Started by ``RunOutput`` with the run, so that the training process imports neither
tensorboardX nor protobuf (~5 MB) and spends no time building TensorBoard records (~65 us
a scalar, a few hundred a row): the child does it alongside, usually on a core the training
process leaves idle. It holds nothing else (~32 MiB): the learning curve is drawn by the
training process at the end, once this child has exited (``_learning_curve``).
"""

from __future__ import annotations

import json
import sys


def serve(tensorboard_dir: str) -> None:
    # tensorboardX imports torch if it can (for tensor arguments; this child gets floats):
    # ~0.75 s of CPU and ~200 MB, beside a training process starting up on the other core.
    # A None entry in sys.modules makes `import torch` fail, which tensorboardX allows for.
    sys.modules.setdefault("torch", None)
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(tensorboard_dir)
    try:
        for line in sys.stdin:
            step, values = json.loads(line)["scalars"]
            for name, value in values.items():
                writer.add_scalar(name, value, step)
    finally:
        writer.close()


if __name__ == "__main__":
    serve(sys.argv[1])
