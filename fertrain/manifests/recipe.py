"""Manifest recipes: YAML files naming sources (adapter, path, options), filters, dedup, output.

```yaml
name: fer2013_plus_expw
output: outputs/manifests/fer2013_plus_expw.parquet
seed: 1337
sources:
  - name: fer2013              # the `source` value in the manifest
    adapter: fer2013
    path: ${FERTRAIN_DATA:-../shared/datasets}/fer2013
  - name: ckplus_eval
    adapter: ckplus
    path: data/ckplus
    split: test                # every row to test (an eval-only source)
  - name: expw_hq
    adapter: expw
    path: ${FERTRAIN_DATA:-../shared/datasets}/expw_mini
    options: {min_confidence: 50}
    derive_split: {val: 0.1, test: 0.1}
filters: {exclude_sources: [], splits: []}
dedup: {exact: drop, near: report, near_threshold: 2}
```

`${VAR}` and `${VAR:-default}` expand from the environment; relative paths are relative to
the working directory (run fertrain from the project root). Earlier sources have higher
priority in dedup unless `priority` (lower = preferred) says otherwise.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fertrain.errors import ConfigError
from fertrain.manifests.adapters import get_adapter
from fertrain.manifests.dedup import DedupPolicy
from fertrain.manifests.filters import SourceFilter
from fertrain.manifests.schema import SPLITS
from fertrain.yaml_files import read_yaml_file

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
RECIPE_KEYS = {"name", "output", "seed", "sources", "filters", "dedup", "description"}
SOURCE_KEYS = {"name", "adapter", "path", "options", "priority", "derive_split", "split"}
DEFAULT_SEED = 1337


def expand_vars(value: str, where: str) -> str:
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set and has no default (${{{name}:-...}})")

    return _VAR.sub(sub, value)


@dataclass
class DeriveSplit:
    val: float = 0.1
    test: float = 0.1
    seed: int | None = None  # None: the recipe seed


@dataclass
class SourceSpec:
    name: str
    adapter: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    derive_split: DeriveSplit = field(default_factory=DeriveSplit)
    split: str | None = None  # put every row in this split (e.g. an eval-only source -> test)

    def to_dict(self) -> dict:
        return {"name": self.name, "adapter": self.adapter, "path": str(self.path), "options": self.options,
                "priority": self.priority, "derive_split": vars(self.derive_split), "split": self.split}  # fmt: skip


@dataclass
class Recipe:
    name: str
    sources: list[SourceSpec]
    output: Path | None = None
    seed: int = DEFAULT_SEED
    filters: SourceFilter = field(default_factory=SourceFilter)
    dedup: DedupPolicy = field(default_factory=DedupPolicy)
    origin: str = "<cli>"

    def to_dict(self) -> dict:
        return {"name": self.name, "origin": self.origin, "output": str(self.output) if self.output else None,
                "seed": self.seed, "sources": [s.to_dict() for s in self.sources],
                "filters": self.filters.to_dict(), "dedup": self.dedup.to_dict()}  # fmt: skip


def _check_keys(obj: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _source(raw: Any, index: int, where: str) -> SourceSpec:
    loc = f"{where}: sources[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{loc}: expected a mapping with adapter and path")
    _check_keys(raw, SOURCE_KEYS, loc)
    for key in ("adapter", "path"):
        if key not in raw:
            raise ConfigError(f"{loc}: missing {key!r}")
    adapter = get_adapter(str(raw["adapter"]))
    name = str(raw.get("name") or adapter.name)
    options = adapter.options(raw.get("options"), name)
    derive = raw.get("derive_split") or {}
    if not isinstance(derive, dict) or set(derive) - {"val", "test", "seed"}:
        raise ConfigError(f"{loc}: derive_split takes val, test and seed")
    split = raw.get("split")
    if split is not None and split not in SPLITS:
        raise ConfigError(f"{loc}: split {split!r} unknown; expected one of {', '.join(SPLITS)}")
    return SourceSpec(
        split=split,
        name=name,
        adapter=adapter.name,
        path=Path(expand_vars(str(raw["path"]), loc)).expanduser(),
        options=options,
        priority=int(raw.get("priority", index)),
        derive_split=DeriveSplit(**derive),
    )


def recipe_from_dict(raw: Any, origin: str) -> Recipe:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: a recipe is a YAML mapping with a `sources` list")
    _check_keys(raw, RECIPE_KEYS, origin)
    sources_raw = raw.get("sources")
    if not sources_raw or not isinstance(sources_raw, list):
        raise ConfigError(f"{origin}: `sources` must be a non-empty list")
    sources = [_source(s, i, origin) for i, s in enumerate(sources_raw)]
    names = [s.name for s in sources]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ConfigError(f"{origin}: source names must be unique; repeated: {', '.join(dups)}")
    filters = raw.get("filters") or {}
    _check_keys(filters, {"include_sources", "exclude_sources", "splits"}, f"{origin}: filters")
    dedup = raw.get("dedup") or {}
    _check_keys(dedup, {"exact", "near", "near_threshold"}, f"{origin}: dedup")
    output = raw.get("output")
    return Recipe(
        name=str(raw.get("name") or Path(origin).stem),
        sources=sources,
        output=Path(expand_vars(str(output), origin)) if output else None,
        seed=int(raw.get("seed", DEFAULT_SEED)),
        filters=SourceFilter(**{k: list(v or []) for k, v in filters.items()}),
        dedup=DedupPolicy(**dedup),
        origin=origin,
    )


def load_recipe(path: str | Path) -> Recipe:
    return recipe_from_dict(read_yaml_file(path, "recipe"), str(path))


def recipe_from_cli(sources: list[str], options: list[str], dedup: DedupPolicy, seed: int) -> Recipe:
    """The quick form: `--source ADAPTER[:NAME]=PATH` and `--option NAME.KEY=YAML_VALUE`."""
    raw_sources: list[dict[str, Any]] = []
    for spec in sources:
        head, sep, path = spec.partition("=")
        if not sep or not head or not path:
            raise ConfigError(f"--source {spec!r}: expected ADAPTER=PATH or ADAPTER:NAME=PATH")
        adapter, _, name = head.partition(":")
        raw_sources.append({"adapter": adapter, "name": name or adapter, "path": path, "options": {}})
    by_name = {s["name"]: s for s in raw_sources}
    for opt in options:
        key, sep, value = opt.partition("=")
        src, dot, opt_key = key.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--option {opt!r}: expected SOURCE.KEY=VALUE")
        if src not in by_name:
            raise ConfigError(f"--option {opt!r}: no source named {src!r}; sources: {', '.join(by_name)}")
        by_name[src]["options"][opt_key] = yaml.safe_load(value)
    raw = {"name": "cli", "seed": seed, "sources": raw_sources, "dedup": dedup.to_dict()}
    return recipe_from_dict(raw, "<command line>")
