"""HDF5 artifacts: the files the pipeline stages exchange.

Layout of every artifact (schema version :data:`SCHEMA_VERSION`)::

    /                      root attributes (all strings are UTF-8):
        wsss_kind          artifact kind, one of :data:`KINDS`
        wsss_schema        schema version (int)
        wsss_version       package version that wrote the file
        created            ISO-8601 UTC time of the final write
        classes            JSON list of class names (index = label value)
        ignore_index       label value meaning "unlabelled" (255)
        config             JSON: the full configuration of the command that wrote the file
        inputs             JSON list: for each input artifact {path, kind, schema, config, created, inputs}
        dataset            JSON: {layout, root, split, ...} of the images the artifact refers to
        complete           True once every image has been written (absent in partial files)
        + kind-specific attributes (e.g. statistics as JSON in ``stats``)
    /<image id>/           one group per image (``/`` in ids is stored as ``%2F``, ``%`` as ``%25``)
        <datasets>         chunked, lzf-compressed arrays (see docs/artifacts.md per kind)
        attrs: complete    True once all datasets of the image are written

Writes are crash-safe (:class:`ArtifactWriter`): every finished image is a durable part file in
``<path>.parts/``; at the end the parts are joined into ``<path>.tmp``, which is fsynced and
renamed to ``<path>``. An interrupted or killed stage never leaves a file that looks complete nor
damages the previous ``<path>``, and ``resume=True`` keeps the images already finished. A lock on
``<path>.lock`` keeps a second writer of the same path out.

Readers open the HDF5 handle lazily and re-open it in a forked process (h5py handles are not
fork-safe), so an :class:`Artifact` can be handed to DataLoader workers.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsss import __version__
from wsss.constants import IGNORE_INDEX
from wsss.errors import UserError
from wsss.validation import check_output_file

SCHEMA_VERSION = 1

#: Artifact kinds and what each holds per image (documented in docs/artifacts.md).
KINDS = {
    "seeds": "sparse labels: label (H×W uint8, 255 = unlabelled)",
    "tags": "image-level labels: tags (T int16 class indices), optional boxes (N×5 int32)",
    "superpixels": "segments (H×W int32 SLIC labels)",
    "predictions": "network scores: scores (K×H×W float16 probabilities), label (H×W uint8)",
    "pseudolabels": "solver output: probs (K×H×W float16), label (H×W uint8)",
    "cams": "class activation maps: cams (C×H×W float16), classes (C int16)",
}


def _h5py():
    import h5py  # local import keeps `wsss --help` fast

    return h5py


def encode_id(image_id: str) -> str:
    """HDF5 group name for an image id (``%`` → ``%25``, ``/`` → ``%2F``)."""
    return image_id.replace("%", "%25").replace("/", "%2F")


def decode_id(name: str) -> str:
    """Inverse of :func:`encode_id`."""
    return name.replace("%2F", "/").replace("%25", "%")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot record {type(value).__name__} in an artifact's configuration")


#: Configuration keys that may differ between an interrupted run and its ``--resume``: the
#: command line (it gains ``--resume``), the worker count and the resume flag itself.
RESUME_VOLATILE_KEYS = ("command", "workers", "resume")


def _comparable_config(config_json: str) -> str:
    """The recorded configuration without :data:`RESUME_VOLATILE_KEYS` (for the resume check)."""
    try:
        config = json.loads(config_json)
    except ValueError:
        return config_json
    if not isinstance(config, dict):
        return config_json
    return _json({k: v for k, v in config.items() if k not in RESUME_VOLATILE_KEYS})


def tmp_path(path: Path) -> Path:
    """The file the parts of an artifact are joined into before its atomic rename."""
    return path.with_name(path.name + ".tmp")


class Artifact:
    """Read-only view of an artifact file.

    ``kind`` (a string or a tuple of strings) is checked against the file's kind; a file of
    another kind, of a newer schema, a missing file or a file that is not HDF5 raise
    :class:`UserError` naming the file.
    """

    def __init__(self, path: str | os.PathLike, kind: str | tuple[str, ...] | None = None):
        self.path = Path(path)
        self._file = None
        self._pid = None
        if not self.path.exists():
            hint = ""
            if parts_path(self.path).exists():
                hint = f" (the partial output {parts_path(self.path).name} exists: rerun the stage with --resume)"
            raise UserError(f"{self.path}: no such artifact{hint}. Check the path or run the stage that makes it.")
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a folder, not an artifact. Pass the .h5 file a stage wrote.")
        h5py = _h5py()
        try:
            with h5py.File(self.path, "r") as f:
                attrs = {k: _attr(v) for k, v in f.attrs.items()}
                self._ids = sorted(decode_id(n) for n in f.keys() if f[n].attrs.get("complete", False))
        except (OSError, RuntimeError, KeyError) as exc:
            raise UserError(f"{self.path}: not a readable HDF5 artifact ({_h5_reason(exc)}). "
                            "Recreate it with the stage that writes it.") from exc
        if "wsss_kind" not in attrs:
            raise UserError(f"{self.path}: not a wsss artifact (no wsss_kind attribute). Pass a file written by wsss.")
        self.attrs = attrs
        self.kind = attrs["wsss_kind"]
        self.schema = int(attrs.get("wsss_schema", 0))
        if kind is not None:
            wanted = (kind,) if isinstance(kind, str) else tuple(kind)
            if self.kind not in wanted:
                raise UserError(
                    f"{self.path}: is a '{self.kind}' artifact, expected {' or '.join(repr(w) for w in wanted)}. "
                    "Pass the output of the right stage."
                )
        if self.schema > SCHEMA_VERSION:
            raise UserError(
                f"{self.path}: schema {self.schema} is newer than this wsss understands ({SCHEMA_VERSION}). "
                "Upgrade wsss."
            )
        if not attrs.get("complete", False):
            raise UserError(f"{self.path}: incomplete artifact. Rerun the stage that wrote it.")

    # -- metadata ---------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        """Image ids, sorted."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: str) -> bool:
        return image_id in set(self._ids)

    @property
    def classes(self) -> list[str]:
        """Class names (index = label value), checked: a JSON list of distinct names."""
        raw = self.attrs.get("classes", "[]")
        try:
            classes = json.loads(raw)
        except (TypeError, ValueError):
            classes = None
        if not isinstance(classes, list) or not all(isinstance(c, str) and c.strip() for c in classes):
            raise UserError(f"{self.path}: its 'classes' attribute is not a JSON list of class names ({str(raw)[:40]!r}). "
                            "Recreate the artifact with the stage that writes it.")
        if len(set(classes)) != len(classes):
            twice = next(c for c in classes if classes.count(c) > 1)
            raise UserError(f"{self.path}: class name '{twice}' appears twice in its 'classes' attribute. "
                            "Recreate the artifact with distinct class names.")
        return classes

    @property
    def ignore_index(self) -> int:
        return int(self.attrs.get("ignore_index", IGNORE_INDEX))

    @property
    def config(self) -> dict:
        return self.json_attr("config", {})

    @property
    def inputs(self) -> list[dict]:
        return self.json_attr("inputs", [])

    @property
    def dataset(self) -> dict | None:
        return self.json_attr("dataset") if self.attrs.get("dataset") else None

    def json_attr(self, name: str, default=None):
        value = self.attrs.get(name)
        if value is None:
            return default
        try:
            return json.loads(value)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{self.path}: its '{name}' attribute is not valid JSON ({exc}). "
                            "Recreate the artifact with the stage that writes it.") from exc

    def provenance(self) -> dict:
        """A record of this artifact for the ``inputs`` list of artifacts made from it."""
        return {
            "path": str(self.path.resolve()),
            "kind": self.kind,
            "schema": self.schema,
            "created": self.attrs.get("created"),
            "config": self.config,
            "inputs": self.inputs,
        }

    # -- data -------------------------------------------------------------------------------
    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = _h5py().File(self.path, "r")
            except OSError as exc:
                raise UserError(f"{self.path}: not a readable HDF5 artifact any more ({_h5_reason(exc)}). "
                                "Recreate it with the stage that writes it.") from exc
            self._pid = os.getpid()
        return self._file

    def _group(self, image_id: str):
        f = self._handle()
        name = encode_id(image_id)
        try:
            if name not in f:
                raise UserError(f"{self.path}: has no image '{image_id}'. Rerun the stage that wrote it on this image list.")
            return f[name]
        except (OSError, RuntimeError, KeyError) as exc:
            raise UserError(f"{self.path}: image '{image_id}' is unreadable ({_h5_reason(exc)}). "
                            "The file is damaged: recreate it with the stage that writes it.") from exc

    def names(self, image_id: str) -> list[str]:
        """Dataset names stored for one image."""
        return list(self._group(image_id).keys())

    def has(self, image_id: str, name: str) -> bool:
        return encode_id(image_id) in self._handle() and name in self._group(image_id)

    def read(self, image_id: str, name: str) -> np.ndarray:
        """One stored array of one image (as stored: float16 stays float16)."""
        group = self._group(image_id)
        if name not in group:
            raise UserError(f"{self.path}: image '{image_id}' has no '{name}' dataset. Is this the right kind of artifact?")
        try:
            return group[name][()]
        except (OSError, RuntimeError, ValueError) as exc:  # a corrupt chunk, a damaged header
            raise UserError(f"{self.path}: '{name}' of image '{image_id}' is unreadable ({_h5_reason(exc)}). "
                            "The file is damaged: recreate it with the stage that writes it.") from exc

    def shape(self, image_id: str, name: str) -> tuple[int, ...]:
        """The shape of one stored array, read from the file's metadata (the data is not read)."""
        group = self._group(image_id)
        if name not in group:
            raise UserError(f"{self.path}: image '{image_id}' has no '{name}' dataset. Is this the right kind of artifact?")
        return tuple(int(n) for n in group[name].shape)

    def image_attrs(self, image_id: str) -> dict:
        return {k: _attr(v) for k, v in self._group(image_id).attrs.items() if k != "complete"}

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        state["_pid"] = None
        return state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _h5_reason(exc: BaseException) -> str:
    """The short reason of an h5py error (its long form keeps the message only), on one line."""
    reason = str(exc)
    if "error message = '" in reason:
        reason = reason.split("error message = '", 1)[1].split("'", 1)[0]
    return " ".join(reason.split()) or type(exc).__name__


def _attr(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- crash-safe writing -------------------------------------------------------------------------

#: environment variable of the crash test hook (:func:`crash_point`)
CRASH_ENV = "WSSS_TEST_KILL_AT"
_crash_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Test hook: with ``WSSS_TEST_KILL_AT=NAME:N`` the process kills itself (SIGKILL) the N-th
    time it reaches the point ``NAME`` (see :class:`ArtifactWriter` for the points). No-op
    otherwise; used by the kill tests to stop a writer at exact moments."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want, _, count = spec.partition(":")
    if want != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(count or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def parts_path(path: Path) -> Path:
    """The folder of per-image part files of an artifact being written: ``<path>.parts``."""
    return path.with_name(path.name + ".parts")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _attr_value(value: Any):
    """An attribute as stored: scalars as they are, anything else as JSON."""
    return value if isinstance(value, (int, float, str, bool, np.number)) else _json(value)


def _write_group(group, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None) -> None:
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.ndim >= 2 and value.size > 0:
            group.create_dataset(key, data=value, chunks=True, compression="lzf")
        else:
            group.create_dataset(key, data=value)
    crash_point("part-open")
    for key, value in (attrs or {}).items():
        group.attrs[key] = _attr_value(value)
    group.attrs["complete"] = True


class PartStore:
    """The per-image part files of an artifact being written (``<path>.parts/``).

    Each image is one small HDF5 file holding the image's group exactly as the artifact will
    (datasets and attributes), written to ``<name>.tmp``, fsynced and renamed to ``<name>.h5``
    (then the folder is fsynced): a part that exists is complete and durable. Several processes
    (``torchrun`` ranks) may write parts of different images to one store.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.dir = parts_path(self.path)

    def file(self, image_id: str) -> Path:
        name = encode_id(image_id)
        if len(name.encode("utf-8")) > 200 or name.startswith("."):
            import hashlib

            name = "id-" + hashlib.sha256(image_id.encode("utf-8")).hexdigest()
        return self.dir / f"{name}.h5"

    def has(self, image_id: str) -> bool:
        return self.file(image_id).exists()

    def write(self, image_id: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None) -> None:
        """Store one image durably (replacing a previous part of that id)."""
        final = self.file(image_id)
        tmp = final.with_suffix(".tmp")
        with _h5py().File(tmp, "w") as f:
            f.attrs["wsss_part"] = image_id
            _write_group(f.create_group(encode_id(image_id)), arrays, attrs)
        _fsync_file(tmp)
        crash_point("part-tmp")
        os.replace(tmp, final)
        _fsync_dir(self.dir)
        crash_point("part")

    def scan(self) -> set[str]:
        """Ids of the valid parts; leftover temporary and unreadable parts are deleted."""
        h5py = _h5py()
        done = set()
        for p in sorted(self.dir.iterdir()):
            if p.suffix == ".tmp":
                p.unlink()
                continue
            if p.suffix != ".h5":
                continue
            try:
                with h5py.File(p, "r") as f:
                    image_id = _attr(f.attrs["wsss_part"])
                    ok = bool(f[encode_id(image_id)].attrs.get("complete", False))
            except (OSError, KeyError):
                ok = False
            if ok and self.file(image_id) == p:
                done.add(image_id)
            else:
                p.unlink()
        return done

    def open(self, image_id: str):
        """The part file of an image, open read-only, and its group name."""
        return _h5py().File(self.file(image_id), "r"), encode_id(image_id)


MANIFEST_NAME = "manifest.json"


class ArtifactWriter:
    """Writes one artifact crash-safely (context manager).

    While it works it holds the lock ``<path>.lock`` (:class:`wsss.locks.OutputLock`: a second
    writer of the same path refuses, naming this one) and keeps every finished image as a durable
    part file in ``<path>.parts/`` (:class:`PartStore`) next to ``manifest.json`` (configuration
    and input fingerprints). :meth:`commit` joins the parts in sorted id order into ``<path>.tmp``,
    fsyncs it, renames it to ``<path>`` and removes the parts. A kill at any moment therefore
    leaves the previous ``<path>`` (if any) untouched and every image finished so far readable;
    ``resume=True`` keeps those images and the joined artifact is the same, dataset by dataset, as
    an uninterrupted run's.

    Leaving the block without :meth:`commit` (an error or an interrupt) keeps the parts for
    ``--resume`` unless the error was a :class:`UserError` (bad input: nothing worth resuming),
    in which case they are deleted.

    Test hook (:func:`crash_point`): ``part-open`` (inside a part file being written),
    ``part-tmp`` (a part written, not yet renamed), ``part`` (a part durable), ``join`` (after
    each image copied into ``<path>.tmp``), ``joined`` (``<path>.tmp`` complete, not renamed),
    ``committed`` (``<path>`` in place, parts not yet removed).

    Args:
        path: final file name.
        kind: one of :data:`KINDS`.
        classes: class names, index = label value.
        config: the full configuration of the command (JSON-serialisable).
        inputs: provenance records (:meth:`Artifact.provenance`) of the input artifacts.
        dataset: description of the image source (``Dataset.describe()``).
        resume: keep the images of an interrupted run's parts. Its recorded configuration must
            equal ``config`` (up to :data:`RESUME_VOLATILE_KEYS`) and its inputs' fingerprints
            those of ``sources`` now.
        sources: the command's inputs (:class:`wsss.paths.StageInputs`): ``path`` is checked
            against them and their fingerprints are recorded for ``resume``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        kind: str,
        *,
        classes: Iterable[str],
        config: Mapping[str, Any],
        inputs: Iterable[Mapping[str, Any]] = (),
        dataset: Mapping[str, Any] | None = None,
        resume: bool = False,
        ignore_index: int = IGNORE_INDEX,
        sources=None,
    ):
        from wsss.locks import OutputLock
        from wsss.paths import StageInputs

        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        self.path = Path(path)
        self.tmp = tmp_path(self.path)
        self.kind = kind
        self._committed = False
        check_output_file(self.path, "the output path")
        sources = sources if sources is not None else StageInputs()
        sources.check_output(self.path)
        self.parts = PartStore(self.path)
        self._attrs: dict[str, Any] = {
            "wsss_kind": kind,
            "wsss_schema": SCHEMA_VERSION,
            "wsss_version": __version__,
            "classes": _json(list(classes)),
            "ignore_index": int(ignore_index),
            "config": _json(dict(config)),
            "inputs": _json(list(inputs)),
        }
        if dataset is not None:
            self._attrs["dataset"] = _json(dict(dataset))
        manifest = {
            "kind": kind,
            "classes": self._attrs["classes"],
            "dataset": self._attrs.get("dataset"),
            "config": _comparable_config(self._attrs["config"]),
            "inputs": sources.identity(),
        }
        self._removed: set[str] = set()
        self._lock = OutputLock(self.path).acquire()
        try:
            self.done: set[str] = self._open_parts(manifest, resume)
        except BaseException:
            self._lock.release()
            raise

    def _open_parts(self, manifest: dict[str, Any], resume: bool) -> set[str]:
        import shutil

        from wsss.paths import describe_changes

        folder = self.parts.dir
        manifest_file = folder / MANIFEST_NAME
        if resume and manifest_file.is_file():
            try:
                old = json.loads(manifest_file.read_text())
            except (OSError, ValueError) as exc:
                raise UserError(f"{manifest_file}: unreadable ({exc}). Delete {folder} and rerun without --resume.") from exc
            if {k: old.get(k) for k in ("kind", "classes", "dataset", "config")} != {
                    k: manifest[k] for k in ("kind", "classes", "dataset", "config")}:
                raise UserError(f"{folder}: was started with another configuration. Rerun with the same options, "
                                "or rerun without --resume to start over.")
            changes = describe_changes(old.get("inputs", {}), manifest["inputs"])
            if changes:
                raise UserError(f"{folder}: the inputs changed since the interrupted run started ({'; '.join(changes)}); "
                                "resuming would mix results of old and new inputs. Rerun without --resume to start over.")
            return self.parts.scan()
        if folder.exists():
            shutil.rmtree(folder)
        self.tmp.unlink(missing_ok=True)
        folder.mkdir()
        staged = folder / (MANIFEST_NAME + ".tmp")
        staged.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        _fsync_file(staged)
        os.replace(staged, manifest_file)
        _fsync_dir(folder)
        _fsync_dir(self.path.parent)
        return set()

    # -- writing ----------------------------------------------------------------------------
    def write(self, image_id: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None) -> None:
        """Store the arrays of one image durably (replacing a previous entry of that id).

        Arrays of 2 or more dimensions are chunked and lzf-compressed; dtypes are kept as given
        (convert floats to float16 before calling where the artifact stores float16).
        """
        self.parts.write(image_id, arrays, attrs)
        self.done.add(image_id)
        self._removed.discard(image_id)

    def add_finished(self, ids: Iterable[str]) -> None:
        """Count images whose parts other processes (``torchrun`` ranks) wrote."""
        for image_id in ids:
            if image_id not in self._removed and self.parts.has(image_id):
                self.done.add(image_id)

    @property
    def ids(self) -> list[str]:
        """Ids of the images written so far (this run and resumed), sorted."""
        return sorted(self.done)

    def read(self, image_id: str, name: str) -> np.ndarray:
        """Read back an array already written (e.g. for statistics in a finalize step)."""
        f, group = self.parts.open(image_id)
        with f:
            return f[group][name][()]

    def image_attrs(self, image_id: str) -> dict:
        """Attributes written with an image (``complete`` left out), e.g. for a finalize step."""
        f, group = self.parts.open(image_id)
        with f:
            return {k: _attr(v) for k, v in f[group].attrs.items() if k != "complete"}

    def remove(self, image_id: str) -> None:
        """Leave an image written so far out of the artifact (e.g. one a finalize step skips)."""
        self.done.discard(image_id)
        self._removed.add(image_id)

    def set_attrs(self, **attrs: Any) -> None:
        """Root attributes besides the standard ones; non-scalars are stored as JSON strings."""
        for key, value in attrs.items():
            self._attrs[key] = _attr_value(value)

    def commit(self) -> Path:
        """Join the parts into ``<path>.tmp``, fsync, rename to ``<path>``, remove the parts and
        release the lock. Returns the final path."""
        import shutil

        h5py = _h5py()
        self.tmp.unlink(missing_ok=True)
        with h5py.File(self.tmp, "w") as f:
            for key, value in self._attrs.items():
                f.attrs[key] = value
            for image_id in sorted(self.done):
                src, name = self.parts.open(image_id)
                with src:
                    src.copy(src[name], f, name=name)
                crash_point("join")
            f.attrs["complete"] = True
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        _fsync_file(self.tmp)
        crash_point("joined")
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        self._committed = True
        crash_point("committed")
        shutil.rmtree(self.parts.dir, ignore_errors=True)
        self._lock.release()
        return self.path

    def close(self) -> None:
        """Stop without committing: the parts stay for ``--resume``; the lock is released."""
        self._lock.release()

    def discard(self) -> None:
        """Delete the parts and the partial join, release the lock."""
        import shutil

        shutil.rmtree(self.parts.dir, ignore_errors=True)
        self.tmp.unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._committed:
            return False
        if exc_type is not None and issubclass(exc_type, UserError):
            self.discard()
        else:
            self.close()
        return False


def describe_chain(record: Mapping[str, Any], depth: int = 0) -> list[str]:
    """Lines describing an artifact's provenance tree (used by ``wsss info``)."""
    pad = "  " * depth
    lines = [f"{pad}- {record.get('kind', '?')}: {record.get('path', '?')} (created {record.get('created', '?')})"]
    config = record.get("config") or {}
    command = config.get("command")
    if command:
        lines.append(f"{pad}  command: {command}")
    for parent in record.get("inputs", []) or []:
        lines.extend(describe_chain(parent, depth + 1))
    return lines
