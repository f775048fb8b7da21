"""FERPlus: crowd votes in `fer2013new.csv`, joined by row position with FER2013's CSV.

Label rules follow the FERPlus reference code: votes <= 1 are zeroed first (outlier
removal); `majority` keeps a face only when its top class has more than half of the
remaining votes and is not unknown/NF; `probability` keeps the normalized distribution and
takes its argmax as the hard label. Both modes keep the distribution (over the seven
canonical classes) as soft-target columns. Contempt, unknown and NF are dropped with counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fertrain.errors import InputError
from fertrain.labels import CLASS_NAMES
from fertrain.manifests.adapters.base import AdapterContext, read_csv_rows
from fertrain.manifests.adapters.fer2013 import USAGE_TO_SPLIT, materialize_fer2013_csv
from fertrain.manifests.schema import Candidate

VOTE_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
HEADER = ["Usage", "Image name", *VOTE_COLUMNS]
# Crosswalk from FERPlus vote column to canonical index; None = dropped by design.
VOTE_TO_CANONICAL: dict[str, int | None] = {
    "neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0, "disgust": 1, "fear": 2,
    "contempt": None, "unknown": None, "NF": None,
}  # fmt: skip
MODES = ("majority", "probability")


def ferplus_label(votes: np.ndarray, mode: str) -> tuple[int | None, str, np.ndarray | None]:
    """Apply the reference rules to one row of 10 votes.

    Returns (canonical label or None, the native winner or the drop reason, 7-class soft
    vector). As in the reference code, a tie between an emotion and contempt/unknown/NF goes
    to the emotion (it comes first); the hard label is the soft vector's argmax.
    """
    v = np.where(votes <= 1, 0, votes).astype(np.float64)
    total = v.sum()
    if total <= 0:
        return None, "no_votes_after_outlier_removal", None
    if mode == "majority" and v.max() <= 0.5 * total:
        return None, "no_majority", None
    emotions, contempt, unknown, not_face = v[:7], v[7], v[8], v[9]
    if max(unknown, not_face) > max(emotions.max(), contempt):
        return None, "unknown" if unknown >= not_face else "NF", None
    if contempt > emotions.max():
        return None, "contempt", None
    soft = np.zeros(len(CLASS_NAMES))
    for col, n in zip(VOTE_COLUMNS[:7], emotions, strict=True):
        soft[VOTE_TO_CANONICAL[col]] += n  # type: ignore[index]
    soft /= soft.sum()
    label = int(np.argmax(soft))
    native = next(c for c in VOTE_COLUMNS[:7] if VOTE_TO_CANONICAL[c] == label)
    return label, native, soft


def ferplus(ctx: AdapterContext) -> list[Candidate]:
    mode = ctx.options["mode"]
    if mode not in MODES:
        raise InputError(ctx.root, f"ferplus mode {mode!r} unknown; expected one of {', '.join(MODES)}", kind="config")
    labels_csv = ctx.root if ctx.root.suffix.lower() == ".csv" else ctx.resolve(ctx.options["labels_csv"])
    ctx.require_file(labels_csv, "FERPlus fer2013new.csv")
    base = labels_csv.parent
    pixels_csv = Path(ctx.options["fer2013_csv"]).expanduser()
    pixels_csv = pixels_csv if pixels_csv.is_absolute() else base / pixels_csv
    label_rows = list(read_csv_rows(ctx, labels_csv, HEADER))
    pixel_rows = {r.index: r for r in materialize_fer2013_csv(ctx, pixels_csv)}
    n_pixel_rows = max(pixel_rows, default=-1) + 1
    if n_pixel_rows < len(label_rows) and not ctx.options["partial"]:
        raise InputError(
            pixels_csv,
            f"has {n_pixel_rows} data rows but {labels_csv.name} has {len(label_rows)}; FERPlus joins "
            "by row position, so the files must match (set `partial: true` to use only the joinable head)",
            kind="join",
        )
    ctx.notes["mode"] = mode
    ctx.notes["joined_rows"] = min(n_pixel_rows, len(label_rows))
    out: list[Candidate] = []
    for index, (line, rec) in enumerate(label_rows):
        if index >= n_pixel_rows:
            ctx.drop("beyond_partial_fer2013_csv", len(label_rows) - index)
            break
        if not rec["Image name"].strip():
            ctx.drop("not_a_face_empty_image_name")
            continue
        pix = pixel_rows.get(index)
        if pix is None:  # the FER2013 row was bad and skipped
            ctx.drop("fer2013_row_skipped")
            continue
        try:
            votes = np.array([float(rec[c]) for c in VOTE_COLUMNS])
        except ValueError:
            ctx.bad(labels_csv, "vote counts must be numbers", line, "value")
            continue
        usage = rec["Usage"].strip()
        if usage != pix.usage:
            ctx.bad(labels_csv, f"Usage {usage!r} differs from {pixels_csv.name} line {pix.line} ({pix.usage!r}); "
                    "the row-position join is misaligned", line, "join")  # fmt: skip
            continue
        label, native, soft = ferplus_label(votes, mode)
        if label is None:
            ctx.drop(native)
            continue
        out.append(
            Candidate(
                root=pix.root,
                path=pix.path,
                label=label,
                native_label=native,
                origin=(str(labels_csv), line),
                split=USAGE_TO_SPLIT[usage],
                soft=tuple(float(x) for x in soft),
            )
        )
    return out
