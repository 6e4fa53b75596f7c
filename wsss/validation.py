"""Checks of user-given numbers, array contents and allocation sizes.

Each check raises :class:`wsss.errors.UserError` with one sentence that names the option (or file
and image) at fault, the accepted range or the figure that does not fit, and what to do. The
configuration dataclasses and the stage functions call them, so library callers get the same
errors as the command line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from wsss.errors import UserError


class OptionError(UserError, ValueError):
    """A numeric option outside its range: a :class:`UserError` (one line, exit code 2) and a
    :class:`ValueError` (for library callers)."""


def describe_range(low: float | None = None, high: float | None = None, *, low_open: bool = False,
                   high_open: bool = False) -> str:
    """Human-readable interval, e.g. ``"> 0"``, ``"in [0, 1]"``, ``"in (0, 1]"``."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '≥'} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '≤'} {high:g}"
    return "a finite number"


def check_number(option: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, integer: bool = False, reason: str = "",
                 fix: str = "Fix the option.") -> Any:
    """Check one numeric option; returns ``value`` (``None``, an unset optional option, passes).

    Args:
        option: the option as the user writes it (``"--bandwidth"``) or the field name.
        value: the value (int or float); NaN and ±inf are always refused.
        low, high: bounds (None = unbounded); ``low_open``/``high_open`` exclude the bound.
        integer: the value must be a whole number.
        reason: why the range is what it is (appended in parentheses).
        fix: the second sentence of the message.

    Raises:
        OptionError: ``"<option> <value>: must be <range> (<reason>). <fix>"``.
    """
    if value is None or isinstance(value, bool):
        return value
    why = f" ({reason})" if reason else ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{option} {value!r}: not a number. {fix}") from None
    if not math.isfinite(number):
        raise OptionError(f"{option} {value}: must be a finite number{why}. {fix}")
    if integer and number != int(number):
        raise OptionError(f"{option} {value}: must be a whole number{why}. {fix}")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        span = describe_range(low, high, low_open=low_open, high_open=high_open)
        raise OptionError(f"{option} {value}: must be {span}{why}. {fix}")
    return value


def check_numbers(rules: Iterable[tuple], fix: str = "Fix the option.") -> None:
    """:func:`check_number` for each ``(option, value, low, high[, options dict])`` rule."""
    for rule in rules:
        option, value, low, high, *rest = rule
        kwargs = dict(rest[0]) if rest else {}
        check_number(option, value, low, high, fix=kwargs.pop("fix", fix), **kwargs)


def check_finite_arrays(path: Any, image_id: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Refuse to store NaN or ±inf: every floating array of one image's entry must be finite.

    Raises:
        UserError: ``"<path>: image '<id>': <name> has N NaN/inf values ..."`` (nothing is written
        for that image; the stage stops, so no artifact with non-finite numbers appears).
    """
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.dtype.kind not in "fc" or a.size == 0:
            continue
        finite = np.isfinite(a)
        if not finite.all():
            bad = int(a.size - finite.sum())
            raise UserError(f"{path}: image '{image_id}': '{name}' would hold {bad} NaN/inf values "
                            f"({100.0 * bad / a.size:.1f} %); not written. Check the options and inputs "
                            "(a zero bandwidth or sigma, an extreme weight) and rerun.")


def check_finite_input(path: Any, image_id: str, name: str, value: np.ndarray) -> np.ndarray:
    """Refuse an input array with NaN or ±inf (e.g. a damaged or hand-made artifact); returns it."""
    a = np.asarray(value)
    if a.dtype.kind in "fc" and a.size and not np.isfinite(a).all():
        bad = int(a.size - np.isfinite(a).sum())
        raise UserError(f"{path}: image '{image_id}': '{name}' holds {bad} NaN/inf values. "
                        "Recreate the artifact with the stage that writes it.")
    return value


def check_scales(option: str, scales: Iterable[float]) -> tuple[float, ...]:
    """Test-time resize factors: at least one, each finite and > 0; returns them as floats."""
    scales = tuple(float(check_number(option, s, 0, None, low_open=True, fix="Pass e.g. 0.5,1,1.5,2.")) for s in scales)
    if not scales:
        raise OptionError(f"{option}: no scale given. Pass e.g. 0.5,1,1.5,2.")
    return scales


#: Bytes per pixel of a resized input that a network pass holds at least: the 3 float32 input channels
#: plus the first stride-2 stage's 32 float32 channels (MobileNetV2; ResNet has 64) at a quarter of the pixels.
PASS_BYTES_PER_PIXEL = 4 * (3 + 32 / 4)


def check_pass_memory(option: str, shape: tuple[int, int], scales: Iterable[float], channels: int,
                      device: Any = None, image_id: str = "") -> None:
    """Refuse test-time scales whose largest network pass cannot fit: ``(h·s)(w·s)`` pixels ×
    (:data:`PASS_BYTES_PER_PIXEL` + ``channels`` float32 scores) bytes, for image ``shape`` (H, W)."""
    top = max(scales)
    pixels = float(shape[0]) * float(shape[1]) * top * top
    where = f" on image '{image_id}' ({shape[1]}×{shape[0]})" if image_id else ""
    check_allocation(pixels * (PASS_BYTES_PER_PIXEL + 4 * channels), f"{option}: a pass at scale {top:g}{where}",
                     f"Use smaller {option}.", device)


def check_writable_folder(folder: Any, option: str = "--out") -> None:
    """The folder must exist, be a folder and accept a new file (probed by creating and deleting one;
    permission bits alone do not tell, e.g. for root or read-only mounts)."""
    import tempfile
    from pathlib import Path

    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: folder does not exist. Create it or choose another {option}.")
    if not folder.is_dir():
        raise UserError(f"{folder}: is a file, not a folder. Choose another {option}.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".wsss-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{folder}: cannot write there ({exc.strerror or exc}). Fix its permissions or choose "
                        f"another {option}.") from None


def check_output_file(path: Any, option: str = "--out") -> None:
    """An output file path, checked before any work: not a folder, in a writable folder."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file. Give {option} a file name (e.g. {path / 'out.h5'}).")
    check_writable_folder(path.parent, option)


def has_labelled_pixel(seeds: Any) -> bool:
    """Whether a seeds artifact (:class:`wsss.artifacts.Artifact`) labels at least one pixel; reads
    images until the first labelled pixel (usually one image)."""
    k = len(seeds.classes)
    ignore = seeds.ignore_index
    for image_id in seeds.ids:
        label = seeds.read(image_id, "label")
        if np.any((label != ignore) & (label < k)):
            return True
    return False


def check_seeds_labelled(seeds: Any, use: str, fix: str) -> None:
    """Refuse a seeds artifact without a single labelled pixel (e.g. ``prepare-blocks --keep 0``):
    a stage would silently treat "no seed at all" as a result.

    Args:
        seeds: the seeds :class:`wsss.artifacts.Artifact`.
        use: what the seeds were going to be used for, e.g. ``"training"``.
        fix: the second sentence of the message.
    """
    if not has_labelled_pixel(seeds):
        raise UserError(f"{seeds.path}: none of its {len(seeds)} images has a labelled pixel, so there is "
                        f"nothing to {use}. {fix}")


def format_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"  # pragma: no cover


def available_memory(device: Any = None) -> int:
    """Bytes that an allocation can use now: free CUDA memory for a CUDA ``device``, else the
    host's available memory (``MemAvailable`` of /proc/meminfo, or the physical memory)."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 62


def check_allocation(nbytes: float, what: str, fix: str, device: Any = None) -> None:
    """Refuse work whose estimated memory ``nbytes`` exceeds what is available.

    Args:
        nbytes: the estimate (a lower bound of what the work allocates).
        what: the cause, e.g. ``"--crop-size 100000: one batch of crops"``.
        fix: the second sentence, e.g. ``"Use a smaller --crop-size."``.
        device: the torch device the memory is taken from (None: host memory).
    """
    avail = available_memory(device)
    if nbytes > avail:
        where = "free on " + str(device) if device is not None and str(device).startswith("cuda") else "of memory available"
        raise UserError(f"{what}: needs at least {format_bytes(nbytes)}, more than the {format_bytes(avail)} {where}. {fix}")


__all__ = ["OptionError", "available_memory", "check_allocation", "check_finite_arrays", "check_finite_input", "check_seeds_labelled", "has_labelled_pixel", "check_number",
           "check_numbers", "check_output_file", "check_writable_folder", "check_pass_memory", "check_scales", "describe_range", "format_bytes"]
