"""RAF-DB basic: `EmoLabel/list_patition_label.txt` (`train_00001.jpg 5`) + aligned images.

Labels 1..7 = Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral. The split comes
from the name prefix (train/test); validation is derived from train by the build.
"""

from __future__ import annotations

from fertrain.manifests.adapters.base import AdapterContext, parse_int
from fertrain.manifests.schema import Candidate

NATIVE = {1: "Surprise", 2: "Fear", 3: "Disgust", 4: "Happiness", 5: "Sadness", 6: "Anger", 7: "Neutral"}
TO_CANONICAL = {1: 5, 2: 2, 3: 1, 4: 3, 5: 4, 6: 0, 7: 6}
PREFIX_TO_SPLIT = {"train": "train", "test": "test"}


def rafdb(ctx: AdapterContext) -> list[Candidate]:
    ctx.require_dir(ctx.root, "RAF-DB basic root with EmoLabel/ and Image/")
    label_file = ctx.require_file(ctx.resolve(ctx.options["label_file"]), "RAF-DB list_patition_label.txt")
    image_dir = ctx.resolve(ctx.options["image_dir"])
    suffix = ctx.options["image_suffix"]
    out: list[Candidate] = []
    with open(label_file, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                ctx.bad(label_file, f"expected '<name> <label>', found {line.strip()!r}", line_no, "fields")
                continue
            name, raw = parts
            code = parse_int(ctx, raw, label_file, line_no, "label")
            if code is None:
                continue
            if code not in TO_CANONICAL:
                ctx.bad(label_file, f"label {code} out of range; expected 1..7", line_no, "label")
                continue
            prefix = name.split("_", 1)[0]
            if prefix not in PREFIX_TO_SPLIT:
                ctx.bad(label_file, f"name {name!r} should start with train_ or test_", line_no, "value")
                continue
            stem, dot, ext = name.rpartition(".")
            image_name = f"{stem}{suffix}.{ext}" if dot else f"{name}{suffix}"
            rel = ctx.relative(image_dir, image_name)
            out.append(
                Candidate(
                    root=ctx.root,
                    path=rel,
                    label=TO_CANONICAL[code],
                    native_label=NATIVE[code],
                    origin=(str(label_file), line_no),
                    split=PREFIX_TO_SPLIT[prefix],
                )
            )
    return out
