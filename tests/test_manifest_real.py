"""Adapters on the real data in FERTRAIN_DATA (skipped with a reason when absent)."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from fertrain.data import ManifestFaces, PreprocessSpec
from fertrain.errors import InputError
from fertrain.labels import CLASS_NAMES, SOFT_COLUMNS
from fertrain.manifests import DedupPolicy, build_manifest, load_manifest, load_recipe, recipe_from_cli
from fertrain.manifests.imageprobe import sha256_file

from .clitools import run_cli
from .conftest import REPO, real_data, write_image

# Straight from ../shared/datasets/README.md.
FER_TRAIN = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830, "surprise": 3171}
FER_VAL = {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "neutral": 607, "sad": 653, "surprise": 415}


def by_class(df: pd.DataFrame, split: str) -> dict[str, int]:
    return {k.lower(): int(v) for k, v in df[df.split == split]["label_name"].value_counts().items()}


def test_fer2013_folder_counts_match_readme(fer2013_manifest):
    m = load_manifest(fer2013_manifest)
    assert by_class(m.df, "train") == FER_TRAIN
    assert by_class(m.df, "val") == FER_VAL
    assert (m.df.split == "train").sum() == 28709 and (m.df.split == "val").sum() == 3589
    # the split comes from the filename prefix
    assert m.df[m.df.split == "val"]["path"].str.contains("/PublicTest_").all()
    assert m.df[m.df.split == "train"]["path"].str.contains("/Training_").all()
    assert (m.df.width == 48).all() and (m.df.height == 48).all()
    assert m.sha256 == sha256_file(fer2013_manifest)
    # exact duplicates are reported with where the kept copy is (FER2013 has them), not dropped
    summary = json.loads(fer2013_manifest.with_name("m.parquet.summary.json").read_text())
    assert summary["dedup"]["exact"]["pairs"] > 0 and summary["dedup"]["exact"]["dropped"] == 0
    assert m.df["dup_of"].notna().sum() >= summary["dedup"]["exact"]["pairs"]


def test_fer2013_sha256_is_of_the_image_bytes(fer2013_manifest):
    m = load_manifest(fer2013_manifest)
    paths = m.image_paths()
    for i in (0, 1000, len(m.df) - 1):
        assert sha256_file(paths[i]) == m.df["sha256"].iloc[i]


def test_cli_build_parquet_and_csv_then_inspect(tmp_path, capsys):
    src = real_data("fer2013")
    for name in ("m.parquet", "m.csv"):
        out = tmp_path / name
        code, text = run_cli(["manifest", "build", "--source", f"fer2013={src}", "--out", out, "-q"], capsys)
        assert code == 0, text
        stamp = (tmp_path / f"{name}.sha256").read_text().split()
        assert stamp == [sha256_file(out), name]
        code, text = run_cli(["manifest", "inspect", out], capsys)
        assert code == 0, text
        assert "28,709" in text and "3,589" in text and "7,215" in text and "stamp: OK" in text
    csv_m, pq_m = load_manifest(tmp_path / "m.csv"), load_manifest(tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(csv_m.df, pq_m.df)


def test_fer2013_csv_head_materializes_exact_pixels(tmp_path):
    csv_path = real_data("fer2013_csv/fer2013.csv")
    recipe = recipe_from_cli([f"fer2013={csv_path}"], [], DedupPolicy(exact="off", near="off"), 1337)
    result = build_manifest(recipe, tmp_path / "csv.parquet", show_progress=False)
    df = result.df
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 151
    # all 151 are Training: train keeps ~90 %, a stratified val is derived (no PublicTest rows)
    assert set(df.split) == {"train", "val"} and len(df) == 151
    paths = {p.name: p for p in load_manifest(result.path).image_paths()}
    for i in (0, 77, 150):
        row = df[df.path == f"Training/{i:05d}.png"].iloc[0]
        assert row.label == int(rows[i]["emotion"]) and row.label_name == CLASS_NAMES[int(rows[i]["emotion"])]
        img = cv2.imread(str(paths[f"{i:05d}.png"]), cv2.IMREAD_UNCHANGED)
        expected = np.array(rows[i]["pixels"].split(), dtype=np.uint8).reshape(48, 48)
        assert img.shape == (48, 48) and np.array_equal(img, expected)
    # materialized once: a rebuild leaves the cached PNGs untouched
    mtimes = {p: p.stat().st_mtime_ns for p in paths.values()}
    build_manifest(recipe, tmp_path / "csv2.parquet", show_progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())


def ferplus_recipe(mode: str, partial: bool = True):
    labels = real_data("ferplus/fer2013new.csv")
    pixels = real_data("fer2013_csv/fer2013.csv")
    opts = [f"ferplus.fer2013_csv={pixels}", f"ferplus.mode={mode}", f"ferplus.partial={str(partial).lower()}"]
    return recipe_from_cli([f"ferplus={labels.parent}"], opts, DedupPolicy(exact="off", near="off"), 1337)


def test_ferplus_majority_and_probability_on_the_joinable_head(tmp_path):
    maj = build_manifest(ferplus_recipe("majority"), tmp_path / "maj.parquet", show_progress=False)
    prob = build_manifest(ferplus_recipe("probability"), tmp_path / "prob.parquet", show_progress=False)
    labels = real_data("ferplus/fer2013new.csv")
    votes = pd.read_csv(labels, nrows=151)
    n_empty = int(votes["Image name"].isna().sum())
    assert n_empty == 3
    for res in (maj, prob):
        drops = res.summary["drops"]["ferplus"]
        assert drops["not_a_face_empty_image_name"] == n_empty
        assert drops["beyond_partial_fer2013_csv"] == 35887 - 151
        assert res.summary["sources"]["ferplus"]["notes"]["joined_rows"] == 151
        soft = res.df[list(SOFT_COLUMNS)].to_numpy()
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
        assert (res.df.label.to_numpy() == soft.argmax(axis=1)).all()
    assert len(prob.df) > len(maj.df)  # probability keeps rows without a >50 % majority
    # every majority row is in probability mode with the same label; the extra rows are the
    # ones majority mode dropped for having no majority
    merged = maj.df.merge(prob.df, on="path", suffixes=("_maj", "_prob"))
    assert len(merged) == len(maj.df) and (merged.label_maj == merged.label_prob).all()
    assert len(prob.df) - len(maj.df) <= maj.summary["drops"]["ferplus"]["no_majority"]

    # hand-checked rows: row 0 votes neutral 4, sadness 1, anger 3, disgust 2 -> the single
    # sadness vote is zeroed; 4 of 9 is no majority; probability keeps 4/9, 3/9, 2/9.
    row0 = prob.df[prob.df.path.str.endswith("Training/00000.png")].iloc[0]
    assert row0.label_name == "Neutral"
    assert row0.soft_neutral == pytest.approx(4 / 9) and row0.soft_angry == pytest.approx(3 / 9)
    assert row0.soft_disgust == pytest.approx(2 / 9) and row0.soft_sad == 0
    assert not maj.df.path.str.endswith("Training/00000.png").any()
    # row 1: neutral 6, unknown 2 (surprise/sadness single votes zeroed) -> Neutral by majority
    row1 = maj.df[maj.df.path.str.endswith("Training/00001.png")].iloc[0]
    assert row1.label_name == "Neutral" and row1.soft_neutral == pytest.approx(1.0)


def test_ferplus_rows_are_joined_by_position_with_fer2013_pixels(tmp_path):
    res = build_manifest(ferplus_recipe("majority"), tmp_path / "m.parquet", show_progress=False)
    pixels = real_data("fer2013_csv/fer2013.csv")
    rows = list(csv.DictReader(pixels.read_text().splitlines()))
    m = load_manifest(res.path)
    for path, img_path in list(zip(m.df.path, m.image_paths(), strict=True))[:5]:
        index = int(path.split("/")[-1].split(".")[0])
        expected = np.array(rows[index]["pixels"].split(), dtype=np.uint8).reshape(48, 48)
        assert np.array_equal(cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED), expected)


def test_ferplus_short_fer2013_csv_is_an_error_without_partial(tmp_path):
    with pytest.raises(InputError, match="partial: true") as exc:
        build_manifest(ferplus_recipe("majority", partial=False), tmp_path / "m.parquet", show_progress=False)
    assert "fer2013.csv" in str(exc.value) and "151" in str(exc.value)


def test_rafdb_label_list_with_placeholder_images(tmp_path):
    label_file = real_data("rafdb/EmoLabel/list_patition_label.txt")
    root = tmp_path / "rafdb"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / label_file.name).write_bytes(label_file.read_bytes())
    lines = [ln.split() for ln in label_file.read_text().splitlines() if ln.strip()]
    for i, (name, _) in enumerate(lines):
        write_image(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), seed=i, size=8)
    res = build_manifest(recipe_from_cli([f"rafdb={root}"], [], DedupPolicy(exact="off", near="off"), 1337),
                         tmp_path / "raf.parquet", show_progress=False)  # fmt: skip
    df = res.df
    raw_names = {1: "Surprise", 2: "Fear", 3: "Disgust", 4: "Happy", 5: "Sad", 6: "Angry", 7: "Neutral"}
    expected = pd.Series([raw_names[int(code)] for _, code in lines]).value_counts().to_dict()
    assert df["label_name"].value_counts().to_dict() == expected
    n_train = sum(1 for name, _ in lines if name.startswith("train_"))
    assert (n_train, len(lines) - n_train) == (12271, 3068)
    assert (df.split == "test").sum() == 3068
    assert (df.split.isin(["train", "val"])).sum() == 12271
    assert 0.09 < (df.split == "val").sum() / 12271 < 0.11  # derived, stratified val
    assert df[df.split == "test"]["path"].str.match(r"Image/aligned/test_\d+_aligned\.jpg").all()
    one = df[df.path == "Image/aligned/train_00001_aligned.jpg"].iloc[0]
    assert (one.label_name, one.native_label) == ("Sad", "Sadness")  # train_00001.jpg 5


def test_expw_boxes_groups_and_crops(tmp_path):
    root = real_data("expw_mini")
    label_lines = [ln.split() for ln in (root / "label" / "label.lst").read_text().splitlines() if ln.strip()]
    recipe = recipe_from_cli([f"expw={root}"], [], DedupPolicy(exact="off", near="off"), 1337)
    res = build_manifest(recipe, tmp_path / "expw.parquet", show_progress=False)
    m = load_manifest(res.path)
    df = m.df
    assert len(df) == len(label_lines) == 191
    assert res.summary["sources"]["expw"]["notes"]["boxes_clipped"] == 1  # angry_family_55: right=301 > 300
    paths = m.image_paths()
    faces = ManifestFaces(m, df, PreprocessSpec(img_size=10_000, color="rgb"))  # the training load path, no resize
    by_id = {rid: i for i, rid in enumerate(df.row_id)}
    for name, face_id, top, left, right, bottom, _conf, label in label_lines:
        i = by_id[f"expw:image/origin/{name}#{face_id}"]
        row = df.iloc[i]
        assert row.label == int(label) and row.group == name
        img = cv2.cvtColor(cv2.imread(str(paths[i])), cv2.COLOR_BGR2RGB)
        expected = img[int(top) : int(bottom), int(left) : int(right)]  # the README's crop
        assert np.array_equal(faces[i][0], expected)
    # faces of one photo never straddle splits; all three splits exist
    assert df.groupby("group")["split"].nunique().max() == 1
    assert set(df.split) == {"train", "val", "test"}


def test_shared_sample_recipe_and_source_filters(tmp_path):
    real_data("fer2013")
    real_data("ferplus")
    real_data("expw_mini")
    recipe = load_recipe(REPO / "manifests" / "shared_sample.yaml")
    res = build_manifest(recipe, tmp_path / "shared.parquet", show_progress=False)
    counts = res.df.source.value_counts().to_dict()
    assert counts["fer2013"] == 32298 and counts["expw_mini"] == 191 and 100 < counts["ferplus"] < 151
    from fertrain.manifests import SourceFilter, filter_rows

    m = load_manifest(res.path)
    no_ferplus = filter_rows(m.df, SourceFilter(exclude_sources=["ferplus"]))
    assert len(no_ferplus) == counts["fer2013"] + counts["expw_mini"]
    only = filter_rows(m.df, SourceFilter(include_sources=["ferplus", "expw_mini"], splits=["train"]))
    assert set(only.source) == {"ferplus", "expw_mini"} and set(only.split) == {"train"}
    # FERPlus faces are FER2013 faces re-encoded: found as cross-source near duplicates
    assert res.summary["dedup"]["near"]["by_source_pair"].get("ferplus~fer2013", 0) > 50
