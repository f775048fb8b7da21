"""The cores this process may run on and how its OpenMP threads wait, without importing torch (serving an ONNX
model never loads it)."""

from __future__ import annotations

import os
import sys


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def let_idle_openmp_threads_sleep() -> None:
    """Ask OpenMP to put idle threads to sleep (OMP_WAIT_POLICY=PASSIVE) instead of spinning at barriers,
    unless the user set a policy. OpenMP reads it when torch loads, so it does nothing once torch is
    imported. With spinning threads, processes sharing a small machine wait on each other (a CPU
    training step ran 9x slower, docs/benchmarks.md#cpu-threads; engine.device.configure_cpu_threads)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
