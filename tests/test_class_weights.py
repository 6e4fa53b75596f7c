"""Median frequency class weights (wsss.losses.class_weights) and the weighted CE term of ``full``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.constants import IGNORE_INDEX
from wsss.losses.class_weights import class_pixel_counts, median_frequency_weights
from wsss.losses.partial_ce import weighted_ce_term
from wsss.losses.registry import LossBatch, make_loss
from wsss.errors import UserError


def _masks(rng, n=5, k=4):
    masks = []
    for _ in range(n):
        m = rng.integers(0, k - 1, size=(7, 9)).astype(np.uint8)  # class k-1 never appears
        m[rng.random(m.shape) < 0.2] = IGNORE_INDEX
        masks.append(m)
    masks[0][:] = 0  # an image with one class only
    return masks


def test_median_frequency_against_a_direct_count():
    rng = np.random.default_rng(0)
    k = 4
    masks = _masks(rng, k=k)
    pixels, image_pixels = class_pixel_counts(masks, k)
    for c in range(k):  # brute force: per class, per image
        assert pixels[c] == sum(int((m == c).sum()) for m in masks)
        assert image_pixels[c] == sum(int((m != IGNORE_INDEX).sum()) for m in masks if (m == c).any())
    w = median_frequency_weights(pixels, image_pixels)
    freq = [pixels[c] / image_pixels[c] for c in range(k - 1)]
    med = float(np.median(freq))
    np.testing.assert_allclose(w[: k - 1], [med / f for f in freq], rtol=1e-12)
    assert w[k - 1] == 0.0
    with pytest.raises(ValueError):
        class_pixel_counts([np.full((2, 2), 7, np.uint8)], k)


def test_weighted_ce_term_is_the_weighted_mean_of_a_pixel_loop():
    torch.manual_seed(0)
    b, k, h, w = 2, 3, 4, 5
    logits = torch.randn(b, k, h, w, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, k, (b, h, w))
    labels[0, 0, :3] = IGNORE_INDEX
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[1, -1] = False
    weight = torch.tensor([0.5, 2.0, 1.25])
    term = weighted_ce_term(logits, labels, valid, weight)
    num = den = 0.0
    logp = torch.log_softmax(logits.detach(), 1)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                c = int(labels[i, y, x])
                if c == IGNORE_INDEX or not valid[i, y, x]:
                    continue
                num += float(weight[c]) * -float(logp[i, c, y, x])
                den += float(weight[c])
    assert float(term.count) == pytest.approx(den)
    assert float(term.total) / float(term.count) == pytest.approx(num / den, rel=1e-6)
    ref = F.cross_entropy(logits.float(), labels.masked_fill(~valid, IGNORE_INDEX), weight=weight, ignore_index=IGNORE_INDEX)
    assert float(term.total / term.count) == pytest.approx(float(ref), rel=1e-5)


class _Targets:
    def __init__(self, masks):
        self.ids = [str(i) for i in range(len(masks))]
        self._masks = masks
        ds = self

        class _DS:
            num_classes = 4

            def load_mask(self, image_id, shape=None):
                return ds._masks[int(image_id)]

        self.dataset = _DS()


def test_full_with_median_frequency_weights():
    rng = np.random.default_rng(1)
    masks = _masks(rng)
    loss = make_loss("full", {"class_weights": "median-frequency"})
    loss.prepare(_Targets(masks))
    expected = median_frequency_weights(*class_pixel_counts(masks, 4))
    np.testing.assert_allclose(loss.weight.numpy(), expected, rtol=1e-6)
    assert loss.options()["class_weights"] == "median-frequency" and len(loss.options()["class_weight_values"]) == 4
    labels = torch.as_tensor(np.stack(masks[:2]).astype(np.int64))
    logits = torch.randn(2, 4, 7, 9)
    batch = LossBatch(image=torch.zeros(2, 3, 7, 9), labels=labels, valid=torch.ones(2, 7, 9, dtype=torch.bool))
    got = loss.terms(logits, batch)["ce"]
    ref = weighted_ce_term(logits, labels, batch.valid, loss.weight)
    assert torch.equal(got.total, ref.total) and torch.equal(got.count, ref.count)
    plain = make_loss("full")
    plain.prepare(_Targets(masks))
    assert plain.weight is None and plain.options() == {"class_weights": "none"}
    with pytest.raises(UserError):
        make_loss("full", {"class_weights": "inverse"})
