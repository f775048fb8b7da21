"""A pipeline plan: stages of normal fertrain runs under one root, read from YAML and checked.

    root: outputs/overnight            # every stage's output lives under it
    smoke: {root: outputs/overnight_smoke, teacher: {epochs: 1, img_size: 32}, ...}
    stages:
      - {name: data, kind: manifest, sources: ["fer2013=../shared/datasets/fer2013"]}
      - {name: rn18_A, kind: teacher, manifest: data, config: fertrain/configs/x.yaml,
         options: {stage: A, backbone: resnet18}}
      - {name: rn18_B, kind: teacher, manifest: data, init_from: rn18_A, options: {stage: B}}
      - {name: cal_B, kind: calibrate, target: rn18_B, manifest: data}
      - {name: ens, kind: ensemble, members: {rn18_B: 0.7, b3_B: 0.3}}
      - {name: cal_ens, kind: calibrate, target: ens, manifest: data, options: {exclude_overlap: true}}
      - {name: eval_ens, kind: evaluate, target: ens, manifest: data, split: val, options: {tta: ten}}
      - {name: soft, kind: softlabels, teacher: ens, manifest: data}
      - {name: student, kind: student, manifest: data, softlabels: soft, options: {loss: dkd}}

Cross-fitted soft labels name one teacher stage per fold (each trained with `options: {fold: K,
folds: N}`): `{name: oof, kind: softlabels, teacher: [fold0, fold1, ...], manifest: data,
options: {out_of_fold: true}}`.

A teacher, student or softlabels stage with `nproc_per_node: N` (N > 1) runs its command under
torchrun, data-parallel over N processes, one GPU each (`-b` stays per process, as in torchrun).

Each stage becomes one fertrain command (`runner.argv_of`) writing one output (`Stage.output`);
references to other stages (manifest, init_from, target, teacher, softlabels, members, after)
are its inputs. `{root}` in any string is the plan's root; a string naming another stage's output
under it (a manifest's `sources: ["fer2013={root}/data/lowres"]` reading a demo_data stage) makes
that stage an input too, so it runs first and `pipeline run --target` brings it along.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fertrain.configs import resolve_config_file
from fertrain.errors import ConfigError
from fertrain.yaml_files import read_yaml_file

# kind -> (allowed keys, keys that name other stages)
KINDS: dict[str, tuple[set[str], set[str]]] = {
    "demo_data": ({"seed"}, set()),
    "manifest": ({"recipe", "sources", "adapter_options", "dedup_exact", "dedup_near"}, set()),
    "teacher": ({"manifest", "config", "options", "init_from", "nproc_per_node"}, {"manifest", "init_from"}),
    "calibrate": ({"target", "manifest", "split", "options"}, {"target", "manifest"}),
    "ensemble": ({"members"}, set()),  # members: {stage: weight}
    "evaluate": ({"target", "manifest", "split", "options"}, {"target", "manifest"}),
    "softlabels": ({"teacher", "manifest", "splits", "options", "nproc_per_node"}, {"teacher", "manifest"}),
    "student": ({"manifest", "config", "options", "softlabels", "teacher", "nproc_per_node"},
                {"manifest", "softlabels", "teacher"}),
}
# reference keys that may name several stages: out-of-fold soft labels read one teacher per fold
LISTED_REFS = {"softlabels": {"teacher"}}
REQUIRED = {"calibrate": ("target",), "evaluate": ("target", "manifest")}
COMMON_KEYS = {"name", "kind", "after"}
PLAN_KEYS = {"root", "smoke", "stages"}
TRAINING_KINDS = ("teacher", "student")


@dataclass
class Stage:
    name: str
    kind: str
    spec: dict[str, Any]
    inputs: list[str] = field(default_factory=list)  # upstream stage names, in order

    @property
    def nproc(self) -> int:
        """Processes the stage's command runs as (`nproc_per_node`: > 1 under torchrun, one GPU each)."""
        return int(self.spec.get("nproc_per_node") or 1)

    def output(self, root: Path) -> Path | None:
        """The file or run directory this stage writes and owns; None for calibrate and evaluate, which
        write reports beside their target (`fertrain.pipeline.runner.output_of`)."""
        return {
            "demo_data": root / self.name, "manifest": root / "manifests" / f"{self.name}.parquet",
            "teacher": root / "teachers" / self.name, "student": root / "students" / self.name,
            "softlabels": root / "softlabels" / f"{self.name}.parquet",
            "ensemble": root / "ensembles" / f"{self.name}.json",
        }.get(self.kind)  # fmt: skip


@dataclass
class Plan:
    path: Path
    root: Path
    stages: list[Stage]
    smoke: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def with_root(self, root: str | Path) -> Plan:
        return Plan(self.path, Path(root), self.stages, self.smoke)

    def only(self, targets: Iterable[str]) -> Plan:
        """The stages named and every stage they need (their inputs, transitively), in the plan's order:
        one network's numbers without waiting for the rest of a long plan (`pipeline run --target`)."""
        targets, names = list(targets), {s.name for s in self.stages}
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise ConfigError(f"--target {', '.join(unknown)}: not a stage of {self.path}")
        needed, todo = set(), list(targets)
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                todo += self.stage(name).inputs
        return Plan(self.path, self.root, [s for s in self.stages if s.name in needed], self.smoke)

    def smoke_plan(self) -> Plan:
        """The same stages with the plan's `smoke:` option overrides, under the smoke root."""
        root = Path(self.smoke.get("root") or f"{self.root}_smoke")
        stages = []
        for s in self.stages:
            spec = dict(s.spec)
            over = self.smoke.get(s.kind) or {}
            if over:
                spec["options"] = {**(spec.get("options") or {}), **over}
            stages.append(Stage(s.name, s.kind, spec, list(s.inputs)))
        return Plan(self.path, root, stages, {})


def _fail(path: Path, where: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {message}")


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan: known kinds and keys, every reference to an earlier stage, no cycles,
    Stage B teachers initialized from a teacher."""
    path = Path(path)
    raw = read_yaml_file(path, "plan")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with root and stages")
    unknown = sorted(set(raw) - PLAN_KEYS)
    if unknown:
        raise _fail(path, ", ".join(unknown), f"unknown key(s); a plan has {', '.join(sorted(PLAN_KEYS))}")
    if not raw.get("root") or not isinstance(raw.get("stages"), list) or not raw["stages"]:
        raise ConfigError(f"{path}: needs `root:` (a folder) and a non-empty `stages:` list")
    root = str(raw["root"])
    stages: list[Stage] = []
    for i, item in enumerate(raw["stages"]):
        where = f"stages[{i}]"
        if not isinstance(item, dict) or not item.get("name") or item.get("kind") not in KINDS:
            raise _fail(path, where, f"each stage needs a name and a kind ({', '.join(KINDS)})")
        name, kind = str(item["name"]), item["kind"]
        where = f"stage {name}"
        if any(s.name == name for s in stages):
            raise _fail(path, where, "a second stage with this name")
        allowed, refs = KINDS[kind]
        extra = sorted(set(item) - allowed - COMMON_KEYS)
        if extra:
            raise _fail(path, f"{where}: {', '.join(extra)}", f"unknown key(s) for {kind} stages; expected "
                        f"{', '.join(sorted(allowed | COMMON_KEYS))}")  # fmt: skip
        spec = {k: v for k, v in item.items() if k not in COMMON_KEYS}
        inputs = []
        for key in sorted(refs):
            if isinstance(spec.get(key), list) and key not in LISTED_REFS.get(kind, ()):
                raise _fail(path, f"{where}: {key}", "expected one stage name (only a softlabels stage's teacher "
                            "may list several: one fold teacher each, with options: {out_of_fold: true})")  # fmt: skip
            inputs += stage_names(spec.get(key))
        if kind == "ensemble":
            if not isinstance(spec.get("members"), dict) or not spec["members"]:
                raise _fail(path, f"{where}: members", "expected a mapping {stage: weight}")
            inputs += [str(m) for m in spec["members"]]
        nproc = spec.get("nproc_per_node", 1)
        if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
            raise _fail(path, f"{where}: nproc_per_node", f"expected a whole number of processes >= 1 (torchrun's "
                        f"--nproc-per-node: one per GPU), got {nproc!r}")  # fmt: skip
        missing = [k for k in REQUIRED.get(kind, ()) if not spec.get(k)]
        if missing:
            raise _fail(path, f"{where}: {', '.join(missing)}", f"{kind} stages need it (target: the stage to work "
                        "on, manifest: the manifest stage whose rows it reads)")  # fmt: skip
        after = item.get("after") or []
        inputs += [str(a) for a in ([after] if isinstance(after, str) else after)]
        stages.append(Stage(name, kind, spec, list(dict.fromkeys(inputs))))
    _add_outputs_read_under_root(stages)
    _check_references(path, stages)
    smoke = raw.get("smoke") or {}
    if not isinstance(smoke, dict) or sorted(set(smoke) - set(KINDS) - {"root"}):
        raise _fail(path, "smoke", f"expected `root:` and option overrides per kind ({', '.join(KINDS)})")
    return Plan(path, Path(root), stages, smoke)


def stage_names(value: Any) -> list[str]:
    """The stages a reference names: none, one (a name) or several (a list, where `LISTED_REFS` allows)."""
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """`value` (a stage's spec: strings, numbers, lists, mappings) with `fn` applied to every string in it."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    return value


def substitute_root(value: Any, root: str) -> Any:
    """`{root}` in every string of `value` -> the plan's root (the smoke root for a smoke run)."""
    return map_strings(value, lambda text: text.replace("{root}", root))


def _strings_in(value: Any) -> list[str]:
    """Every string in `value`, in order (the walk `map_strings` makes)."""
    found: list[str] = []

    def keep(text: str) -> str:
        found.append(text)
        return text

    map_strings(value, keep)
    return found


def _add_outputs_read_under_root(stages: list[Stage]) -> None:
    """Make a stage an input of every stage with a string that names its output as `{root}/...`."""
    outputs = {s.name: str(out) for s in stages if (out := s.output(PurePosixPath("{root}"))) is not None}
    for stage in stages:
        text = [t for t in _strings_in(stage.spec) if "{root}" in t]
        read = [name for name, out in outputs.items()
                if name != stage.name and any(f"{out}/" in t or t.endswith(out) for t in text)]  # fmt: skip
        stage.inputs = list(dict.fromkeys([*stage.inputs, *read]))


def _check_references(path: Path, stages: list[Stage]) -> None:
    names = {s.name: s for s in stages}
    for s in stages:
        for ref in s.inputs:
            if ref not in names:
                raise _fail(path, f"stage {s.name}", f"refers to {ref!r}, which is not a stage of this plan")
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(s: Stage, trail: list[str]) -> None:
        if state.get(s.name) == 2:
            return
        if state.get(s.name) == 1:
            raise _fail(path, f"stage {s.name}", f"is part of a cycle: {' -> '.join([*trail, s.name])}")
        state[s.name] = 1
        for ref in s.inputs:
            visit(names[ref], [*trail, s.name])
        state[s.name] = 2

    for s in stages:
        visit(s, [])
    order = {s.name: i for i, s in enumerate(stages)}
    for s in stages:
        late = [r for r in s.inputs if order[r] > order[s.name]]
        if late:
            raise _fail(path, f"stage {s.name}", f"needs {', '.join(late)}, listed after it; list stages in order")
        target = s.spec.get("target")
        if target and names[target].kind not in ("teacher", "student", "ensemble"):
            raise _fail(path, f"stage {s.name}: target", f"{target!r} is a {names[target].kind} stage; expected a "
                        "teacher, student or ensemble stage")  # fmt: skip
        if s.kind == "softlabels":
            _check_fold_teachers(path, s, names)
        if s.kind == "teacher" and teacher_stage(s) == "B":
            init = s.spec.get("init_from")
            if not init or names[init].kind != "teacher":
                raise _fail(path, f"stage {s.name}: init_from", "a Stage B teacher needs init_from: a Stage A "
                            "teacher stage")  # fmt: skip


def _check_fold_teachers(path: Path, stage: Stage, names: dict[str, Stage]) -> None:
    """Several teachers label out of fold, and out-of-fold labels need one teacher stage per fold (the
    command checks that their folds cover the training rows once their runs exist)."""
    listed = isinstance(stage.spec.get("teacher"), list)
    teachers = stage_names(stage.spec.get("teacher"))
    out_of_fold = bool((stage.spec.get("options") or {}).get("out_of_fold"))
    if listed:
        if not out_of_fold or len(teachers) < 2:
            raise _fail(path, f"stage {stage.name}: teacher", "several teachers label out of fold: list one "
                        "teacher stage per fold (two or more) and set options: {out_of_fold: true}")  # fmt: skip
        others = [t for t in teachers if names[t].kind != "teacher"]
        if others:
            raise _fail(path, f"stage {stage.name}: teacher", f"{', '.join(others)}: expected teacher stages "
                        "trained with options: {fold: K, folds: N}")  # fmt: skip
    elif out_of_fold:
        raise _fail(path, f"stage {stage.name}: options: out_of_fold", "expected teacher: a list of the fold "
                    "teachers' stages, one per fold")  # fmt: skip
    if out_of_fold and stage.nproc > 1:
        raise _fail(path, f"stage {stage.name}: nproc_per_node", "an out-of-fold export runs as one process (each "
                    "fold teacher labels only the faces it held out): drop nproc_per_node")  # fmt: skip


def teacher_stage(stage: Stage) -> str:
    """A or B: from the stage's options, else from its config YAML, else A (the teacher's default)."""
    value = (stage.spec.get("options") or {}).get("stage")
    config = resolve_config_file(str(stage.spec.get("config") or ""))
    if value is None and config.is_file():
        value = (read_yaml_file(config, "--config") or {}).get("stage")
    return str(value or "A").upper()
