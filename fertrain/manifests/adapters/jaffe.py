"""JAFFE: the label is in the filename, `KA.AN1.39.tiff` = subject KA, expression AN.

Read wherever the files sit under the root: flat as distributed, or in the class subfolders
of common redistributions (`1 - Happy/KA.HA1.29.tiff`); the filename, not the folder, decides.
"""

from __future__ import annotations

from fertrain.manifests.adapters.base import AdapterContext
from fertrain.manifests.image_files import IMAGE_EXTENSIONS
from fertrain.manifests.schema import Candidate

CODES = {"AN": 0, "DI": 1, "FE": 2, "HA": 3, "SA": 4, "SU": 5, "NE": 6}


def jaffe(ctx: AdapterContext) -> list[Candidate]:
    ctx.require_dir(ctx.root, "JAFFE folder of images named SUBJECT.CODEn.ID.tiff (any depth)")
    out: list[Candidate] = []
    images = sorted(p for p in ctx.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    for img in images:
        parts = img.name.split(".")
        code = parts[1][:2].upper() if len(parts) >= 3 else ""
        if code not in CODES:
            ctx.bad(img, f"cannot read an expression code from the name; expected SUBJECT.<{'|'.join(CODES)}>n.ID.ext",
                    kind="label")  # fmt: skip
            continue
        out.append(
            Candidate(
                root=ctx.root,
                path=img.relative_to(ctx.root).as_posix(),
                label=CODES[code],
                native_label=code,
                origin=(str(img), None),
                group=parts[0],
            )
        )
    return out
