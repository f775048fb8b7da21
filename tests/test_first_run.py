"""A new user's first hour: fast help, one-line errors for every bad value, help examples that
work, output that reads at 80 columns and in logs, and adapters that take the layouts people have."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer
from rich.console import Console

from fertrain.cli import app
from fertrain.configs import resolve_config_file
from fertrain.errors import ConfigError, InputError
from fertrain.manifests import DedupPolicy, build_manifest, recipe_from_cli

from .clitools import run_cli
from .conftest import REPO, write_image


def click_command():
    return typer.main.get_command(app)


def all_commands(group=None, path=()):
    """(command path, click command) for every leaf command of the CLI."""
    group = group or click_command()
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


# --- fast help ----------------------------------------------------------------------------------------


def test_the_cli_imports_without_pandas_sklearn_torch_or_timm():
    code = ("import sys, fertrain.cli; heavy = [m for m in ('pandas', 'sklearn', 'torch', 'timm', 'cv2') "
            "if m in sys.modules]; print(heavy)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- every bad value is one line naming the flag ---------------------------------------------------------


def numeric_options(cmd) -> list:
    out = []
    for p in cmd.params:
        # ranges too (an option declared with min=/max=)
        if p.param_type_name == "option" and not p.is_flag and p.type.name in ("int", "float", "int range",
                                                                                 "float range"):  # fmt: skip
            out.append(p)
    return out


def required_args(path: tuple[str, ...], cmd, tmp: Path) -> list[str]:
    """Placeholders for the positional arguments and required options of a command."""
    args = []
    for p in cmd.params:
        if p.param_type_name == "argument":
            args.append(str(tmp / "placeholder"))
        elif p.required:
            args += [p.opts[0], str(tmp / "placeholder")]
    return args


CASES = [(path, tuple(opt.opts)) for path, cmd in all_commands() for opt in numeric_options(cmd)]


@pytest.mark.parametrize("path, names", CASES, ids=[f"{' '.join(p)} {n[0]}" for p, n in CASES])
@pytest.mark.parametrize("value", ["abc", "-5", "nan"])
def test_every_numeric_option_refuses_a_bad_value_in_one_line(path, names, value, tmp_path, capsys):
    flag = names[0]
    cmd = dict(all_commands())[path]
    extra = ["--output-dir", str(tmp_path / "run")] if path[-1] in ("teacher", "student") else []
    if path[-1] in ("teacher", "student"):
        extra += ["--manifest", str(tmp_path / "m.parquet")]
        if path[-1] == "student":
            extra += ["--softlabels", str(tmp_path / "sl.parquet")]
    args = [*path, *required_args(path, cmd, tmp_path), *extra, f"{flag}={value}"]
    code, text = run_cli(args, capsys)
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in text, (args, text)
    assert any(n in text for n in names) or "--loss-opt temperature" in text, text  # -T is a loss option
    assert not (tmp_path / "run").exists()


def test_typos_get_useful_suggestions_and_timm_style_aliases_work(capsys):
    for alias, real in (("--learning-rate", "--lr"), ("--model", "--backbone"), ("--warmup-epochs",
                        "--lr-warmup-epochs"), ("--output", "--output-dir")):  # fmt: skip
        opt = next(p for p in dict(all_commands())[("teacher",)].params if real in p.opts)
        assert alias in opt.opts, (alias, real)
    code, text = run_cli(["teacher", "--learnig-rate", "0.1"], capsys)
    assert code == 2 and "--learning-rate" in text and len(text.strip().splitlines()) == 1


# --- help examples work ----------------------------------------------------------------------------------


def help_text(path: tuple[str, ...], capsys) -> str:
    code, text = run_cli([*path, "--help"], capsys)
    assert code == 0, text
    return text


def example_lines(text: str) -> list[list[str]]:
    """Example commands in a help text (continuation lines, indented deeper, are joined)."""
    examples, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("fertrain "):
            words = line.split()
            indent = len(line) - len(line.lstrip())
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) > indent and not nxt.strip().startswith("fertrain "):
                    words += nxt.split()
                else:
                    break
            examples.append(words[1:])
    return examples


GROUPS = [(), *sorted({p[:1] for p, _ in all_commands() if len(p) > 1}), *[p for p, _ in all_commands()]]


@pytest.mark.parametrize("path", GROUPS, ids=[" ".join(p) or "fertrain" for p in GROUPS])
def test_every_help_has_examples_whose_flags_exist_and_whose_files_ship(path, capsys):
    text = help_text(path, capsys)
    examples = example_lines(text)
    assert examples, f"`fertrain {' '.join(path)} --help` shows no example"
    assert "seed 0" not in text and "seeds 0" not in text  # behaviour, not design-note numbers
    for words in examples:
        for word in words:  # a shipped file an example names must exist
            value = word.split("=", 1)[-1]
            if value.startswith(("fertrain/configs/", "manifests/", "../shared/")):
                assert (REPO / value).exists(), f"{' '.join(words)}: {value} does not exist"
        for flag, value in itertools.pairwise(words):  # a config named without its path must be a shipped one
            if flag in ("--config", "-c") and "/" not in value:
                assert resolve_config_file(value).is_file(), f"{' '.join(words)}: no shipped config {value}"
        code, out = run_cli([*words, "--help"], capsys)  # parses every flag of the example
        assert code == 0, f"fertrain {' '.join(words)}: {out}"


def test_help_option_names_are_never_cut_at_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for path, cmd in all_commands():
        text = help_text(path, capsys)
        options = text[text.index("Options:"):]
        for p in cmd.params:
            for opt in p.opts:
                if opt.startswith("--"):
                    assert re.search(rf"(^|[\s,/]){re.escape(opt)}($|[\s,/<])", options, re.M), (path, opt)
        assert max(len(line) for line in options.splitlines()) <= 80, path


# --- output a person reads --------------------------------------------------------------------------------


def test_progress_is_plain_lines_in_a_log_and_fits_80_columns_in_a_terminal(monkeypatch):
    import fertrain.console as con
    import fertrain.engine.progress as prog

    log = io.StringIO()
    monkeypatch.setattr(con, "console", Console(file=log, width=80, force_terminal=False))
    monkeypatch.setattr(prog, "console", con.console)
    with prog.epoch_progress("epoch 1/3", 50) as update:
        for _ in range(50):
            update(images=32, loss=float("nan"), lr=1e-3)
    assert log.getvalue() == ""  # no bar in a log: the per-epoch line is the record
    with con.progress_bar("soft labels", total=1000, unit="img") as advance:
        for _ in range(10):
            advance(100)
    lines = log.getvalue().strip().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("soft labels: 1,000/1,000 img (100 %)")
    tty = io.StringIO()
    monkeypatch.setattr(prog, "console", Console(file=tty, width=80, force_terminal=True, color_system=None))
    with prog.epoch_progress("epoch 12/150", 112) as update:
        for _ in range(112):
            update(images=256, loss=1.2345, lr=2e-3, margin=0.35)
    last = tty.getvalue().split("\r")[-1].replace("\x1b[2K", "").split("\n")[0]
    assert "112/112" in last and "loss 1.234" in last and "m 0.35" in last and "eta" in last and "…" not in last
    assert "loss nan" not in tty.getvalue()


def test_runs_list_keeps_long_run_names_whole_at_80_columns(tmp_path, capsys, monkeypatch):
    from fertrain.runs import open_run

    names = ["teachers/RN10T_resnet10t_seed1337_stageA_img48", "teachers/RN10T_resnet10t_seed1337_stageB_img64"]
    for name in names:
        with open_run(tmp_path / name) as run:
            run.mark_started()
    monkeypatch.setenv("COLUMNS", "80")
    code, text = run_cli(["runs", "list", tmp_path], capsys)
    first_column = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))
    assert code == 0 and all(n in first_column for n in names) and "…" not in text, text


def test_demo_prints_each_stage_when_it_ends_with_teacher_summaries(demo_pipeline, capsys):
    code, text = run_cli(["demo", "run", "--out", demo_pipeline, "-q"], capsys)
    assert code == 0, text
    marks = ["manifest ", "teacher A:", "teacher B:", "calibration A:", "calibration B:", "ensemble 0.7",
             "soft labels ", "student (DKD", "demo complete"]  # fmt: skip
    where = [text.index(m) for m in marks]
    assert where == sorted(where), text
    assert text.count("best val macro_f1") == 3  # a summary table for each teacher and the student
    assert "NONE" not in text


# --- errors that name what the user typed ------------------------------------------------------------------


def test_split_errors_name_the_flag_and_calibrating_on_training_data_says_so(demo_pipeline, tmp_path, capsys):
    teacher = next((demo_pipeline / "teachers").glob("*stageA*"))
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    code, text = run_cli(["export-softlabels", "--teacher", teacher, "--manifest", manifest, "--split", "nosuchsplit",
                          "--out", tmp_path / "x.parquet", "-j", "0", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 2 and "--split: unknown split(s) nosuchsplit" in text
    code, text = run_cli(["calibrate", teacher, "--split", "train", "-j", "0", "--device", "cpu"], capsys)
    assert code == 2 and "cannot be calibrated on the split it was trained on" in text


def test_softlabels_for_another_manifest_need_an_explicit_flag(demo_pipeline, tmp_path, capsys):
    teacher = next((demo_pipeline / "teachers").glob("*stageA*"))
    other = tmp_path / "other.parquet"
    build_manifest(recipe_from_cli([f"fer2013:other={demo_pipeline / 'data' / 'lowres'}"], [], DedupPolicy(), 5),
                   other, show_progress=False)  # fmt: skip
    args = ["export-softlabels", "--teacher", teacher, "--manifest", other, "--out", tmp_path / "sl.parquet", "-j",
            "0", "--device", "cpu", "-q"]  # fmt: skip
    code, text = run_cli(args, capsys)
    assert code == 2 and "is not the manifest" in text and "--allow-other-manifest" in text
    assert not (tmp_path / "sl.parquet").exists()
    code, text = run_cli([*args, "--allow-other-manifest"], capsys)
    assert code == 0, text
    from fertrain.softlabels.io import read_metadata

    assert read_metadata(tmp_path / "sl.parquet")["other_manifest"] is True


def test_failed_starts_on_a_machine_without_what_they_need_leave_nothing(lowres_manifest, tmp_path, capsys,
                                                                         monkeypatch):  # fmt: skip
    import fertrain.models.factory as factory

    monkeypatch.setattr(factory, "hub_reachable", lambda timeout=3.0: False)
    base = ["teacher", "--manifest", lowres_manifest, "--backbone", "resnet10t", "--img-size", "32", "-j", "0",
            "--output-dir", tmp_path / "run", "-q"]  # fmt: skip
    for extra, message in ((["--device", "cuda"], "CUDA is not available"), (["--pretrained"], "--pretrained"),
                           (["--backbone", "not_a_model"], "not_a_model")):  # fmt: skip
        if extra == ["--device", "cuda"] and __import__("torch").cuda.is_available():
            continue
        code, text = run_cli([*base, *extra], capsys)
        assert code == 2 and message in text and len(text.strip().splitlines()) == 1, text
        assert not (tmp_path / "run").exists(), extra


# --- adapters: the layouts users actually have --------------------------------------------------------------


def test_jaffe_in_class_subfolders_builds_all_213_images(tmp_path):
    root = tmp_path / "jaffe"
    folders = {"AN": "5 - Angry", "DI": "6 - Disgust", "FE": "4 - Fear", "HA": "1 - Happy", "NE": "0 - Neutral",
               "SA": "2 - Sad", "SU": "3 - Surprise"}  # fmt: skip
    subjects = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")
    n = 0
    for i, s in enumerate(subjects):  # 3 images per subject and expression, 4 in three cases: 213 (as JAFFE)
        for j, (code, folder) in enumerate(folders.items()):
            for k in range(1, 5 if i * 7 + j < 3 else 4):
                write_image(root / folder / f"{s}.{code}{k}.{100 + n}.tiff", n)
                n += 1
    assert n == 213
    res = build_manifest(recipe_from_cli([f"jaffe={root}"], [], DedupPolicy("off", "off"), 1), tmp_path / "m.csv",
                         show_progress=False)  # fmt: skip
    assert len(res.df) == 213 and res.df["path"].str.contains("/").all()
    first = res.df[res.df.path.str.endswith("KA.AN1.100.tiff")].iloc[0]
    assert (first.label_name, first.group) == ("Angry", "KA")


@pytest.mark.parametrize("only", ["test", "validation"])
def test_a_fer2013_copy_with_only_one_split_folder_builds(tmp_path, only):
    root = tmp_path / "fer"
    prefix = {"test": "PrivateTest", "validation": "PublicTest"}[only]
    for i, cls in enumerate(("angry", "happy", "sad")):
        for k in range(3):
            write_image(root / only / cls / f"{prefix}_{i * 10 + k}.jpg", i * 10 + k + 300)
    res = build_manifest(recipe_from_cli([f"fer2013={root}"], [], DedupPolicy("off", "off"), 1), tmp_path / "m.csv",
                         show_progress=False)  # fmt: skip
    assert len(res.df) == 9 and set(res.df["split"]) == {"test" if only == "test" else "val"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="at least one of train/<class>/, validation/<class>/, test/<class>/"):
        build_manifest(recipe_from_cli([f"fer2013={empty}"], [], DedupPolicy(), 1), tmp_path / "e.csv",
                       show_progress=False)  # fmt: skip


def test_a_source_that_yields_no_rows_says_what_was_looked_for_and_where(tmp_path):
    root = tmp_path / "jaffe"
    root.mkdir()
    (root / "README.txt").write_text("no images here")
    with pytest.raises(InputError, match="no images found there; the jaffe adapter reads JAFFE images named") as exc:
        build_manifest(recipe_from_cli([f"jaffe={root}"], [], DedupPolicy(), 1), tmp_path / "m.csv",
                       show_progress=False)  # fmt: skip
    assert str(root) in str(exc.value)


def test_load_softlabels_takes_a_manifest_path_or_object(demo_pipeline):
    from fertrain.manifests import load_manifest
    from fertrain.softlabels import load_softlabels

    path = demo_pipeline / "softlabels" / "train.parquet"
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    a, b = load_softlabels(path, manifest), load_softlabels(path, load_manifest(manifest))
    assert a.table.equals(b.table)


def test_config_type_errors_for_list_and_dict_fields():
    from fertrain.engine.config import TrainConfig, check_value

    assert check_value(TrainConfig, "include_sources", "ferplus", "--include-sources") == ["ferplus"]
    with pytest.raises(ConfigError, match="expected a list of names"):
        check_value(TrainConfig, "include_sources", [1, 2], "x.yaml: include_sources")
    hints = typing.get_type_hints(TrainConfig)
    assert hints["augment"] is not None and json.dumps(TrainConfig().to_dict())


def test_plots_say_what_they_show():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from fertrain.calibration import calibration_report
    from fertrain.labels import CLASS_NAMES
    from fertrain.plots import confusion_figure, reliability_figure

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(300, 7)) * 3, rng.integers(0, 7, 300)
    before = calibration_report(logits, labels, 1.0)
    after = calibration_report(logits, labels, [1.2, 0.9, 1.1, 1.0, 1.3, 0.8, 1.05])
    fig = reliability_figure(before, after, "t")
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    counts = [str(int(n)) for n in before["reliability"]["count"] if n > 0]
    assert set(counts) <= texts  # samples per bin are written on the bars
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "T=1.000" in titles and "per-class T 1.20/0.90/1.10" in titles
    cm = confusion_figure(np.eye(7, dtype=int) * 5, CLASS_NAMES, "c")
    assert any("fraction of the true class" in ax.get_ylabel() for ax in cm.axes)


def test_student_runs_write_a_test_confusion_matrix_and_training_curves(demo_pipeline):
    run = demo_pipeline / "students" / "demo_dkd"
    for name in ("confusion_test.png", "training_curves.png"):
        data = (run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
