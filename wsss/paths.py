"""What a stage reads, so that it never writes over it and ``--resume`` notices when it changed.

:class:`StageInputs` lists a command's inputs: files (artifacts, checkpoints, annotation files),
folders it reads from (annotation folders, run directories) and datasets. Every stage checks
each output path with :meth:`StageInputs.check_output` before any work:

- an output never is (or is a hard or symbolic link to) an input file, nor an existing file of an
  input folder or run directory other than an HDF5 artifact written earlier
  (``wsss predict RUN -o RUN/last.pt`` is refused);
- an output is never inside a dataset's image or mask folders, nor one of its class or list files;
- a file output is not an existing folder.

:meth:`StageInputs.identity` fingerprints the inputs for ``--resume``: per file its size, mtime and
a content hash (for HDF5 artifacts the hash of the root attributes, which hold the configuration,
provenance and write time; for other files the SHA-256 of the bytes), per dataset a hash of its
image ids and every image and mask file's size and mtime.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsss.errors import UserError


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def dataset_folders(dataset) -> list[Path]:
    """The folders holding a dataset's images and masks (real paths; each image's and mask's
    folder and the common folder of all images, resp. all masks)."""
    folders: set[Path] = set()
    for getter in (dataset.image_path, dataset.mask_path):
        paths = []
        for image_id in dataset.ids:
            try:
                p = getter(image_id)
            except UserError:
                continue
            if p is not None:
                paths.append(_real(p))
        if paths:
            folders.update(p.parent for p in paths)
            folders.add(Path(os.path.commonpath([str(p.parent) for p in paths])))
    return sorted(folders)


def dataset_files(dataset) -> list[Path]:
    """A dataset's own metadata files that exist (class list, split list)."""
    root = Path(dataset.root)
    candidates = [root / "classes.txt", root / f"{dataset.split}.txt"]
    base = getattr(dataset, "base", None)
    if base is not None:
        candidates.append(Path(base) / "classes.txt")
    if getattr(dataset, "list_file", None) is not None:
        candidates.append(Path(dataset.list_file))
    return [_real(p) for p in candidates if p.is_file()]


@dataclass
class StageInputs:
    """The inputs of one command run.

    Attributes:
        files: input files (artifacts, checkpoints, CSV / XML / PNG annotation files).
        folders: folders read from whose existing files must not be overwritten (run directories,
            annotation folders); outputs inside them are allowed under new names.
        datasets: :class:`wsss.data.Dataset` objects read (their image and mask folders are off
            limits).
    """

    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    datasets: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.files = [Path(f) for f in self.files if f is not None]
        self.folders = [Path(f) for f in self.folders if f is not None]
        self.datasets = [d for d in self.datasets if d is not None]

    def check_output(self, out: str | os.PathLike, *, folder: bool = False, option: str = "output") -> None:
        """Refuse an output path that would overwrite or write into an input.

        Args:
            out: the output path (file; a folder when ``folder``).
            folder: the output is a folder of files (``wsss show``).
            option: how the output is named in messages (``--out``).

        Raises:
            UserError: naming the output and the input it would damage.
        """
        out = Path(out)
        real = _real(out)
        if not folder and out.is_dir():
            raise UserError(f"{out}: is a folder, but the {option} is a file. Pass a file path, e.g. {out / 'out.h5'}.")
        for f in self.files:
            if real == _real(f) or (out.exists() and f.exists() and os.path.samefile(out, f)):
                same = "" if str(out) == str(f) else f" ({f})"
                raise UserError(f"{out}: is an input of this command{same}; writing it would destroy the input. "
                                f"Choose another {option}.")
        for d in self.folders:
            rd = _real(d)
            if real == rd:
                raise UserError(f"{out}: is an input folder of this command. Choose another {option}.")
            if not folder and _inside(real, rd) and out.is_file() and not is_hdf5(out):
                raise UserError(f"{out}: is a file of the input {rd} (writing it would destroy it). "
                                f"Choose another {option}.")
        for ds in self.datasets:
            for f in dataset_files(ds):
                if real == f:
                    raise UserError(f"{out}: is a file of the dataset {ds.root}. Choose another {option}.")
            for d in dataset_folders(ds):
                if _inside(real, d):
                    raise UserError(f"{out}: is inside the image or mask folder {d} of the dataset {ds.root}; "
                                    f"outputs never go there. Choose another {option}.")

    def identity(self) -> dict[str, Any]:
        """Fingerprints of every input (JSON-able; equal fingerprints = unchanged inputs)."""
        record: dict[str, Any] = {}
        for f in self.files:
            record[str(_real(f))] = file_identity(f)
        for ds in self.datasets:
            record[f"dataset {_real(ds.root)} [{ds.split}]"] = dataset_identity(ds)
        return record


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """``{size, mtime_ns, sha256}`` of a file (see the module docstring for what is hashed)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror}). Check the path.") from exc
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _content_hash(path)}


def is_hdf5(path: Path) -> bool:
    """Whether a file starts with the HDF5 signature (an artifact written earlier, say)."""
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        return ""
    if is_hdf5(path):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                for key in sorted(f.attrs):
                    digest.update(key.encode())
                    digest.update(repr(f.attrs[key]).encode())
            return digest.hexdigest()
        except OSError:
            pass  # unreadable HDF5: hash the bytes
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_identity(dataset) -> dict[str, Any]:
    """``{images, sha256}``: the image count and a hash of ids and image / mask sizes and mtimes."""
    digest = hashlib.sha256()
    for image_id in dataset.ids:
        digest.update(image_id.encode("utf-8") + b"\0")
        for getter in (dataset.image_path, dataset.mask_path):
            try:
                p = getter(image_id)
                st = os.stat(p) if p is not None else None
            except (UserError, OSError):
                st = None
            digest.update(b"-" if st is None else f"{st.st_size}:{st.st_mtime_ns}".encode())
            digest.update(b"\0")
    return {"images": len(dataset.ids), "sha256": digest.hexdigest()}


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Which inputs differ between two :meth:`StageInputs.identity` records (one phrase each)."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            changes.append(f"{key} is no longer an input")
        elif key not in old:
            changes.append(f"{key} is a new input")
        elif old[key] != new[key]:
            fields = [k for k in sorted(set(old[key]) | set(new[key])) if old[key].get(k) != new[key].get(k)]
            changes.append(f"{key} changed ({', '.join(fields)})")
    return changes


__all__ = ["StageInputs", "dataset_files", "dataset_folders", "dataset_identity", "describe_changes",
           "file_identity"]
