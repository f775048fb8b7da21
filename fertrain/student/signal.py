"""Where a student's teacher outputs come from.

Offline (`--softlabels FILE`): the exported, calibrated probabilities of each training row, as
logits log(p) (softmax-equivalent), looked up by row position; logit losses only.

Online (`--teacher RUN_DIR|ENSEMBLE.json`): the frozen teacher(s) in eval mode, no grad, run on
the same augmented view as the student (the same random draws, replayed at each teacher's own
input size and normalization), calibrated the same way as the export: each member's T, weighted
fusion, then the teacher's T. So offline and online give the same KD term for the same inputs.
A single run also yields pooled features for the feature losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from fertrain.calibration.temperature import scale_logits
from fertrain.data import AugmentConfig, PreprocessSpec, augment_batch, to_model_input
from fertrain.data.augment import uniform_size
from fertrain.data.mixup import mix_images
from fertrain.engine.device import autocast_for
from fertrain.ensemble import load_teacher
from fertrain.ensemble.fusion import fuse, member_probs
from fertrain.errors import ConfigError
from fertrain.manifests.io import Manifest
from fertrain.models.factory import pooled_width
from fertrain.softlabels.io import load_softlabels


@dataclass
class TeacherOutput:
    logits: torch.Tensor  # calibrated, float32, (b, classes)
    features: torch.Tensor | None = None  # pooled backbone features (online, single run)
    # in a mixed batch, the teacher's logits for each face's partner (B-1-i): offline, the partner row's
    # soft labels; online, the teacher saw the mixed face itself, so its logits serve both
    partner_logits: torch.Tensor | None = None


class SoftLabelSignal:
    """Offline soft labels for the training rows, on the device, indexed by row position."""

    needs_images = False
    feature_dim = 0

    def __init__(self, path: str | Path, manifest: Manifest, train_rows: pd.DataFrame, device: torch.device):
        sl = load_softlabels(path, manifest)  # refuses another manifest or changed row keys
        p = sl.probs_of(train_rows, "export them for the student's training split (fertrain export-softlabels "
                                    "--split train)")  # fmt: skip
        self.logits = torch.log(torch.from_numpy(p).clamp_min(1e-8)).to(device)
        self.metadata = sl.metadata
        self.describe = {"mode": "offline", "softlabels": str(path), "teacher": sl.metadata.get("teacher")}

    def __call__(self, index: torch.Tensor, mix: torch.Tensor | None = None, **_) -> TeacherOutput:
        """The rows' soft labels (`mix`: the batch is mixed with its mirror; the partners' go along)."""
        logits = self.logits[index]
        return TeacherOutput(logits, partner_logits=None if mix is None else logits.flip(0))


class OnlineTeacherSignal:
    """Frozen teacher run(s) evaluated on each training batch."""

    needs_images = True

    def __init__(self, path: str | Path, device: torch.device, *, need_features: bool, amp: bool,
                 channels_last: bool, fused: bool):  # fmt: skip
        self.teacher = load_teacher(path, tta="none")  # one (augmented) view per face: single-view temperatures
        if need_features and len(self.teacher.members) > 1:
            raise ConfigError(f"--teacher {path}: feature losses need one teacher run, not an ensemble of "
                              f"{len(self.teacher.members)}; pass a run directory or use --loss kd/dkd")  # fmt: skip
        self.device, self.amp, self.channels_last, self.fused = device, amp, channels_last, fused
        # the temperatures on the device once: a host value turned into a tensor every step is a
        # host-to-device copy, which a step captured as a CUDA graph cannot contain
        self.member_t = [torch.as_tensor(m.temperature, dtype=torch.float32, device=device)
                         for m in self.teacher.members]  # fmt: skip
        self.teacher_t = torch.as_tensor(self.teacher.temperature, dtype=torch.float32, device=device)
        for m in self.teacher.members:
            m.model.to(device).eval().requires_grad_(False)
            if channels_last:
                m.model.to(memory_format=torch.channels_last)
        first = self.teacher.members[0]
        self.feature_dim = pooled_width(first.model.backbone)
        self.specs: list[PreprocessSpec] = [m.spec for m in self.teacher.members]
        self.describe = {"mode": "online", **self.teacher.describe()}

    @torch.no_grad()
    def __call__(self, index: torch.Tensor, *, x_uint8: torch.Tensor, sizes: torch.Tensor,
                 params: torch.Tensor | None = None, augment: AugmentConfig | None = None,
                 host_sizes: torch.Tensor | None = None, autocast_cache: bool = True,
                 mix: torch.Tensor | None = None) -> TeacherOutput:  # fmt: skip
        """`params`: the student's augmentation draws for this step (`augment_params`), replayed at
        each member's size and normalization; None gives the evaluation view. `mix`: the student's
        mixup/cutmix draw (a `mix_vector`), applied to each member's view after its augmentation (a
        cutmix box is in fractions of the face, so it covers the same part at every member's size).
        `autocast_cache`: off in a step captured as a CUDA graph (a cached cast would be replayed stale)."""
        t = self.teacher
        raws, features = [], None
        for m in t.members:
            spec = m.spec
            if params is None or augment is None:
                native = uniform_size(host_sizes) if host_sizes is not None else None
                x = to_model_input(x_uint8, sizes, spec.img_size, spec.mean, spec.std, self.channels_last,
                                   fused=self.fused, native=native)  # fmt: skip
            else:
                x = augment_batch(x_uint8, sizes, spec.img_size, augment, spec.mean, spec.std,
                                  channels_last=self.channels_last, fused=self.fused, params=params)  # fmt: skip
                if mix is not None:
                    x = mix_images(x, mix)
            with autocast_for(self.device, self.amp, cache=autocast_cache):
                feats = m.model.backbone(x)
                raws.append(m.model.head(feats).float())
            if features is None:
                features = feats.float()
        if t.is_ensemble:  # the export's own fusion, on the device
            raw = fuse([member_probs(r, mt) for r, mt in zip(raws, self.member_t, strict=True)], t.weights,
                       t.fusion_t)  # fmt: skip
        else:
            raw = raws[0]
        logits = scale_logits(raw, self.teacher_t).float()
        return TeacherOutput(logits, features, partner_logits=None if mix is None else logits)
