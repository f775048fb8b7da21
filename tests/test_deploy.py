"""Deployment on real inputs: FER2013 faces (parity with evaluate), ExpW photos (detection against
the labelled boxes), a video, colour photos on a grey model, bad files, int8 export, the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fertrain import Recognizer
from fertrain.deploy.detect import HaarDetector
from fertrain.ensemble import load_teacher
from fertrain.labels import CLASS_NAMES
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.softlabels import export_softlabels, load_softlabels
from fertrain.student.signal import OnlineTeacherSignal

from .clitools import run_cli
from .conftest import real_data


def teacher_a(demo: Path) -> Path:
    return next((demo / "teachers").glob("*stageA*"))


def test_predict_on_fer2013_faces_gives_the_probabilities_evaluate_computes(demo_pipeline, fer2013_manifest,
                                                                            tmp_path, capsys):  # fmt: skip
    m = load_manifest(fer2013_manifest)
    rows = filter_rows(m.df, SourceFilter(splits=["val"])).reset_index(drop=True).iloc[::60].reset_index(drop=True)
    run = teacher_a(demo_pipeline)
    teacher = load_teacher(run)
    expected = teacher.calibrated_probs(teacher.logits(m, rows, device=torch.device("cpu"), workers=0)[0])
    files = [str(p) for p in m.image_paths(rows)]
    out = tmp_path / "faces.json"
    code, text = run_cli(["predict", run, *files, "--detector", "none", "--out", out, "-q"], capsys)
    assert code == 0, text
    faces = json.loads(out.read_text())["faces"]
    assert [f["file"] for f in faces] == files and all(f["frame"] is None and f["face"] == 0 for f in faces)
    got = np.array([[f[f"prob_{c.lower()}"] for c in CLASS_NAMES] for f in faces])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # the exported ONNX model gives the same through onnxruntime, and the Python API the same again
    onnx = Recognizer(run / "model.onnx", detector="none").predict_many(files)
    np.testing.assert_allclose([[f[0].probabilities[c] for c in CLASS_NAMES] for f in onnx], expected, atol=1e-4)
    crops = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in files[:3]]
    api = Recognizer(run, detector="none").predict_faces(crops)
    np.testing.assert_allclose([[f.probabilities[c] for c in CLASS_NAMES] for f in api], expected[:3], atol=1e-4)


@pytest.fixture(scope="module")
def expw_manifest(tmp_path_factory) -> Path:
    """The ExpW sample (uncropped photos, one labelled box per face) as a manifest."""
    from fertrain.manifests import DedupPolicy, build_manifest, recipe_from_cli

    out = tmp_path_factory.mktemp("expw") / "m.parquet"
    build_manifest(recipe_from_cli([f"expw={real_data('expw_mini')}"], [], DedupPolicy(), 1), out, show_progress=False)
    return out


def test_haar_finds_the_labelled_faces_of_expw_photos(demo_pipeline, expw_manifest, capsys):
    """`fertrain bench detect`: recall and IoU against the labelled boxes of real photos, and the
    model's predictions on detected faces next to those on the labelled boxes."""
    from fertrain.bench.detect import bench_detect

    (row,) = bench_detect(expw_manifest, [(320, 1.1)], model=teacher_a(demo_pipeline))
    assert row.photos == 174 and row.faces == 191
    assert row.recall >= 0.4 and row.mean_iou >= 0.6, row  # measured: 0.466, IoU 0.706
    assert row.large_recall >= row.recall  # Haar misses small faces first
    assert row.matched == round(row.recall * row.faces)
    assert 0 <= row.accuracy_detected <= 1 and 0 <= row.accuracy_boxes <= 1 and 0 < row.agreement <= 1
    # a larger smallest face searches a smaller copy: faster, and it finds no more faces
    code, text = run_cli(["bench", "detect", expw_manifest, "--detect-size", "320", "--min-face", "80",
                          "--limit", "40"], capsys)  # fmt: skip
    assert code == 0, text
    (fast,) = json.loads(text[text.index("[{"):])
    (full,) = bench_detect(expw_manifest, [(320, 1.1)], limit=40)
    assert fast["photos"] == full.photos == 40 and fast["recall"] <= full.recall


def test_bench_detect_refuses_a_manifest_without_face_boxes(lowres_manifest, capsys):
    code, text = run_cli(["bench", "detect", lowres_manifest], capsys)
    assert code == 2 and "no rows with a face box" in text and str(lowres_manifest.name) in text
    # a repeatable option checks every value it is given
    code, text = run_cli(["bench", "detect", lowres_manifest, "--detect-size", "320", "--detect-size", "10"], capsys)
    assert code == 2 and "--detect-size" in text and "must be >= 64, got 10" in text


def test_detections_match_labelled_boxes_once_each_by_overlap():
    from fertrain.bench.detect import iou, match
    from fertrain.deploy.detect import Detection

    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1 and iou((0, 0, 10, 10), (20, 0, 5, 5)) == 0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    truth = [(0, 0, 10, 10), (3, 0, 10, 10)]
    found = [Detection((1, 0, 10, 10), 1.0), Detection((100, 100, 10, 10), 1.0)]
    pairs = match(truth, found, 0.4)
    assert [(i, j) for i, j, _ in pairs] == [(0, 0)]  # one detection serves one labelled face


def test_alignment_levels_the_eyes(demo_pipeline):
    from fertrain.deploy.align import aligned_crop, eye_angle
    from fertrain.deploy.detect import Detection

    img = np.zeros((200, 200, 3), np.uint8)
    cv2.circle(img, (70, 80), 8, (255, 255, 255), -1)  # "eyes" on a line tilted by 20 degrees
    right = (70 + 60 * np.cos(np.radians(20)), 80 + 60 * np.sin(np.radians(20)))
    cv2.circle(img, (round(right[0]), round(right[1])), 8, (255, 255, 255), -1)
    det = Detection((40, 40, 120, 120), 1.0, ((70.0, 80.0), right))
    assert eye_angle(det.eyes) == pytest.approx(20.0, abs=1e-6)
    crop = aligned_crop(img, det, margin=0.0)
    ys = [np.argwhere(crop[:, : crop.shape[1] // 2, 0] > 128)[:, 0].mean(),
          np.argwhere(crop[:, crop.shape[1] // 2 :, 0] > 128)[:, 0].mean()]  # fmt: skip
    assert abs(ys[0] - ys[1]) < 2 and crop.shape[:2] == (120, 120)
    assert aligned_crop(img, det, margin=0.3).shape[:2] == (192, 192)


def test_video_frames_every_n_and_an_annotated_video(demo_pipeline, tmp_path, capsys):
    faces = sorted((demo_pipeline / "data" / "hires" / "test").rglob("*.jpg"))[:12]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (112, 112))
    for f in faces:
        writer.write(cv2.resize(cv2.imread(str(f)), (112, 112)))
    writer.release()
    out = tmp_path / "faces.csv"
    code, text = run_cli(["predict", teacher_a(demo_pipeline), video, "--detector", "none", "--every", "3", "--out",
                          out, "--annotate", tmp_path / "annotated", "-q"], capsys)  # fmt: skip
    assert code == 0, text
    import pandas as pd

    rows = pd.read_csv(out)
    assert rows["frame"].tolist() == [0, 3, 6, 9] and set(rows["file"]) == {str(video)}
    cap = cv2.VideoCapture(str(tmp_path / "annotated" / "clip.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_a_grey_model_sees_a_colour_photo_as_grey(lowres_manifest, tmp_path, capsys):
    code, text = run_cli(["teacher", "--manifest", lowres_manifest, "--backbone", "resnet10t", "--head", "linear",
                          "--img-size", "32", "--epochs", "1", "-b", "32", "-j", "0", "--device", "cpu", "--output-dir",
                          tmp_path / "grey", "-q"], capsys)  # fmt: skip
    assert code == 0, text
    assert json.loads((tmp_path / "grey" / "preprocess.json").read_text())["color"] == "grey"  # auto: FER-like data
    rng = np.random.default_rng(3)
    colour = cv2.GaussianBlur(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), (5, 5), 0)
    grey = cv2.cvtColor(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    recognizer = Recognizer(tmp_path / "grey", detector="none")
    a, b = recognizer.predict_faces([colour, grey])
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
    rgb_model = Recognizer(tmp_path / "grey", detector="none")
    rgb_model.model.teacher.members[0].spec = rgb_model.model.spec.__class__(
        **{**rgb_model.model.spec.to_dict(), "color": "rgb", "mean": rgb_model.model.spec.mean,
           "std": rgb_model.model.spec.std})  # fmt: skip
    c, d = rgb_model.predict_faces([colour, grey])
    assert c.probabilities != pytest.approx(d.probabilities, abs=1e-6)  # without the contract they would differ


def test_no_face_is_an_empty_result_and_bad_inputs_are_named_not_fatal(demo_pipeline, tmp_path, capsys):
    blank = tmp_path / "in" / "blank.png"
    blank.parent.mkdir()
    cv2.imwrite(str(blank), np.full((240, 320, 3), 127, np.uint8))
    assert Recognizer(teacher_a(demo_pipeline), detector="haar").predict(blank) == []
    (tmp_path / "in" / "broken.jpg").write_bytes(b"this is not a jpeg")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    good = next((demo_pipeline / "data" / "hires" / "test").rglob("*.jpg"))
    out = tmp_path / "faces.json"
    code, text = run_cli(["predict", teacher_a(demo_pipeline), tmp_path / "in", notes, good, "--detector", "none",
                          "--out", out, "-q"], capsys)  # fmt: skip
    assert code == 1
    assert "broken.jpg: not a readable image" in text and "notes.txt: unsupported format .txt" in text
    result = json.loads(out.read_text())
    assert {Path(f["file"]).name for f in result["faces"]} == {"blank.png", good.name}  # the others still ran
    assert len(result["errors"]) == 2


def test_int8_export_passes_its_accuracy_check_and_predicts(demo_pipeline, tmp_path, capsys):
    import shutil

    run = tmp_path / "student"
    shutil.copytree(demo_pipeline / "students" / "demo_dkd", run)
    code, text = run_cli(["export", "onnx", run, "--int8", "--calibration-images", "64"], capsys)
    assert code == 0, text
    sidecar = json.loads((run / "model.int8.onnx.json").read_text())
    check = sidecar["int8"]
    assert check["fp32_accuracy"] - check["int8_accuracy"] <= 0.01 and check["agreement"] > 0.9
    assert check["mode"] == "static QDQ" and check["calibration_images"] == 64
    assert (run / "model.int8.onnx").stat().st_size < 0.5 * (run / "model.onnx").stat().st_size
    face = next((demo_pipeline / "data" / "hires" / "test").rglob("*.jpg"))
    fp32 = Recognizer(run / "model.onnx", detector="none").predict(face)[0]
    int8 = Recognizer(run / "model.int8.onnx", detector="none").predict(face)[0]
    assert max(abs(fp32.probabilities[c] - int8.probabilities[c]) for c in CLASS_NAMES) < 0.1
    code, text = run_cli(["export", "onnx", run, "--int8", "--int8-tolerance", "-1"], capsys)
    assert code == 2 and "--int8-tolerance" in text


def test_predict_serves_each_tta_with_the_temperature_fitted_for_it(demo_pipeline, tmp_path, capsys):
    import shutil

    from fertrain.deploy.model import load_model

    run = tmp_path / "student"
    shutil.copytree(demo_pipeline / "students" / "demo_dkd", run)
    face = next((demo_pipeline / "data" / "hires" / "test").rglob("*.jpg"))
    trained_t = json.loads((run / "model.onnx.json").read_text())["temperature"]
    code, text = run_cli(["predict", run / "model.onnx", face, "--detector", "none", "-q", "--tta", "ten"], capsys)
    assert code == 0 and "fitted on --tta none logits, these are --tta ten" in text, text
    code, text = run_cli(["calibrate", run, "-m", demo_pipeline / "manifests" / "demo.parquet", "--split", "val",
                          "--tta", "ten", "-j", "0", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, text
    sidecar = json.loads((run / "model.onnx.json").read_text())  # the sidecar follows: a T per --tta
    ten_t = json.loads((run / "calibration.json").read_text())["temperatures"]["ten"]
    assert sidecar["temperature_tta"] == "ten" and sidecar["temperatures"] == {"none": trained_t, "ten": ten_t}
    assert ten_t != pytest.approx(trained_t, abs=1e-3)
    for model in (run / "model.onnx", run):  # onnxruntime, torch
        for tta, expected in (("ten", ten_t), ("none", trained_t), ("flip", ten_t)):  # flip: none fitted, the latest
            served = load_model(model, tta=tta)
            t = served.temperature if hasattr(served, "temperature") else served.teacher.temperature
            assert t == pytest.approx(expected, abs=1e-6), (model, tta)
            code, text = run_cli(["predict", model, face, "--detector", "none", "-q", "--tta", tta], capsys)
            assert code == 0 and ("fitted on --tta ten logits, these are --tta flip" in text) == (tta == "flip"), text
            assert tta == "flip" or "fitted on" not in text
    # soft labels of ten-crop views carry the ten-crop T; an online teacher (one view per face) the single-view T
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    for tta, expected in (("ten", ten_t), ("none", trained_t)):
        out = tmp_path / f"soft_{tta}.parquet"
        export_softlabels(run, manifest, out, splits=["val"], tta=tta, device="cpu", workers=0, show_progress=False)
        assert load_softlabels(out, load_manifest(manifest)).metadata["temperature"] == pytest.approx(expected)
    online = OnlineTeacherSignal(run, torch.device("cpu"), need_features=False, amp=False, channels_last=False,
                                 fused=False)  # fmt: skip
    assert float(online.teacher_t) == pytest.approx(trained_t)
    # a sidecar exported before per-TTA temperatures gets every post-hoc fit of the run, not only the newest
    sidecar.pop("temperatures")
    (run / "model.onnx.json").write_text(json.dumps(sidecar))
    code, text = run_cli(["calibrate", run, "-m", manifest, "--split", "val", "-j", "0", "--device", "cpu"], capsys)
    assert code == 0, text
    none_t = json.loads((run / "calibration.json").read_text())["temperatures"]["none"]
    assert json.loads((run / "model.onnx.json").read_text())["temperatures"] == {"ten": ten_t, "none": none_t}


def test_latency_bench_reports_fp32_and_int8_model_and_predict_path(demo_pipeline, tmp_path):
    import shutil

    from fertrain.bench.latency import bench_latency

    run = tmp_path / "student"
    shutil.copytree(demo_pipeline / "students" / "demo_dkd", run)
    from fertrain.export.quantize import export_int8

    export_int8(run, calibration_images=32)
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), cv2.resize(cv2.imread(str(next((demo_pipeline / "data" / "hires").rglob("*.jpg")))),
                                       (320, 320)))  # fmt: skip
    rows = bench_latency(run, photo, runs=10, warmup=2, detector="none")
    assert {(r.model, r.threads) for r in rows} >= {("fp32", 1), ("int8", 1)}
    assert all(0 < r.model_p50_ms <= r.model_p95_ms and r.predict_p50_ms > 0 and r.faces == 1 for r in rows)


def test_haar_detector_comes_from_the_opencv_wheel():
    det = HaarDetector()
    assert not det.faces.empty() and not det.eyes.empty()
    assert int(cv2.__version__.split(".")[0]) == 4  # 5.x wheels ship no cascades: pinned below 5


def serving_faces() -> list[np.ndarray]:
    """Real FER2013 faces (48 px) and larger and smaller crops of them, prepared for a 112-px model."""
    from fertrain.data import PreprocessSpec, prepare_face

    spec = PreprocessSpec(img_size=112, color="grey")
    files = sorted((real_data("fer2013") / "validation").rglob("*.jpg"))[::400][:8]
    imgs = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    sized = imgs[:4] + [cv2.resize(im, (s, s)) for im, s in zip(imgs[4:], (30, 80, 112, 200), strict=True)]
    return spec, [prepare_face(im, None, spec) for im in sized]


def test_serving_input_without_torch_equals_the_evaluation_path():
    """The NumPy/OpenCV input ONNX models are served with (no torch) equals `to_model_input` on
    the same faces, one size per batch and sizes mixed, and its test-time augmentation equals
    `tta_logits` for every mode (a linear model on real faces, so every pixel counts)."""
    from fertrain.data import collate_faces, to_model_input
    from fertrain.data.augment import uniform_size
    from fertrain.data.serving import merge_views, model_input, tta_views
    from fertrain.engine.evaluate import TTA_MODES, tta_logits

    spec, faces = serving_faces()
    for group in (faces[:4], faces):  # all 48 px (the interpolate path), then mixed sizes (grid_sample)
        canvas, sizes, host_sizes, *_ = collate_faces([(f, 0, np.zeros(7, np.float32), i) for i, f in enumerate(group)])
        expected = to_model_input(canvas, sizes, 112, spec.mean, spec.std, native=uniform_size(host_sizes)).numpy()
        got = model_input(group, spec)
        assert got.shape == expected.shape == (len(group), 3, 112, 112)
        np.testing.assert_allclose(got, expected, atol=1e-4)
    weights = np.random.default_rng(0).standard_normal((3 * 112 * 112, 7)).astype(np.float32) / 100
    x = model_input(faces, spec)
    for mode in TTA_MODES:
        expected = tta_logits(lambda t: t.flatten(1) @ torch.from_numpy(weights), torch.from_numpy(x), mode).numpy()
        got = merge_views([v.reshape(len(v), -1) @ weights for v in tta_views(x, mode)], mode)
        np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-4, err_msg=mode)
    with pytest.raises(ValueError, match="unknown TTA mode 'six'"):
        tta_views(x, "six")


def test_predict_with_an_onnx_model_never_imports_torch(demo_pipeline, tmp_path):
    """Serving an ONNX model needs onnxruntime, OpenCV and NumPy: importing torch alone cost ~1.3 s
    of a `fertrain predict` command on the 2-core machine, and typer 0.29's pydantic validators
    (pyproject pins typer below it) 0.09 s of the 0.35 s a one-face command took."""
    import subprocess
    import sys

    face = next((demo_pipeline / "data" / "hires" / "test").rglob("*.jpg"))
    out = tmp_path / "faces.csv"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "fertrain", "predict",
                           str(teacher_a(demo_pipeline) / "model.onnx"), str(face), "--detector", "none",
                           "--out", str(out), "-q"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "onnxruntime" in modules and "cv2" in modules
    assert not {m for m in modules if m.split(".")[0] in ("torch", "timm", "torchvision", "pandas", "pydantic")}
    assert out.read_text().count("\n") >= 2  # a header and at least one face


def test_serving_input_is_the_per_face_resize_and_normalization_bit_for_bit():
    """`model_input` resizes a grey face once and normalizes per channel over the batch: the same
    numbers, bit for bit, as resizing each face as HxWx3 and normalizing it (grey, colour, sizes mixed)."""
    from fertrain.data.serving import model_input

    spec, faces = serving_faces()
    rng = np.random.default_rng(0)
    faces = faces + [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((48, 48), (112, 112), (80, 60))]
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    expected = np.stack([((cv2.resize(f.astype(np.float32), (112, 112), interpolation=cv2.INTER_LINEAR)
                           if f.shape[:2] != (112, 112) else f.astype(np.float32)) / np.float32(255.0) - mean) / std
                         for f in faces]).transpose(0, 3, 1, 2)  # fmt: skip
    got = model_input(faces, spec)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert not np.array_equal(got[-1, 0], got[-1, 1])  # the colour face kept its own channels


def test_onnx_batches_run_side_by_side_give_the_numbers_of_one_core(demo_pipeline):
    """An ONNX model runs its batches on several threads at once: the same logits, in the same order."""
    from fertrain.deploy.model import OnnxModel
    from fertrain.export.ort_session import SERVING_BATCH

    files = sorted((demo_pipeline / "data" / "hires").rglob("*.jpg"))[: 2 * SERVING_BATCH + 5]
    faces = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    model = teacher_a(demo_pipeline) / "model.onnx"
    one = OnnxModel(model, threads=1).logits(faces)
    three = OnnxModel(model, threads=3).logits(faces)
    assert one.shape == (len(faces), len(CLASS_NAMES))
    assert np.array_equal(one, three)
    np.testing.assert_allclose(one[-5:], OnnxModel(model, threads=1).logits(faces[-5:]), atol=1e-5)


def test_predict_reads_ahead_and_keeps_input_order(demo_pipeline, tmp_path, monkeypatch):
    """`predict_paths` labels one block of images while it reads the next: with blocks of 4 images,
    11 readable files and a broken one among them give every face in file order, the same as
    one image at a time, and name the broken file."""
    import shutil

    import fertrain.deploy.predict as predict

    monkeypatch.setattr(predict, "BATCH", 2)
    folder = tmp_path / "in"
    folder.mkdir()
    sources = sorted((demo_pipeline / "data" / "hires" / "test").rglob("*.jpg"))[:11]
    for i, src in enumerate(sources):
        shutil.copy(src, folder / f"{i:02d}.jpg")
    (folder / "05b.jpg").write_bytes(b"not a jpeg")
    recognizer = Recognizer(teacher_a(demo_pipeline) / "model.onnx", detector="none", threads=2)
    assert recognizer.model.workers == 2
    report = predict.predict_paths(recognizer, [folder], show_progress=False)
    assert [Path(r["file"]).name for r in report.rows] == [f"{i:02d}.jpg" for i in range(11)]
    assert report.errors == [(str(folder / "05b.jpg"), "not a readable image")]
    single = [recognizer.predict(folder / f"{i:02d}.jpg")[0] for i in range(11)]
    for row, face in zip(report.rows, single, strict=True):
        assert row["label"] == face.label
        assert abs(row[f"prob_{face.label.lower()}"] - face.probabilities[face.label]) < 1e-5
    # large images end a block early (three blocks are held at once): with a budget below one image's
    # pixels every block is one image, and the rows are the same
    blocks, label_many = [], recognizer.predict_many

    def counting(images):
        blocks.append(len(images))
        return label_many(images)

    monkeypatch.setattr(recognizer, "predict_many", counting)
    monkeypatch.setattr(predict, "BLOCK_PIXELS", 1)
    assert predict.predict_paths(recognizer, [folder], show_progress=False).rows == report.rows
    assert blocks == [1] * 11


def test_two_model_threads_with_a_face_detector_give_the_faces_of_one_image_at_a_time(demo_pipeline, monkeypatch):
    """Blocks of 2 photos labelled by two model threads at once (the Haar cascade, which keeps state
    between calls, is used by one of them at a time): the same faces, boxes and probabilities as
    predicting each ExpW photo alone."""
    import fertrain.deploy.predict as predict

    monkeypatch.setattr(predict, "BATCH", 1)
    photos = sorted((real_data("expw_mini") / "image" / "origin").glob("*.jpg"))[:12]
    recognizer = Recognizer(teacher_a(demo_pipeline) / "model.onnx", detector="haar", threads=2)
    report = predict.predict_paths(recognizer, photos, show_progress=False)
    expected = [(str(p), i, f) for p in photos for i, f in enumerate(recognizer.predict(p))]
    assert len(expected) >= 6 and len(report.rows) == len(expected)
    for row, (file, index, face) in zip(report.rows, expected, strict=True):
        assert (row["file"], row["face"], (row["x"], row["y"], row["w"], row["h"])) == (file, index, face.box)
        assert row["label"] == face.label
        assert abs(row[f"prob_{face.label.lower()}"] - face.probabilities[face.label]) < 1e-5


def test_read_image_gives_rgb_and_refuses_a_photo_over_the_pixel_bound_by_name(tmp_path):
    """A photo is read as RGB (OpenCV decodes BGR); one over 40 MP is refused from its header, naming the file."""
    from fertrain.deploy.recognizer import read_image
    from fertrain.errors import InputError

    photo = np.zeros((30, 40, 3), np.uint8)
    photo[..., 0] = 200  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / "blue.png"), photo)
    rgb = read_image(tmp_path / "blue.png")
    assert rgb.shape == (30, 40, 3) and (rgb[..., 2] == 200).all() and (rgb[..., 0] == 0).all()
    cv2.imwrite(str(tmp_path / "huge.png"), np.zeros((7000, 6000), np.uint8))  # 42 MP
    with pytest.raises(InputError, match=r"huge\.png: image is 6000x7000 .*over the 40 MP"):
        read_image(tmp_path / "huge.png")
    (tmp_path / "notes.jpg").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"notes\.jpg: not a readable image"):
        read_image(tmp_path / "notes.jpg")
