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

Writes are atomic: everything goes to ``<path>.tmp`` and is renamed to ``<path>`` after an fsync,
so an interrupted stage never leaves a file that looks complete. ``resume=True`` reopens the
``.tmp`` file of an interrupted run and reports the images already finished.

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
    """The partial file an artifact is written to before its atomic rename."""
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
            if tmp_path(self.path).exists():
                hint = f" (a partial {tmp_path(self.path).name} exists: rerun the stage with --resume)"
            raise UserError(f"{self.path}: no such artifact{hint}. Check the path or run the stage that makes it.")
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a folder, not an artifact. Pass the .h5 file a stage wrote.")
        h5py = _h5py()
        try:
            with h5py.File(self.path, "r") as f:
                attrs = {k: _attr(v) for k, v in f.attrs.items()}
                self._ids = sorted(decode_id(n) for n in f.keys() if f[n].attrs.get("complete", False))
        except OSError as exc:
            reason = str(exc)
            if "error message = '" in reason:  # h5py's long form: keep the message only
                reason = reason.split("error message = '", 1)[1].split("'", 1)[0]
            raise UserError(f"{self.path}: not a readable HDF5 artifact ({reason}). Recreate it with the stage that writes it.") from exc
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
        return json.loads(self.attrs.get("classes", "[]"))

    @property
    def ignore_index(self) -> int:
        return int(self.attrs.get("ignore_index", IGNORE_INDEX))

    @property
    def config(self) -> dict:
        return json.loads(self.attrs.get("config", "{}"))

    @property
    def inputs(self) -> list[dict]:
        return json.loads(self.attrs.get("inputs", "[]"))

    @property
    def dataset(self) -> dict | None:
        value = self.attrs.get("dataset")
        return json.loads(value) if value else None

    def json_attr(self, name: str, default=None):
        value = self.attrs.get(name)
        return json.loads(value) if value is not None else default

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
            self._file = _h5py().File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def _group(self, image_id: str):
        f = self._handle()
        name = encode_id(image_id)
        if name not in f:
            raise UserError(f"{self.path}: has no image '{image_id}'. Rerun the stage that wrote it on this image list.")
        return f[name]

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
        return group[name][()]

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


def _attr(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class ArtifactWriter:
    """Writes one artifact atomically (``<path>.tmp`` then rename on :meth:`commit`).

    Use as a context manager: leaving the block without :meth:`commit` (an error or an
    interrupt) keeps the ``.tmp`` file for ``--resume`` unless the error was a
    :class:`UserError` (bad input: nothing worth resuming), in which case it is deleted.

    Args:
        path: final file name.
        kind: one of :data:`KINDS`.
        classes: class names, index = label value.
        config: the full configuration of the command (JSON-serialisable).
        inputs: provenance records (:meth:`Artifact.provenance`) of the input artifacts.
        dataset: description of the image source (``Dataset.describe()``).
        resume: reopen an existing ``.tmp`` file and keep the images it has finished. Its
            recorded configuration must equal ``config``.
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
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        self.path = Path(path)
        self.tmp = tmp_path(self.path)
        self.kind = kind
        if not self.path.parent.exists():
            raise UserError(f"{self.path}: folder {self.path.parent} does not exist. Create it or choose another output path.")
        h5py = _h5py()
        config_json = _json(dict(config))
        self.done: set[str] = set()
        if resume and self.tmp.exists():
            try:
                self._f = h5py.File(self.tmp, "a")
            except OSError as exc:
                raise UserError(f"{self.tmp}: partial file is unreadable ({exc}). Delete it and rerun without --resume.") from exc
            old = _attr(self._f.attrs.get("config", "{}"))
            if _comparable_config(old) != _comparable_config(config_json):
                self._f.close()
                raise UserError(
                    f"{self.tmp}: was started with another configuration. Rerun with the same options, "
                    "or delete it to start over."
                )
            for name in list(self._f.keys()):
                if self._f[name].attrs.get("complete", False):
                    self.done.add(decode_id(name))
                else:
                    del self._f[name]
        else:
            if self.tmp.exists():
                self.tmp.unlink()
            self._f = h5py.File(self.tmp, "w")
        a = self._f.attrs
        a["wsss_kind"] = kind
        a["wsss_schema"] = SCHEMA_VERSION
        a["wsss_version"] = __version__
        a["classes"] = _json(list(classes))
        a["ignore_index"] = int(ignore_index)
        a["config"] = config_json
        a["inputs"] = _json(list(inputs))
        if dataset is not None:
            a["dataset"] = _json(dict(dataset))
        self._committed = False

    # -- writing ----------------------------------------------------------------------------
    def write(self, image_id: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None) -> None:
        """Store the arrays of one image (replacing a previous entry of that id).

        Arrays of 2 or more dimensions are chunked and lzf-compressed; dtypes are kept as given
        (convert floats to float16 before calling where the artifact stores float16).
        """
        name = encode_id(image_id)
        if name in self._f:
            del self._f[name]
        group = self._f.create_group(name)
        for key, value in arrays.items():
            value = np.asarray(value)
            if value.ndim >= 2 and value.size > 0:
                group.create_dataset(key, data=value, chunks=True, compression="lzf")
            else:
                group.create_dataset(key, data=value)
        for key, value in (attrs or {}).items():
            group.attrs[key] = value if isinstance(value, (int, float, str, bool, np.number)) else _json(value)
        group.attrs["complete"] = True
        self.done.add(image_id)

    @property
    def ids(self) -> list[str]:
        """Ids of the images written so far (this run and resumed), sorted."""
        return sorted(self.done)

    def read(self, image_id: str, name: str) -> np.ndarray:
        """Read back an array already written (e.g. for statistics in a finalize step)."""
        return self._f[encode_id(image_id)][name][()]

    def image_attrs(self, image_id: str) -> dict:
        """Attributes written with an image (``complete`` left out), e.g. for a finalize step."""
        group = self._f[encode_id(image_id)]
        return {k: _attr(v) for k, v in group.attrs.items() if k != "complete"}

    def remove(self, image_id: str) -> None:
        """Delete an image written so far (e.g. one a finalize step leaves out)."""
        name = encode_id(image_id)
        if name in self._f:
            del self._f[name]
        self.done.discard(image_id)

    def set_attrs(self, **attrs: Any) -> None:
        """Root attributes besides the standard ones; non-scalars are stored as JSON strings."""
        for key, value in attrs.items():
            self._f.attrs[key] = value if isinstance(value, (int, float, str, bool, np.number)) else _json(value)

    def copy_images_from(self, other_tmp: Path) -> None:
        """Copy every complete image group of another (shard) file into this one."""
        h5py = _h5py()
        with h5py.File(other_tmp, "r") as src:
            for name in src.keys():
                if src[name].attrs.get("complete", False):
                    if name in self._f:
                        del self._f[name]
                    src.copy(src[name], self._f, name=name)
                    self.done.add(decode_id(name))

    def commit(self) -> Path:
        """Mark complete, flush, fsync and rename to the final path. Returns the final path."""
        self._f.attrs["complete"] = True
        self._f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._f.flush()
        self._f.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        self._committed = True
        return self.path

    def discard(self) -> None:
        """Close and delete the partial file."""
        try:
            self._f.close()
        except Exception:  # noqa: BLE001 - already closed
            pass
        if self.tmp.exists():
            self.tmp.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._committed:
            return False
        if exc_type is not None and issubclass(exc_type, UserError):
            self.discard()
        else:
            try:
                self._f.close()
            except Exception:  # noqa: BLE001
                pass
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
