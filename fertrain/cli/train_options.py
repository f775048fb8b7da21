"""The command-line options of training commands, declared once.

Options shared by `fertrain teacher` and `fertrain student` (the fields of the engine's
`TrainConfig`) live in `COMMON`; each command adds its own. `with_options` gives a command
function `f(**values)` the signature Typer reads, so one declaration serves both commands.
Every option defaults to None, meaning "not given": YAML and the config's defaults apply.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path

import typer

Spec = tuple[type, typer.models.OptionInfo]


def opt(kind: type, *decls: str, help: str) -> Spec:
    return kind, typer.Option(None, *decls, help=help, metavar="<name>" if typing.get_origin(kind) is list else None)


COMMON: dict[str, Spec] = {
    "config": opt(Path, "--config", "-c", help="YAML file of options (flags override it), or a shipped config "
                  "by name, e.g. fer2013_vgg (fertrain/configs/)."),
    "manifest": opt(str, "--manifest", "-m", help="Manifest (.parquet/.csv) with its stamp."),
    "backbone": opt(str, "--backbone", "--model", help="Any timm model name."),
    "img_size": opt(int, "--img-size", help="Input size in pixels."),
    "epochs": opt(int, "--epochs", help="Training epochs."),
    "batch_size": opt(int, "--batch-size", "-b", help="[64]"),
    "grad_accum_steps": opt(int, "--grad-accum-steps", help="Micro-batches per optimizer step [1]."),
    "workers": opt(int, "--workers", "-j", help="Data-loading processes [4]."),
    "device": opt(str, "--device", help="auto|cpu|cuda|cuda:N [auto]."),
    "opt": opt(str, "--opt", help="timm optimizer: adamw, sgd, nesterov, lamb, ... [adamw]."),
    "lr": opt(float, "--lr", "--learning-rate", help="Learning rate."),
    "min_lr": opt(float, "--min-lr", help="LR floor of the cosine [1e-6]."),
    "weight_decay": opt(float, "--weight-decay", help="[0.05]"),
    "momentum": opt(float, "--momentum", help="SGD-family momentum [0.9]."),
    "drop": opt(float, "--drop", help="Dropout rate on the pooled features before the classifier (timm's "
                "drop_rate) [0]."),
    "drop_path": opt(float, "--drop-path", help="Stochastic depth (timm's drop_path_rate): each residual block is "
                     "skipped per sample with a probability rising linearly to this in the last one; backbones whose "
                     "timm model has it (resnets, fer_resnet*, convnext, efficientnet, vit, ...; not fer_vgg) [0]."),
    "clip_grad": opt(float, "--clip-grad", help="Clip the gradient norm [off]."),
    "sam": opt(float, "--sam", help="Sharpness-aware minimization with this radius rho: two forward/backward "
               "passes per step (about 2x the step time); 0.05 with SGD, ~1.0 with --sam-adaptive [0: off]."),
    "sam_adaptive": opt(bool, "--sam-adaptive/--no-sam-adaptive", help="ASAM: the radius scales with each "
                        "weight's size [off]."),
    "amp": opt(bool, "--amp/--no-amp", help="bf16 autocast (fp16 + scaler on older GPUs)."),
    "channels_last": opt(bool, "--channels-last/--no-channels-last", help="NHWC memory layout (faster on GPUs)."),
    "compile": opt(bool, "--compile/--no-compile", help="torch.compile the backbone."),
    "fused_augment": opt(bool, "--fused-augment/--no-fused-augment", help="Compile the augmentation on CUDA [on]."),
    "data_on_device": opt(str, "--data-on-device", help="auto|on|off: hold the prepared splits on the training "
                          "device, no loader workers per epoch [auto: on CUDA when they fit in 4 GiB]."),
    "cuda_graph": opt(str, "--cuda-graph", help="auto|on|off: replay each optimizer step (augmentation, forward, "
                      "backward, optimizer, EMA) as one CUDA graph [auto: on CUDA when the step allows it]."),
    "seed": opt(int, "--seed", help="[1337]"),
    "deterministic": opt(bool, "--deterministic/--no-deterministic", help="Deterministic kernels where torch has "
                         "them, for what repeats only with them: float32 convolutions (--no-amp) and a --compile'd "
                         "backbone; the defaults repeat a seed's run without it (docs/engine.md) [off]."),
    "model_ema": opt(bool, "--model-ema/--no-model-ema", help="Keep an EMA of the weights; best.pt takes the "
                     "better of EMA and raw weights on validation."),
    "model_ema_decay": opt(float, "--model-ema-decay", help="EMA decay (with warmup) [0.9998]."),
    "mixup": opt(float, "--mixup", help="Mixup Beta alpha, e.g. 0.2; a student's online teacher sees the mixed "
                 "faces too [0: off]."),
    "cutmix": opt(float, "--cutmix", help="CutMix Beta alpha, e.g. 1.0 [0: off]."),
    "mixup_prob": opt(float, "--mixup-prob", help="Probability of mixing a batch [1]."),
    "mixup_switch_prob": opt(float, "--mixup-switch-prob", help="With both: probability of cutmix [0.5]."),
    "balanced_min_per_class": opt(int, "--balanced-min-per-class", help="Oversample each class to N per epoch [0]."),
    "include_sources": opt(list[str], "--include-sources", help="Only these sources (repeatable or a,b)."),
    "exclude_sources": opt(list[str], "--exclude-sources", help="Drop these sources."),
    "fold": opt(int, "--fold", help="Cross-fitting: train without fold K of the training rows (stratified, one "
                "image in one fold); its faces are listed in RUN/heldout_rows.json for export-softlabels --out-of-fold "
                "[off]."),
    "folds": opt(int, "--folds", help="With --fold: how many folds [5]."),
    "clahe": opt(bool, "--clahe/--no-clahe", help="CLAHE clip 2.0 tile 8x8 (saved with the run)."),
    "augment": opt(list[str], "--aug", help="KEY=VALUE augmentation override (repeatable): rotate=10, "
                   "scale=[0.8,1] (> 1 zooms out), translate=0.1, erasing=0.25, trivial=1 (one TrivialAugment-style op "
                   "per image: shear, autocontrast, equalize, gamma, sharpness, posterize, solarize), hflip, "
                   "brightness, contrast, saturation, ratio."),
    "color": opt(str, "--color", help="rgb|grey|auto: grey models see colour photos as grey [auto: grey when the "
                 "training images are, or as the online --teacher]."),
    "select_metric": opt(str, "--select-metric", help="best.pt by val macro_f1|accuracy|auc [macro_f1]."),
    "output_root": opt(str, "--output-root", help="Folder of run directories (named from the config)."),
    "output_dir": opt(str, "--output-dir", "--output", help="Exact run directory (overrides the naming)."),
    "eval_every": opt(int, "--eval-every", help="Evaluate every N epochs (and the last) [1]."),
    "checkpoint_every_steps": opt(int, "--checkpoint-every-steps", help="Also checkpoint every N steps [0: epochs]."),
    "checkpoint_hist": opt(int, "--checkpoint-hist", help="Keep the weights of the N best evaluations [0]."),
    "log": opt(str, "--log", help="csv|tensorboard (tensorboard extra) [csv]."),
    "resume": opt(str, "--resume", help="Resume from this checkpoint."),
    "force": opt(bool, "--force", help="Resume even though the config changed (recorded in the run)."),
    "recover_stale_lock": opt(bool, "--recover-stale-lock", help="Take over the lock a crashed run left."),
    "pretrained": opt(bool, "--pretrained", help="timm hub weights (needs the hub or its cache)."),
    "initial_checkpoint": opt(str, "--initial-checkpoint", help="Local weights to start from."),
    "skip_onnx": opt(bool, "--skip-onnx", help="Do not export model.onnx at the end."),
}  # fmt: skip
QUIET: dict[str, tuple[type, typer.models.OptionInfo]] = {
    "quiet": (bool, typer.Option(False, "--quiet", "-q", help="No progress bars.")),
}


def with_options(*groups: dict[str, Spec]) -> Callable[[Callable], Callable]:
    """Give `fn(**values)` a signature of keyword options built from `groups` (in order)."""

    def decorate(fn: Callable) -> Callable:
        specs = {k: v for g in groups for k, v in g.items()}
        params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                    annotation=kind | None if info.default is None else kind)
                  for name, (kind, info) in specs.items()]  # fmt: skip
        fn.__signature__ = inspect.Signature(params)
        fn.__annotations__ = {p.name: p.annotation for p in params}
        return fn

    return decorate
