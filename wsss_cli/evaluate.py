"""``wsss eval``: metrics of an artifact against dense ground truth (table + JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from wsss_cli.common import command, config_of, console, workers_option
from wsss_cli.crf import (
    CRF_HELP,
    bi_compat_option,
    bi_sxy_option,
    bi_srgb_option,
    crf_device_option,
    engine_option,
    eps_option,
    gauss_compat_option,
    gauss_sxy_option,
    iterations_option,
    make_params,
)


def _fmt(value, percent: bool = True) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def print_report(report: dict) -> None:
    """The per-class table and the closing lines (totals) of an evaluation (figures in %)."""
    classes = report["classes"]
    title = f"{report['artifact_kind']} {report['artifact']['path']} — {report['images']} images"
    if report.get("crf"):
        title += " (+ DenseCRF)"
    console.print(f"[bold]{escape(title)}[/]", highlight=False)
    table = Table()
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    has_f = report.get("f_per_class") is not None
    if has_f:
        table.add_column("F %", justify="right")
    unl = report.get("unlabelled")
    if unl:
        table.add_column("IoU unlabelled %", justify="right")
    for name in classes:
        row = [name, _fmt(report["iou"][name])]
        if has_f:
            row.append(_fmt(report["f_per_class"][name]))
        if unl:
            row.append(_fmt(unl["iou"][name]))
        table.add_row(*row)
    console.print(table)
    summary = Table(show_header=False, box=None)
    if report["artifact_kind"] == "seeds" or report.get("seed_precision") is not None:
        summary.add_row("seed precision", _fmt(report.get("seed_precision")) + " %  (labelled seed pixels only)")
        summary.add_row("coverage", _fmt(report.get("coverage")) + " %  of ground-truth pixels")
        summary.add_row("mIoU (J)", _fmt(report["miou"]) + " %  (labelled seed pixels only)")
    else:
        summary.add_row("mIoU (J)", _fmt(report["miou"]) + " %")
        summary.add_row("pixel accuracy", _fmt(report["pixel_accuracy"]) + " %")
        summary.add_row("boundary F", _fmt(report.get("f")) + f" %  ({report.get('f_pairs', 0)} image-class pairs)")
        summary.add_row("J&F", _fmt(report.get("jf")) + " %")
    if unl:
        summary.add_row("mIoU unlabelled", _fmt(unl["miou"]) + " %  (pixels without a seed)")
        summary.add_row("accuracy unlabelled", _fmt(unl["pixel_accuracy"]) + " %")
    cam = report.get("cam")
    if cam:
        sweep = cam["sweep"]
        summary.add_row("CAM threshold t", f"{cam['threshold']:.2f}  (J, F above at this background score)")
        summary.add_row("best t (sweep)", f"{sweep['best_threshold']:.2f}: J {_fmt(sweep['best_j'])} %  (t = 0.00–0.59)")
        curve = ", ".join(f"{t:.2f}: {_fmt(v)}" for t, v in zip(sweep["thresholds"], sweep["j"]) if round(t * 100) % 10 == 0)
        summary.add_row("J curve %", curve)
    if report.get("soft_jaccard") is not None:
        summary.add_row("soft Jaccard", _fmt(report["soft_jaccard"], percent=False) + "  (vs reference)")
    summary.add_row("written", report["path"])
    console.print(summary, highlight=False)


def register(app: typer.Typer) -> None:
    @command(app, "eval")
    def evaluate(
        artifact: Path = typer.Argument(..., help="A predictions, pseudolabels, seeds or cams artifact."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder with the dense ground truth (default: the one recorded in the artifact)."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k (default: recorded)."),
        split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: recorded)."),
        seeds: Optional[Path] = typer.Option(None, "--seeds", help="Seeds artifact: also report mIoU on the pixels without a seed (what the solver inferred)."),
        reference: Optional[Path] = typer.Option(None, "--reference", help="Soft artifact to compare the soft scores with (soft Jaccard Σmin/Σmax)."),
        partial: bool = typer.Option(False, "--partial", help="Evaluate only the images the artifact holds (default: all images of the split must be there)."),
        bound_th: float = typer.Option(0.008, "--bound-th", min=0.0, help="Boundary F tolerance: fraction of the image diagonal (< 1, DAVIS 0.008) or pixels (≥ 1)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Metrics JSON (default: <artifact stem>.metrics.json, or <stem>.crf.metrics.json with --crf, next to the artifact)."),
        crf: bool = typer.Option(False, "--crf", help="Apply DenseCRF (options below, same as `wsss crf`) before evaluating."),
        gauss_sxy: float = gauss_sxy_option(),
        gauss_compat: float = gauss_compat_option(),
        bi_sxy: float = bi_sxy_option(),
        bi_srgb: float = bi_srgb_option(),
        bi_compat: float = bi_compat_option(),
        iterations: int = iterations_option(),
        eps: float = eps_option(),
        engine: str = engine_option(),
        crf_device: str = crf_device_option(),
        cam_threshold: float = typer.Option(0.25, "--cam-threshold", help="cams: background score t of the evaluated CAM pseudo-label [Jonnarth et al. 2024: 0.25, the hfpl code's F]; the J sweep over t = 0.00–0.59 is always reported."),
        workers: int = workers_option(),
    ) -> None:
        """Compare an artifact with the dense ground truth: per-class IoU, mIoU (J), pixel accuracy,
        boundary F (DAVIS), J&F; seeds: seed precision on labelled pixels. Prints a table and writes
        the figures with the inputs' provenance as JSON. cams: the pseudo-label at --cam-threshold plus the
        background-threshold sweep (J curve, best t and J). mIoU: mean over classes present in the
        ground truth or the prediction (VOC convention). See docs/metrics.md."""
        from wsss.parallel import distributed_context
        from wsss.stages import evaluate as stage

        params = make_params(gauss_sxy, gauss_compat, bi_sxy, bi_srgb, bi_compat, iterations, eps, engine, crf_device) if crf else None
        config = config_of(artifact=artifact, data=data, layout=layout, split=split, seeds=seeds, reference=reference,
                           partial=partial, bound_th=bound_th, out=out, crf=params.to_dict() if params else None,
                           cam_threshold=cam_threshold)
        report = stage.run(artifact, data=data, layout=layout, split=split, seeds=seeds, reference=reference,
                           crf=params, bound_th=bound_th, partial=partial, workers=workers, out=out, config=config,
                           cam_threshold=cam_threshold)
        if distributed_context().is_main:
            print_report(report)

    evaluate.__doc__ = (evaluate.__doc__ or "") + " --crf: " + CRF_HELP


__all__ = ["print_report", "register"]
