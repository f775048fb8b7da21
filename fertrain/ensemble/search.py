"""Build an ENSEMBLE.json, optionally searching member weights on a held-out split."""

from __future__ import annotations

from pathlib import Path

from fertrain.engine.device import resolve_device
from fertrain.ensemble.fusion import search_weights
from fertrain.ensemble.predictor import RunPredictor
from fertrain.ensemble.provenance import default_manifest, training_face_mask
from fertrain.ensemble.teacher import Teacher, parse_member, write_ensemble
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import SourceFilter, filter_rows, load_manifest


def build_ensemble(members: list[str], out: str | Path, *, fusion_t: float = 1.0, search: bool = False,
                   objective: str = "macro_f1", step: float = 0.05, manifest: str | Path | None = None,
                   split: str = "val", device: str = "auto", workers: int = 4,
                   exclude_overlap: bool = False) -> dict:  # fmt: skip
    """Write the ensemble JSON; with `search`, weights searched on `split` of `manifest`. Rows that
    are training faces of a member are refused, or dropped with `exclude_overlap` (FER2013's
    PublicTest repeats 280 training faces)."""
    parsed = [parse_member(m) for m in members]
    runs = [p for p, _ in parsed]
    if len(runs) < 1:
        raise ConfigError("--member: give at least one run")
    if not search:
        weights = [w if w is not None else 1.0 for _, w in parsed]
        total = sum(weights)
        write_ensemble(out, runs, [w / total for w in weights], fusion_t=fusion_t)
        return {"weights": [w / total for w in weights]}
    predictors = [RunPredictor.load(r) for r in runs]
    probe = Teacher(Path(out), predictors, [1.0] * len(predictors), fusion_t)
    manifest = manifest or default_manifest(probe)
    m = load_manifest(manifest)
    rows = filter_rows(m.df, SourceFilter(splits=[split])).reset_index(drop=True)
    seen, overlap = training_face_mask(probe, rows)
    if seen.any() and not exclude_overlap:
        raise FertrainError(f"--search-weights on {manifest} [{split}] would use training rows of {overlap}; pass "
                            "--exclude-overlap to search on the other rows only")  # fmt: skip
    excluded, rows = int(seen.sum()), rows[~seen].reset_index(drop=True)
    if rows.empty:
        raise ConfigError(f"{manifest} [{split}]: no rows to search on (excluded {excluded:,} training faces)")
    dev = resolve_device(device)
    member_logits, labels = probe.member_logits(m, rows, device=dev, workers=workers)
    weights, table = search_weights(probe.member_probs(member_logits), labels, objective=objective, step=step,
                                    fusion_t=fusion_t)  # fmt: skip
    best = max(table, key=lambda r: r.get(objective, float("-inf")) * (1 if objective == "macro_f1" else -1))
    write_ensemble(out, runs, weights, fusion_t=fusion_t,
                   search={"objective": objective, "step": step, "manifest": str(manifest), "split": split,
                           "n": len(rows), "excluded_training_overlap": excluded, "best": best,
                           "table": table})  # fmt: skip
    return {"weights": weights, "best_score": best[objective], "searched": len(table), "excluded": excluded}
