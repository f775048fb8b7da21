"""CK+ (CK+48 layout): class folders, files `S010_004_00000017.png`.

The subject (`S010`) is the group, so derived splits are subject-disjoint. Contempt is
dropped with a count; the folder names are crosswalked explicitly.
"""

from __future__ import annotations

from fertrain.errors import InputError
from fertrain.manifests.adapters.base import AdapterContext, iter_images
from fertrain.manifests.schema import Candidate

FOLDERS = {"anger": 0, "disgust": 1, "fear": 2, "happy": 3, "sadness": 4, "surprise": 5, "neutral": 6}


def ckplus(ctx: AdapterContext) -> list[Candidate]:
    ctx.require_dir(ctx.root, "CK+ root with one folder per class (anger, contempt, ...)")
    out: list[Candidate] = []
    for class_dir in sorted(p for p in ctx.root.iterdir() if p.is_dir()):
        name = class_dir.name.lower()
        images = iter_images(class_dir)
        if name == "contempt":
            ctx.drop("contempt", len(images))
            continue
        if name not in FOLDERS:
            if not ctx.skip_bad:
                raise InputError(class_dir, f"unknown class folder; expected contempt or one of {', '.join(FOLDERS)}",
                                 kind="label")  # fmt: skip
            ctx.drops["bad_label"] += len(images)
            continue
        for img in images:
            subject = img.name.split("_", 1)[0]
            out.append(
                Candidate(
                    root=ctx.root,
                    path=img.relative_to(ctx.root).as_posix(),
                    label=FOLDERS[name],
                    native_label=class_dir.name,
                    origin=(str(img), None),
                    group=subject,
                )
            )
    return out
