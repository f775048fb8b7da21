"""ExpW: in-the-wild photos with one `label.lst` line per face.

`name face_id top left right bottom confidence label`; labels 0..6 = angry, disgust, fear,
happy, sad, surprise, neutral (the canonical order). Faces are not cropped on disk: the box
is stored in the manifest and cropped at load time. All faces of one photo share a group,
so derived splits never put two faces of the same photo on both sides. A box that reaches
past the image edge is clipped (ExpW's crop is `img[top:bottom, left:right]`, which clips)
and counted in the summary; `clip_boxes: false` makes it an error instead.
"""

from __future__ import annotations

from fertrain.manifests.adapters.base import AdapterContext, parse_int
from fertrain.manifests.schema import Candidate

NATIVE = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def expw(ctx: AdapterContext) -> list[Candidate]:
    ctx.require_dir(ctx.root, "ExpW root with label/label.lst and image/origin/")
    label_file = ctx.require_file(ctx.resolve(ctx.options["label_file"]), "ExpW label.lst")
    image_dir = ctx.require_dir(ctx.resolve(ctx.options["image_dir"]), "ExpW image folder")
    min_conf = ctx.options["min_confidence"]
    out: list[Candidate] = []
    with open(label_file, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 8:
                ctx.bad(label_file, f"expected 8 fields 'name face_id top left right bottom confidence label', "
                        f"found {len(parts)}", line_no, "fields")  # fmt: skip
                continue
            name, face_id = parts[0], parts[1]
            ints = [parse_int(ctx, v, label_file, line_no, w)
                    for v, w in zip(parts[2:6], ("top", "left", "right", "bottom"), strict=True)]  # fmt: skip
            code = parse_int(ctx, parts[7], label_file, line_no, "label")
            if code is None or any(v is None for v in ints):
                continue
            try:
                confidence = float(parts[6])
            except ValueError:
                ctx.bad(label_file, f"confidence must be a number, found {parts[6]!r}", line_no, "value")
                continue
            if not 0 <= code < len(NATIVE):
                ctx.bad(label_file, f"label {code} out of range; expected 0..6", line_no, "label")
                continue
            top, left, right, bottom = ints  # type: ignore[misc]
            if right <= left or bottom <= top or min(top, left) < 0:
                ctx.bad(label_file, f"box top={top} left={left} right={right} bottom={bottom} is empty or "
                        "negative; expected 0 <= left < right and 0 <= top < bottom", line_no, "box")  # fmt: skip
                continue
            if min_conf is not None and confidence < float(min_conf):
                ctx.drop("low_confidence")
                continue
            out.append(
                Candidate(
                    root=ctx.root,
                    path=ctx.relative(image_dir, name),
                    label=code,
                    native_label=NATIVE[code],
                    origin=(str(label_file), line_no),
                    group=name,
                    box=(left, top, right - left, bottom - top),
                    face_id=face_id,
                    clip_box=bool(ctx.options["clip_boxes"]),
                )
            )
    return out
