"""One training loop for every model fertrain trains; teachers and students are small subclasses.

The engine owns what every run needs: device, seeds and CPU threads; the manifest's splits and
the uint8 data path with (seed, step)-deterministic device augmentation; AMP, channels-last,
torch.compile, gradient accumulation and clipping, sharpness-aware minimization, the optimizer
step and model EMA; reading the loss terms off the device every few steps (no per-step sync),
stopping on a non-finite loss before anything is saved; evaluation with temperature scaling,
EMA weights evaluated alongside the raw ones and the better one kept as best.pt; history, CSV
and curves; checkpoints with an exact mid-epoch resume and a config allowlist for resuming.

A subclass says what differs through hooks:
    head_kwargs()             the head's constructor arguments (a teacher's ArcFace scale); the model
                              itself is built from the shared options (backbone, head, dropout, drop path,
                              initial weights) by `create_model`, the same for every trainer
    setup()                   anything built before the data (a teacher signal, a loss module)
    training_input(batch, values)  the normalized images of the step; default: mixed(augmented(batch))
    forward_loss(x, batch)    {"loss": total, <term>: value, ...} for a normalized input batch
    step_values()             the step's own host-drawn numbers (default: the mixup draw), handed
                              to training_input as a device tensor
    graph_blockers() / graph_key()   a step that can be captured as a CUDA graph: why it cannot,
                              what it bakes in
    trained_modules()         the modules whose buffers a training step updates (--sam keeps them)
    before_step()             set the LR of the coming optimizer step; return schedule values
    on_epoch_start()          e.g. unfreeze a phase; on_evaluated(metrics) e.g. a plateau scheduler
    extra_state() / restore_structure(ckpt) / restore_extra(ckpt)   what else a checkpoint holds
    epoch_info()              fields every record and best.pt carry (stage, phase)
    on_fit_end()              what a finished run writes beyond best.pt and the history
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
import yaml
from timm.optim import create_optimizer_v2

from fertrain.atomic import atomic_write_json, atomic_write_text
from fertrain.console import console
from fertrain.data import (
    ManifestFaces,
    PreprocessSpec,
    augment_batch,
    augment_config,
    augment_params,
    color_mode_of,
    face_loader,
    step_generator,
    step_seed,
)
from fertrain.data.mixup import draw_mix, mix_images, mix_vector
from fertrain.data.order import epoch_length, epoch_order
from fertrain.data.preprocess import color_sample
from fertrain.data.resident import ResidentFaces, resident_bytes, use_data_on_device
from fertrain.engine.config import TrainConfig, effective_values, field_defaults
from fertrain.engine.device import (
    autocast_for,
    configure_cpu_threads,
    deterministic_algorithms,
    resolve_device,
    seed_everything,
    synchronize,
)
from fertrain.engine.distributed import SINGLE, DistContext, rank_device, start_distributed
from fertrain.engine.ema import ModelEma
from fertrain.engine.evaluate import collect_logits, evaluate_logits
from fertrain.engine.graphs import StepGraphs
from fertrain.engine.history import write_curves, write_history
from fertrain.engine.loggers import make_logger
from fertrain.engine.progress import epoch_progress
from fertrain.engine.resume import RESUMABLE_KEYS, check_resume
from fertrain.engine.sam import SharpnessAware
from fertrain.engine.saver import CheckpointSaver, rng_state, set_rng_state
from fertrain.errors import ConfigError, FertrainError
from fertrain.labels import CLASS_NAMES
from fertrain.manifests import SourceFilter
from fertrain.manifests.splits import training_folds
from fertrain.models import FerNet, build_model, model_spec, normalization_of
from fertrain.models.loading import CALIBRATION, posthoc_temperatures
from fertrain.runs import Run, open_run, read_run
from fertrain.runs.checkpoints import BEST, CHECKPOINT_LAST, load_checkpoint, save_checkpoint
from fertrain.runs.heldout import HeldOutRows, write_heldout
from fertrain.runs.report_paths import RUN_CONFIG
from fertrain.runs.reports import recorded_inputs
from fertrain.runs.signals import RunInterrupted, cooperative_stop, stop_requested, stop_signals

CHECKPOINT_FORMAT = "fertrain-checkpoint-v2"  # resume state (checkpoint_last.pt)
WEIGHTS_FORMAT = "fertrain-weights-v2"  # best.pt and friends: weights + what is needed to serve them
SYNC_EVERY = 10  # optimizer steps between reading the loss terms on the host (a read stalls the GPU queue)
METRIC_KEYS = ("accuracy", "macro_f1", "auc", "nll")


@dataclass
class Batch:
    """One micro-batch on the device, as the data path delivers it (uint8 faces at native size)."""

    images: torch.Tensor
    sizes: torch.Tensor
    host_sizes: torch.Tensor  # the same sizes on the host: read without a device sync
    labels: torch.Tensor
    soft: torch.Tensor  # manifest soft targets, NaN rows where there are none
    index: torch.Tensor  # row positions in the training split
    seed_step: int  # augmentation draws: step_generator(seed, seed_step)
    teacher: Any = None  # what a trainer attaches for forward_loss (a student's teacher outputs)


@dataclass
class TrainResult:
    output_dir: Path
    history: list[dict]
    best: dict
    global_step: int
    complete: bool
    resumed_from_step: int | None = None
    resumed_from_epoch: int | None = None
    test: dict | None = None
    params: dict = field(default_factory=dict)
    onnx: dict | None = None
    is_main: bool = True  # False on torchrun ranks other than 0 (they write nothing)


class LossMeter:
    """The epoch's loss terms: device tensors queued, read on the host in one copy at `drain`."""

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.sums: dict[str, float] = dict(state.get("sums", {}))
        self.count, self.images = int(state.get("count", 0)), int(state.get("images", 0))
        self.pending: list[dict[str, torch.Tensor]] = []
        self.last = math.nan

    def drain(self, reduce=None) -> dict[str, list[float]]:
        """The queued terms on the host (`reduce`: e.g. the mean over torchrun ranks, applied first)."""
        if not self.pending:
            return {}
        keys = list(self.pending[0])
        stacked = torch.stack([torch.stack([t[k].float() for k in keys]) for t in self.pending])
        rows = (reduce(stacked) if reduce is not None else stacked).cpu().tolist()
        self.pending.clear()
        values = {k: [row[i] for row in rows] for i, k in enumerate(keys)}
        if all(math.isfinite(v) for vs in values.values() for v in vs):
            for k, vs in values.items():
                self.sums[k] = self.sums.get(k, 0.0) + sum(vs)
            self.count += len(rows)
            self.last = values["loss"][-1]
        return values

    def means(self) -> dict[str, float]:
        return {k: v / max(1, self.count) for k, v in self.sums.items()}

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count, "images": self.images}


def val_fields(val: dict) -> dict:
    """The history fields of one evaluation."""
    cal = val["calibration"]
    return {"val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"], "val_auc": val["auc"],
            "val_nll": val["nll"], "temperature": cal["fit"]["temperature"], "val_ece": cal["raw"]["ece"],
            "val_ece_scaled": cal["scaled"]["ece"], "val_brier": cal["raw"]["brier"],
            "val_brier_scaled": cal["scaled"]["brier"], "val_nll_scaled": cal["scaled"]["nll"],
            "val_per_class": val["per_class"], "val_confusion_matrix": val["confusion_matrix"]}  # fmt: skip


class Trainer:
    kind: ClassVar[str] = "model"
    resumable: ClassVar[frozenset[str]] = RESUMABLE_KEYS

    def __init__(self, cfg: TrainConfig, run: Run, *, show_progress: bool = True, dist: DistContext = SINGLE):
        self.cfg, self.run, self.out, self.dist = cfg, run, run.output_dir, dist
        self.created = time.perf_counter()
        self.show = show_progress and dist.is_main
        self.device = rank_device(resolve_device(cfg.device), dist)
        self.cpu_threads = configure_cpu_threads(cfg.workers)
        dist.check_agreement(cfg.to_dict(), run.data.manifest.sha256)  # type: ignore[union-attr]
        seed_everything(cfg.seed)
        self.manifest = run.data.manifest  # type: ignore[union-attr]
        # the input files' sha256 as the run recorded them at its start (`input_digests`): kept in every
        # checkpoint, so a resume on other content is refused; {} where the run did not record them
        self.inputs = recorded_inputs(run.data.report)  # type: ignore[union-attr]
        rows = run.data.rows  # type: ignore[union-attr]
        self.train_rows, self.val_rows = self.split_rows(rows, cfg.train_split), self.split_rows(rows, cfg.val_split)
        if len(self.train_rows) == 0:
            raise ConfigError(f"no '{cfg.train_split}' rows after the source filter in {cfg.manifest}")
        self.heldout_rows = self.train_rows.iloc[:0]
        if cfg.fold is not None:  # cross-fitting: this run never sees one fold of its training rows
            held = training_folds(self.train_rows["label"].to_numpy(), self.train_rows["sha256"].to_numpy(),
                                  cfg.folds) == cfg.fold  # fmt: skip
            self.heldout_rows = self.train_rows[held].reset_index(drop=True)
            self.train_rows = self.train_rows[~held].reset_index(drop=True)
        self.model = self.create_model().to(self.device)
        dist.broadcast_parameters(self.model)
        if dist.rank > 0:  # its own stream for dropout and the like (rank 0 keeps the single-process one)
            seed_everything(cfg.seed + 1_000_003 * dist.rank)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # compiled for training steps only; evaluation and checkpoints use the plain module. Not through
        # compile_repeatably: a compiled backbone varied between runs even in Inductor's deterministic mode, and
        # --deterministic makes it repeat (docs/engine.md, "Repeatable runs")
        self.backbone_fn = torch.compile(self.model.backbone) if cfg.compile else self.model.backbone
        mean, std = normalization_of(self.model)
        if cfg.color == "auto":  # the sampled rows' paths only: the training set resolves and checks them all
            color = color_mode_of(self.manifest.image_paths(self.train_rows.iloc[color_sample(len(self.train_rows))]))
        else:
            color = cfg.color
        self.spec = PreprocessSpec(img_size=int(cfg.img_size or 0), clahe=cfg.clahe, color=color, mean=mean, std=std)
        self.augment = augment_config(cfg.augment)
        self.fused = self.device.type == "cuda" and cfg.fused_augment
        self.setup()
        self.train_set = ManifestFaces(self.manifest, self.train_rows, self.load_spec())
        self.val_set = ManifestFaces(self.manifest, self.val_rows, self.spec) if len(self.val_rows) else None
        self.labels = self.train_set.labels
        self.resident_train, self.resident_val = self.place_data()
        self.global_batch = cfg.batch_size * dist.world_size  # one micro-batch of every rank
        self.micro_per_epoch = epoch_length(self.labels, cfg.balanced_min_per_class) // self.global_batch
        self.steps_per_epoch = self.micro_per_epoch // cfg.grad_accum_steps
        if self.steps_per_epoch < 1:
            raise ConfigError(f"--batch-size {cfg.batch_size} x --grad-accum-steps {cfg.grad_accum_steps} x "
                              f"{dist.world_size} process(es) is larger than one epoch of {len(self.train_rows)} "
                              "training rows")  # fmt: skip
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.optimizer = create_optimizer_v2(self.optimizer_params(), opt=cfg.opt, lr=cfg.lr,
                                             weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                                             **fused_kwargs(cfg.opt, self.device))  # fmt: skip
        self.scheduler = self.create_scheduler()
        fp16 = cfg.amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.sam = SharpnessAware(cfg.sam, adaptive=cfg.sam_adaptive) if cfg.sam > 0 else None
        self.ema = ModelEma(self.model, decay=cfg.model_ema_decay, use_warmup=True) if cfg.model_ema else None
        self.step_graphs = self.create_step_graphs()
        self.saver = CheckpointSaver(self.out, cfg.checkpoint_hist)
        self.logger = make_logger(cfg.log, self.out) if dist.is_main else None
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self.best: dict = {"metric": -math.inf}
        self.total_sec = 0.0
        self.meter = LossMeter()  # this epoch so far (survives a mid-epoch resume)
        self.scalars: dict[str, float] = {}  # schedule values of the current optimizer step
        self.saved_step: int | None = None
        self.overrides: list[dict] = []  # forced resumes over a changed config
        self.new_override: dict | None = None  # recorded in the next history record
        self.resumed_from_step: int | None = None
        self.resumed_from_epoch: int | None = None
        self.test_metrics: dict | None = None
        self.params: dict = {}
        self.mix: torch.Tensor | None = None  # this step's mixup/cutmix draw (`mix_vector`) on the device, or None

    # --- hooks (defaults) ----------------------------------------------------------------
    @classmethod
    def splits_of(cls, cfg: TrainConfig) -> list[str]:
        return [cfg.train_split, cfg.val_split]

    @classmethod
    def input_digests(cls, cfg: TrainConfig) -> dict[str, str]:
        """{option: sha256} of what the files that options name hold, for files read while training
        (not only at the start of a new run): a resume must find the same content at those paths."""
        return {}

    def head_kwargs(self) -> dict:
        return {}

    def create_model(self) -> FerNet:
        c = self.cfg
        return build_model(c.backbone, head=c.head, head_kwargs=self.head_kwargs(), pretrained=c.pretrained,
                           initial_checkpoint=c.initial_checkpoint, drop_rate=c.drop,
                           drop_path_rate=c.drop_path)  # fmt: skip

    def model_spec(self) -> dict:
        """What rebuilds the trained net for inference (training-only options such as dropout left out)."""
        return model_spec(self.cfg.backbone, self.cfg.head, self.head_kwargs())

    def setup(self) -> None:
        """Build what the subclass needs before the datasets (called once, after the model)."""

    def load_spec(self) -> PreprocessSpec:
        """CPU preprocessing of training faces (a student with a larger teacher loads at the larger size)."""
        return self.spec

    def optimizer_params(self):
        return self.model

    def create_scheduler(self):
        return None

    def initialize(self) -> None:
        """A new run (nothing to resume): e.g. load another run's weights."""

    def on_fit_start(self) -> None:
        """Once per new run, before the first epoch."""

    def on_epoch_start(self) -> None:
        """Before each epoch, also a resumed one."""

    def on_train_mode(self) -> None:
        """After `model.train()` at the start of each epoch."""

    def before_step(self) -> dict[str, float]:
        """Before each optimizer step: set its LR; return the schedule values to record."""
        return {"lr": float(self.optimizer.param_groups[0]["lr"])}

    def training_input(self, batch: Batch, values: torch.Tensor | None) -> torch.Tensor:
        """The normalized images the step trains on. `values`: the step's `step_values` as a device
        tensor (None or empty when it has none); a graphed step reads them only from there (no
        Python value that changes between steps may be baked in)."""
        return self.mixed(self.augmented(batch))

    def forward_loss(self, x: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def graph_blockers(self) -> list[str]:
        """Why this trainer's step cannot be captured as a CUDA graph (empty: it can, through
        graph_key / step_values / training_input)."""
        return [f"a {self.kind} step (its per-step values are not device tensors)"]

    def graph_key(self):
        """What the coming step bakes into a CUDA graph beyond tensor shapes (None: this step
        cannot be captured); called after `before_step`."""
        return None

    def step_values(self) -> list[float]:
        """The coming step's own host-drawn numbers, handed to `training_input` on the device: the
        mixup/cutmix draw (`mix_vector`) when --mixup/--cutmix is on, drawn from (seed, step)."""
        c = self.cfg
        if not c.mix.active:
            return []
        return mix_vector(draw_mix(c.mix, self.spec.img_size, c.seed, self.global_step))

    def step_input(self, batch: Batch, values: torch.Tensor | None) -> torch.Tensor:
        """`training_input`, with the step's mixup/cutmix draw (the `step_values` on the device) kept in
        `self.mix` first, for the input (`mixed`), an online teacher's view and the loss alike."""
        self.mix = values if self.cfg.mix.active else None
        return self.training_input(batch, values)

    def mixed(self, x: torch.Tensor) -> torch.Tensor:
        """The batch mixed with its mirror (B-1-i) as this step's draw says; as it is without mixing."""
        return x if self.mix is None else mix_images(x, self.mix)

    def trained_modules(self) -> list[torch.nn.Module]:
        """The modules a training step updates: their parameters with a gradient and their buffers."""
        return [self.model]

    def train_record(self, means: dict[str, float]) -> dict:
        return {"train_loss": means.get("loss", math.nan), **{f"train_{k}": v for k, v in means.items() if k != "loss"}}

    def epoch_info(self) -> dict:
        return {}

    def on_evaluated(self, metrics: dict, weights: dict) -> list[str]:
        """After an evaluation (metrics of the selected weights); returns what was saved, for the console."""
        return []

    def extra_state(self) -> dict:
        return {}

    def restore_structure(self, ckpt: dict) -> None:
        """Rebuild what the optimizer and scheduler states need before they are loaded."""

    def restore_extra(self, ckpt: dict) -> None:
        """Restore what `extra_state` saved."""

    def on_fit_end(self) -> None:
        """A finished run (all epochs): final files beyond best.pt and the history."""

    def print_epoch(self, rec: dict, saved: list[str]) -> None:
        val = (f" val acc {rec['val_accuracy']:.4f} macro-F1 {rec['val_macro_f1']:.4f} nll {rec['val_nll']:.4f} "
               f"ECE {rec['val_ece']:.4f}->{rec['val_ece_scaled']:.4f} (T={rec['temperature']:.3f})"
               if "val_accuracy" in rec else "")  # fmt: skip
        sched = " ".join(f"{k} {v:.2e}" if k == "lr" else f"{k} {v:.3f}" for k, v in self.scalars.items())
        console.print(f"epoch {rec['epoch']} step {rec['global_step']} loss {rec['train_loss']:.4f} {sched} "
                      f"{rec['img_per_sec']:,.0f} img/s {rec['epoch_sec']:.1f}s{val}", highlight=False,
                      soft_wrap=True)  # fmt: skip

    # --- helpers for subclasses ----------------------------------------------------------
    @staticmethod
    def split_rows(rows: pd.DataFrame, split: str) -> pd.DataFrame:
        return rows[rows["split"] == split].reset_index(drop=True)

    def generator(self, batch: Batch) -> torch.Generator:
        """The augmentation draws of `batch`'s step. Eagerly a fresh generator seeded from (seed,
        step); with CUDA graphs the one generator StepGraphs seeded for this step, so a graphed
        step must draw from it once (a second call continues its stream instead of repeating it)."""
        if self.step_graphs is not None:  # one generator, seeded for this step by StepGraphs
            return self.step_graphs.generator
        return step_generator(self.cfg.seed, batch.seed_step, self.device)

    def augmented(self, batch: Batch, spec: PreprocessSpec | None = None, params: torch.Tensor | None = None,
                  ) -> torch.Tensor:  # fmt: skip
        """The batch's random crop/flip/jitter/erasing at `spec`'s size and normalization (default:
        own), drawn for this step (or `params` from `augment_params`, shared with other views)."""
        spec = spec or self.spec
        if params is None:
            params = self.augment_params(batch)
        return augment_batch(batch.images, batch.sizes, spec.img_size, self.augment, spec.mean, spec.std,
                             channels_last=self.cfg.channels_last, fused=self.fused, params=params)  # fmt: skip

    def augment_params(self, batch: Batch) -> torch.Tensor:
        """This step's augmentation draws for the batch's rows (one draw per step: see `generator`)."""
        return augment_params(batch.images.shape[0], self.augment, self.generator(batch), self.device,
                              self.augment_rows(batch))  # fmt: skip

    def augment_rows(self, batch: Batch) -> tuple[int, int]:
        """(first row, rows drawn): augmentation is drawn for the global batch, each rank keeps its rows."""
        b = batch.images.shape[0]
        return self.dist.rank * b, b * self.dist.world_size

    def autocast(self):
        # no cast-weight cache in a captured step (torch's CUDA-graph notes): a cached cast would be replayed stale
        return autocast_for(self.device, self.cfg.amp, cache=self.step_graphs is None)

    def weights_payload(self, module: torch.nn.Module, metrics: dict | None) -> dict:
        """What best.pt and friends hold: weights and everything needed to serve them."""
        return {"format": WEIGHTS_FORMAT, "kind": self.kind, "model": module.state_dict(),
                "model_spec": self.model_spec(), "config": self.cfg.to_dict(), "class_names": list(CLASS_NAMES),
                "preprocess": self.spec.to_dict(), "epoch": self.epoch + 1, "global_step": self.global_step,
                "temperature": metrics["calibration"]["fit"]["temperature"] if metrics else 1.0,
                "metrics": {k: metrics[k] for k in METRIC_KEYS} if metrics else {}, **self.epoch_info()}  # fmt: skip

    def place_data(self) -> tuple[ResidentFaces | None, ResidentFaces | None]:
        """--data-on-device: the training and validation faces prepared once and held on the
        device (`ResidentFaces`), or None for the DataLoader path."""
        splits = [(self.train_rows, self.train_set.spec), (self.val_rows, self.spec)]
        nbytes = sum(resident_bytes(rows, spec.img_size) for rows, spec in splits)
        if not use_data_on_device(self.cfg.data_on_device, self.device, nbytes):
            return None, None
        started = time.perf_counter()
        train = ResidentFaces(self.train_set, self.device, workers=self.cfg.workers)
        val = ResidentFaces(self.val_set, self.device, workers=self.cfg.workers) if self.val_set else None
        mb = (train.nbytes + (val.nbytes if val else 0)) / 2**20
        console.print(f"data on {self.device}: {len(train):,} training + {len(val) if val else 0:,} validation faces, "
                      f"{mb:,.0f} MB, prepared in {time.perf_counter() - started:.1f}s", highlight=False)  # fmt: skip
        return train, val

    def evaluate(self, dataset: ManifestFaces, module: torch.nn.Module | None = None) -> dict:
        if dataset is self.val_set and self.resident_val is not None:
            loader = self.resident_val.eval_batches(self.cfg.batch_size * 2)
        else:
            self.saver.flush()  # no checkpoint thread running while loader workers fork
            loader = face_loader(dataset, batch_size=self.cfg.batch_size * 2, workers=self.cfg.workers,
                                 device=self.device)  # fmt: skip
        logits, labels, _ = collect_logits(module or self.model, loader, self.device, self.spec, amp=self.cfg.amp,
                                           channels_last=self.cfg.channels_last)  # fmt: skip
        return evaluate_logits(logits, labels)

    # --- state ---------------------------------------------------------------------------
    def state(self) -> dict:
        """The resume state (collective under torchrun: every rank's random-number state is gathered)."""
        rngs = self.dist.gather(rng_state())
        return {
            "format": CHECKPOINT_FORMAT, "kind": self.kind, "model": self.model.state_dict(),
            "model_spec": self.model_spec(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "rng_ranks": rngs, "world_size": self.dist.world_size, "config": self.cfg.to_dict(),
            "class_names": list(CLASS_NAMES),
            "preprocess": self.spec.to_dict(), "best": self.best, "history": self.history,
            "total_sec": self.total_sec, "running": self.meter.state_dict(), "saver": self.saver.state_dict(),
            "overrides": self.overrides, "scalars": self.scalars, "manifest_sha256": self.manifest.sha256,
            "inputs": self.inputs, **self.extra_state(),
        }  # fmt: skip

    def restore(self, ckpt: dict, path: Path) -> None:
        changes = check_resumable(type(self), ckpt, path, self.cfg, self.dist.world_size, self.inputs)
        self.model.load_state_dict(ckpt["model"])
        self.restore_structure(ckpt)
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.optimizer.load_state_dict(ckpt["optimizer"])  # after the scheduler: restores the LRs it had
        for group in self.optimizer.param_groups:  # this device's kernel choice, not the saving one's
            group.update({"fused": None, **fused_kwargs(self.cfg.opt, self.device)} if "fused" in group else {})
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.epoch, self.step_in_epoch, self.global_step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]
        self.best, self.history, self.total_sec = ckpt["best"], ckpt["history"], ckpt["total_sec"]
        self.meter = LossMeter(ckpt["running"])
        self.saver.load_state_dict(ckpt["saver"])
        self.overrides = list(ckpt["overrides"])
        self.scalars = dict(ckpt["scalars"])  # the last step's LR etc.: an epoch resumed at its end records them
        self.restore_extra(ckpt)
        rngs = ckpt.get("rng_ranks") or [ckpt["rng"]]  # "rng": one process's state, before torchrun support
        set_rng_state(rngs[self.dist.rank] if len(rngs) == self.dist.world_size else rngs[0])
        self.resumed_from_step = self.saved_step = self.global_step
        self.resumed_from_epoch = self.epoch
        if changes:
            self.overrides.append({"at_step": self.global_step, "changes": changes})
            self.new_override = changes
            self.run.note("resume_overrides", self.overrides)
            console.print(f"[yellow]--force:[/] resuming over a changed config: {changes}", soft_wrap=True)

    def start(self, resume: tuple[dict, Path] | None = None) -> None:
        """Resume from `resume` (a loaded checkpoint and its path), else from the run's own
        checkpoint_last.pt; with neither, a new run."""
        if resume is None:
            source = resume_source(self.cfg, self.out)
            resume = (load_checkpoint(source), source) if source is not None else None
        if resume is None:
            self.initialize()
            return
        self.restore(*resume)
        console.print(f"resuming {resume[1]} at epoch {self.epoch}, step {self.global_step}", soft_wrap=True)

    def save_last(self) -> None:
        state = self.state()
        if self.dist.is_main:
            self.saver.save_last(state)
        self.saved_step = self.global_step

    def stop_pending(self) -> bool:
        """Whether to checkpoint now because a stop was asked. Under torchrun the ranks agree on it
        when they read their losses (every SYNC_EVERY steps), so all stop at the same step."""
        if not self.dist.enabled:
            return stop_requested() is not None
        return self.global_step % SYNC_EVERY == 0 and self.dist.any(stop_requested() is not None, self.device)

    def stop_if_requested(self) -> None:
        """After a checkpoint: stop if a signal asked for it (the checkpoint is the resume point)."""
        # under torchrun every rank stops at the same step, or none does
        signame = next((s for s in self.dist.gather(stop_requested()) if s is not None), None)
        if signame is not None:
            self.saver.flush()
            raise RunInterrupted(signame, f"stopped after step {self.global_step}, {CHECKPOINT_LAST} saved")

    # --- training --------------------------------------------------------------------------
    def train_loader(self, epoch: int, skip_micro: int) -> Iterator[tuple]:
        """The epoch's micro-batches of this rank from `skip_micro` on (`collate_faces` tuples),
        gathered on the device or from loader workers."""
        order = epoch_order(self.labels, seed=self.cfg.seed, epoch=epoch,
                            balanced_min_per_class=self.cfg.balanced_min_per_class)  # fmt: skip
        b, world = self.cfg.batch_size, self.dist.world_size
        # global batches of b x world positions; this rank's micro-batches are its b of each
        order = order[: self.micro_per_epoch * b * world].reshape(-1, world, b)[:, self.dist.rank].reshape(-1)
        order = order[skip_micro * b :]
        if self.resident_train is not None:
            return self.resident_train.batches(order, self.cfg.batch_size)
        self.saver.flush()  # no checkpoint thread running while loader workers fork
        return face_loader(self.train_set, batch_size=self.cfg.batch_size, workers=self.cfg.workers,
                           device=self.device, order=order.tolist(), drop_last=True)  # fmt: skip

    def device_batch(self, raw: tuple, micro: int) -> Batch:
        x, sizes, host_sizes, y, soft, idx = raw  # device tensors already when the data is on the device
        dev, accum = self.device, self.cfg.grad_accum_steps
        return Batch(x.to(dev, non_blocking=True), sizes.to(dev, non_blocking=True), host_sizes,
                     y.to(dev, non_blocking=True), soft.to(dev, non_blocking=True), idx.to(dev, non_blocking=True),
                     self.global_step * accum + micro % accum)  # fmt: skip

    def micro_step(self, raw: tuple, micro: int) -> dict[str, torch.Tensor]:
        """uint8 batch -> device -> training input -> forward and backward."""
        values = self.step_values()  # none: nothing to copy to the device
        values_t = torch.tensor(values, dtype=torch.float32).to(self.device, non_blocking=True) if values else None
        batch = self.device_batch(raw, micro)
        terms = self.forward_backward(self.step_input(batch, values_t), batch)
        return {k: v.detach() for k, v in terms.items()}  # tensors: reading them on the host would sync the GPU

    def forward_backward(self, x: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss terms at the current weights, gradients accumulated (scaled by the accumulation);
        with --sam the gradients are replaced by those of a second pass on the same `x` at the
        sharpness-aware weights (engine/sam.py)."""
        terms = self.forward_loss(x, batch)
        self.scaler.scale(terms["loss"] / self.cfg.grad_accum_steps).backward()
        if self.sam is not None:  # --sam needs --grad-accum-steps 1 (checked with the config)
            with self.sam.ascended(self.optimized_params(), self.trained_modules()):
                self.scaler.scale(self.forward_loss(x, batch)["loss"]).backward()
        return terms

    def optimized_params(self) -> list[torch.nn.Parameter]:
        """Every parameter the optimizer holds (its groups change as unfreezing adds layers)."""
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def average_and_clip(self) -> None:
        """Gradients averaged over torchrun ranks, then clipped (--clip-grad)."""
        if self.dist.enabled or self.cfg.clip_grad:
            params = self.optimized_params()
            self.dist.average_gradients(params)
            if self.cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)

    def optimizer_step(self) -> None:
        self.average_and_clip()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step + 1)

    # --- the step as a CUDA graph (--cuda-graph) ------------------------------------------------
    def create_step_graphs(self) -> StepGraphs | None:
        """`--cuda-graph`: auto captures on CUDA when the step allows it; on asks for it (on the CPU
        the same step code runs without capture); off keeps the plain step."""
        cfg = self.cfg
        if cfg.cuda_graph == "off":
            return None
        reasons = self.graph_blockers() + [why for why, bad in [
            ("--grad-accum-steps > 1", cfg.grad_accum_steps > 1),
            ("fp16 loss scaling (this GPU has no bf16)", self.scaler.is_enabled()),
            (f"--opt {cfg.opt} (captured: {', '.join(FUSED_OPTIMIZERS)})", cfg.opt.lower() not in FUSED_OPTIMIZERS),
        ] if bad]  # fmt: skip
        if reasons:
            if cfg.cuda_graph == "on":
                raise ConfigError(f"--cuda-graph on: the training step cannot be captured with {'; '.join(reasons)}")
            return None
        capture = self.device.type == "cuda"
        if cfg.cuda_graph == "auto" and not capture:
            return None
        self.optimizer._warned_capturable_if_run_uncaptured = True  # eager warm-up steps of a capturable Adam are fine
        return StepGraphs(self.device, capture=capture)

    def graphed_step(self, raw: tuple) -> dict[str, torch.Tensor]:
        """One whole optimizer step through `StepGraphs`: the LRs and the EMA weight join the
        trainer's own per-step values in the vector the step reads."""
        batch = self.device_batch(raw, 0)
        lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        ema = [1.0 - self.ema.get_decay(self.global_step + 1)] if self.ema is not None else []
        return self.step_graphs.run(self.graph_key(), self.graph_body, batch, lrs + ema + self.step_values(),  # type: ignore[union-attr]
                                    step_seed(self.cfg.seed, batch.seed_step),
                                    lambda: self.optimizer.zero_grad(set_to_none=True))  # fmt: skip

    def graph_body(self, batch: Batch, values: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a captured step does: forward and loss, backward (twice with --sam), gradient
        averaging and clipping, the optimizer step with LRs read from `values`, the EMA update."""
        groups = self.optimizer.param_groups
        n_lr, n_ema = len(groups), int(self.ema is not None)
        terms = self.forward_backward(self.step_input(batch, values[n_lr + n_ema :]), batch)
        self.average_and_clip()
        if self.device.type == "cuda":  # LRs as device tensors (fused kernels read them when replayed)
            kept = [dict(g) for g in groups]
            for i, g in enumerate(groups):
                g["lr"] = values[i]
                if "capturable" in g:  # Adam-family: capture needs its step counters on the device
                    g["capturable"] = True
            try:
                self.optimizer.step()
            finally:
                for g, old in zip(groups, kept, strict=True):
                    g["lr"] = old["lr"]
                    if "capturable" in old:
                        g["capturable"] = old["capturable"]
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update_by(self.model, values[n_lr])
        return {k: v.detach() for k, v in terms.items()}

    def drain(self, seen: int, started: float) -> None:
        """Read the queued loss terms (averaged over ranks); stop (nothing saved) if one is not finite.
        `seen` images since `started` give the logged img/s, timed once the terms are read (reading
        waits for their steps: the loop only queues GPU work)."""
        values = self.meter.drain(self.dist.mean if self.dist.enabled else None)
        if not values:
            return
        rate = seen / max(1e-9, time.perf_counter() - started)
        bad = sorted(k for k, vs in values.items() if not all(math.isfinite(v) for v in vs))
        first = self.global_step - len(values["loss"]) + 1
        if bad:
            kept = (f"{CHECKPOINT_LAST} keeps step {self.saved_step}, the last state with finite losses"
                    if self.saved_step is not None else "no checkpoint was written")  # fmt: skip
            raise FertrainError(f"non-finite loss ({', '.join(bad)}) within steps {first}-{self.global_step}: training "
                                f"stopped, {kept}. Lower --lr, set --clip-grad, or check the data")  # fmt: skip
        if self.logger is not None:
            self.logger.steps(first, values)
            self.logger.scalars(self.global_step, {**self.scalars, "img_per_sec": rate})

    def train_epoch(self) -> dict:
        cfg, accum = self.cfg, self.cfg.grad_accum_steps
        self.model.train()
        self.on_train_mode()
        started = tick = time.perf_counter()
        seen = 0
        replayed = self.step_graphs.counts["replayed"] if self.step_graphs is not None else 0
        loader = self.train_loader(self.epoch, self.step_in_epoch * accum)
        title = f"epoch {self.epoch + 1}/{cfg.epochs}"
        at_step_boundary = True  # no micro-batch of an unfinished optimizer step yet: a consistent state
        with epoch_progress(title, self.steps_per_epoch, self.step_in_epoch, self.show) as update:
            try:
                for micro, raw in enumerate(loader):
                    if micro % accum == 0:
                        self.scalars = self.before_step()
                    at_step_boundary = False
                    terms = self.micro_step(raw, micro) if self.step_graphs is None else self.graphed_step(raw)
                    seen += raw[0].shape[0]
                    self.meter.images += raw[0].shape[0]
                    if (micro + 1) % accum:
                        continue
                    if self.step_graphs is None:
                        self.optimizer_step()
                    at_step_boundary = True
                    self.meter.pending.append(terms)
                    self.global_step += 1
                    self.step_in_epoch += 1
                    if self.global_step % SYNC_EVERY == 0:
                        self.drain(seen, started)
                    update(images=raw[0].shape[0] * accum, loss=self.meter.last, **self.scalars)
                    periodic = cfg.checkpoint_every_steps and self.global_step % cfg.checkpoint_every_steps == 0
                    if periodic or self.stop_pending():
                        self.drain(seen, started)
                        now = time.perf_counter()
                        self.total_sec, tick = self.total_sec + now - tick, now
                        self.save_last()
                        self.stop_if_requested()
            except Exception:
                # loader workers killed by the same signal as this process: stop as asked, if the state is whole
                if not self.dist.enabled and stop_requested() and at_step_boundary:
                    self.total_sec += time.perf_counter() - tick
                    self.save_last()
                    self.stop_if_requested()
                raise
        self.drain(seen, started)
        # the epoch's GPU work, queued by the loop, belongs to its time: without this wait, an epoch whose
        # last loss read fell k steps before its end left those k steps out (img/s 15-35 % high, cycling
        # with the read positions; docs/benchmarks.md)
        synchronize(self.device)
        elapsed = time.perf_counter() - started
        self.total_sec += time.perf_counter() - tick
        world = self.dist.world_size  # every rank trained as many images
        rec = {**self.scalars, **self.train_record(self.meter.means()), "train_images": self.meter.images * world,
               "epoch_sec": round(elapsed, 3), "img_per_sec": round(seen * world / max(elapsed, 1e-9), 1)}  # fmt: skip
        if self.step_graphs is not None:  # steps replayed from a CUDA graph (the others ran eagerly)
            rec["graphed_steps"] = self.step_graphs.counts["replayed"] - replayed
        self.meter = LossMeter()
        return rec

    # --- evaluation and selection ------------------------------------------------------------
    def select(self, rec: dict, val: dict) -> tuple[dict, list[str]]:
        """EMA weights evaluated beside the raw ones; the better by the selection metric is the
        candidate for best.pt (and the kept history); returns its metrics and what was saved."""
        key, candidates = self.cfg.select_metric, [("model", self.model, val)]
        if self.ema is not None:
            ema_val = self.evaluate(self.val_set, self.ema.module)  # type: ignore[arg-type]
            rec.update({f"ema_{k}": v for k, v in val_fields(ema_val).items() if not isinstance(v, dict | list)})
            candidates.append(("ema", self.ema.module, ema_val))
        source, module, chosen = max(candidates, key=lambda c: c[2][key])  # a tie keeps the raw weights
        rec["selected_weights"] = source
        weights, value, saved = self.weights_payload(module, chosen), float(chosen[key]), []
        if value > self.best["metric"]:
            cal = chosen["calibration"]
            self.best = {"metric": value, "select_metric": key, "epoch": self.epoch + 1, "weights": source,
                         **{k: chosen[k] for k in METRIC_KEYS}, "temperature": cal["fit"]["temperature"],
                         "ece": cal["raw"]["ece"], "ece_scaled": cal["scaled"]["ece"], **self.epoch_info()}  # fmt: skip
            self.saver.save_best(weights)
            saved.append(f"best.pt ({key} {value:.4f}{', EMA weights' if source == 'ema' else ''})")
            self.write_training_calibration(source, cal)
        kept = self.saver.offer(weights, value, self.epoch + 1)
        if kept:
            saved.append(kept)
        return chosen, saved + self.on_evaluated(chosen, weights)

    def write_training_calibration(self, weights: str, calibration: dict) -> None:
        """calibration.json describes what best.pt serves (its temperature travels in best.pt), so
        it is written with best.pt, not after every evaluation; a post-hoc one is never replaced."""
        if not posthoc_temperatures(self.out)[1]:  # the reader serving uses: what `fertrain calibrate` fitted
            atomic_write_json(self.out / CALIBRATION, {"epoch": self.epoch + 1, "split": self.cfg.val_split,
                                                       "weights": weights, **calibration})  # fmt: skip

    def record(self, train: dict) -> tuple[dict, dict | None, list[str]]:
        rec = {"epoch": self.epoch + 1, "global_step": self.global_step, **self.epoch_info(), **train,
               "total_sec": round(self.total_sec, 3)}  # fmt: skip
        if self.new_override is not None:
            rec["resume_overrides"], self.new_override = self.new_override, None
        last_epoch = self.epoch + 1 == self.cfg.epochs
        if self.val_set is None or ((self.epoch + 1) % self.cfg.eval_every and not last_epoch):
            return rec, None, []
        started = time.perf_counter()
        if self.dist.enabled:  # BatchNorm statistics of all ranks' data in the evaluated (and saved) weights
            self.dist.average_buffers(self.model)
            if self.ema is not None:
                self.dist.average_buffers(self.ema.module)
        chosen, saved = None, []
        if self.dist.is_main:
            val = self.evaluate(self.val_set)
            rec.update(val_fields(val))
            chosen, saved = self.select(rec, val)
            rec["eval_sec"] = round(time.perf_counter() - started, 3)  # evaluation, selection and best.pt
        if self.dist.enabled:  # rank 0 evaluated: every rank records and decides the same
            rec, chosen, self.best = self.dist.broadcast((rec, chosen, self.best))
            if not self.dist.is_main:
                self.on_evaluated(chosen, None)
        return rec, chosen, saved

    def run_epochs(self, stop: int) -> None:
        """Epochs up to `stop`, each recorded, checkpointed and printed; a stop signal ends the
        loop at the next step or epoch boundary, after a checkpoint."""
        with cooperative_stop():
            while self.epoch < stop:
                self.on_epoch_start()
                rec, chosen, saved = self.record(self.train_epoch())
                self.history.append(rec)
                if self.dist.is_main:
                    write_history(self.out, self.history)
                self.epoch += 1
                self.step_in_epoch = 0
                self.save_last()
                if self.dist.is_main:
                    self.print_epoch(rec, saved)
                if self.logger is not None:
                    self.logger.epoch(rec, chosen)
                self.stop_if_requested()

    def fit(self, until_epoch: int | None = None, resume: tuple[dict, Path] | None = None) -> TrainResult:
        """Train to the configured epochs (or stop after `until_epoch`, resumable later)."""
        self.start(resume)
        self.run.mark_started()
        if self.resumed_from_step is None:
            self.on_fit_start()
        if self.dist.is_main:
            atomic_write_text(self.out / RUN_CONFIG, yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
            atomic_write_json(self.out / "preprocess.json", self.spec.to_dict())
            if self.cfg.fold is not None:
                write_heldout(self.out, HeldOutRows(self.cfg.fold, self.cfg.folds, self.cfg.train_split,
                                                    self.manifest.sha256,
                                                    self.heldout_rows["row_id"].astype(str).tolist()))  # fmt: skip
        stop = min(self.cfg.epochs, until_epoch or self.cfg.epochs)
        if self.dist.is_main:
            held = "" if self.cfg.fold is None else (f"; fold {self.cfg.fold} of {self.cfg.folds} held out: "
                                                      f"{len(self.heldout_rows):,} of the training rows")
            console.print(f"ready to train after {time.perf_counter() - self.created:.1f}s of set-up "
                          f"({self.dist.world_size} process(es), global batch {self.global_batch}{held})",
                          highlight=False)  # fmt: skip
        try:
            self.run_epochs(stop)
        finally:
            self.saver.close()  # every checkpoint written (a failed write raises here)
            if self.logger is not None:
                self.logger.close()
        complete = self.epoch >= self.cfg.epochs
        if complete and self.dist.is_main:
            if not (self.out / BEST).is_file():  # nothing evaluated: the last weights are the result
                save_checkpoint(self.out / BEST, self.weights_payload(self.model, None) | {"epoch": self.epoch})
            self.on_fit_end()
            write_curves(self.out, self.history, title=f"{self.out.name}")
        return TrainResult(self.out, self.history, self.best, self.global_step, complete, self.resumed_from_step,
                           self.resumed_from_epoch, self.test_metrics, self.params,
                           is_main=self.dist.is_main)  # fmt: skip


FUSED_OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")  # timm names backed by torch's fused kernels


def fused_kwargs(opt: str, device: torch.device) -> dict:
    """torch's fused optimizer step on CUDA (one kernel for all parameters instead of several per
    tensor group); the optimizer's defaults elsewhere."""
    return {"fused": True} if device.type == "cuda" and opt.lower() in FUSED_OPTIMIZERS else {}


def resume_source(cfg: TrainConfig, output_dir: Path) -> Path | None:
    """--resume PATH, else the run's own checkpoint_last.pt when there is one."""
    last = output_dir / CHECKPOINT_LAST
    return Path(cfg.resume) if cfg.resume else (last if last.is_file() else None)


def check_resumable(trainer_cls: type[Trainer], ckpt: dict, path: Path, cfg: TrainConfig,
                    world_size: int = 1, inputs: dict[str, str] | None = None) -> dict[str, list]:  # fmt: skip
    """Refuse a checkpoint of another kind, a config changed outside the resume allowlist, or input
    files (`inputs`, as `input_digests` gives them) whose content changed (unless --force); returns the
    forced changes. The number of torchrun processes counts as config: it sets the global batch and
    which rank trains which samples."""
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("kind") != trainer_cls.kind:
        raise FertrainError(f"{path}: not a resumable fertrain {trainer_cls.kind} checkpoint (format "
                            f"{ckpt.get('format')!r}, kind {ckpt.get('kind')!r})")  # fmt: skip
    # options added since the checkpoint was written count as their defaults, which keep the earlier behaviour
    saved = {**field_defaults(type(cfg)), **ckpt["config"], "nproc_per_node": ckpt.get("world_size", 1)}
    current = {**cfg.to_dict(), "nproc_per_node": world_size}
    return check_resume(effective_values(type(cfg), saved), effective_values(type(cfg), current), path, cfg.force,
                        trainer_cls.resumable, saved_inputs=ckpt.get("inputs"), current_inputs=inputs)  # fmt: skip


def run_training(trainer_cls: type[Trainer], cfg: TrainConfig, output_dir: Path, *, show_progress: bool = True,
                 command: str | None = None, until_epoch: int | None = None) -> TrainResult:  # fmt: skip
    """Train (or resume) one run under its lock, with alignment and environment reports.

    A resume is checked before the run directory is touched: a refused one changes nothing.
    Under torchrun, rank 0 holds the lock and writes the run; the other ranks read the same
    manifest and checkpoint and wait for rank 0 at their first collective."""
    if not cfg.manifest:
        raise ConfigError("--manifest is required")
    device = resolve_device(cfg.device)
    dist = start_distributed(device)
    # every rank handles stop signals (rank 0's lock nests its own): torchrun passes a Ctrl-C or SIGTERM to each
    # rank, and all must stop together at one checkpoint, not one dying at once and the others failing after it
    try:
        with stop_signals(), deterministic_algorithms(cfg.deterministic, device):
            source = resume_source(cfg, output_dir)
            resume = None
            inputs = trainer_cls.input_digests(cfg)
            if source is not None:
                resume = (load_checkpoint(source), source)
                check_resumable(trainer_cls, *resume, cfg, dist.world_size, inputs)
            policy = SourceFilter(include_sources=list(cfg.include_sources),
                                  exclude_sources=list(cfg.exclude_sources or []),
                                  splits=sorted(set(trainer_cls.splits_of(cfg))))  # fmt: skip
            if not dist.is_main:
                run = read_run(output_dir, cfg.manifest, policy, command=command)
                return trainer_cls(cfg, run, show_progress=show_progress, dist=dist).fit(until_epoch, resume)
            recorded = {option: {"path": str(getattr(cfg, option)), "sha256": sha} for option, sha in inputs.items()}
            with open_run(output_dir, seed=cfg.seed, manifest=cfg.manifest, source_filter=policy,
                          recover_stale=cfg.recover_stale_lock, allow_manifest_change=cfg.force, command=command,
                          inputs=recorded) as run:  # fmt: skip
                return trainer_cls(cfg, run, show_progress=show_progress, dist=dist).fit(until_epoch, resume)
    finally:
        dist.shutdown()
