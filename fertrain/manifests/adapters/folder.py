"""Generic class-subfolder tree with a user-supplied label map.

`label_map` maps each folder name to a canonical class name (or `drop`); a folder that is
not in the map is an error, so nothing is ever relabelled by guesswork. With `split_dirs`
(e.g. `{train: train, val: val}`) the tree is `<split_dir>/<class>/...`, else `<class>/...`.
`group_regex` takes the subject id from the filename (first capture group).
"""

from __future__ import annotations

import re
from pathlib import Path

from fertrain.errors import ConfigError, InputError
from fertrain.labels import class_index
from fertrain.manifests.adapters.base import AdapterContext, iter_images
from fertrain.manifests.schema import SPLITS, Candidate


def _label_map(ctx: AdapterContext) -> dict[str, int | None]:
    raw = ctx.options["label_map"]
    if not raw or not isinstance(raw, dict):
        raise ConfigError(f"source {ctx.source!r}: adapter 'folder' needs label_map: {{folder: ClassName|drop}}")
    out: dict[str, int | None] = {}
    for folder, target in raw.items():
        if str(target).lower() == "drop":
            out[str(folder)] = None
            continue
        try:
            out[str(folder)] = class_index(str(target))
        except KeyError as exc:
            raise ConfigError(f"source {ctx.source!r}: label_map[{folder!r}]: {exc.args[0]}") from None
    return out


def folder(ctx: AdapterContext) -> list[Candidate]:
    ctx.require_dir(ctx.root, "a folder with one subfolder per class")
    label_map = _label_map(ctx)
    group_re = re.compile(ctx.options["group_regex"]) if ctx.options["group_regex"] else None
    split_dirs: dict[str, str] | None = ctx.options["split_dirs"]
    if split_dirs:
        bad = sorted(set(split_dirs) - set(SPLITS))
        if bad:
            raise ConfigError(f"source {ctx.source!r}: split_dirs keys {bad} unknown; expected {list(SPLITS)}")
        trees: list[tuple[str | None, Path]] = [(s, ctx.require_dir(ctx.root / d, f"{s} split folder"))
                                                 for s, d in split_dirs.items()]  # fmt: skip
    else:
        trees = [(None, ctx.root)]
    out: list[Candidate] = []
    for split, tree in trees:
        for class_dir in sorted(p for p in tree.iterdir() if p.is_dir()):
            images = iter_images(class_dir)
            if not images:
                ctx.notes.setdefault("empty_folders", []).append(str(class_dir))
            if class_dir.name not in label_map:
                if not ctx.skip_bad:
                    raise InputError(class_dir, f"folder is not in label_map (known: {', '.join(label_map)})",
                                     kind="label")  # fmt: skip
                ctx.drops["bad_label"] += len(images)
                continue
            label = label_map[class_dir.name]
            if label is None:
                ctx.drop(f"label_map_drop_{class_dir.name}", len(images))
                continue
            for img in images:
                match = group_re.search(img.name) if group_re else None
                out.append(
                    Candidate(
                        root=ctx.root,
                        path=img.relative_to(ctx.root).as_posix(),
                        label=label,
                        native_label=class_dir.name,
                        origin=(str(img), None),
                        split=split,
                        group=match.group(1) if match else None,
                    )
                )
    return out
