"""`fertrain runs compare`: runs and ensembles side by side, from what they wrote.

A training run is a directory with a `history.json` (one record per epoch); its best epoch is
found the way the trainer chose best.pt: on each evaluated epoch the selected weights (raw or
EMA, `selected_weights`) carry the run's `select_metric`, and the first epoch with the highest
value wins (best.pt is only replaced by a strictly better one). An ensemble is a JSON file with
`fertrain evaluate` reports beside it (`ENS.evaluation_*.json`). Every post-hoc evaluation found
is reported as MANIFEST SPLIT TTA (e.g. `fer2013 val ten`). Nothing here loads a model: a
comparison reads JSON only, so it is instant and safe on runs still training.

`seed_groups` folds runs that are one experiment repeated with other seeds (their config.yaml agree
on everything but the seed and where, how fast or how often they ran; the manifest, and the soft
labels or online teacher a student read, by their sha256) into one row of means and sample standard
deviations: the "mean ± std over seeds" of a report.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fertrain.errors import FertrainError, InputError
from fertrain.runs.report_paths import EVALUATION_GLOB, HISTORY, RUN_CONFIG, manifest_stem
from fertrain.runs.reports import ALIGNMENT_REPORT, recorded_inputs
from fertrain.runs.runtime_options import RUNTIME_OPTIONS
from fertrain.yaml_files import read_yaml_file

DEFAULT_SELECT_METRIC = "macro_f1"  # the training engine's default too (engine.config imports it)
SORT_KEYS = ("none", "val-acc", "val-f1")
# runs whose configs differ only in these repeat one experiment; the manifest and the input files a run
# recorded (soft labels, an online teacher) count by their content (the alignment report's sha256, see
# `experiment_key`), not their path
NOT_THE_EXPERIMENT = RUNTIME_OPTIONS | {"seed", "manifest"}


@dataclass
class Evaluation:
    """One `fertrain evaluate` report: accuracy and macro-F1, and calibration after the temperature."""

    accuracy: float
    macro_f1: float
    ece: float | None
    nll: float | None
    recall: dict[str, float] = field(default_factory=dict)


@dataclass
class RunSummary:
    name: str
    path: str
    kind: str  # "run" | "ensemble"
    epochs_done: int | None = None
    epochs: int | None = None  # planned, from config.yaml
    best_epoch: int | None = None
    best_weights: str | None = None  # "model" | "ema"
    select_metric: str | None = None
    best_value: float | None = None  # the select_metric at the best epoch
    val_accuracy: float | None = None  # at the best epoch, the selected weights
    val_macro_f1: float | None = None
    val_nll: float | None = None
    train_minutes: float | None = None
    median_img_per_sec: float | None = None
    seed: int | None = None  # from config.yaml
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)  # per evaluated epoch: epoch, accuracy, macro_f1, nll
    experiment: str | None = None  # what repeats of one experiment share (`experiment_key`); None: not known

    def to_dict(self) -> dict:
        row = asdict(self)
        row.pop("curve")
        row.pop("experiment")
        return row


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})", kind="missing") from exc
    except ValueError as exc:
        raise InputError(path, f"is not valid JSON ({exc})", kind="format") from exc


def selected_metrics(record: dict) -> dict:
    """The metrics of the weights an evaluated epoch selected (its EMA's when it chose the EMA)."""
    prefix = "ema_" if record.get("selected_weights") == "ema" else ""
    return {name: record.get(f"{prefix}val_{name}") for name in ("accuracy", "macro_f1", "auc", "nll")}


def run_config(run: Path) -> dict:
    """The run's resolved config.yaml ({} where there is none)."""
    path = run / RUN_CONFIG
    config = read_yaml_file(path, "run config") if path.is_file() else None
    return config if isinstance(config, dict) else {}


def planned_epochs(config: dict) -> int | None:
    """The epochs a run was started for: a two-stage student's two stages together."""
    if config.get("strategy") == "two-stage":
        return int(config.get("epochs_s1", 0)) + int(config.get("epochs_s2", 0))
    return config.get("epochs")


def experiment_key(run: Path, config: dict) -> str | None:
    """The run's options that make the experiment, as one comparable string (None without a config.yaml)."""
    if not config:
        return None
    options = {k: v for k, v in config.items() if k not in NOT_THE_EXPERIMENT}
    alignment = run / ALIGNMENT_REPORT
    report = _read_json(alignment) if alignment.is_file() else None
    manifest_sha = report.get("manifest_sha256") if isinstance(report, dict) else None
    options["manifest"] = manifest_sha or config.get("manifest")
    options.update(recorded_inputs(report) if isinstance(report, dict) else {})
    return json.dumps(options, sort_keys=True, default=str)


def summarize_run(run: Path, name: str) -> RunSummary:
    history_path = run / HISTORY
    history = _read_json(history_path)
    if not isinstance(history, list) or not all(isinstance(r, dict) and "epoch" in r for r in history):
        raise InputError(history_path, "expected a list of per-epoch records with an 'epoch' each", kind="format")
    config = run_config(run)
    metric = config.get("select_metric") or DEFAULT_SELECT_METRIC
    row = RunSummary(name=name, path=str(run), kind="run", epochs_done=len(history), epochs=planned_epochs(config),
                     select_metric=metric, seed=config.get("seed"), experiment=experiment_key(run, config))  # fmt: skip
    for record in history:
        if "val_accuracy" not in record:
            continue  # an epoch without validation (eval_every)
        chosen = selected_metrics(record)
        row.curve.append({"epoch": record["epoch"], **chosen})
        value = chosen.get(metric)
        if value is None:
            weights = record.get("selected_weights", "model")
            raise InputError(history_path, f"epoch {record['epoch']}: no validation {metric!r} for the selected "
                                           f"weights ({weights})", kind="format")  # fmt: skip
        if row.best_value is None or value > row.best_value:
            row.best_value = value
            row.best_epoch, row.best_weights = record["epoch"], record.get("selected_weights", "model")
            row.val_accuracy, row.val_macro_f1, row.val_nll = chosen["accuracy"], chosen["macro_f1"], chosen["nll"]
    if history:
        row.train_minutes = round(float(history[-1].get("total_sec", 0.0)) / 60, 2)
        rates = [r["img_per_sec"] for r in history if r.get("img_per_sec")]
        row.median_img_per_sec = round(statistics.median(rates), 1) if rates else None
    row.evaluations = _evaluations(sorted(run.glob(EVALUATION_GLOB)))
    return row


def _evaluation_reports_of(ensemble: Path) -> list[Path]:
    """ENS.evaluation_*.json beside ENS.json (`report_path`'s naming for an ensemble)."""
    return sorted(ensemble.parent.glob(f"{ensemble.stem}.{EVALUATION_GLOB}"))


def summarize_ensemble(ensemble: Path, name: str) -> RunSummary:
    reports = _evaluation_reports_of(ensemble)
    if not reports:
        raise InputError(ensemble, f"no `fertrain evaluate` reports beside it ({ensemble.stem}.{EVALUATION_GLOB}): "
                                   f"evaluate the ensemble first, e.g. fertrain evaluate {ensemble} --manifest M "
                                   "--split val", kind="missing")  # fmt: skip
    return RunSummary(name=name, path=str(ensemble), kind="ensemble", evaluations=_evaluations(reports))


def _evaluations(reports: list[Path]) -> dict[str, Evaluation]:
    found = {}
    for path in reports:
        report = _read_json(path)
        try:
            label = f"{manifest_stem(report['manifest'])} {report['split']} {report['tta']}"
            scaled = (report.get("calibration") or {}).get("scaled") or {}
            found[label] = Evaluation(
                accuracy=float(report["accuracy"]), macro_f1=float(report["macro_f1"]), ece=scaled.get("ece"),
                nll=scaled.get("nll"),
                recall={k: round(float(v["recall"]), 4) for k, v in (report.get("per_class") or {}).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"not a `fertrain evaluate` report (missing or bad {exc})", kind="format") from exc
    return found


def _ensembles_in(folder: Path) -> list[Path]:
    """JSON files under `folder` (any depth) that have evaluation reports beside them: found from the
    reports (ENS.evaluation_*.json -> ENS.json) in one walk, not by a glob beside every JSON file."""
    reports = folder.rglob(f"*.{EVALUATION_GLOB}")
    named = {report.with_name(report.name.split(".", 1)[0] + ".json") for report in reports}
    return sorted(p for p in named if p.is_file())


def collect(paths: list[str | Path]) -> list[tuple[Path, str]]:
    """(path, kind) for each argument: a run directory, an ensemble JSON, or a folder holding either."""
    found: list[tuple[Path, str]] = []
    for arg in paths:
        p = Path(arg)
        if not p.exists():
            raise InputError(p, "no such run directory, ensemble file or folder", kind="missing")
        if p.is_file():
            found.append((p, "ensemble"))
        elif (p / HISTORY).is_file():
            found.append((p, "run"))
        else:
            inside = [(h.parent, "run") for h in p.rglob(HISTORY) if h.is_file()]
            inside += [(e, "ensemble") for e in _ensembles_in(p)]
            if not inside:
                raise InputError(p, f"holds no training run (a directory with {HISTORY}) and no evaluated ensemble",
                                 kind="missing")  # fmt: skip
            found += sorted(inside, key=lambda item: str(item[0]))
    seen, unique = set(), []
    for path, kind in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, kind))
    return unique


def _names(paths: list[Path]) -> list[str]:
    """Each path relative to what they share (a lone path: its own name)."""
    if len(paths) == 1:
        return [paths[0].name or str(paths[0])]
    absolute = [p.resolve() for p in paths]
    common = Path(os.path.commonpath(absolute))
    names = [str(a.relative_to(common)) if a != common else a.name for a in absolute]
    return [n[: -len(".json")] if n.endswith(".json") else n for n in names]


def compare_runs(paths: list[str | Path], sort: str = "none") -> list[RunSummary]:
    """One summary per run and ensemble named (folders expand to what they hold)."""
    if sort not in SORT_KEYS:
        raise FertrainError(f"--sort: expected one of {', '.join(SORT_KEYS)}, got {sort!r}")
    items = collect(paths)
    rows = [summarize_run(path, name) if kind == "run" else summarize_ensemble(path, name)
            for (path, kind), name in zip(items, _names([p for p, _ in items]), strict=True)]  # fmt: skip
    if sort != "none":
        key = "val_accuracy" if sort == "val-acc" else "val_macro_f1"
        rows.sort(key=lambda r: -1.0 if getattr(r, key) is None else getattr(r, key), reverse=True)
    return rows


def evaluation_labels(rows: list[RunSummary]) -> list[str]:
    """Every evaluation label of the rows, single view first within each manifest and split."""
    labels = {label for r in rows for label in r.evaluations}
    return sorted(labels, key=lambda s: (s.rsplit(" ", 1)[0], s.rsplit(" ", 1)[1] != "none", s))


@dataclass
class Spread:
    """A number over the seeds that have it: mean and sample standard deviation (None for one seed)."""

    mean: float
    std: float | None
    n: int


def spread(values: list[float | None]) -> Spread | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return Spread(statistics.fmean(known), statistics.stdev(known) if len(known) > 1 else None, len(known))


@dataclass
class SeedGroup:
    """Runs of one experiment with different seeds (a lone run or an ensemble: a group of one)."""

    name: str
    kind: str  # "run" | "ensemble"
    members: list[str]
    seeds: list[int | None]
    val_accuracy: Spread | None = None  # at each run's best epoch
    val_macro_f1: Spread | None = None
    train_minutes: Spread | None = None
    evaluations: dict[str, dict[str, Spread | None]] = field(default_factory=dict)  # label -> accuracy, macro_f1, ece

    def to_dict(self) -> dict:
        return asdict(self)


def _group_name(names: list[str]) -> str:
    """What the members' names share (`drop_1337`, `drop_2` -> `drop`), else the first name."""
    if len(names) == 1:
        return names[0]
    same = itertools.takewhile(lambda chars: len(set(chars)) == 1, zip(*names, strict=False))  # up to the shortest
    prefix = "".join(chars[0] for chars in same)
    shared = prefix.rstrip("_-/. ").removesuffix("seed").rstrip("_-/. ")
    return shared or names[0]


def seed_groups(rows: list[RunSummary]) -> list[SeedGroup]:
    """The rows folded into one group per experiment (`experiment_key`), in the order first seen."""
    grouped: dict[str, list[RunSummary]] = {}
    for i, row in enumerate(rows):
        grouped.setdefault(row.experiment or f"alone {i}", []).append(row)
    groups = []
    for members in grouped.values():
        labels = evaluation_labels(members)
        groups.append(SeedGroup(
            name=_group_name([m.name for m in members]), kind=members[0].kind, members=[m.name for m in members],
            seeds=[m.seed for m in members], val_accuracy=spread([m.val_accuracy for m in members]),
            val_macro_f1=spread([m.val_macro_f1 for m in members]),
            train_minutes=spread([m.train_minutes for m in members]),
            evaluations={label: {metric: spread([getattr(m.evaluations[label], metric) for m in members
                                                 if label in m.evaluations])
                                 for metric in ("accuracy", "macro_f1", "ece")} for label in labels}))  # fmt: skip
    return groups


__all__ = ["NOT_THE_EXPERIMENT", "SORT_KEYS", "Evaluation", "RunSummary", "SeedGroup", "Spread", "collect",
           "compare_runs", "evaluation_labels", "experiment_key", "planned_epochs", "run_config", "seed_groups",
           "selected_metrics", "spread", "summarize_run"]
