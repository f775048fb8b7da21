"""Reading soft labels and proving they belong to a manifest.

A soft-label file records the manifest sha256 it was computed on and is keyed by row_id and
image sha256. A student refuses a file whose manifest stamp or row keys do not match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fertrain.errors import FertrainError
from fertrain.labels import CLASS_NAMES
from fertrain.manifests.io import Manifest, check_stamp

METADATA_KEY = b"fertrain"
PROB_COLUMNS = tuple(f"prob_{c.lower()}" for c in CLASS_NAMES)
LOGIT_COLUMNS = tuple(f"logit_{c.lower()}" for c in CLASS_NAMES)


@dataclass
class SoftLabels:
    path: Path
    table: pd.DataFrame
    metadata: dict

    @property
    def probs(self) -> np.ndarray:
        return self.table[list(PROB_COLUMNS)].to_numpy(dtype=np.float32)


def read_metadata(path: str | Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise FertrainError(f"{path}: not a fertrain soft-label file (no '{METADATA_KEY.decode()}' metadata)")
    return json.loads(meta[METADATA_KEY])


def load_softlabels(path: str | Path, manifest: Manifest | None = None) -> SoftLabels:
    """Load (stamp checked); with `manifest`, refuse a different manifest or mismatched row keys."""
    path = Path(path)
    check_stamp(path)
    meta = read_metadata(path)
    table = pd.read_parquet(path)
    if manifest is not None:
        if meta.get("manifest_sha256") != manifest.sha256:
            made_for = str(meta.get("manifest_sha256"))[:12]
            raise FertrainError(f"{path}: soft labels were made for manifest sha256 {made_for}… but {manifest.path} "
                                f"is {str(manifest.sha256)[:12]}…; re-export them")  # fmt: skip
        keys = manifest.df.set_index("row_id")["sha256"]
        missing = ~table["row_id"].isin(keys.index)
        if missing.any():
            raise FertrainError(f"{path}: {int(missing.sum())} row ids are not in {manifest.path} "
                                f"(first: {table.loc[missing, 'row_id'].iloc[0]})")  # fmt: skip
        wrong = keys.loc[table["row_id"]].to_numpy() != table["sha256"].to_numpy()
        if wrong.any():
            raise FertrainError(f"{path}: {int(wrong.sum())} rows have a different image sha256 than "
                                f"{manifest.path} (first: {table.loc[wrong, 'row_id'].iloc[0]})")  # fmt: skip
    return SoftLabels(path, table, meta)
