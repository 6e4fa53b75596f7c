"""Fully connected CRF post-processing (Krähenbühl & Koltun 2011): pydensecrf2 or the toolkit's lattice.

Mean-field inference of a dense CRF whose unary is ``−ln(max(p, eps))`` of the input class
probabilities and whose pairwise terms are Potts models weighted by two Gaussian kernels
(docs/metrics.md, "DenseCRF post-processing"):

- smoothness (Gaussian) kernel ``compat · exp(−|x_p − x_q|² / (2 sxy²))``: ``gauss_sxy = 3``,
  ``gauss_compat = 3``;
- appearance (bilateral) kernel ``compat · exp(−|x_p − x_q|² / (2 sxy²) − |I_p − I_q|² / (2 srgb²))``:
  ``bi_sxy = 80``, ``bi_srgb = 13``, ``bi_compat = 10``;
- 10 mean-field iterations.

These defaults are the ones common to DeepLab post-processing scripts (DeepLab v1/v2 report
``bi_sxy`` 50–80 and ``bi_w`` 3–5 depending on the model on VOC; the toolkit records exactly what
it uses). Positions are in pixels, colours in RGB 0–255. Probabilities are clipped at ``eps``
(default ``1e-5``) before the log so that a zero probability gives a finite unary
``−ln(1e-5) ≈ 11.5``.

Two engines compute the same model (``CRFParams.engine``):

- ``pydensecrf``: pydensecrf2's single-threaded C++ per image, CPU only; parallelism is across
  images (``wsss crf --workers``);
- ``lattice``: :mod:`wsss.crf_lattice`, mean-field on the toolkit's permutohedral lattice in PyTorch,
  CPU or CUDA, batched over images; its marginals agree closely with pydensecrf2's (the blur is
  symmetrized; docs/metrics.md, "Lattice engine");
- ``auto`` (default): :data:`AUTO_ENGINE` of the compute device, the faster one there
  (benchmarks/crf_engines.py).

The result depends only on the inputs, the parameters and the engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from wsss.validation import check_numbers

#: CRF engines (``CRFParams.engine``)
ENGINES = ("auto", "pydensecrf", "lattice")

#: the engine ``auto`` picks per device type: the faster one measured there (benchmarks/crf_engines.py,
#: 256² and 512², K = 21, 10 iterations, DeepLab defaults, one CPU thread: the lattice 1.09–1.16× faster
#: than pydensecrf2 on a CamVid frame; docs/metrics.md, "Engines")
AUTO_ENGINE = {"cpu": "lattice", "cuda": "lattice"}

#: devices (``CRFParams.device``) of the lattice engine; ``auto``: CUDA when available
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class CRFParams:
    """DenseCRF parameters (defaults: DeepLab's common settings, see the module docstring).

    Attributes:
        gauss_sxy: spatial standard deviation of the smoothness kernel, pixels.
        gauss_compat: weight of the smoothness (Potts) term.
        bi_sxy: spatial standard deviation of the appearance kernel, pixels.
        bi_srgb: colour standard deviation of the appearance kernel, RGB 0–255 units.
        bi_compat: weight of the appearance (Potts) term.
        iterations: mean-field iterations.
        eps: probabilities are clipped to ``[eps, 1]`` before ``−ln``.
        engine: ``pydensecrf``, ``lattice`` or ``auto`` (:data:`AUTO_ENGINE` of the device).
        device: compute device of the lattice engine: ``cpu``, ``cuda`` or ``auto`` (CUDA when
            available); pydensecrf2 always runs on the CPU.
    """

    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bi_sxy: float = 80.0
    bi_srgb: float = 13.0
    bi_compat: float = 10.0
    iterations: int = 10
    eps: float = 1e-5
    engine: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        check_numbers([
            ("gauss_sxy", self.gauss_sxy, 0, None, {"low_open": True}),
            ("bi_sxy", self.bi_sxy, 0, None, {"low_open": True}),
            ("bi_srgb", self.bi_srgb, 0, None, {"low_open": True}),
            ("gauss_compat", self.gauss_compat, 0, None),
            ("bi_compat", self.bi_compat, 0, None),
            ("iterations", self.iterations, 0, None, {"integer": True}),
            ("eps", self.eps, 0, 1, {"low_open": True, "high_open": True}),
        ])
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got '{self.engine}'")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got '{self.device}'")

    def resolved(self) -> "CRFParams":
        """These parameters with ``engine`` and ``device`` made concrete for this machine
        (``device auto``: ``cuda`` when available; ``engine auto``: :data:`AUTO_ENGINE` of the device;
        pydensecrf2 runs on ``cpu``)."""
        device = self.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        engine = AUTO_ENGINE[device] if self.engine == "auto" else self.engine
        if engine == "pydensecrf":
            device = "cpu"
        return replace(self, engine=engine, device=device)

    def to_dict(self) -> dict:
        """JSON-able record (stored in artifact configurations)."""
        return asdict(self)


def crf_workers(params: CRFParams | None, workers: int) -> int:
    """Worker processes for per-image work that may run a CRF: ``workers``, or 1 when the CRF runs on
    CUDA (the GPU serves the images one after another in the main process; forked workers cannot
    share it). ``params=None``: no CRF, ``workers``."""
    return 1 if params is not None and params.resolved().device == "cuda" else workers


def unary_from_probs(probs: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Unary energies ``−ln(clip(p, eps, 1))``.

    Args:
        probs: K×H×W probabilities (any float dtype).
        eps: clipping floor.

    Returns:
        K×(H·W) float32, C-contiguous (the layout pydensecrf expects).
    """
    k = probs.shape[0]
    p = np.clip(np.asarray(probs, dtype=np.float32).reshape(k, -1), eps, 1.0)
    return np.ascontiguousarray(-np.log(p), dtype=np.float32)


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Refine class probabilities with a fully connected CRF (engine: ``params.resolved()``).

    Args:
        image: H×W×3 uint8 RGB image.
        probs: K×H×W float probabilities (float16/32/64; need not sum exactly to 1), finite.
        params: kernel parameters, iterations, engine and device.

    Returns:
        K×H×W float32 mean-field marginals (each pixel sums to 1).

    Raises:
        ValueError: shapes do not match, or the probabilities are not finite.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H×W×3, got {image.shape}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"probabilities {probs.shape} do not match the image {image.shape[:2]}")
    if not np.isfinite(probs).all():
        raise ValueError("probabilities contain NaN or infinite values")
    params = params.resolved()
    if params.engine == "lattice":
        from wsss.crf_lattice import lattice_crf_numpy

        return lattice_crf_numpy(image, probs, params, device=params.device)
    import pydensecrf.densecrf as dcrf

    k, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(unary_from_probs(probs, params.eps))
    if params.gauss_compat > 0:
        crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    if params.bi_compat > 0:
        rgb = np.array(image, dtype=np.uint8, order="C")  # a writable copy (pydensecrf2 needs one)
        crf.addPairwiseBilateral(sxy=params.bi_sxy, srgb=params.bi_srgb, rgbim=rgb, compat=params.bi_compat)
    q = crf.inference(params.iterations)
    return np.asarray(q, dtype=np.float32).reshape(k, h, w)


__all__ = ["AUTO_ENGINE", "CRFParams", "DEVICES", "ENGINES", "crf_workers", "dense_crf", "unary_from_probs"]
