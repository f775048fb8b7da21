"""Print runs' epoch histories side by side (the device scripts that compare --cuda-graph off / on).
Usage: python3 benchmarks/compare_histories.py OUT RUN... (each OUT/RUN/history.json, OUT/RUN.rc and OUT/RUN.sec)"""

import json
import sys
from pathlib import Path

KEYS = ("train_loss", "val_accuracy", "val_nll", "ema_val_accuracy", "img_per_sec", "graphed_steps")

out = Path(sys.argv[1])
for run in sys.argv[2:]:
    hist = out / run / "history.json"
    rc, sec = ((out / f"{run}.{ext}").read_text().strip() for ext in ("rc", "sec"))
    print(run, "rc", rc, "wall", sec, "s")
    for record in json.loads(hist.read_text()) if hist.is_file() else []:
        print("  ", {k: record[k] for k in KEYS if k in record})
