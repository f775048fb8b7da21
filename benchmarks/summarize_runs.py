"""Summarize the runs and evaluations under one folder (what the device scripts bring back).

    python3 benchmarks/summarize_runs.py OUT

For every run directory in OUT: epochs done, wall time, last img/s and the best epoch by
validation macro-F1; for every `fertrain evaluate` report in OUT (runs' and ensembles'):
accuracy, macro-F1, NLL/ECE after the temperature and per-class recall, by TTA mode.
Writes OUT/summary.json and prints it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(out: Path) -> dict:
    rows: dict[str, dict] = {}
    for d in sorted(p for p in out.iterdir() if (p / "history.json").is_file()):
        hist = json.loads((d / "history.json").read_text())
        evals = [r for r in hist if "val_macro_f1" in r]
        if not evals:
            continue
        best = max(evals, key=lambda r: r["val_macro_f1"])
        rows[d.name] = {"epochs_done": len(hist), "wall_min": round(hist[-1]["total_sec"] / 60, 2),
                        "img_per_sec_last": hist[-1]["img_per_sec"], "best_epoch": best["epoch"],
                        "best_val_acc": best["val_accuracy"], "best_val_macro_f1": best["val_macro_f1"],
                        "best_val_nll": best.get("val_nll"), "best_weights": best.get("selected_weights")}
    for report in sorted(out.rglob("*evaluation_*val*.json")):
        e = json.loads(report.read_text())
        name = report.parent.name if report.parent != out else report.name.split(".")[0]  # ENS.evaluation_...
        rows.setdefault(name, {})[f"tta_{e['tta']}"] = {
            "acc": e["accuracy"], "macro_f1": e["macro_f1"], "nll_scaled": e["calibration"]["scaled"].get("nll"),
            "ece_scaled": e["calibration"]["scaled"]["ece"],
            "ece_floor": e["calibration"]["scaled"].get("ece_floor", {}).get("mean"),  # absent in older reports
            "recall": {k: round(v["recall"], 3) for k, v in e.get("per_class", {}).items()},
        }
    return rows


if __name__ == "__main__":
    out = Path(sys.argv[1])
    rows = summarize(out)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows, indent=1))
