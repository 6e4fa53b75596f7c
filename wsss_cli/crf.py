"""``wsss crf``: DenseCRF post-processing of a predictions / pseudolabels artifact.

The CRF options are shared with ``wsss eval --crf`` (:func:`crf_options_doc`, :func:`make_params`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from wsss.crf import AUTO_ENGINE, DEVICES, ENGINES, CRFParams
from wsss.errors import UserError
from wsss_cli.common import command, config_of, console, resume_option, workers_option

_D = CRFParams()

CRF_HELP = (
    "Fully connected CRF (Krähenbühl & Koltun), pydensecrf2 or the toolkit's lattice (--engine): unary −ln(max(p, eps)), a Gaussian "
    f"smoothness kernel (sxy {_D.gauss_sxy:g}, compat {_D.gauss_compat:g}) and a bilateral appearance kernel "
    f"(sxy {_D.bi_sxy:g}, srgb {_D.bi_srgb:g}, compat {_D.bi_compat:g}), {_D.iterations} mean-field iterations. "
    "Defaults: DeepLab's common post-processing settings (DeepLab v2 on VOC used bilateral sxy 50–80, "
    "weight 3–5); see docs/metrics.md."
)


def gauss_sxy_option() -> Any:
    return typer.Option(_D.gauss_sxy, "--gauss-sxy", help="Gaussian (smoothness) kernel spatial std, pixels [DeepLab: 3].")


def gauss_compat_option() -> Any:
    return typer.Option(_D.gauss_compat, "--gauss-compat", help="Gaussian kernel Potts weight; 0 disables it [DeepLab: 3].")


def bi_sxy_option() -> Any:
    return typer.Option(_D.bi_sxy, "--bi-sxy", help="Bilateral (appearance) kernel spatial std, pixels [DeepLab: 80].")


def bi_srgb_option() -> Any:
    return typer.Option(_D.bi_srgb, "--bi-srgb", help="Bilateral kernel colour std, RGB 0–255 [DeepLab: 13].")


def bi_compat_option() -> Any:
    return typer.Option(_D.bi_compat, "--bi-compat", help="Bilateral kernel Potts weight; 0 disables it [DeepLab: 10].")


def iterations_option() -> Any:
    return typer.Option(_D.iterations, "--crf-iterations", help="Mean-field iterations [DeepLab: 10].")


def eps_option() -> Any:
    return typer.Option(_D.eps, "--crf-eps", help="Probabilities are clipped to [eps, 1] before −ln [1e-5].")


def engine_option() -> Any:
    auto = ", ".join(f"{engine} on {device}" for device, engine in AUTO_ENGINE.items())
    return typer.Option(
        _D.engine, "--engine",
        help=f"CRF engine: {', '.join(ENGINES)}. pydensecrf: pydensecrf2 (C++, CPU, one image per worker); "
             "lattice: the toolkit's permutohedral lattice in PyTorch (CPU or CUDA; agrees with pydensecrf2 "
             f"to ≈ 99 % of labels, docs/metrics.md); auto: the faster one on the device ({auto}; on one CPU "
             "thread the lattice measured 1.05–1.16× faster than pydensecrf2 at 256²–512², K 21, 10 iterations, "
             "docs/metrics.md).")


def crf_device_option() -> Any:
    return typer.Option(_D.device, "--crf-device",
                        help=f"Device of the lattice engine: {', '.join(DEVICES)} (auto: CUDA when available).")


def make_params(gauss_sxy: float, gauss_compat: float, bi_sxy: float, bi_srgb: float, bi_compat: float,
                iterations: int, eps: float, engine: str = _D.engine, device: str = _D.device) -> CRFParams:
    """CRFParams from the command-line values, engine and device resolved for this machine (so the
    recorded configuration names the engine that ran); out-of-range values become a UserError."""
    try:
        params = CRFParams(gauss_sxy=gauss_sxy, gauss_compat=gauss_compat, bi_sxy=bi_sxy, bi_srgb=bi_srgb,
                           bi_compat=bi_compat, iterations=iterations, eps=eps, engine=engine, device=device)
    except ValueError as exc:
        message = str(exc)
        raise UserError(f"CRF options: {message}" + ("" if message.endswith(".") else ". Fix the option value.")) from exc
    params = params.resolved()
    if params.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--crf-device cuda: no CUDA device is available. Use --crf-device cpu or auto.")
    return params


def register(app: typer.Typer) -> None:
    @command(app, "crf", help="Refine a predictions or pseudolabels artifact with DenseCRF; writes a predictions artifact. " + CRF_HELP)
    def crf(
        artifact: Path = typer.Argument(..., help="Input predictions (scores) or pseudolabels (probs) artifact."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output predictions artifact (default: <input stem>_crf.h5 next to the input)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder with the images (default: the one recorded in the artifact)."),
        layout: Optional[str] = typer.Option(None, "--layout", help="Dataset layout: auto, generic, voc, cityscapes, ade20k (default: recorded)."),
        split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: recorded)."),
        gauss_sxy: float = gauss_sxy_option(),
        gauss_compat: float = gauss_compat_option(),
        bi_sxy: float = bi_sxy_option(),
        bi_srgb: float = bi_srgb_option(),
        bi_compat: float = bi_compat_option(),
        iterations: int = iterations_option(),
        eps: float = eps_option(),
        engine: str = engine_option(),
        crf_device: str = crf_device_option(),
        workers: int = workers_option(),
        resume: bool = resume_option(),
    ) -> None:
        from wsss.stages import crf as stage

        params = make_params(gauss_sxy, gauss_compat, bi_sxy, bi_srgb, bi_compat, iterations, eps, engine, crf_device)
        if out is None:
            out = artifact.with_name(artifact.stem + "_crf.h5")
        config = config_of(artifact=artifact, out=out, data=data, layout=layout, split=split, **params.to_dict())
        path = stage.run(artifact, out, params=params, data=data, layout=layout, split=split,
                         workers=workers, resume=resume, config=config)
        from wsss.parallel import distributed_context

        if distributed_context().is_main:
            console.print(f"wrote {path}", highlight=False)


__all__ = ["CRF_HELP", "crf_device_option", "engine_option", "make_params", "register"]
