"""Small parsing helpers shared by the command modules."""

from __future__ import annotations

import math
from collections.abc import Callable

import typer


def split_list(values: list[str] | None) -> list[str] | None:
    """Repeatable options that also take comma lists: `--x a --x b,c` -> [a, b, c]; None when not given."""
    if values is None:
        return None
    return [s for v in values for s in v.split(",") if s]


TTA_CHOICES = ("none", "flip", "five", "ten")  # fertrain.engine.evaluate.TTA_MODES (not imported: --help stays fast)
TTA_HELP = ("Test-time augmentation: none | flip (mirror, logits averaged) | five | ten (corner and centre "
            "crops, + mirrors for ten, probabilities averaged).")  # fmt: skip


def tta_mismatch_note(target, fitted_on: str | None, tta: str) -> str | None:
    """What to tell a user whose model's temperature was fitted on other views than `--tta` (averaged
    crops are less confident than one view, so its probabilities are off), or None."""
    if fitted_on is None or fitted_on == tta:
        return None
    return (f"[yellow]note[/]: {target}'s temperature was fitted on --tta {fitted_on} logits, these are --tta {tta}: "
            f"its probabilities are calibrated for other logits; `fertrain calibrate RUN --tta {tta}` fits one "
            "for them")  # fmt: skip


def one_of(choices: tuple[str, ...]) -> Callable:
    """A Typer callback refusing a value outside `choices`, naming them."""

    def check(value):
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r}; expected one of {', '.join(choices)}")
        return value

    return check


def tta_option() -> typer.models.OptionInfo:
    return typer.Option("none", "--tta", help=TTA_HELP, callback=one_of(TTA_CHOICES))


def at_least(low: float, *, strict: bool = False, high: float | None = None) -> Callable:
    """A Typer callback refusing values below `low` (or equal, with `strict`), above `high`, and
    NaN/infinity, with a message naming the flag (the CLI prints it as one line)."""

    def check(value):
        if value is None:
            return value
        if isinstance(value, list):  # a repeatable option: every value
            return [check(v) for v in value]
        too_low = value < low or (strict and value == low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            bound = f"{'>' if strict else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise typer.BadParameter(f"must be {bound}, got {value!r}")  # Typer prefixes the flag
        return value

    return check
