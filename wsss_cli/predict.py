"""``wsss predict``: checkpoint + images → predictions artifact (soft scores + labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from wsss.errors import UserError
from wsss_cli.common import command, command_line, console, resume_option, workers_option


def parse_scales(text: str, flag: str = "--scales") -> tuple[float, ...]:
    """``"0.75,1,1.25"`` → (0.75, 1.0, 1.25); a UserError naming ``flag`` for anything else."""
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise UserError(f"{flag} {text}: expected comma-separated numbers, e.g. 0.75,1,1.25.") from exc
    from wsss.validation import check_scales

    return check_scales(flag, scales)


def register(app: typer.Typer) -> None:
    @command(app, "predict", help="Predict class probabilities with a trained network; writes a predictions artifact "
                                  "(scores K×H×W float16, label H×W uint8) for solve, crf and eval.")
    def predict(
        checkpoint: Path = typer.Argument(..., help="A run directory of 'wsss train' (its last.pt) or a .pt checkpoint."),
        out: Path = typer.Option(..., "--out", "-o", help="Output predictions artifact (.h5)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (default: the training dataset recorded in the checkpoint)."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Dataset layout (default: auto, or recorded)."),
        split: Optional[str] = typer.Option(None, "--split", help="Split (default: val with --data, else the recorded training split)."),
        scales: str = typer.Option("1", "--scales", help="Comma-separated test scales, probabilities averaged, e.g. 0.75,1,1.25."),
        flip: bool = typer.Option(False, "--flip", help="Also average the horizontally mirrored image."),
        initial_classifier: bool = typer.Option(False, "--initial-classifier", help="A SPML embedding run (wsss train --loss spml): predict with its jointly trained initial classifier (its final classifier is a run of its own, docs/methods.md §10.5)."),
        long_side: Optional[int] = typer.Option(None, "--long-side", help="Scales relative to an image resized to this long side in pixels (default: the image's own size) [Pan et al. 2021 code: 512]."),
        window: Optional[int] = typer.Option(None, "--window", help="Run each scale as sliding SIDE×SIDE windows, each pixel's probabilities averaged over the windows that contain it; smaller images are padded (default: the whole image at once). URSS inference (Pan et al. 2021 code, docs/methods.md §9): --scales 0.5,0.75,1,1.25,1.5,1.75,2 --long-side 512 --window 465."),
        window_stride: Optional[int] = typer.Option(None, "--window-stride", help="Step between windows [default: ⌈2·SIDE/3⌉, Pan et al. 2021 code: 310 for 465]."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda, cuda:N."),
        workers: int = workers_option(),
        resume: bool = resume_option(),
    ) -> None:
        from wsss.stages import predict as stage

        cfg = stage.PredictConfig(
            checkpoint=str(checkpoint), out=str(out), data=str(data) if data else None, layout=layout, split=split,
            scales=parse_scales(scales), flip=flip, long_side=long_side, window=window, window_stride=window_stride,
            device=device, workers=workers, resume=resume, initial_classifier=initial_classifier, command=command_line(),
        )
        path = stage.run(cfg)
        from wsss.parallel import distributed_context

        if distributed_context().is_main:
            console.print(f"wrote {path}", highlight=False)


__all__ = ["parse_scales", "register"]
