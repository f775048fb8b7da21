"""Training configuration: dataclass defaults < preset < YAML file < command-line flags.

`TrainConfig` holds the options every trainer shares; teachers and students subclass it with
their own fields and defaults. Every value is checked against its field's type and range
before anything is created, and a bad one is one line naming the flag (or the YAML file and
key) and what was expected. The effective config is written to the run as config.yaml and
stored in every checkpoint.
"""

from __future__ import annotations

import importlib.util
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from fertrain.configs import resolve_config_file, shipped_names
from fertrain.data.augment import augment_config
from fertrain.data.mixup import MixupConfig
from fertrain.data.preprocess import COLOR_MODES
from fertrain.data.resident import DATA_ON_DEVICE
from fertrain.engine.device import DEVICE_PATTERN
from fertrain.engine.graphs import CUDA_GRAPH_MODES
from fertrain.errors import ConfigError
from fertrain.manifests.schema import SPLITS
from fertrain.runs.compare import DEFAULT_SELECT_METRIC
from fertrain.yaml_files import read_yaml_file

SELECT_METRICS = ("macro_f1", "accuracy", "auc")
BACKBONE_ABBREV = {"resnet18": "RN18", "resnet34": "RN34", "resnet50": "RN50", "efficientnet_b0": "B0",
                   "efficientnet_b3": "B3", "convnext_tiny": "CNXT", "vit_small_patch16_224": "VITS",
                   "vit_tiny_patch16_224": "VITT", "mobilenetv3_large_100": "MNV3", "resnet10t": "RN10T"}  # fmt: skip
LOGGERS = ("csv", "tensorboard")


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric option: low < x (or low <= x with `closed_low`), x < high likewise."""

    low: float | None = None
    high: float | None = None
    closed_low: bool = True
    closed_high: bool = True

    def holds(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (x == self.low and not self.closed_low)):
            return False
        return not (self.high is not None and (x > self.high or (x == self.high and not self.closed_high)))

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.closed_low else '>'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<=' if self.closed_high else '<'} {self.high:g}")
        return " and ".join(parts)


POSITIVE = Range(0, closed_low=False)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1, closed_high=False)


@dataclass
class TrainConfig:
    """Options shared by every trainer."""

    manifest: str | None = None
    backbone: str = "resnet18"
    head: str = "linear"
    img_size: int | None = None
    epochs: int = 60
    batch_size: int = 64
    grad_accum_steps: int = 1
    workers: int = 4
    device: str = "auto"
    # optimization
    opt: str = "adamw"
    lr: float = 3e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    momentum: float = 0.9  # SGD-family optimizers
    drop: float = 0.0  # dropout on the pooled features before the classifier (timm's --drop)
    drop_path: float = 0.0  # stochastic depth: the last residual block's drop rate (timm's --drop-path)
    clip_grad: float | None = None
    sam: float = 0.0  # sharpness-aware minimization: the neighbourhood radius rho (0: off; engine/sam.py)
    sam_adaptive: bool = False  # ASAM: the radius scales with each weight's size
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    fused_augment: bool = True  # torch.compile the augmentation on CUDA devices
    data_on_device: str = "auto"  # keep the splits on the training device (auto: CUDA, when they fit)
    cuda_graph: str = "auto"  # capture the optimizer step as a CUDA graph (auto: on CUDA when the step allows it)
    seed: int = 1337
    deterministic: bool = False  # deterministic GPU kernels: a seed's run repeats bit for bit
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    # mixup / cutmix (timm semantics; a teacher's label smoothing applies inside its mixed targets)
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    # data
    balanced_min_per_class: int = 0
    include_sources: list[str] = field(default_factory=list)
    exclude_sources: list[str] | None = None
    train_split: str = "train"
    val_split: str = "val"
    fold: int | None = None  # cross-fitting: hold out this fold of the training rows (0..folds-1)
    folds: int = 5
    clahe: bool = False
    color: str = "auto"  # rgb | grey | auto: grey when the training images are grey (FER2013)
    augment: dict[str, Any] = field(default_factory=dict)  # overrides of AugmentConfig fields
    # runs
    select_metric: str = DEFAULT_SELECT_METRIC
    output_root: str = "outputs/runs"
    output_dir: str | None = None
    eval_every: int = 1
    checkpoint_every_steps: int = 0
    checkpoint_hist: int = 0  # keep the weights of the N best evaluations (timm's --checkpoint-hist)
    log: str = "csv"
    resume: str | None = None
    force: bool = False
    recover_stale_lock: bool = False
    pretrained: bool = False
    initial_checkpoint: str | None = None
    skip_onnx: bool = False

    RANGES: ClassVar[dict[str, Range]] = {
        "img_size": Range(8, 4096), "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE,
        "grad_accum_steps": AT_LEAST_ONE, "workers": Range(0, 256), "lr": POSITIVE, "min_lr": NON_NEGATIVE,
        "weight_decay": NON_NEGATIVE, "momentum": FRACTION, "drop": Range(0, 1, closed_high=False),
        "drop_path": Range(0, 1, closed_high=False),
        "clip_grad": POSITIVE, "sam": NON_NEGATIVE, "seed": Range(0, 2**31 - 1),
        "model_ema_decay": Range(0, 1, closed_low=False, closed_high=False), "balanced_min_per_class": NON_NEGATIVE,
        "eval_every": AT_LEAST_ONE, "checkpoint_every_steps": NON_NEGATIVE, "checkpoint_hist": Range(0, 100),
        "mixup": NON_NEGATIVE, "cutmix": NON_NEGATIVE, "mixup_prob": Range(0, 1), "mixup_switch_prob": Range(0, 1),
        "fold": NON_NEGATIVE, "folds": Range(2, 100),
    }  # fmt: skip
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"select_metric": SELECT_METRICS, "log": LOGGERS,
                                                     "train_split": SPLITS, "val_split": SPLITS,
                                                     "color": ("auto", *COLOR_MODES),
                                                     "data_on_device": DATA_ON_DEVICE,
                                                     "cuda_graph": CUDA_GRAPH_MODES}  # fmt: skip
    # fields whose structure is checked by the code that uses them: check(value, where)
    STRUCTURED: ClassVar[dict[str, Callable[[Any, str], Any]]] = {"augment": augment_config}
    # what a structured option resolves to, defaults filled in: how two spellings compare on resume
    EFFECTIVE: ClassVar[dict[str, Callable[[Any], Any]]] = {"augment": lambda value: asdict(augment_config(value))}

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def mix(self) -> MixupConfig:
        return MixupConfig(self.mixup, self.cutmix, self.mixup_prob, self.mixup_switch_prob)

    def validate(self) -> None:
        """Cross-field checks; subclasses extend it (single values are checked by `check_value`)."""
        if self.min_lr > self.lr:
            raise ConfigError(f"--min-lr {self.min_lr:g} is larger than --lr {self.lr:g}")
        if self.sam_adaptive and not self.sam:
            raise ConfigError("--sam-adaptive scales the radius of --sam RHO: give --sam too (e.g. --sam 1.0)")
        if self.sam and self.grad_accum_steps > 1:
            raise ConfigError(f"--sam {self.sam:g} needs the whole batch's gradient for its ascent step: use "
                              f"--grad-accum-steps 1 (got {self.grad_accum_steps})")  # fmt: skip
        if self.fold is not None and self.fold >= self.folds:
            raise ConfigError(f"--fold {self.fold}: folds are numbered 0..{self.folds - 1} (--folds {self.folds})")
        if self.log == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("--log tensorboard needs the tensorboard package: pip install 'fertrain[tensorboard]'")
        from timm.optim import list_optimizers  # here, not at import: keeps `--help` fast

        if self.opt.lower() not in list_optimizers():
            raise ConfigError(f"--opt {self.opt!r}: not a timm optimizer (e.g. adamw, sgd, nesterov, lamb, lion)")
        if not DEVICE_PATTERN.match(self.device):
            raise ConfigError(f"--device {self.device!r}; expected auto, cpu, cuda, cuda:N or mps")


FLAGS = {"augment": "--aug"}  # fields whose command-line flag is not their name


def flag(name: str) -> str:
    return FLAGS.get(name) or "--" + name.replace("_", "-")


def _base_type(annotation) -> tuple[type | None, bool]:
    """(the type a value must have, whether None is allowed) for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])[0] if len(args) == 1 else None, True
    if origin is not None:
        return origin, False
    return (None if annotation is Any else annotation), False


def check_value(cls: type[TrainConfig], name: str, value: Any, where: str) -> Any:
    """`value` converted to field `name`'s type and checked against its range and choices.

    `where` names the source in messages: a flag (`--lr`) or a YAML key (`c.yaml: lr`).
    Numbers written as strings (YAML reads `1e-3` as text) are accepted for float fields.
    """
    hints = typing.get_type_hints(cls)
    kind, optional = _base_type(hints[name])
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    elif kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
    elif kind is list and typing.get_args(hints[name]) == (float,):
        if isinstance(value, str):  # from a flag: 60,120
            value = [v for v in value.replace(",", " ").split() if v]
        try:
            value = [float(v) for v in value] if isinstance(value, list) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not all(math.isfinite(v) for v in value):
            raise ConfigError(f"{where}: expected a list of numbers (60,120 or [60, 120])")
    elif kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    elif kind is dict and not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of key: value, got {value!r}")
    rng = cls.RANGES.get(name)
    if rng is not None and isinstance(value, int | float) and not rng.holds(value):
        raise ConfigError(f"{where} must be {rng.describe()}, got {value!r}")
    choices = cls.CHOICES.get(name)
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} {value!r}; expected one of {', '.join(choices)}")
    if name in cls.STRUCTURED:
        cls.STRUCTURED[name](value, where)
    return value


def load_yaml_config(path: str | Path, cls: type[TrainConfig]) -> dict[str, Any]:
    """A YAML mapping of options for `cls` from a file or a shipped config's name; a missing file, a
    syntax error or an unknown key names the file."""
    path = resolve_config_file(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: file not found (or name a shipped config: {', '.join(shipped_names())})")
    raw = read_yaml_file(path, "--config") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option: value")
    raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(raw) - field_names(cls))
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    return raw


def field_names(cls: type[TrainConfig]) -> set[str]:
    return {f.name for f in fields(cls)}


def field_defaults(cls: type[TrainConfig]) -> dict[str, Any]:
    """Each option's default: what a run recorded before the option existed was trained with
    (an option is added with a default that keeps the earlier behaviour)."""
    return {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(cls)}  # type: ignore[misc]


def effective_values(cls: type[TrainConfig], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each structured option as what it resolves to (`cls.EFFECTIVE`): two spellings of
    the same augmentation (`{rotate: 10}`, `{rotate: 10, trivial: 0}`) or loss compare equal."""
    return {**values, **{name: resolve(values[name]) for name, resolve in cls.EFFECTIVE.items() if name in values}}


MERGED_MAPPINGS = ("augment",)  # mapping options whose flags override single keys of the YAML's mapping


def parse_key_values(items: list[str] | None, flag_name: str, example: str) -> dict[str, Any]:
    """`FLAG KEY=VALUE` (repeatable) -> a mapping; values read as YAML (8, 0.5, true, [0.8, 1])."""
    opts = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag_name} {item!r}: expected KEY=VALUE, e.g. {flag_name} {example}")
        try:
            opts[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{flag_name} {item!r}: cannot read the value {value!r}") from None
    return opts


def resolve_config(cls: type[TrainConfig], overrides: dict[str, Any], yaml_path: str | Path | None = None,
                   preset: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """Merge defaults, `preset`, YAML and the flags that were given (None = not given); check
    every value where it came from, then the config as a whole."""
    given = {k: v for k, v in overrides.items() if v is not None}
    from_yaml = load_yaml_config(yaml_path, cls) if yaml_path else {}
    unknown = sorted(set(given) - field_names(cls))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(flag(k) for k in unknown)}")
    merged: dict[str, Any] = dict(preset or {})
    for source, values in (("yaml", from_yaml), ("flag", given)):
        for name, value in values.items():
            where = flag(name) if source == "flag" else f"--config {yaml_path}: {name}"
            if name in MERGED_MAPPINGS and isinstance(value, dict) and isinstance(merged.get(name), dict):
                value = {**merged[name], **value}  # `--aug rotate=10` changes one key of the YAML's augment
            merged[name] = check_value(cls, name, value, where)
    cfg = cls(**merged)
    cfg.validate()
    return cfg


def backbone_abbrev(backbone: str) -> str:
    """Short backbone name that starts run directory names (RN18_resnet18_...)."""
    return BACKBONE_ABBREV.get(backbone) or re.sub(r"[^A-Za-z0-9]+", "", backbone).upper()[:8]
