"""The SPML loss (wsss.losses.spml): eq. (3) with the own-segment exclusion and its fallback against a
brute-force loop over pixels and segments; each relation's positive / negative sets on a constructed batch
(co-occurrence from seed-map tags, an image without foreground tags skipped); the memory bank (previous two
batches, detached, no gradient into them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.constants import IGNORE_INDEX
from wsss.losses.registry import make_loss
from wsss.losses.spml import (MAX_KAPPA, affinity_term, annotation_term, contrastive_losses, cooccurrence_term, image_tags,
                              image_similarity_term, nearest_resize)
from wsss.losses.spml_reference import dense_contrastive_losses
from wsss.spml import kmeans_features, segment_prototypes, segments
from wsss.spml.memory import SegmentMemory

BG = 0


def _reference_loss(f, protos, own, positive, negative, kappa):
    """Plain loop: eq. (3) for one pixel; C⁺ = positives but own, or {own} if none; C⁻ = negatives but own."""
    plus = [s for s in range(len(protos)) if positive[s] and s != own] or [own]
    minus = [s for s in range(len(protos)) if negative[s] and s != own]
    score = [math.exp(kappa * float(np.dot(protos[s], f))) for s in range(len(protos))]
    return -math.log(sum(score[s] for s in plus) / sum(score[s] for s in set(plus) | set(minus)))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_contrastive_losses_against_a_brute_force_loop_with_own_exclusion_and_fallback():
    rng = np.random.default_rng(0)
    n, s, d = 12, 7, 5
    f, protos = _unit(rng.normal(size=(n, d))), _unit(rng.normal(size=(s, d)))
    own = rng.integers(0, s, n)
    positive = rng.random((n, s)) < 0.4
    positive[0] = False  # no positive at all: fallback to the own segment
    positive[1] = False
    positive[1, own[1]] = True  # only the own segment: fallback as well
    positive[2, own[2]] = False  # own not marked positive: still not counted among the negatives
    positive[2, (own[2] + 1) % s] = True
    # every pixel its own group: any positive pattern
    got = contrastive_losses(torch.tensor(f), torch.tensor(protos), torch.tensor(own), torch.arange(n),
                             torch.tensor(positive), 6.0)
    want = [_reference_loss(f[i], protos, own[i], positive[i], ~positive[i], 6.0) for i in range(n)]
    assert np.allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    # the fallback is SegSort's −ln p(z_i | i) over the own segment and the negatives
    logits = 6.0 * protos @ f[0]
    assert math.isclose(got[0].item(), -(logits[own[0]] - np.log(np.exp(logits).sum())), rel_tol=1e-10)
    # with another positive the own segment leaves the numerator and the denominator
    i = 2
    others = [t for t in range(s) if positive[i, t] and t != own[i]]
    rest = [t for t in range(s) if t != own[i]]
    want_2 = -np.log(np.exp(logits_i := 6.0 * protos @ f[i])[others].sum() / np.exp(logits_i)[rest].sum())
    assert math.isclose(got[i].item(), want_2, rel_tol=1e-10)


def _grouped_problem(n, s, d, groups, seed, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    f = F.normalize(torch.tensor(rng.normal(size=(n, d)), dtype=dtype), dim=1).requires_grad_(True)
    protos = F.normalize(torch.tensor(rng.normal(size=(s, d)), dtype=dtype), dim=1).requires_grad_(True)
    own = torch.tensor(rng.integers(0, s, n))
    group = torch.tensor(rng.integers(0, groups, n))
    group_positive = torch.tensor(rng.random((groups, s)) < 0.3)
    group_positive[0] = False  # group 0: fallback rows
    group_positive[1] = False
    group_positive[1, own[group == 1]] = True  # group 1: positives are the own segments only → fallback or not
    return f, protos, own, group, group_positive


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_contrastive_losses_values_and_gradients_match_the_dense_masked_reference(dtype):
    f, protos, own, group, group_positive = _grouped_problem(40, 23, 6, 5, 4, dtype)
    positive = group_positive[group]
    got = contrastive_losses(f, protos, own, group, group_positive, 16.0)
    want = dense_contrastive_losses(f, protos, own, positive, ~positive, 16.0)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert torch.allclose(got, want, **tol)
    weights = torch.linspace(0.5, 2.0, 40, dtype=dtype)
    g_got = torch.autograd.grad((weights * got).sum(), (f, protos))
    g_want = torch.autograd.grad((weights * want).sum(), (f, protos))
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, **tol)


def test_contrastive_losses_by_row_blocks_and_a_second_backward_match_the_dense_reference(monkeypatch):
    import wsss.losses.spml as spml

    monkeypatch.setattr(spml, "BLOCK_ENTRIES", 50)  # 23 segments: blocks of 2 rows, the last one shorter
    f, protos, own, group, group_positive = _grouped_problem(41, 23, 6, 5, 7)
    positive = group_positive[group]
    got = contrastive_losses(f, protos, own, group, group_positive, 12.0)
    want = dense_contrastive_losses(f, protos, own, positive, ~positive, 12.0)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    g_want = torch.autograd.grad(want.sum(), (f, protos))
    g_first = torch.autograd.grad(got.sum(), (f, protos), retain_graph=True)  # consumes the kept blocks
    g_second = torch.autograd.grad(got.sum(), (f, protos))  # recomputes them
    for first, second, ref in zip(g_first, g_second, g_want):
        assert torch.allclose(first, ref, rtol=1e-10, atol=1e-12)
        assert torch.allclose(second, ref, rtol=1e-10, atol=1e-12)


def test_contrastive_losses_gradient_against_finite_differences():
    f, protos, own, group, group_positive = _grouped_problem(9, 6, 3, 3, 5)
    assert torch.autograd.gradcheck(lambda x, p: contrastive_losses(x, p, own, group, group_positive, 6.0),
                                    (f, protos))


def test_contrastive_losses_refuses_a_kappa_beyond_its_exact_range():
    f, protos, own, group, group_positive = _grouped_problem(4, 3, 2, 2, 6)
    with pytest.raises(ValueError):
        contrastive_losses(f, protos, own, group, group_positive, MAX_KAPPA * 1.5)


def _batch():
    """3 images of 4×5 at stride 4: hand-made clusters, regions, seeds; image 2 has only background seeds,
    one padded column in image 1."""
    rng = np.random.default_rng(1)
    b, d, h, w = 3, 4, 4, 5
    e = F.normalize(torch.tensor(rng.normal(size=(b, d, h, w))), dim=1)
    cluster = torch.tensor(rng.integers(0, 3, (b, h, w)))
    region = torch.tensor(rng.integers(0, 2, (b, h, w)))
    labels = torch.full((b, h, w), IGNORE_INDEX, dtype=torch.int64)
    labels[0, 0, :3] = 1
    labels[0, 3, 1:4] = BG
    labels[1, 1, :2] = 2
    labels[1, 2, 2:4] = 1
    labels[2, 0, 0:2] = BG
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[1, :, 4] = False
    cluster = cluster.masked_fill(~valid, -1)
    segs = segments(cluster, region, labels.masked_fill(~valid, IGNORE_INDEX))
    return e, segs, labels, valid


def _pixels(segs):
    """(image, row, col, own segment) of every valid pixel."""
    ids = segs.ids.numpy()
    return [(b, r, c, ids[b, r, c]) for b in range(ids.shape[0]) for r in range(ids.shape[1])
            for c in range(ids.shape[2]) if ids[b, r, c] >= 0]


def _segment_attrs(segs):
    return (segs.image.numpy(), segs.region.numpy(), segs.label.numpy())


def test_img_relation_positives_are_the_segments_of_the_pixels_region_in_its_image():
    e, segs, _, _ = _batch()
    v = kmeans_features(e)
    protos = segment_prototypes(v, segs).numpy()
    img, reg, _ = _segment_attrs(segs)
    per_image: dict[int, list[float]] = {}
    for b, r, c, own in _pixels(segs):
        mine = img == b  # only the segments of i's image take part
        pos = mine & (reg == reg[own])
        neg = mine & (reg != reg[own])
        per_image.setdefault(b, []).append(_reference_loss(v[b, :, r, c].numpy(), protos, own, pos, neg, 16.0))
    term = image_similarity_term(v, segs, 16.0, weight=0.1)
    assert term.count.item() == 3
    assert math.isclose(term.total.item(), 0.1 * sum(np.mean(x) for x in per_image.values()), rel_tol=1e-9)


def _bank(d, k, rng):
    protos = F.normalize(torch.tensor(rng.normal(size=(6, d))), dim=1)
    labels = torch.tensor([1, IGNORE_INDEX, 2, BG, IGNORE_INDEX, 3])
    tags = torch.zeros(6, k, dtype=torch.bool)
    tags[0, 1] = tags[2, 2] = tags[3, 3] = tags[5, 3] = True
    return protos, labels, tags


def test_ann_relation_labelled_pixels_against_labelled_batch_and_bank_segments():
    e, segs, _, _ = _batch()
    protos = segment_prototypes(e, segs)
    bank_p, bank_l, _ = _bank(e.shape[1], 4, np.random.default_rng(2))
    _, _, lab = _segment_attrs(segs)
    all_p = np.concatenate([protos.numpy(), bank_p.numpy()])
    all_l = np.concatenate([lab, bank_l.numpy()])
    want = []
    for b, r, c, own in _pixels(segs):
        if lab[own] == IGNORE_INDEX:
            continue  # unlabelled pixels are not in ann
        labelled = all_l != IGNORE_INDEX  # unlabelled segments are ignored
        pos = labelled & (all_l == lab[own])
        neg = labelled & (all_l != lab[own])
        want.append(_reference_loss(e[b, :, r, c].numpy(), all_p, own, pos, neg, 6.0))
    term = annotation_term(e, segs, protos, bank_p, bank_l, 6.0)
    assert term.count.item() == len(want) == 12
    assert math.isclose(term.total.item(), sum(want), rel_tol=1e-9)


def test_tags_are_the_foreground_classes_of_the_seed_map():
    _, _, labels, valid = _batch()
    labels = labels.clone()
    labels[1, 0, 4] = 3  # on padding: not a tag
    tags = image_tags(labels, valid, 4, BG)
    assert tags.tolist() == [[False, True, False, False], [False, True, True, False], [False] * 4]
    assert image_tags(labels, valid, 4, None)[2].tolist() == [True, False, False, False]


def test_occ_relation_from_seed_map_tags_skips_an_image_without_foreground_tags():
    e, segs, labels, valid = _batch()
    protos = segment_prototypes(e, segs)
    tags = image_tags(labels, valid, 4, BG)  # image 0: {1}, image 1: {1, 2}, image 2: {} (background only)
    bank_p, _, bank_t = _bank(e.shape[1], 4, np.random.default_rng(3))
    img, _, _ = _segment_attrs(segs)
    image_tag_sets = [set(np.nonzero(t)[0]) for t in tags.numpy()]
    seg_tags = [image_tag_sets[i] for i in img] + [set(np.nonzero(t)[0]) for t in bank_t.numpy()]
    all_p = np.concatenate([protos.numpy(), bank_p.numpy()])
    want, counted_images = [], set()
    for b, r, c, own in _pixels(segs):
        if not image_tag_sets[b]:
            continue
        counted_images.add(b)
        pos = np.array([bool(image_tag_sets[b] & t) for t in seg_tags])
        want.append(_reference_loss(e[b, :, r, c].numpy(), all_p, own, pos, ~pos, 12.0))
    term = cooccurrence_term(e, segs, protos, tags, bank_p, bank_t, 12.0, weight=0.5)
    assert counted_images == {0, 1}
    assert term.count.item() == len(want) == 20 + 16
    assert math.isclose(term.total.item(), 0.5 * sum(want), rel_tol=1e-9)
    # image 0 ({1}) and image 1 ({1, 2}) share a tag: each other's segments are positives; image 2's and the
    # bank's tagless or other-class segments are negatives
    assert [bool(image_tag_sets[0] & t) for t in seg_tags[len(img):]] == [True, False, False, False, False, False]


def test_aff_relation_propagates_labels_to_the_nearest_labelled_segment():
    e, segs, _, _ = _batch()
    protos = segment_prototypes(e, segs)
    p = protos.numpy()
    _, _, lab = _segment_attrs(segs)
    labelled = np.nonzero(lab != IGNORE_INDEX)[0]
    prop = np.array([lab[s] if lab[s] != IGNORE_INDEX else lab[labelled[np.argmax(p[labelled] @ p[s])]]
                     for s in range(len(p))])
    want = [_reference_loss(e[b, :, r, c].numpy(), p, own, prop == prop[own], prop != prop[own], 12.0)
            for b, r, c, own in _pixels(segs)]
    term = affinity_term(e, segs, protos, 12.0)
    assert term.count.item() == len(want)
    assert math.isclose(term.total.item(), sum(want), rel_tol=1e-9)


def test_nearest_resize_takes_the_floor_source_pixel():
    x = torch.arange(48).reshape(1, 6, 8)
    assert torch.equal(nearest_resize(x, (3, 4)), x[:, ::2, ::2])
    assert nearest_resize(x > 20, (3, 4)).dtype == torch.bool


def test_memory_bank_holds_the_previous_two_batches_detached():
    bank = SegmentMemory(2)
    batches = [(torch.randn(n, 3, requires_grad=True), torch.arange(n), torch.ones(n, 2, dtype=torch.bool))
               for n in (2, 3, 4)]
    for protos, labels, tags in batches:
        bank.push(protos * 1.0, labels, tags)
    protos, labels, tags = bank.contents(3, 2, "cpu")
    assert len(bank) == 2 and protos.shape == (7, 3) and not protos.requires_grad
    assert torch.equal(protos, torch.cat([batches[1][0], batches[2][0]]).detach())
    assert labels.tolist() == [0, 1, 2, 0, 1, 2, 3]
    state = bank.state_dict()
    other = SegmentMemory(2)
    other.load_state_dict(state)
    assert torch.equal(other.contents(3, 2, "cpu")[0], protos)
    assert len(SegmentMemory(0)) == 0


def _step_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(2, 8, 6, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    logits = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.full((2, 24, 24), IGNORE_INDEX, dtype=torch.int64)
    labels[0, 4, 2:20] = 1  # rows that the nearest resize to 6×6 keeps (0, 4, 8, ...)
    labels[0, 20, 2:20] = 0
    labels[1, 8, 4:12] = 2
    labels[1, 16, :] = 0
    valid = torch.ones(2, 24, 24, dtype=torch.bool)
    regions = torch.randint(0, 3, (2, 24, 24), generator=g)
    return e, logits, labels, valid, regions


def test_spml_terms_memory_reaches_the_next_batch_without_gradient():
    loss = make_loss("spml", {"grid": 2})
    e1, l1, labels, valid, regions = _step_inputs(0)
    first = loss.spml_terms(e1, l1, labels, valid, regions, background=0)
    assert set(first) == {"img", "ann", "cls", "occ"} and len(loss.memory) == 1
    e2, l2, *_ = _step_inputs(1)
    second = loss.spml_terms(e2, l2, labels, valid, regions, background=0)
    sum(t.total for t in second.values()).backward()
    assert e1.grad is None and e2.grad is not None and e2.grad.abs().sum() > 0
    assert all(not t.requires_grad for t in loss.memory.contents(8, 3, "cpu"))
    # the bank changes ann and occ but not img
    fresh = make_loss("spml", {"grid": 2}).spml_terms(e2.detach(), l2.detach(), labels, valid, regions, background=0)
    assert math.isclose(fresh["img"].total.item(), second["img"].total.item(), rel_tol=1e-12)
    assert not math.isclose(fresh["ann"].total.item(), second["ann"].total.item(), rel_tol=1e-6)
    assert not math.isclose(fresh["occ"].total.item(), second["occ"].total.item(), rel_tol=1e-6)
    assert len(loss.memory) == 2
    loss.spml_terms(e2.detach(), l2.detach(), labels, valid, regions, background=0)
    assert len(loss.memory) == 2


def test_weights_per_annotation_type_code_and_paper():
    assert make_loss("spml", {}).relation_weights == (0.1, 1.0, 0.5, 0.0)
    points = make_loss("spml", {"annotation": "points"})
    assert points.relation_weights == (0.1, 0.1, 0.1, 0.0) and points.kappa_occ == 8.0
    assert make_loss("spml", {"annotation": "points", "weights": "paper"}).relation_weights == (1.0, 1.0, 1.0, 0.0)
    assert make_loss("spml", {"annotation": "tags", "w_img": 0.5}).relation_weights == (0.5, 0.3, 0.3, 0.0)
    terms = make_loss("spml", {"grid": 2, "w_aff": 0.5, "w_occ": 0.0}).spml_terms(*_step_inputs(2), background=0)
    assert set(terms) == {"img", "ann", "cls", "aff"}
    terms = make_loss("spml", {"grid": 2, "w_ann": 0.0}).spml_terms(*_step_inputs(2), background=0)
    assert set(terms) == {"img", "cls", "occ"} and terms["cls"].total.item() == 0.0 and terms["cls"].total.requires_grad
    from wsss.errors import UserError

    with pytest.raises(UserError, match="--spml-annotation"):
        make_loss("spml", {"annotation": "masks"})
    with pytest.raises(UserError, match="--kappa-img"):
        make_loss("spml", {"kappa_img": 0})


def test_kappa_beyond_the_exact_range_is_a_user_error():
    from wsss.errors import UserError
    with pytest.raises(UserError, match="--kappa-occ"):
        make_loss("spml", {"kappa_occ": MAX_KAPPA + 1})
