"""The per-image runner: identical artifacts for any worker count, resume, ordering."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.artifacts import Artifact, ArtifactWriter
from wsss.artifacts import parts_path
from wsss.artifacts import tmp_path as partial_path
from wsss.errors import UserError
from wsss.parallel import DistributedContext, map_images, run_per_image, shard


def _image_fn(image_id: str):
    rng = np.random.default_rng(int(image_id[1:]))
    return {"label": rng.integers(0, 3, size=(6, 7), dtype=np.uint8)}, {"n": int(image_id[1:])}


IDS = [f"i{k}" for k in range(9)]


def _args(path):
    return {"path": path, "kind": "seeds", "classes": ["a", "b", "c"], "config": {"k": 1}}


def _contents(path):
    art = Artifact(path)
    return {i: art.read(i, "label") for i in art.ids}


@pytest.mark.parametrize("workers", [1, 2])
def test_same_artifact_for_any_worker_count(tmp_path, workers):
    ref = run_per_image(_image_fn, IDS, _args(tmp_path / "ref.h5"), workers=1)
    out = run_per_image(_image_fn, IDS, _args(tmp_path / "out.h5"), workers=workers)
    a, b = _contents(ref), _contents(out)
    assert a.keys() == b.keys() == set(IDS)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_map_images_preserves_order_with_workers():
    got = [i for i, _ in map_images(_image_fn, IDS, workers=2)]
    assert got == IDS
    with pytest.raises(UserError):
        list(map_images(_image_fn, IDS, workers=0))


def test_resume_computes_only_missing_images(tmp_path):
    path = tmp_path / "out.h5"
    w = ArtifactWriter(**{**_args(path), "resume": False})
    for i in IDS[:4]:
        arrays, attrs = _image_fn(i)
        w.write(i, arrays, attrs)
    w.close()  # interrupted: only the parts exist
    assert parts_path(path).is_dir() and not path.exists()
    seen = []
    run_per_image(_image_fn, IDS, _args(path), resume=True, on_result=lambda i, a, t: seen.append(i))
    assert seen == IDS[4:]
    ref = run_per_image(_image_fn, IDS, _args(tmp_path / "ref.h5"))
    for k, v in _contents(ref).items():
        np.testing.assert_array_equal(v, _contents(path)[k])
    assert not partial_path(path).exists() and not parts_path(path).exists()


def test_shard_partitions_ids():
    parts = [shard(IDS, DistributedContext(r, 3)) for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(IDS)
    assert all(set(a).isdisjoint(b) for a in parts for b in parts if a is not b)


def test_finalize_sees_every_image(tmp_path):
    totals = {}

    def finalize(writer):
        totals["n"] = len(writer.ids)
        totals["sum"] = int(sum(writer.read(i, "label").sum() for i in writer.ids))
        writer.set_attrs(stats={"images": len(writer.ids)})

    path = run_per_image(_image_fn, IDS, _args(tmp_path / "f.h5"), workers=2, finalize=finalize)
    art = Artifact(path)
    assert totals["n"] == len(IDS)
    assert totals["sum"] == sum(int(_image_fn(i)[0]["label"].sum()) for i in IDS)
    assert art.json_attr("stats") == {"images": len(IDS)}


_RANK_FAILURE_SCRIPT = """
import sys
import numpy as np
from wsss.errors import UserError
from wsss.parallel import run_per_image

def fn(image_id):
    if image_id == "i1":  # ids[1::2] go to rank 1: only rank 1 fails
        raise UserError("i1.png: corrupt image. Replace it.")
    return {"label": np.zeros((2, 2), np.uint8)}, None

try:
    run_per_image(fn, [f"i{k}" for k in range(4)],
                  {"path": sys.argv[1], "kind": "seeds", "classes": ["a"], "config": {}})
except UserError as exc:
    print(f"rank error: {exc}", flush=True)
    sys.exit(2)
"""


def test_torchrun_rank_failure_stops_every_rank(tmp_path):
    """An input error on one rank must not leave the other waiting at a barrier."""
    import os
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text(_RANK_FAILURE_SCRIPT)
    out = tmp_path / "out.h5"
    # torchrun of this interpreter (a console script of another Python would not see wsss)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "i1.png: corrupt image" in text
    assert "other rank(s) stopped" in text
    assert not out.exists()
