"""Per-epoch img/s of `fertrain teacher` with the host's loss reads every N optimizer steps (the
trainer's SYNC_EVERY), to see whether where those reads fall in an epoch sets its speed.
Usage: python benchmarks/sync_every.py N OUT_JSON -- TEACHER_FLAGS...
Writes {"sync_every": N, "epochs": [img/s per epoch], "total_sec": training seconds}."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fertrain.engine.trainer as trainer
from fertrain.cli import main

if __name__ == "__main__":
    every, out, flags = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[sys.argv.index("--") + 1 :]
    trainer.SYNC_EVERY = every
    try:
        main(["teacher", *flags])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    run = Path(flags[flags.index("--output-dir") + 1])
    history = json.loads((run / "history.json").read_text())
    out.write_text(json.dumps({"sync_every": every, "epochs": [r["img_per_sec"] for r in history],
                               "epoch_sec": [r["epoch_sec"] for r in history]}))  # fmt: skip
