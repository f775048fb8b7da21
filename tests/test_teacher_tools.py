"""Calibration, ensembles and soft labels on the demo teachers and on constructed logits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from fertrain.calibration import fit_per_class_temperature, fit_temperature, nll
from fertrain.ensemble import fuse, load_teacher, search_weights
from fertrain.ensemble.agreement import member_agreement
from fertrain.ensemble.fusion import member_probs
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import DedupPolicy, build_manifest, load_manifest
from fertrain.manifests.imageprobe import sha256_file
from fertrain.manifests.recipe import recipe_from_dict
from fertrain.posthoc import calibrate_teacher
from fertrain.softlabels import export_softlabels, load_softlabels
from fertrain.softlabels.io import PROB_COLUMNS

from .clitools import run_cli


def teachers(demo):
    return {d.name.split("_stage")[1][0]: d for d in (demo / "teachers").iterdir()}


# --- calibration -------------------------------------------------------------------------


def test_per_class_refinement_never_raises_nll_and_finds_the_miscalibrated_class():
    torch.manual_seed(0)
    true = torch.randn(6000, 7) * 2
    labels = torch.distributions.Categorical(logits=true).sample()
    logits = true.clone()
    logits[:, 0] *= 4.0  # class 0 alone is badly over-confident
    g = fit_temperature(logits, labels)
    ref = fit_per_class_temperature(logits, labels, g.temperature)
    assert ref.nll_after <= ref.nll_global + 1e-12
    assert ref.kept[0] and ref.temperatures[0] > ref.temperatures[1]
    assert nll(logits / torch.tensor(ref.temperatures), labels) == pytest.approx(ref.nll_after)
    # well-calibrated logits: refinement may keep nothing, and never makes NLL worse
    ok = fit_per_class_temperature(true, labels, fit_temperature(true, labels).temperature)
    assert ok.nll_after <= ok.nll_global + 1e-12


def test_demo_teachers_are_calibrated_with_reports_and_png(demo_pipeline):
    for run in teachers(demo_pipeline).values():
        cal = json.loads((run / "calibration.json").read_text())
        assert cal["posthoc"] and cal["split"] == "val" and cal["n"] > 0
        assert cal["after"]["nll"] <= cal["before"]["nll"] + 1e-9
        if isinstance(cal["temperature"], float):  # one global T never changes the argmax (per-class T may)
            assert cal["after"]["accuracy"] == pytest.approx(cal["before"]["accuracy"])
        assert cal["global_fit"]["nll_after"] <= cal["global_fit"]["nll_before"] + 1e-9
        for key in ("ece", "mce", "brier", "nll", "per_class_ece", "reliability"):
            assert key in cal["before"] and key in cal["after"]
        assert len(cal["before"]["per_class_ece"]) == 7 and len(cal["before"]["reliability"]["count"]) == 15
        floor = cal["after"]["ece_floor"]  # what sampling noise alone gives on these few demo faces
        assert 0 < floor["p05"] <= floor["mean"] <= floor["p95"] < 1 and floor["draws"] > 0
        # the ECE with that noise's bias taken out (2 x ECE - the redraws' mean): above the plug-in ECE only when the
        # redraws read lower, which they do by no more than their spread
        debiased = cal["after"]["ece_debiased"]
        assert debiased["value"] < cal["after"]["ece"] + 2 * debiased["sd"] and debiased["sd"] > 0
        assert (run / "reliability.png").read_bytes()[:4] == b"\x89PNG"
        # the post-hoc temperature is what the run now serves with
        assert load_teacher(run).temperature == cal["temperature"]


def test_calibrating_on_training_rows_is_refused(demo_pipeline):
    run = teachers(demo_pipeline)["A"]
    with pytest.raises(FertrainError, match="trained on"):
        calibrate_teacher(run, demo_pipeline / "manifests" / "demo.parquet", "train", workers=0)
    # B never trained on the low-resolution source: its train rows there are held out for B
    rows_b = json.loads((teachers(demo_pipeline)["B"] / "alignmentreport.json").read_text())
    assert "demo_lowres" not in rows_b["after_filter"]["by_source_split_class"]


# --- ensembles ---------------------------------------------------------------------------


def test_fusion_is_a_weighted_average_of_calibrated_probabilities():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 7)), rng.normal(size=(50, 7))
    pa, pb = member_probs(a, 1.0), member_probs(b, 2.0)
    fused = fuse([pa, pb], [0.7, 0.3])
    np.testing.assert_allclose(np.exp(fused), 0.7 * pa + 0.3 * pb, rtol=1e-6)
    on_tensors = fuse([member_probs(torch.as_tensor(a), 1.0), member_probs(torch.as_tensor(b), 2.0)], [0.7, 0.3])
    assert isinstance(on_tensors, torch.Tensor)  # the online student path fuses on the device with the same code
    np.testing.assert_allclose(on_tensors.numpy(), fused, rtol=1e-6)
    np.testing.assert_allclose(np.exp(fuse([pa, pb], [1, 0])), pa, rtol=1e-6)
    sharper = np.exp(fuse([pa, pb], [0.5, 0.5], fusion_t=0.5))
    assert (sharper.max(1) >= np.exp(fuse([pa, pb], [0.5, 0.5])).max(1) - 1e-9).all()


@pytest.mark.parametrize("objective", ["macro_f1", "nll"])
def test_weight_search_prefers_the_better_member(objective):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, 700)
    good = np.eye(7)[labels] * 4 + rng.normal(size=(700, 7))  # informative
    bad = rng.normal(size=(700, 7)) * 3  # noise
    probs = [member_probs(bad, 1.0), member_probs(good, 1.0)]
    weights, table = search_weights(probs, labels, objective=objective, step=0.05)
    assert weights[1] >= 0.8 and len(table) == 21
    three, table3 = search_weights([*probs, member_probs(bad * 0.5, 1.0)], labels, objective=objective)
    assert three[1] >= 0.7 and len(table3) == 231  # full grid over the 3-simplex at step 0.05
    four, _ = search_weights([*probs, probs[0], probs[0]], labels, objective=objective)  # coordinate search
    assert four[1] == max(four) and sum(four) == pytest.approx(1.0)
    assert all(type(w) is float for w in [*weights, *three, *four])  # JSON- and print-ready, not numpy scalars


def test_member_agreement_counts_faces_that_no_member_gets_right():
    labels = np.array([0, 1, 2, 3, 4])
    votes = [[0, 1, 5, 3, 6], [0, 2, 5, 3, 4], [0, 1, 6, 2, 4]]  # face 2: every member wrong
    report = member_agreement([np.eye(7)[v] * 3.0 for v in votes], labels)
    assert report["accuracy"] == [0.6, 0.6, 0.6]
    assert report["all_wrong"] == pytest.approx(0.2) and report["any_right"] == pytest.approx(0.8)
    assert report["all_right"] == pytest.approx(0.2)  # face 0 only
    # pairs (0,1): faces 0, 2, 3 agree; (0,2): 0, 1; (1,2): 0, 4
    assert report["pairwise_agreement"] == pytest.approx((3 + 2 + 2) / 15)
    alone = member_agreement([np.eye(7)[votes[0]]], labels)
    assert alone["pairwise_agreement"] == 1.0 and alone["all_wrong"] == pytest.approx(0.4)


def test_ensemble_cli_search_and_evaluate(demo_pipeline, tmp_path, capsys):
    runs = teachers(demo_pipeline)
    out = tmp_path / "ens.json"
    code, text = run_cli(["ensemble", "--member", runs["A"], "--member", runs["B"], "--out", out, "--search-weights",
                          "--manifest", demo_pipeline / "manifests" / "demo.parquet", "--device", "cpu", "-j", "0"],
                         capsys)  # fmt: skip
    assert code == 0, text
    spec = json.loads(out.read_text())
    assert spec["search"]["objective"] == "macro_f1" and len(spec["search"]["table"]) == 21
    assert sum(m["weight"] for m in spec["members"]) == pytest.approx(1.0)
    assert "weights " + ", ".join(f"{m['weight']:.3f}" for m in spec["members"]) in text  # the chosen weights shown
    four = tmp_path / "four.json"  # four members: the coordinate search, whose weights were numpy floats
    code, text = run_cli(["ensemble", *[a for r in (runs["A"], runs["B"]) * 2 for a in ("--member", r)], "--out", four,
                          "--search-weights", "--manifest", demo_pipeline / "manifests" / "demo.parquet",
                          "--device", "cpu", "-j", "0"], capsys)  # fmt: skip
    assert code == 0, text
    assert "weights " + ", ".join(f"{m['weight']:.3f}" for m in json.loads(four.read_text())["members"]) in text
    code, text = run_cli(["evaluate", out, "-m", demo_pipeline / "manifests" / "demo.parquet", "--split", "test",
                          "--device", "cpu", "-j", "0"], capsys)  # fmt: skip
    assert code == 0, text
    ev = json.loads((tmp_path / "ens.evaluation_demo_test.json").read_text())
    floor = ev["calibration"]["scaled"]["ece_floor"]
    assert f'"ece_noise_floor": {floor["mean"]}' in text and floor["p05"] <= floor["mean"] <= floor["p95"]
    assert f'"ece_debiased": {ev["calibration"]["scaled"]["ece_debiased"]["value"]}' in text
    assert ev["n"] == 258 and ev["teacher"]["ensemble"] and len(ev["teacher"]["members"]) == 2
    # how the members agree, each member's accuracy measured on its own on the same faces
    manifest = load_manifest(demo_pipeline / "manifests" / "demo.parquet")
    rows = manifest.df[manifest.df.split == "test"].reset_index(drop=True)
    own = []
    for member in ev["teacher"]["members"]:
        logits, labels = load_teacher(member["run"]).logits(manifest, rows, device=torch.device("cpu"), workers=0)
        own.append(float((logits.argmax(1) == labels).mean()))
    agreement = ev["members"]
    assert agreement["accuracy"] == pytest.approx(own, abs=1e-12)
    assert agreement["all_wrong"] + agreement["any_right"] == pytest.approx(1.0)
    assert agreement["all_right"] <= min(own) <= max(own) <= agreement["any_right"]
    assert f'"pairwise_agreement": {agreement["pairwise_agreement"]}' in text
    assert (tmp_path / "ens.confusion_demo_test.png").is_file()


def test_demo_ensemble_evaluated_on_test(demo_pipeline):
    ev = json.loads((demo_pipeline / "ensembles" / "demo_AB.evaluation_demo_test.json").read_text())
    assert ev["accuracy"] > 0.3 and [m["weight"] for m in ev["teacher"]["members"]] == [0.7, 0.3]


# --- soft labels -------------------------------------------------------------------------


def test_softlabel_parquet_round_trip_and_provenance(demo_pipeline):
    manifest = load_manifest(demo_pipeline / "manifests" / "demo.parquet")
    path = demo_pipeline / "softlabels" / "train.parquet"
    sl = load_softlabels(path, manifest)
    train = manifest.df[manifest.df.split == "train"]
    assert sl.table["row_id"].tolist() == train["row_id"].tolist()
    np.testing.assert_allclose(sl.probs.sum(1), 1.0, atol=1e-5)
    assert sl.table[list(PROB_COLUMNS)].dtypes.eq(np.float32).all()
    assert (sl.table["top1"] == sl.probs.argmax(1)).all()
    assert (sl.table["agrees"] == (sl.table["top1"] == sl.table["label"])).all()
    meta = sl.metadata
    assert meta["manifest_sha256"] == manifest.sha256 and meta["ensemble"]
    for member in meta["members"]:
        assert member["sha256"] == sha256_file(member["checkpoint"])
        assert member["preprocess"]["img_size"] in (48, 64)
    assert (path.parent / "train.parquet.sha256").read_text().split()[0] == sha256_file(path)


def test_softlabels_refused_for_another_manifest_or_changed_rows(demo_pipeline, tmp_path):
    path = demo_pipeline / "softlabels" / "train.parquet"
    data = demo_pipeline / "data"
    other = build_manifest(recipe_from_dict({"sources": [{"name": "demo_hires", "adapter": "fer2013",
                                                          "path": str(data / "hires")}],
                                             "dedup": DedupPolicy(near="off").to_dict()}, "r"),
                           tmp_path / "other.parquet", show_progress=False)  # fmt: skip
    with pytest.raises(FertrainError, match="made for manifest sha256"):
        load_softlabels(path, load_manifest(other.path))
    table = pq.read_table(path)
    df = table.to_pandas()
    df.loc[0, "sha256"] = "0" * 64
    tampered = tmp_path / "tampered.parquet"
    pq.write_table(__import__("pyarrow").Table.from_pandas(df, preserve_index=False).replace_schema_metadata(
        table.schema.metadata), tampered)  # fmt: skip
    (tmp_path / "tampered.parquet.sha256").write_text(f"{sha256_file(tampered)}  tampered.parquet\n")
    with pytest.raises(FertrainError, match="different image sha256"):
        load_softlabels(tampered, load_manifest(demo_pipeline / "manifests" / "demo.parquet"))


def test_resumed_export_equals_one_shot(demo_pipeline, tmp_path):
    teacher = teachers(demo_pipeline)["A"]
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    kw = {"splits": ["val"], "chunk_size": 100, "device": "cpu", "workers": 0, "show_progress": False}
    part = export_softlabels(teacher, manifest, tmp_path / "resumed.parquet", max_chunks=1, **kw)
    assert part == {"complete": False, "chunks_done": 1, "chunks": 3}
    assert len(list((tmp_path / "resumed.parquet.parts").glob("part-*.parquet"))) == 1
    resumed = export_softlabels(teacher, manifest, tmp_path / "resumed.parquet", **kw)
    one_shot = export_softlabels(teacher, manifest, tmp_path / "one.parquet", **kw)
    assert resumed["rows"] == one_shot["rows"] == 258
    resumed_df, one_df = pd.read_parquet(tmp_path / "resumed.parquet"), pd.read_parquet(tmp_path / "one.parquet")
    pd.testing.assert_frame_equal(resumed_df, one_df)
    assert resumed["sha256"] == one_shot["sha256"]
    assert not (tmp_path / "resumed.parquet.parts").exists()
    with_tta = export_softlabels(teacher, manifest, tmp_path / "tta.parquet", tta="flip", include_logits=True, **kw)
    tta = pd.read_parquet(tmp_path / "tta.parquet")
    assert "logit_angry" in tta and with_tta["sha256"] != one_shot["sha256"]


def test_weight_search_refuses_training_faces_or_drops_them_with_exclude_overlap(demo_pipeline, tmp_path, capsys):
    runs = teachers(demo_pipeline)  # B trained on the high-resolution source only
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    args = ["ensemble", "--member", runs["B"], "--member", runs["B"], "--search-weights", "--manifest", manifest,
            "--split", "train", "--device", "cpu", "-j", "0", "--out", tmp_path / "e.json"]  # fmt: skip
    code, text = run_cli(args, capsys)
    assert code == 2 and "would use training rows" in text and "--exclude-overlap" in text
    assert not (tmp_path / "e.json").exists()
    code, text = run_cli([*args, "--exclude-overlap"], capsys)
    assert code == 0, text
    search = json.loads((tmp_path / "e.json").read_text())["search"]
    df = pd.read_parquet(manifest)
    train = df[df["split"] == "train"]
    assert search["excluded_training_overlap"] == int((train["source"] == "demo_hires").sum())
    assert search["n"] == int((train["source"] == "demo_lowres").sum())  # searched on faces B never saw


def test_exclude_overlap_calibrates_on_held_out_faces_only(demo_pipeline, tmp_path):
    runs = teachers(demo_pipeline)
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    with pytest.raises(ConfigError, match="no held-out rows"):  # A trained on every train face
        calibrate_teacher(runs["A"], manifest, "train", exclude_overlap=True, workers=0)
    # an ensemble with A refuses train rows too, naming the count
    ens = tmp_path / "e.json"
    from fertrain.ensemble import write_ensemble

    write_ensemble(ens, [runs["A"], runs["B"]], [0.5, 0.5])
    with pytest.raises(FertrainError, match=r"1,097|1097"):
        calibrate_teacher(ens, manifest, "train", workers=0)
    res = calibrate_teacher(ens, manifest, "val", workers=0)
    assert res["excluded_training_overlap"] == 0 and json.loads(ens.read_text())["temperature"] == res["temperature"]
    assert (tmp_path / "e.calibration.json").is_file() and (tmp_path / "e.reliability.png").is_file()
