"""Which device a learner trains on, given the GPUs it asked for.

``gpu_device(framework, index, asked=...)`` names GPU ``index`` of this process in the
framework's spelling (torch ``cuda:N``, TensorFlow ``/GPU:N``), or raises a ConfigError that
says how many GPUs the framework sees and how to train on the CPU instead: without that
check torch fails deep inside the first ``.to("cuda")`` ("Torch not compiled with CUDA
enabled") and TensorFlow quietly places everything on the CPU.

``local_device`` is the device of a LearnerGroup's learner in this process
(``num_learners=0``): the first visible GPU when ``num_gpus_per_learner > 0``. A fraction
means the whole GPU there, as in RLlib: fractions tell Ray how to pack learner actors onto
GPUs, and in one process there is nothing to share the GPU with. Ray learners take the GPU
Ray assigned them (``learnerkit._distributed.collectives.accelerator_device``).

The framework is imported only when a GPU is asked for.
"""

from __future__ import annotations

from learnerkit.errors import ConfigError

__all__ = ["gpu_device", "local_device", "visible_gpu_count"]


def visible_gpu_count(framework: str) -> int:
    """How many GPUs ``framework`` sees in this process (after ``CUDA_VISIBLE_DEVICES``)."""
    if framework == "torch":
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def gpu_device(framework: str, index: int, *, asked: float, where: str) -> str:
    """GPU ``index`` as ``framework`` names it, or a ConfigError naming the fix.

    :param asked: the ``num_gpus_per_learner`` that asked for it (for the message).
    :param where: who asked ("the local learner", "learner actor 1"), for the message.
    """
    count = visible_gpu_count(framework)
    if index >= count:
        build = {
            "torch": "a CUDA build of torch (torch.cuda.is_available() is False)",
            "tf": "TensorFlow with GPU support (tf.config.list_physical_devices('GPU') is empty)",
        }[framework]
        sees = f"sees {count} GPU(s)" if count else f"sees no GPU: this needs {build}"
        raise ConfigError(
            f"{where} asked for a GPU (num_gpus_per_learner={asked:g}) but {framework} {sees}; "
            "set num_gpus_per_learner=0 (learnerkit train: --num-gpus-per-learner 0) to train "
            "on the CPU"
        )
    if framework == "tf":
        _grow_tf_memory()
    return f"cuda:{index}" if framework == "torch" else f"/GPU:{index}"


def _grow_tf_memory() -> None:
    """Let TensorFlow take GPU memory as it needs it. By default it reserves nearly all of
    every visible GPU when it starts, so a second learner sharing the GPU
    (``num_gpus_per_learner=0.5``) would find none; torch's allocator grows by itself."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # TensorFlow already started on the GPUs in this process: too late to change


def local_device(framework: str, num_gpus_per_learner: float) -> str | None:
    """The device of a learner in this process: None (the CPU) for 0 GPUs, else the first
    visible GPU (see the module docstring for fractions)."""
    if num_gpus_per_learner <= 0:
        return None
    return gpu_device(framework, 0, asked=num_gpus_per_learner, where="the local learner")
