"""Source and split filtering: the one function every training command uses.

The policy object is what alignment reports record, so a run says exactly which rows it
saw (e.g. Stage B = everything but FERPlus).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from fertrain.errors import ConfigError
from fertrain.manifests.schema import SPLITS


@dataclass
class SourceFilter:
    include_sources: list[str] = field(default_factory=list)
    exclude_sources: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def filter_rows(df: pd.DataFrame, policy: SourceFilter, *, split_flag: str = "--split") -> pd.DataFrame:
    """Rows kept by `policy`; an unknown source or split name is an error listing the known ones
    (`split_flag` names where the splits came from: the flag the user typed, or a recipe key)."""
    known = sorted(df["source"].dropna().unique().tolist())
    for flag, names in (("include_sources", policy.include_sources), ("exclude_sources", policy.exclude_sources)):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ConfigError(f"--{flag.replace('_', '-')}: unknown source(s) {', '.join(unknown)}; "
                              f"sources in this manifest: {', '.join(known) or '(none)'}")  # fmt: skip
    bad_splits = sorted(set(policy.splits) - set(SPLITS))
    if bad_splits:
        raise ConfigError(f"{split_flag}: unknown split(s) {', '.join(bad_splits)}; expected {', '.join(SPLITS)}")
    keep = pd.Series(True, index=df.index)
    if policy.include_sources:
        keep &= df["source"].isin(policy.include_sources)
    if policy.exclude_sources:
        keep &= ~df["source"].isin(policy.exclude_sources)
    if policy.splits:
        keep &= df["split"].isin(policy.splits)
    return df[keep]
