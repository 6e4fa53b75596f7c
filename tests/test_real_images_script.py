"""experiments/real_images.py in --quick form on the tiny demo set: tables, skip-finished, budget cap
+ resume, search mode and the docs marker update."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "real_images.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("real_images", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_images"] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("real_images", None)


def _run(script, capsys, *argv) -> str:
    assert script.main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def _check_rows(rows, methods, classes):
    assert [r["method"] for r in rows] == list(methods)
    for r in rows:
        assert r["state"] == "done" and r["evaluated_on"] == "val"
        for key in ("miou", "miou_crf", "f", "f_crf", "pixel_accuracy"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and 0.0 <= r[key] <= 1.0, (key, r[key])
        assert set(r["iou"]) == set(classes)
        assert all(v is None or 0.0 <= v <= 1.0 for v in r["iou"].values())
        assert r["train_seconds"] > 0 and r["epochs_done"] == r["epochs"] == 1


def test_quick_tables_then_skip_finished(script, demo_root, tmp_path, capsys):
    out = tmp_path / "out"
    doc = tmp_path / "results.md"
    doc.write_text("# R\n<!-- results:main:begin -->\nnot yet run\n<!-- results:main:end -->\ntail\n")
    log = _run(script, capsys, demo_root, out, "--quick", "--methods", "pce,collision", "--update-doc", doc)
    assert "train pce@scribbles" in log and "train collision@scribbles" in log
    result = json.loads((out / "results.json").read_text())
    classes = result["classes"]
    assert classes == (Path(demo_root) / "classes.txt").read_text().split()
    _check_rows(result["main"], ["pce", "collision"], classes)
    assert result["schedule"]["crop_size"] == 32 and result["units"] == "fractions in [0, 1]"
    md = (out / "results.md").read_text()
    for r in result["main"]:
        assert (f"| {r['method']} | 0 | {100 * r['miou']:.1f} | {100 * r['pixel_accuracy']:.1f} | "
                f"{100 * r['miou_crf']:.1f} |") in md
    assert "crop 32, batch 2, 1 epochs" in md
    # every run keeps its checkpoint and configuration
    for m in ("pce", "collision"):
        run = out / "runs" / f"{m}@scribbles"
        assert (run / "train" / "last.pt").exists() and (run / "train" / "config.json").exists()
        assert json.loads((run / "train" / "config.json").read_text())["loss"]["name"] == m
    text = doc.read_text()
    assert "not yet run" not in text and "| pce |" in text and text.endswith("<!-- results:main:end -->\ntail\n")

    # second call: nothing is trained, predicted or evaluated again; same table
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".pt", ".h5") or p.name.endswith("metrics.json")}
    log = _run(script, capsys, demo_root, out, "--quick", "--methods", "pce,collision")
    assert "skip train pce@scribbles: finished" in log and "skip train collision@scribbles: finished" in log
    assert "train pce@scribbles:" not in log.replace("skip train pce@scribbles:", "")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    again = json.loads((out / "results.json").read_text())
    assert [r["miou"] for r in again["main"]] == [r["miou"] for r in result["main"]]

    # --report-only: tables from the finished cells, an unfinished one listed as not run, nothing trained
    log = _run(script, capsys, demo_root, out, "--quick", "--methods", "pce,gridcrf,collision", "--report-only")
    assert "train " not in log and not (out / "runs" / "gridcrf@scribbles").exists()
    rows = json.loads((out / "results.json").read_text())["main"]
    assert [r["method"] for r in rows] == ["pce", "gridcrf", "collision"]
    assert [r["miou"] for r in rows if r["method"] != "gridcrf"] == [r["miou"] for r in result["main"]]
    assert rows[1]["state"] == "not yet run" and rows[1]["miou"] is None
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # changing the schedule of an existing OUT is refused, not silently mixed
    with pytest.raises(SystemExit, match="other settings"):
        script.main([str(demo_root), str(out), "--quick", "--methods", "pce", "--crop-size", "40"])


def test_budget_cap_then_resume(script, demo_root, tmp_path, capsys):
    out = tmp_path / "out"
    args = [demo_root, out, "--quick", "--methods", "pce", "--epochs", "2", "--tables", "main",
            "--limit-train", "4", "--limit-val", "2"]
    log = _run(script, capsys, *args, "--budget-minutes", "0")
    assert "budget of 0 min used up after epoch 1" in log
    row = json.loads((out / "results.json").read_text())["main"][0]
    assert row["state"] == "budget" and row["epochs_done"] == 1 and 0.0 <= row["miou"] <= 1.0
    assert "(time cap)" in (out / "results.md").read_text()
    log = _run(script, capsys, *args, "--budget-minutes", "5")
    assert "resume train pce@scribbles" in log
    row = json.loads((out / "results.json").read_text())["main"][0]
    assert row["state"] == "done" and row["epochs_done"] == 2
    # the predictions were remade from the final checkpoint
    pred = json.loads((out / "runs" / "pce@scribbles" / "val.metrics.json").read_text())
    assert pred["miou"] == row["miou"]


def test_quick_search_records_choice(script, demo_root, tmp_path, capsys):
    out = tmp_path / "out"
    small = ["--limit-train", "4", "--limit-val", "2"]
    log = _run(script, capsys, demo_root, out, "--quick", "--methods", "pce,gridcrf", "--search", "--search-margin", "0", *small)
    assert log.count("search gridcrf: lam=") == 3
    search = json.loads((out / "search.json").read_text())
    trials = search["searches"]["main"]["trials"]
    from wsss.losses.registry import GRIDCRF_LAMBDA

    assert [t["value"] for t in trials] == pytest.approx([GRIDCRF_LAMBDA / 3, GRIDCRF_LAMBDA, GRIDCRF_LAMBDA * 3])
    assert all(0.0 <= t["miou"] <= 1.0 for t in trials)
    # the default's trial is the main table's cell, not a second run of the same settings
    assert [t["default"] for t in trials] == [False, True, False]
    assert Path(trials[1]["run_dir"]) == out / "runs" / "gridcrf@scribbles"
    assert (out / "runs" / "gridcrf@scribbles" / "status.json").exists()
    best = max(trials, key=lambda t: t["miou"])
    if best["miou"] == trials[1]["miou"]:  # margin 0: the best wins, a tie keeps the default
        best = trials[1]
    assert search["choice"]["gridcrf"]["values"] == {"lam": best["value"]}
    assert "pce" not in search["choice"]  # no weight to search
    assert "**(chosen)**" in (out / "search.md").read_text()
    # a later call for another method adds its trials and keeps the earlier ones
    _run(script, capsys, demo_root, out, "--quick", "--methods", "kernelcut", "--search", *small)
    search = json.loads((out / "search.json").read_text())
    assert [t["method"] for t in search["searches"]["main"]["trials"]] == ["gridcrf"] * 3 + ["kernelcut"] * 3
    assert set(search["choice"]) == {"gridcrf", "kernelcut"}
    assert search["choice"]["gridcrf"]["values"] == {"lam": best["value"]}
    # --report-only rebuilds the grid's table from search.json without training
    doc = tmp_path / "results.md"
    doc.write_text("<!-- results:search-main:begin -->\nnot yet run\n<!-- results:search-main:end -->\n")
    log = _run(script, capsys, demo_root, out, "--quick", "--search", "--report-only", "--update-doc", doc, *small)
    assert "search gridcrf:" not in log and "epoch 1/1" not in log
    text = doc.read_text()
    assert "not yet run" not in text and text.count("| kernelcut | lam |") == 3 and text.count("| gridcrf | lam |") == 3
    assert text.count("(default)") == 2 and text.count("**(chosen)**") == 2
    # --tuned trains the main table with the chosen value, in its own folder
    log = _run(script, capsys, demo_root, out, "--quick", "--methods", "gridcrf", "--tuned", "--tables", "main", *small)
    row = json.loads((out / "results.json").read_text())["main"][0]
    assert row["overrides"] == {"lam": best["value"]} and "runs-tuned" in row["run_dir"]
    cfg = json.loads((out / "runs-tuned" / "gridcrf@scribbles" / "train" / "config.json").read_text())
    assert cfg["loss"]["lam"] == best["value"]


def test_robustness_cell_trains_with_the_default_weights(script, demo_root, tmp_path, capsys):
    """A clicks cell of the robustness table trains densecrf with the same default λ as full scribbles:
    every loss term is its own mean, so no per-density weight scaling exists any more."""
    from wsss.losses.registry import default_dense_weight

    out = tmp_path / "out"
    small = ["--quick", "--tables", "robustness", "--annotations", "clicks", "--methods", "densecrf",
             "--limit-train", "4", "--limit-val", "2"]
    _run(script, capsys, demo_root, out, *small)
    cfg = json.loads((out / "runs" / "densecrf@clicks" / "train" / "config.json").read_text())
    assert cfg["loss"]["lam"] == pytest.approx(default_dense_weight("densecrf"))
    result = json.loads((out / "results.json").read_text())
    assert result["robustness"][0]["overrides"] == {} and "weight_scaling" not in result
    assert not hasattr(script, "scaled_weights") and "weight-scaling" not in (out / "results.md").read_text()


def test_search_choice_keeps_the_default_within_the_margin(script):
    t = lambda v, m: {"value": v, "miou": m}  # noqa: E731
    # a better value by less than the margin does not replace the default
    assert script.choose_value([t(1.0, 0.30), t(3.0, 0.32), t(9.0, 0.20)], 3.0, 0.03)[0] == 3.0
    assert script.choose_value([t(1.0, 0.34), t(3.0, 0.32), t(9.0, 0.20)], 3.0, 0.03)[0] == 3.0
    # by more than the margin it does
    value, why = script.choose_value([t(1.0, 0.36), t(3.0, 0.32), t(9.0, 0.20)], 3.0, 0.03)
    assert value == 1.0 and "+4.0 points" in why
    # the default failed (None) or is not in the grid: the best finished trial wins
    assert script.choose_value([t(1.0, 0.10), t(3.0, None), t(9.0, 0.20)], 3.0, 0.03)[0] == 9.0
    assert script.choose_value([t(5.0, 0.10), t(9.0, 0.25), t(15.0, 0.20)], None, 0.03)[0] == 9.0
    assert script.choose_value([t(5.0, None)], None, 0.03) == (None, "no finished trial")


def test_every_search_grid_is_centred_on_the_toolkit_default(script):
    """The middle value of each grid is the default (so its trial is the main table's cell), read from the
    library, not restated: a changed library default shows up here."""
    from wsss.losses.registry import make_loss

    for grid in script.search_grids().values():
        for method, params in grid.items():
            (param, values), = params.items()
            assert values[1] == script.default_values(method)[param], (method, param)
    assert make_loss("gridcrf", {}).bandwidth == script.default_values("gridcrf")["bandwidth"]


def test_a_run_trained_under_other_loss_defaults_is_not_reused(script, tmp_path):
    """A cell trained before a library default changed (λ not in its train config when not overridden) is
    refused by its recorded config.json, not silently reported as the new default."""
    from wsss.losses.registry import default_dense_weight
    from wsss.training.segmentation import TrainConfig

    run = tmp_path / "ncut@scribbles"
    (run / "train").mkdir(parents=True)
    cfg = TrainConfig(out=str(run / "train"), loss="ncut", loss_options={"dense": {}}, seeds="s.h5", epochs=30)
    current = script.resolved_loss(cfg)
    assert current["lam"] == default_dense_weight("ncut") and current["warmup_epochs"] == 0
    (run / "train" / "config.json").write_text(json.dumps({"loss": {"name": "ncut", **current}}))
    script.stale_defaults(run, cfg)  # same defaults: reused
    (run / "train" / "config.json").write_text(json.dumps({"loss": {"name": "ncut", **current, "lam": 4500.0 * 7}}))
    with pytest.raises(SystemExit, match=r"ncut@scribbles: trained with other loss defaults \(lam 31500.0 → "):
        script.stale_defaults(run, cfg)
    # an explicit override that matches the record is fine; collision's default warm-up is checked too
    cfg = TrainConfig(out=str(run / "train"), loss="collision", loss_options={"solver": {"steps": 2}}, seeds="s.h5", epochs=30)
    assert script.resolved_loss(cfg)["warmup_epochs"] == 6
    (run / "train" / "config.json").write_text(json.dumps({"loss": {**script.resolved_loss(cfg), "warmup_epochs": 3}}))
    with pytest.raises(SystemExit, match="warmup_epochs 3 → 6"):
        script.stale_defaults(run, cfg)


def test_seeds_combine_into_mean_and_range(script):
    """Cells of several seeds: one run folder per seed, one row with the means and the mIoU range."""
    runs = Path("runs")
    assert script.cell_dir(runs, "pce", "clicks", 0) == runs / "pce@clicks"
    assert script.cell_dir(runs, "pce", "clicks", 1) == runs / "pce@clicks~seed1"
    rows = [{"method": "pce", "annotation": "scribbles", "state": "done", "seed": k, "miou": m, "pixel_accuracy": a,
             "f": 0.5, "miou_crf": m + 0.01, "pixel_accuracy_crf": a, "f_crf": 0.5, "train_seconds": 60.0 * (k + 1),
             "wall_seconds": 70.0, "iou": {"road": m, "sky": None if k else 0.9}, "iou_crf": None}
            for k, m, a in ((0, 0.40, 0.80), (1, 0.46, 0.84))]
    row = script.combine_seeds(rows)
    assert row["seeds"] == [0, 1] and row["seed_miou"] == [0.40, 0.46]
    assert math.isclose(row["miou"], 0.43) and math.isclose(row["pixel_accuracy"], 0.82)
    assert math.isclose(row["spread"], 0.06) and math.isclose(row["train_seconds"], 90.0)
    assert math.isclose(row["iou"]["road"], 0.43) and math.isclose(row["iou"]["sky"], 0.9)
    assert script.miou_cell(row) == "43.0 (40.0–46.0)"
    single = script.combine_seeds(rows[:1])
    assert single["spread"] is None and script.miou_cell(single) == "40.0"


def test_quick_urss_phases(script, demo_root, tmp_path, capsys):
    """The URSS rows: phase 2 starts from the phase-1 run of the same seed; the superpixels are made once."""
    out = tmp_path / "out"
    _run(script, capsys, demo_root, out, "--quick", "--methods", "urss-2,urss-1")
    rows = json.loads((out / "results.json").read_text())["main"]
    assert [r["method"] for r in rows] == ["urss-2", "urss-1"] and all(r["state"] == "done" for r in rows)
    assert (out / "superpixels.h5").exists()
    phase2 = json.loads((out / "runs" / "urss-2@scribbles" / "train" / "config.json").read_text())
    runs = [Path(i["path"]) for i in phase2["inputs"] if i.get("kind") == "run"]
    assert phase2["loss"]["phase"] == 2 and runs == [out / "runs" / "urss-1@scribbles" / "train"]


def test_quick_spml_pipeline(script, demo_root, tmp_path, capsys):
    """The SPML cell: embedding run → random-walk pseudo-labels (evaluated on train) → final classifier on val."""
    out = tmp_path / "out"
    _run(script, capsys, demo_root, out, "--quick", "--methods", "spml", "--annotations", "scribbles,clicks")
    result = json.loads((out / "results.json").read_text())
    (main,), (robust,) = result["main"], result["robustness"]
    assert (main["method"], main["annotation"], robust["annotation"]) == ("spml", "scribbles", "clicks")
    for row in (main, robust):
        assert row["state"] == "done" and 0.0 <= row["miou"] <= 1.0 and 0.0 <= row["pseudo_miou_train"] <= 1.0
    run = out / "runs" / "spml@clicks"
    emb = json.loads((run / "embedding" / "train" / "config.json").read_text())
    final = json.loads((run / "train" / "config.json").read_text())
    assert emb["loss"]["name"] == "spml" and emb["loss"]["annotation"] == "points"
    assert final["loss"]["name"] == "pseudo" and final["loss"]["hard"] is True
