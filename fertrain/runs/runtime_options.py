"""The run options that say where, how fast or how often a run runs: changing one never changes what
the run computes (the same maths and random draws). Shared by the two places that must tell such
options from the experiment's own: a resume, which allows them to change (`engine.resume`), and
`fertrain runs compare --seeds`, which folds runs differing only in them and the seed (`runs.compare`)."""

from __future__ import annotations

RUNTIME_OPTIONS = frozenset({
    "device", "workers", "compile", "fused_augment", "data_on_device",  # where and how fast
    "cuda_graph",  # the same step captured or not (same draws; LRs read as float32 tensors when captured)
    "deterministic",  # the same maths in kernels whose sums run in a fixed order
    "output_root", "output_dir", "log", "skip_onnx",  # where it writes
    "resume", "force", "recover_stale_lock",  # how this invocation starts
    "eval_every", "checkpoint_every_steps", "checkpoint_hist",  # cadence
})  # fmt: skip

__all__ = ["RUNTIME_OPTIONS"]
