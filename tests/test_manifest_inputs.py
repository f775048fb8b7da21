"""Manifest building on generated trees: every bad-input case, every adapter, dedup, stamps."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fertrain.errors import ConfigError, InputError, StampMismatchError
from fertrain.manifests import (
    DedupPolicy,
    SourceFilter,
    build_manifest,
    filter_rows,
    load_manifest,
    recipe_from_cli,
    verify_manifest,
)
from fertrain.manifests.recipe import load_recipe, recipe_from_dict
from fertrain.runs import write_alignment_report

from .clitools import run_cli
from .conftest import write_image

NO_DEDUP = DedupPolicy(exact="off", near="off")


def build(sources, out, options=(), skip_bad=False, dedup=NO_DEDUP, **kw):
    return build_manifest(recipe_from_cli(list(sources), list(options), dedup, 1337), out,
                          skip_bad=skip_bad, show_progress=False, **kw)  # fmt: skip


def fer_csv(path: Path, rows: list[str], header: str = "emotion,pixels,Usage") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def pixels(value: int = 128, n: int = 2304) -> str:
    rng = np.random.default_rng(value)
    return " ".join(str(v) for v in rng.integers(0, 256, n))


def fer_folder(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    """FER2013 folder layout with unique random images (a different `seed` gives different ones)."""
    seed *= 1000
    for split, prefix in (("train", "Training"), ("validation", "PublicTest")):
        for cls in ("angry", "happy", "neutral"):
            for _ in range(per_class):
                seed += 1
                write_image(root / split / cls / f"{prefix}_{seed}.jpg", seed)
    return root


# --- bad input: each case names the file (and line) and what was expected --------------


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="missing folder") as exc:
        build([f"fer2013={tmp_path / 'nope'}"], tmp_path / "m.csv")
    assert str(tmp_path / "nope") in str(exc.value)


def test_wrong_csv_header(tmp_path):
    csv = fer_csv(tmp_path / "fer2013.csv", [f"0,{pixels()},Training"], header="label,pixels,usage")
    with pytest.raises(InputError) as exc:
        build([f"fer2013={csv}"], tmp_path / "m.csv")
    assert f"{csv}:1:" in str(exc.value) and "expected 'emotion,pixels,Usage'" in str(exc.value)


def test_pixel_count_and_label_range_name_the_line(tmp_path):
    rows = [f"0,{pixels(1)},Training", f"3,{pixels(2, 2303)},Training", f"9,{pixels(3)},Training",
            f"4,{pixels(4)},PublicTest", f"5,{pixels(5)},Training"]  # fmt: skip
    csv = fer_csv(tmp_path / "fer2013.csv", rows)
    with pytest.raises(InputError, match="2303 values, expected 2304") as exc:
        build([f"fer2013={csv}"], tmp_path / "m.csv")
    assert f"{csv}:3:" in str(exc.value)
    rows[1] = f"3,{pixels(2)},Training"
    fer_csv(csv, rows)
    with pytest.raises(InputError, match="emotion '9' out of range; expected 0..6") as exc:
        build([f"fer2013={csv}"], tmp_path / "m.csv")
    assert f"{csv}:4:" in str(exc.value)
    rows[1] = f"3,{pixels(2, 2303)},Training"
    fer_csv(csv, rows)
    res = build([f"fer2013={csv}"], tmp_path / "m.csv", skip_bad=True, options=[])
    assert len(res.df) == 3
    assert res.summary["drops"]["fer2013"] == {"bad_label": 1, "bad_pixels": 1}


def test_pixel_values_out_of_range(tmp_path):
    bad = " ".join(["300"] * 2304)
    csv = fer_csv(tmp_path / "fer2013.csv", [f"0,{pixels(1)},Training", f"1,{bad},Training"])
    with pytest.raises(InputError, match="0..255") as exc:
        build([f"fer2013={csv}"], tmp_path / "m.csv")
    assert f"{csv}:3:" in str(exc.value)


def test_unreadable_image_names_the_file(tmp_path):
    root = fer_folder(tmp_path / "fer")
    broken = root / "train" / "happy" / "Training_999.jpg"
    broken.write_bytes(b"this is not a jpeg")
    with pytest.raises(InputError, match="unreadable image") as exc:
        build([f"fer2013={root}"], tmp_path / "m.csv")
    assert str(broken) in str(exc.value)
    res = build([f"fer2013={root}"], tmp_path / "m.csv", skip_bad=True)
    assert res.summary["drops"]["fer2013"] == {"bad_image": 1} and len(res.df) == 18


def test_rafdb_label_out_of_range_duplicate_name_and_missing_image(tmp_path):
    root = tmp_path / "raf"
    lines = ["train_00001.jpg 5", "train_00002.jpg 8", "train_00001.jpg 4", "test_00001.jpg 1", "train_00003.jpg 2"]
    (root / "EmoLabel").mkdir(parents=True)
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text("\n".join(lines) + "\n")
    for i, name in enumerate(["train_00001", "train_00002", "test_00001"]):
        write_image(root / "Image" / "aligned" / f"{name}_aligned.jpg", i)
    with pytest.raises(InputError, match="label 8 out of range; expected 1..7") as exc:
        build([f"rafdb={root}"], tmp_path / "m.csv")
    assert f"{label_file}:2:" in str(exc.value)
    lines[1] = "train_00002.jpg 7"
    label_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="duplicate name") as exc:
        build([f"rafdb={root}"], tmp_path / "m.csv")
    assert f"{label_file}:3:" in str(exc.value) and f"first seen at {label_file}:1" in str(exc.value)
    lines[2] = "train_00004.jpg 4"
    label_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="image file not found") as exc:  # train_00004 has no image
        build([f"rafdb={root}"], tmp_path / "m.csv")
    assert "train_00004_aligned.jpg" in str(exc.value) and f"{label_file}:3" in str(exc.value)


def expw_tree(root: Path, lines: list[str]) -> Path:
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    for name in {ln.split()[0] for ln in lines}:
        if "/" not in name:
            write_image(root / "image" / "origin" / name, hash(name) % 1000, size=64, color=True)
    return root


def test_box_outside_the_image_and_path_escape(tmp_path):
    lines = [f"a{i}.jpg 0 4 4 40 40 80.0 {i % 7}" for i in range(12)] + ["b.jpg 0 70 10 50 90 60.0 3"]
    root = expw_tree(tmp_path / "expw", lines)
    with pytest.raises(InputError, match="lies outside the 64x64 image") as exc:
        build([f"expw={root}"], tmp_path / "m.csv")
    assert f"{root / 'label' / 'label.lst'}:13:" in str(exc.value)
    res = build([f"expw={root}"], tmp_path / "m.csv", skip_bad=True)
    assert res.summary["drops"]["expw"] == {"bad_box": 1} and len(res.df) == 12
    assert res.df.iloc[0][["box_x", "box_y", "box_w", "box_h"]].tolist() == [4, 4, 36, 36]
    lines[-1] = "../../../outside.jpg 0 1 1 5 5 60.0 3"  # image/origin/../../.. leaves the root
    root = expw_tree(root, lines)
    with pytest.raises(InputError, match="escapes the source root") as exc:
        build([f"expw={root}"], tmp_path / "m.csv")
    assert ":13:" in str(exc.value)


def test_box_partly_outside_is_clipped_for_expw_and_refused_when_asked(tmp_path):
    lines = [f"a{i}.jpg 0 4 4 40 40 80.0 {i % 7}" for i in range(12)] + ["b.jpg 0 10 50 70 40 60.0 3"]
    root = expw_tree(tmp_path / "expw", lines)
    res = build([f"expw={root}"], tmp_path / "m.csv")
    clipped = res.df[res.df.row_id.str.contains("b.jpg")].iloc[0]
    assert [clipped.box_x, clipped.box_y, clipped.box_w, clipped.box_h] == [50, 10, 14, 30]
    assert res.summary["sources"]["expw"]["notes"]["boxes_clipped"] == 1
    with pytest.raises(InputError, match="outside"):
        build([f"expw={root}"], tmp_path / "m2.csv", options=["expw.clip_boxes=false"])


def test_unknown_class_folder_is_an_error_not_a_guess(tmp_path):
    root = fer_folder(tmp_path / "fer")
    write_image(root / "train" / "contemptuous" / "Training_500.jpg", 500)
    with pytest.raises(InputError, match="unknown class folder"):
        build([f"fer2013={root}"], tmp_path / "m.csv")


# --- adapters on generated native layouts ----------------------------------------------


def test_affectnet_codes_boxes_landmarks_and_validation_as_test(tmp_path):
    root = tmp_path / "affectnet"
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    lmk = ";".join(str(v) for v in range(136))
    train = [header] + [f"1/t{i}.jpg,2,3,20,20,{lmk},{code},0.1,0.2" for i, code in enumerate([0, 1, 2, 3, 4, 5, 6] * 3
                                                                                              + [7, 8, 9, 10])]
    val = [header] + [f"2/v{i}.jpg,1,1,10,10,,{code},0,0" for i, code in enumerate([6, 0, 3])]
    for lines, name in ((train, "training.csv"), (val, "validation.csv")):
        (root).mkdir(exist_ok=True)
        (root / name).write_text("\n".join(lines) + "\n")
        for i, ln in enumerate(lines[1:]):
            write_image(root / "Manually_Annotated_Images" / ln.split(",")[0], hash(ln) % 10000 + i, size=32)
    res = build([f"affectnet={root}"], tmp_path / "m.parquet", options=["affectnet.validation_split=test"])
    df = res.df
    assert res.summary["drops"]["affectnet"] == {"contempt": 1, "none": 1, "uncertain": 1, "non_face": 1}
    assert (df.split == "test").sum() == 3 and set(df.split) == {"train", "val", "test"}
    t0 = df[df.path == "Manually_Annotated_Images/1/t0.jpg"].iloc[0]
    assert (t0.label_name, t0.native_label) == ("Neutral", "Neutral")
    assert [t0.box_x, t0.box_y, t0.box_w, t0.box_h] == [2, 3, 20, 20]
    assert t0.landmarks.split() == [str(v) for v in range(136)]
    anger = df[df.native_label == "Anger"]
    assert (anger.label_name == "Angry").all() and len(anger) == 4


def test_ckplus_contempt_dropped_and_subject_grouped_splits(tmp_path):
    root = tmp_path / "ck"
    seed = 0
    for cls in ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"):
        for subject in range(12):
            for frame in range(2):
                seed += 1
                write_image(root / cls / f"S{subject:03d}_001_{frame:08d}.png", seed)
    res = build([f"ckplus={root}"], tmp_path / "m.csv")
    df = res.df
    assert res.summary["drops"]["ckplus"] == {"contempt": 24}
    assert set(df.label_name) == {"Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise"}
    assert df.groupby("group")["split"].nunique().max() == 1  # no subject on both sides
    assert set(df.split) == {"train", "val", "test"}
    again = build([f"ckplus={root}"], tmp_path / "m2.csv")
    assert again.df.split.tolist() == df.split.tolist()  # seeded: identical splits


def test_jaffe_label_from_filename(tmp_path):
    root = tmp_path / "jaffe"
    names = [f"{s}.{c}{k}.{i}.tiff" for i, (s, c, k) in enumerate(
        (s, c, k) for s in ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")
        for c in ("AN", "DI", "FE", "HA", "NE", "SA", "SU") for k in (1, 2))]  # fmt: skip
    for i, n in enumerate(names):
        write_image(root / n, i)
    res = build([f"jaffe={root}"], tmp_path / "m.csv")
    row = res.df[res.df.path == names[0]].iloc[0]
    assert (row.label_name, row.group) == ("Angry", "KA")
    assert res.df.label_name.value_counts().to_dict() == {n: 20 for n in
                                                          ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad",
                                                           "Surprise")}  # fmt: skip
    write_image(root / "KA.XX1.99.tiff", 999)
    with pytest.raises(InputError, match="expression code"):
        build([f"jaffe={root}"], tmp_path / "m.csv")


def test_folder_adapter_label_map(tmp_path):
    root = tmp_path / "tree"
    for split in ("train", "val"):
        for cls in ("joy", "mad", "meh", "smirk"):
            for i in range(4):
                write_image(root / split / cls / f"{split}_{cls}_{i}.png", hash((split, cls, i)) % 10**6)
    opts = ["folder.label_map={joy: Happy, mad: Angry, meh: Neutral, smirk: drop}",
            "folder.split_dirs={train: train, val: val}"]  # fmt: skip
    res = build([f"folder={root}"], tmp_path / "m.csv", options=opts)
    assert res.summary["drops"]["folder"] == {"label_map_drop_smirk": 8}
    assert res.df.groupby(["split", "label_name"]).size().to_dict() == {
        (s, c): 4 for s in ("train", "val") for c in ("Angry", "Happy", "Neutral")}  # fmt: skip
    with pytest.raises(InputError, match="not in label_map"):
        build([f"folder={root}"], tmp_path / "m.csv", options=[*opts[:1], "folder.label_map={joy: Happy}"])
    with pytest.raises(ConfigError, match="unknown class 'Joyful'"):
        build([f"folder={root}"], tmp_path / "m.csv", options=["folder.label_map={joy: Joyful}"])


# --- recipes, filters, dedup ------------------------------------------------------------


def test_recipe_errors_are_specific(tmp_path):
    with pytest.raises(ConfigError, match="unknown adapter 'fer2014'; known adapters: fer2013"):
        recipe_from_cli(["fer2014=/x"], [], NO_DEDUP, 1)
    with pytest.raises(ConfigError, match="has no option.*known options: csv, layout, split_dirs"):
        recipe_from_cli(["fer2013=/x"], ["fer2013.colour=1"], NO_DEDUP, 1)
    bad = tmp_path / "r.yaml"
    bad.write_text("sources:\n  - {adapter: fer2013, path: x}\nfilterz: {}\n")
    with pytest.raises(ConfigError, match="unknown key.*filterz"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="FERTRAIN_NOPE"):
        recipe_from_dict({"sources": [{"adapter": "fer2013", "path": "${FERTRAIN_NOPE}/x"}]}, "r.yaml")


def test_source_filters_and_unknown_source(tmp_path):
    a, b = fer_folder(tmp_path / "a"), fer_folder(tmp_path / "b", per_class=2, seed=1)
    res = build([f"fer2013:src_a={a}", f"fer2013:src_b={b}"], tmp_path / "m.parquet")
    df = load_manifest(res.path).df
    assert len(filter_rows(df, SourceFilter(include_sources=["src_a"]))) == 18
    assert len(filter_rows(df, SourceFilter(exclude_sources=["src_a"]))) == 12
    assert len(filter_rows(df, SourceFilter(exclude_sources=["src_a"], splits=["val"]))) == 6
    with pytest.raises(ConfigError, match="unknown source.*ferplus; sources in this manifest: src_a, src_b"):
        filter_rows(df, SourceFilter(exclude_sources=["ferplus"]))
    with pytest.raises(ConfigError, match="unknown split"):
        filter_rows(df, SourceFilter(splits=["validation"]))


def test_dedup_injected_exact_and_near_duplicates(tmp_path):
    a, b = fer_folder(tmp_path / "a"), fer_folder(tmp_path / "b", per_class=2, seed=1)
    original = a / "train" / "happy" / "Training_4.jpg"
    (b / "train" / "happy" / "Training_900.jpg").write_bytes(original.read_bytes())  # exact copy
    # near copy: a face, upscaled, downscaled and re-encoded (what aggregated datasets contain)
    from fertrain.demo.render import random_identity, render_sample

    rng = np.random.default_rng(3)
    img = render_sample(0, random_identity(rng), rng, 48, color=False)
    cv2.imwrite(str(a / "train" / "angry" / "Training_1.jpg"), img)
    resized = cv2.resize(cv2.resize(img, (112, 112)), (48, 48), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(b / "train" / "angry" / "Training_901.jpg"), resized, [cv2.IMWRITE_JPEG_QUALITY, 70])
    policy = DedupPolicy(exact="drop", near="drop", near_threshold=2)
    res = build([f"fer2013:src_a={a}", f"fer2013:src_b={b}"], tmp_path / "m.parquet", dedup=policy)
    assert res.summary["drops"]["src_b"] == {"duplicate_exact": 1, "duplicate_near": 1}
    assert res.summary["dedup"]["exact"]["cross_source"] == 1
    pairs = pd.read_csv(tmp_path / "m.parquet.dedup.csv")
    exact = pairs[pairs.kind == "exact"].iloc[0]
    assert exact.row_id == "src_b:train/happy/Training_900.jpg" and exact.dup_of == "src_a:train/happy/Training_4.jpg"
    near = pairs[pairs.kind == "near"].iloc[0]
    assert near.row_id == "src_b:train/angry/Training_901.jpg" and near.hamming <= 2
    assert len(res.df) == 18 + 12  # the two injected files dropped, originals kept
    # a later source can be preferred explicitly: then the copy in src_a is dropped
    raw = {"sources": [{"name": "src_a", "adapter": "fer2013", "path": str(a), "priority": 5},
                       {"name": "src_b", "adapter": "fer2013", "path": str(b), "priority": 1}],
           "dedup": {"exact": "drop", "near": "off"}}  # fmt: skip
    res2 = build_manifest(recipe_from_dict(raw, "r"), tmp_path / "m2.parquet", show_progress=False)
    assert res2.summary["drops"]["src_a"] == {"duplicate_exact": 1}


def test_dedup_keeps_the_evaluation_copy_within_a_source(tmp_path):
    a = fer_folder(tmp_path / "a")
    copy = (a / "train" / "happy" / "Training_4.jpg").read_bytes()
    (a / "validation" / "happy" / "PublicTest_777.jpg").write_bytes(copy)
    res = build([f"fer2013={a}"], tmp_path / "m.csv", dedup=DedupPolicy(exact="drop", near="off"))
    assert "fer2013:train/happy/Training_4.jpg" not in set(res.df.row_id)
    assert "fer2013:validation/happy/PublicTest_777.jpg" in set(res.df.row_id)
    assert res.summary["dedup"]["exact"]["cross_split"] == 1


# --- stamps, verification, overwrite protection -----------------------------------------


def test_tampered_manifest_is_refused_everywhere(tmp_path, capsys):
    root = fer_folder(tmp_path / "fer")
    res = build([f"fer2013={root}"], tmp_path / "m.csv")
    text = res.path.read_text()
    res.path.write_text(text.replace(",Happy,", ",Sad,", 1))  # one relabelled row
    with pytest.raises(StampMismatchError, match="does not match its stamp"):
        load_manifest(res.path)
    with pytest.raises(StampMismatchError):
        write_alignment_report(tmp_path / "run", res.path)
    assert not (tmp_path / "run" / "alignmentreport.json").exists()
    code, out = run_cli(["manifest", "inspect", res.path], capsys)
    assert code == 1 and "stamp: FAILED" in out
    code, out = run_cli(["manifest", "verify", res.path, "-q"], capsys)
    assert code == 1


def test_verify_detects_missing_and_changed_images(tmp_path, capsys):
    root = fer_folder(tmp_path / "fer")
    res = build([f"fer2013={root}"], tmp_path / "m.parquet")
    assert verify_manifest(res.path, hash_images=True, show_progress=False).ok
    (root / "train" / "happy" / "Training_4.jpg").unlink()
    write_image(root / "train" / "angry" / "Training_1.jpg", 12345)
    report = verify_manifest(res.path, hash_images=True, show_progress=False)
    assert [r for r, _ in report.missing] == ["fer2013:train/happy/Training_4.jpg"]
    assert [r for r, _ in report.hash_mismatch] == ["fer2013:train/angry/Training_1.jpg"]
    assert not verify_manifest(res.path, hash_images=False, show_progress=False).hash_mismatch
    code, out = run_cli(["manifest", "verify", res.path, "--hash-images", "-q"], capsys)
    assert code == 1 and "missing" in out and "changed" in out


def test_rebuild_is_identical_and_different_content_needs_overwrite(tmp_path):
    root = fer_folder(tmp_path / "fer")
    first = build([f"fer2013={root}"], tmp_path / "m.parquet")
    second = build([f"fer2013={root}"], tmp_path / "m.parquet")
    assert first.sha256 == second.sha256
    write_image(root / "train" / "happy" / "Training_555.jpg", 555)
    with pytest.raises(ConfigError, match="exists with different content"):
        build([f"fer2013={root}"], tmp_path / "m.parquet")
    assert load_manifest(tmp_path / "m.parquet").sha256 == first.sha256  # untouched
    third = build([f"fer2013={root}"], tmp_path / "m.parquet", overwrite=True)
    assert len(third.df) == len(first.df) + 1
    summary = json.loads((tmp_path / "m.parquet.summary.json").read_text())
    assert summary["sha256"] == third.sha256 and summary["rows"] == len(third.df)


def test_manifest_roots_are_relative_so_trees_can_move(tmp_path):
    root = fer_folder(tmp_path / "project" / "data" / "fer")
    res = build([f"fer2013={root}"], tmp_path / "project" / "manifests" / "m.csv")
    assert set(res.df.root) == {"../data/fer"}
    moved = tmp_path / "moved"
    (tmp_path / "project").rename(moved)
    m = load_manifest(moved / "manifests" / "m.csv")
    assert all(p.is_file() for p in m.image_paths())


def test_csv_and_parquet_round_trip_mixed_soft_labels_and_boxes(tmp_path):
    """Rows with and without soft labels / boxes / groups load identically from CSV and Parquet."""
    from fertrain.labels import SOFT_COLUMNS
    from fertrain.manifests.io import normalize_dtypes, write_manifest_file
    from fertrain.manifests.schema import COLUMNS

    rows = []
    for i in range(6):
        row = {c: None for c in COLUMNS}
        row.update(row_id=f"s:{i}.jpg", source="s", split="train", label=i, label_name="x", native_label="NA",
                   root="../d", path=f"{i}.jpg", width=48, height=48, sha256="ab" * 32, dhash="00ff00ff00ff00ff",
                   group="NA" if i % 2 else None)  # fmt: skip
        if i < 3:
            row.update(box_x=1, box_y=2, box_w=10, box_h=12)
            row.update(dict.fromkeys(SOFT_COLUMNS, 1 / 7))
        rows.append(row)
    df = normalize_dtypes(pd.DataFrame(rows)[list(COLUMNS) + list(SOFT_COLUMNS)])
    for ext in ("csv", "parquet"):
        write_manifest_file(df, tmp_path / f"m.{ext}")
    from_csv, from_pq = load_manifest(tmp_path / "m.csv").df, load_manifest(tmp_path / "m.parquet").df
    pd.testing.assert_frame_equal(from_csv, from_pq)
    assert from_csv.soft_happy.isna().sum() == 3 and from_csv.box_w.isna().sum() == 3
    assert pd.isna(from_csv.group.iloc[0]) and from_csv.group.iloc[1] == "NA"
    assert from_csv.native_label.eq("NA").all()
