"""The demo pipeline behind `make demo`: data -> manifest (later: teachers -> ... -> ONNX)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fertrain.demo.dataset import write_demo_dataset
from fertrain.manifests import BuildResult, build_manifest
from fertrain.manifests.recipe import recipe_from_dict
from fertrain.runs import open_run


def demo_recipe(data_dir: str | Path, seed: int = 1337) -> dict:
    """The recipe `manifests/demo.yaml` spells out, pointed at `data_dir`."""
    data_dir = Path(data_dir)
    return {
        "name": "demo",
        "seed": seed,
        "sources": [
            {"name": "demo_hires", "adapter": "fer2013", "path": str(data_dir / "hires")},
            {"name": "demo_lowres", "adapter": "fer2013", "path": str(data_dir / "lowres")},
        ],
        # near-duplicates off: the synthetic faces are drawn from one template, so their dHashes
        # collide although the images differ (real data: see docs/manifests.md#duplicates)
        "dedup": {"exact": "drop", "near": "off"},
    }


@dataclass
class DemoResult:
    out: Path
    manifest: BuildResult


def run_demo(out: str | Path, *, seed: int = 1337, recover_stale: bool = False) -> DemoResult:
    out = Path(out)
    with open_run(out, seed=seed, recover_stale=recover_stale):
        write_demo_dataset(out / "data", seed=seed)
        recipe = recipe_from_dict(demo_recipe(out / "data", seed), "demo")
        built = build_manifest(recipe, out / "manifests" / "demo.parquet", overwrite=True, show_progress=False)
    return DemoResult(out, built)
