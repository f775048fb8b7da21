"""Shared fixtures: where the real data is, and small generated datasets.

Real data comes from FERTRAIN_DATA (default ../shared/datasets beside the project); tests
that need it skip with the reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertrain.cores import let_idle_openmp_threads_sleep

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FERTRAIN_DATA", REPO.parent / "shared" / "datasets"))

if os.environ.get("PYTEST_XDIST_WORKER"):  # test processes share the cores: as under the `fertrain` command
    let_idle_openmp_threads_sleep()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Under `pytest -n N --dist loadgroup` every test that uses the session's demo run goes to one
    worker: the run is built once (about 2 CPU minutes) instead of once per worker, and tests that
    write into its runs (calibration, a second `demo run`) never meet another process there."""
    for item in items:
        if "demo_pipeline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("demo_pipeline"))


def real_data(subpath: str) -> Path:
    """Path to a real dataset under FERTRAIN_DATA, or skip the test saying what is missing."""
    p = DATA / subpath
    if not p.exists():
        pytest.skip(f"real data {p} not found (set FERTRAIN_DATA to the shared datasets folder)")
    return p


def fer2013_train_faces(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n real FER2013 training faces (n x 48 x 48 uint8 grey) taking the seven class folders in
    turn (the k-th face of each), and their class indices."""
    classes = sorted(p for p in real_data("fer2013/train").iterdir() if p.is_dir())
    labels = np.arange(n) % len(classes)
    files = [sorted(classes[c].glob("*.jpg"))[i // len(classes)] for i, c in enumerate(labels)]
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]), labels


def write_image(path: Path, seed: int, size: int = 24, color: bool = False) -> Path:
    """A small random-texture JPEG/PNG, unique per seed (so no accidental duplicates)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(size, size, 3) if color else (size, size), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture(scope="session")
def fer2013_manifest(tmp_path_factory) -> Path:
    """The real FER2013 image folders built once into a Parquet manifest (about 10-20 s)."""
    src = real_data("fer2013")
    from fertrain.manifests import DedupPolicy, build_manifest, recipe_from_cli

    out = tmp_path_factory.mktemp("fer2013") / "m.parquet"
    build_manifest(recipe_from_cli([f"fer2013={src}"], [], DedupPolicy(), 1337), out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The synthetic demo dataset at a third of its size (fast, same generator)."""
    from fertrain.demo.dataset import write_demo_dataset

    out = tmp_path_factory.mktemp("demo") / "data"
    write_demo_dataset(out, seed=7, scale=0.35)
    return out


@pytest.fixture(scope="session")
def demo_pipeline(tmp_path_factory) -> Path:
    """`fertrain demo run` once for the session: data, manifest, Stage A and Stage B teachers (~2 CPU min)."""
    from fertrain.cli import main

    out = tmp_path_factory.mktemp("demo_pipeline") / "demo"
    try:
        main(["demo", "run", "--out", str(out), "-q"])
    except SystemExit as exc:
        assert exc.code in (0, None), f"demo run failed with {exc.code}"
    return out


@pytest.fixture(scope="session")
def lowres_manifest(demo_data, tmp_path_factory) -> Path:
    """The demo's 48x48 grey source alone as a manifest (train/val/test): tiny real training runs."""
    from fertrain.manifests import DedupPolicy, build_manifest, recipe_from_cli

    out = tmp_path_factory.mktemp("lowres") / "m.parquet"
    build_manifest(recipe_from_cli([f"fer2013:demo_lowres={demo_data / 'lowres'}"], [], DedupPolicy(), 1), out,
                   show_progress=False)  # fmt: skip
    return out
