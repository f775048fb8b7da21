"""Device, seeds, mixed precision and CPU threads: the set-up every training or inference
process does the same way."""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator

import numpy as np
import torch

from fertrain.cores import available_cores
from fertrain.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present), `cpu`, `cuda`, `cuda:N` or `mps`; anything else is a ConfigError."""
    if not DEVICE_PATTERN.match(str(name)):
        raise ConfigError(f"--device {name!r}; expected auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: MPS is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device) -> Iterator[None]:
    """`--deterministic`: within the block torch uses the deterministic form of every kernel that has one
    (cuBLAS with a fixed workspace, cuDNN's deterministic convolutions, sorted index and scatter adds, and
    Inductor's fixed reduction configs for what `--compile` compiles), so a run repeats bit for bit on the same
    GPU and software; ops with no such form still run (`warn_only`, unless the caller had made the mode strict
    already). The mode is process-wide: the previous one comes back after the block. CUBLAS_WORKSPACE_CONFIG
    stays set (cuBLAS reads it when it makes a handle)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
        torch.use_deterministic_algorithms(True, warn_only=before[1] if before[0] else True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def autocast_for(device: torch.device, amp: bool, cache: bool = True):
    """bf16 autocast where the device supports it, fp16 on older GPUs, nothing when amp is off
    (`cache`: torch's cache of cast weights within one autocast region)."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(device), cache_enabled=cache)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU work queued so far before reading a clock (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def configure_cpu_threads(workers: int) -> int:
    """Set the main process's intra-op threads deliberately; returns the number.

    torch's default is one thread per core, spinning while it waits at OpenMP barriers. Next
    to `workers` loader processes and other jobs, a small machine is then oversubscribed and
    the spinning threads wait on each other: on a 2-core machine with two busy processes a
    CPU training step ran 9x slower than alone (docs/benchmarks.md#cpu-threads). So:
    - OMP_NUM_THREADS set: the user's number stands;
    - OMP_WAIT_POLICY=PASSIVE (the `fertrain` command sets it before torch loads): idle
      threads sleep instead of spinning, so one thread per core costs little when others
      share the cores;
    - otherwise (spinning threads, e.g. torch imported before fertrain): the cores the loader
      workers leave free, at least one.
    Loader workers run one thread each (torch sets that in DataLoader workers; OpenCV is set to
    one thread before they fork).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    threads = available_cores() if passive else max(1, available_cores() - max(0, workers))
    torch.set_num_threads(threads)
    return threads

