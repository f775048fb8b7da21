"""AffectNet: `training.csv` / `validation.csv` with face box and 68 landmarks.

Expression codes 0..10 = Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt,
None, Uncertain, Non-Face. Contempt and codes >= 8 are dropped with counted reasons.
AffectNet's public validation set is commonly used as the test set: `validation_split`
chooses whether it becomes `val` (default) or `test` (then val is derived from train).
"""

from __future__ import annotations

from fertrain.manifests.adapters.base import AdapterContext, parse_int, read_csv_rows
from fertrain.manifests.schema import Candidate

HEADER = [
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
    "facial_landmarks", "expression", "valence", "arousal",
]  # fmt: skip
NATIVE = (
    "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt", "None", "Uncertain", "Non-Face",
)  # fmt: skip
TO_CANONICAL = {0: 6, 1: 3, 2: 4, 3: 5, 4: 2, 5: 1, 6: 0}
DROP_REASON = {7: "contempt", 8: "none", 9: "uncertain", 10: "non_face"}


def _landmarks(raw: str) -> str | None:
    values = [v for v in raw.replace(";", " ").split() if v]
    return " ".join(values) if values else None


def affectnet(ctx: AdapterContext) -> list[Candidate]:
    ctx.require_dir(ctx.root, "AffectNet root with training.csv, validation.csv and images")
    image_dir = ctx.resolve(ctx.options["image_dir"])
    val_split = ctx.options["validation_split"]
    out: list[Candidate] = []
    for csv_name, split in ((ctx.options["train_csv"], "train"), (ctx.options["val_csv"], val_split)):
        csv_path = ctx.require_file(ctx.resolve(csv_name), f"AffectNet {csv_name}")
        for line, rec in read_csv_rows(ctx, csv_path, HEADER):
            code = parse_int(ctx, rec["expression"], csv_path, line, "expression")
            if code is None:
                continue
            if code in DROP_REASON:
                ctx.drop(DROP_REASON[code])
                continue
            if code not in TO_CANONICAL:
                ctx.bad(csv_path, f"expression {code} out of range; expected 0..10", line, "label")
                continue
            box = [parse_int(ctx, rec[k], csv_path, line, k) for k in ("face_x", "face_y", "face_width", "face_height")]
            if any(b is None for b in box):
                continue
            out.append(
                Candidate(
                    root=ctx.root,
                    path=ctx.relative(image_dir, rec["subDirectory_filePath"]),
                    label=TO_CANONICAL[code],
                    native_label=NATIVE[code],
                    origin=(str(csv_path), line),
                    split=split,
                    box=(box[0], box[1], box[2], box[3]),  # type: ignore[arg-type]
                    landmarks=_landmarks(rec["facial_landmarks"]),
                )
            )
    return out
