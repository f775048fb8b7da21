"""The install works: torch/torchvision are one build, timm runs, the console script exists."""

from __future__ import annotations

import shutil
import subprocess
import sys

import fertrain


def test_timm_imports_and_runs_forward_on_cpu():
    import timm
    import torch
    import torchvision  # noqa: F401  (fails with 'torchvision::nms does not exist' on a mixed install)

    model = timm.create_model("resnet18", pretrained=False, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_torchvision_ops_are_registered():
    import torch
    from torchvision.ops import nms

    keep = nms(torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]), torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]


def test_console_script_version_and_help():
    exe = shutil.which("fertrain") or str(__import__("pathlib").Path(sys.executable).parent / "fertrain")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"fertrain {fertrain.__version__}"
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for group in ("manifest", "runs", "demo", "demo-data"):
        assert group in helptext


def test_python_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "fertrain", "manifest", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "build" in out.stdout and "inspect" in out.stdout and "verify" in out.stdout
