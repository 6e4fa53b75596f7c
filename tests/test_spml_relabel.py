"""SPML nearest-neighbour relabelling (wsss.spml.relabel, stage spml-relabel): majority labels, top-k votes and
cluster prototypes against brute-force loops; the class normalisation; the stage repairs a wrongly labelled
block from the other images' prototypes, its artifact is accepted by eval and train --loss pseudo's reader,
round 2 reads a predictions artifact; bad input is one line, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from wsss.artifacts import Artifact, ArtifactWriter
from wsss.data import open_dataset
from wsss.errors import UserError
from wsss.spml.kmeans import kmeans_features, spherical_kmeans
from wsss.spml.relabel import RelabelConfig, image_prototypes, majority_labels, relabel_scores, vote_scores
from wsss.stages import evaluate
from wsss.stages import spml_relabel as stage
from wsss.training.data import TargetSource

from two_colour_data import make_two_colour_dataset, write_seeds

CLASSES = ["dark", "bright", "unused"]
H, W = 48, 64
SMALL = RelabelConfig(grid=4, top_k=10, memory_scales=(1.0,), scales=(1.0, 0.5))


def test_majority_labels_match_a_loop():
    rng = np.random.default_rng(0)
    cluster = rng.integers(0, 7, 300)
    label = rng.choice([0, 1, 2, 255], 300, p=[0.3, 0.3, 0.1, 0.3])
    label[cluster == 6] = 255  # a cluster without labelled pixel
    got = majority_labels(torch.from_numpy(cluster), torch.from_numpy(label), 8, 3).numpy()
    for c in range(8):
        labs = label[(cluster == c) & (label != 255)]
        if labs.size == 0:
            assert got[c] == 255
        else:
            counts = np.bincount(labs, minlength=3)
            assert got[c] == int(np.argmax(counts))  # lowest class on ties, as np.argmax


@pytest.mark.parametrize("chunk", [1000, 7])
def test_votes_are_the_label_fractions_of_the_top_k(chunk):
    rng = np.random.default_rng(1)
    protos = F.normalize(torch.from_numpy(rng.normal(size=(9, 5))), dim=1)
    memory = F.normalize(torch.from_numpy(rng.normal(size=(40, 5))), dim=1)
    labels = torch.from_numpy(rng.integers(0, 4, 40))
    got = vote_scores(protos, memory, labels, top_k=6, num_classes=4, chunk=chunk).numpy()
    for c in range(9):
        sims = [float(protos[c] @ memory[m]) for m in range(40)]
        top = sorted(range(40), key=lambda m: -sims[m])[:6]
        expect = np.bincount(labels.numpy()[top], minlength=4) / 6
        np.testing.assert_allclose(got[c], expect, atol=1e-7)
    # fewer memory prototypes than k: all of them vote
    few = vote_scores(protos, memory[:3], labels[:3], top_k=6, num_classes=4).numpy()
    np.testing.assert_allclose(few, np.tile(np.bincount(labels[:3].numpy(), minlength=4) / 3, (9, 1)), atol=1e-7)


def test_image_prototypes_are_the_unit_mean_embeddings_of_the_kmeans_clusters():
    rng = np.random.default_rng(2)
    emb = F.normalize(torch.from_numpy(rng.normal(size=(1, 6, 10, 12))).float(), dim=1)
    protos, ids = image_prototypes(emb, grid=3, iterations=4)
    clusters = spherical_kmeans(kmeans_features(emb), grid=3, iterations=4).labels[0].numpy()
    ids = ids[0].numpy()
    assert protos.shape[0] == len(np.unique(clusters)) == ids.max() + 1
    e = emb[0].numpy().reshape(6, -1).T
    for c in np.unique(clusters):  # same partition, renumbered
        members = clusters.reshape(-1) == c
        assert len(np.unique(ids.reshape(-1)[members])) == 1
        mean = e[members].sum(0)
        np.testing.assert_allclose(protos[ids.reshape(-1)[members][0]].numpy(), mean / np.linalg.norm(mean), atol=1e-5)


def colour_embedding(image: torch.Tensor) -> torch.Tensor:
    """Stand-in embedding at stride 4: the centred colour (dark and bright regions far apart)."""
    return F.normalize(F.avg_pool2d(image / 255.0 - 0.5, 4), dim=1)


def test_relabel_scores_normalise_present_classes_only():
    """Memory labelled 'bright' for bright and dark prototypes alike but 'dark' for a few: votes ~ fractions;
    the present class 0 is divided by max(its maximum, floor), absent class 2 is not; rows sum to 1."""
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 255
    memory = F.normalize(torch.tensor([[-1.0, -1, -1]] * 4 + [[1.0, 1, 1]] * 4), dim=1)
    labels = torch.tensor([0, 1, 1, 2, 1, 1, 1, 1])  # dark prototypes vote 1/4 dark, 1/2 bright, 1/4 class 2
    cfg = RelabelConfig(grid=2, top_k=4, scales=(1.0,), flip=False, floor=0.15)
    present = torch.tensor([True, True, False])
    out = relabel_scores(colour_embedding, image, present, memory, labels, cfg)
    torch.testing.assert_close(out.sum(0), torch.ones(16, 16))
    left = out[:, 8, 2]  # a dark pixel: votes (1/4, 1/2, 1/4); class 0 max 1/4, class 1 max 1, class 2 as is
    expect = torch.tensor([1.0, 0.5, 0.25])
    torch.testing.assert_close(left, expect / expect.sum())
    right = out[:, 8, 13]  # a bright pixel: votes (0, 1, 0)
    torch.testing.assert_close(right, torch.tensor([0.0, 1.0, 0.0]))
    floored = relabel_scores(colour_embedding, image, present, memory, labels, RelabelConfig(
        grid=2, top_k=4, scales=(1.0,), flip=False, floor=0.5))
    expect = torch.tensor([0.5, 0.5, 0.25])  # class 0 divided by 0.5 instead of 1/4
    torch.testing.assert_close(floored[:, 8, 2], expect / expect.sum())


def stand_in_loader(run, device):
    return (lambda x: (colour_embedding(x), None)), {"classes": CLASSES, "dataset": None, "epoch": 1,
                                                     "checkpoint": Path(run) / "last.pt"}


def write_labels(path: Path, root: Path, labels: dict[str, np.ndarray], kind: str = "pseudolabels") -> Path:
    ds = open_dataset(root)
    with ArtifactWriter(path, kind, classes=CLASSES, config={"made": "test"}, dataset=ds.describe()) as w:
        for image_id, lab in labels.items():
            onehot = np.eye(3, dtype=np.float16)[lab].transpose(2, 0, 1)
            w.write(image_id, {"probs" if kind == "pseudolabels" else "scores": onehot, "label": lab.astype(np.uint8)})
        w.commit()
    return path


@pytest.fixture()
def setup(tmp_path):
    root = make_two_colour_dataset(tmp_path / "data", CLASSES, H, W, n=6)
    ds = open_dataset(root)
    seeds, wrong = {}, {}
    for n, i in enumerate(ds.ids):
        s = np.full((H, W), 255, np.uint8)
        s[H // 2, 2], s[H // 2, W - 3] = 0, 1
        seeds[i] = s
        lab = ds.load_mask(i).astype(np.uint8)
        if n == 0:  # a block of the bright region labelled dark in one image
            block = np.zeros((H, W), bool)
            block[:, W - 16:] = True
            lab[block & (lab == 1)] = 0
        wrong[i] = lab
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"stand-in")
    return root, ds, write_seeds(tmp_path / "seeds.h5", root, seeds, CLASSES), write_labels(tmp_path / "pl.h5", root, wrong), run


def accuracy(art: Artifact, ds, image_id: str) -> float:
    return float(np.mean(art.read(image_id, "label") == ds.load_mask(image_id)))


def test_stage_repairs_a_wrong_block_from_the_other_images(setup, tmp_path):
    root, ds, seeds, labels, run = setup
    first = ds.ids[0]
    before = accuracy(Artifact(labels), ds, first)
    assert before < 0.85
    out = stage.run(run, labels, seeds, tmp_path / "re.h5", relabel=SMALL, crf=None, net_loader=stand_in_loader)
    art = Artifact(out, "pseudolabels")
    assert art.ids == ds.ids and art.classes == CLASSES
    assert accuracy(art, ds, first) > 0.95 > before
    assert art.image_attrs(first)["changed"] > 0.1
    for i in ds.ids:
        probs = art.read(i, "probs").astype(np.float32)
        assert probs.shape == (3, H, W) and np.allclose(probs.sum(0), 1.0, atol=3e-3)
    assert art.config["relabel"]["grid"] == 4 and art.config["crf"] is None
    assert [x["kind"] for x in art.inputs] == ["seeds", "pseudolabels", "run"]
    # an ordinary pseudolabels artifact: eval and the training target reader take it
    metrics = evaluate.run(out, seeds=seeds)
    assert metrics["miou"] > 0.9
    source = TargetSource("pseudolabels", ds, Artifact(out), soft=True)
    lab, probs = source.load(first, (H, W))
    assert lab.shape == (H, W) and probs.shape == (3, H, W)
    # with the CRF (SPML's parameters) the split is kept
    crf = Artifact(stage.run(run, labels, seeds, tmp_path / "crf.h5", relabel=SMALL, net_loader=stand_in_loader))
    assert accuracy(crf, ds, first) > 0.95


def test_round_two_reads_predictions_and_bad_inputs_are_refused(setup, tmp_path):
    root, ds, seeds, labels, run = setup
    preds = write_labels(tmp_path / "pred.h5", root, {i: ds.load_mask(i).astype(np.uint8) for i in ds.ids},
                         kind="predictions")
    art = Artifact(stage.run(run, preds, seeds, tmp_path / "r2.h5", relabel=SMALL, crf=None, net_loader=stand_in_loader))
    assert all(accuracy(art, ds, i) > 0.95 for i in ds.ids)
    two = Artifact(stage.run(run, preds, seeds, tmp_path / "r2w.h5", relabel=SMALL, crf=None, workers=2,
                             net_loader=stand_in_loader))
    assert all(np.array_equal(art.read(i, "probs"), two.read(i, "probs")) for i in ds.ids)  # workers change nothing
    out = tmp_path / "bad.h5"
    one = write_labels(tmp_path / "one.h5", root, {ds.ids[0]: ds.load_mask(ds.ids[0]).astype(np.uint8)})
    with pytest.raises(UserError, match="has no labels for 5 images"):
        stage.run(run, one, seeds, out, relabel=SMALL, net_loader=stand_in_loader)
    small = write_labels(tmp_path / "small.h5", root, {i: np.zeros((H // 2, W), np.uint8) for i in ds.ids})
    with pytest.raises(UserError, match="labels of image"):
        stage.run(run, small, seeds, out, relabel=SMALL, net_loader=stand_in_loader)
    with pytest.raises(UserError, match="is an input"):
        stage.run(run, labels, seeds, labels, relabel=SMALL, net_loader=stand_in_loader)
    with pytest.raises(UserError, match="--top-k"):
        RelabelConfig(top_k=0)
    assert not out.exists()
    from wsss_cli.main import app

    result = CliRunner().invoke(app, ["spml-relabel", str(run), "--labels", str(labels), "--seeds", str(seeds),
                                      "--out", str(out), "--scales", "1,x"])
    assert result.exit_code == 2 and "--scales" in result.output
    result = CliRunner().invoke(app, ["spml-relabel", str(tmp_path / "nowhere"), "--labels", str(labels), "--seeds",
                                      str(seeds), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert not out.exists()
