"""Conversion of the loss weights tuned under the toolkit's earlier normalization.

Until 2026-12 every term of a network loss was a batch sum divided by one shared Z = valid pixels of the
batch. A weight tuned that way depends on the annotation density (pCE shrank with the seed count, so the
weights tuned on full scribbles were ≈ 13× too strong on clicks). Every term is now its own mean
(:mod:`wsss.losses.term`), and the tuned defaults were converted, not re-guessed: at the tuning run's mean
counts per batch the new weight gives the same loss up to one overall factor,

    old:  [Σ_S CE + w_old · Σ_t] / Z̄                  new:  Σ_S CE / n̄_S + w_new · Σ_t / D̄_t
    same ratio of the term to pCE  ⇒  w_new = w_old · D̄_t / n̄_S,     and the overall factor Z̄ / n̄_S is
    undone by the learning rate:   lr_new = lr_old · n̄_S / Z̄   (and weight decay wd_new = wd_old · Z̄ / n̄_S
    keeps lr · wd, the decay per SGD step),

with n̄_S the seed pixels, Z̄ the valid pixels and D̄_t what term t now averages over (valid NN4 pairs for
the grid CRF, images for the rloss family, unlabelled valid pixels for the self-labeling η-term).
The counts below were measured on the tuning runs' own ``wsss train`` data pipeline (same seeds, crop,
batch, scale range 0.5–2, flip, seed 0 and all epochs) by ``benchmarks/loss_counts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TuningCounts:
    """Mean counts per batch of a tuning run (``benchmarks/loss_counts.py``).

    Attributes:
        images, valid, seeds, unlabelled, nn4_pairs: images, valid pixels, labelled valid pixels,
            unlabelled valid pixels and NN4 pairs with both endpoints valid, per batch.
        what: the run, for the record.
    """

    images: float
    valid: float
    seeds: float
    unlabelled: float
    nn4_pairs: float
    what: str

    def per_pair(self, w_old: float) -> float:
        """A pair-mean term's weight: ``w_old · pairs / seeds``."""
        return w_old * self.nn4_pairs / self.seeds

    def per_image(self, w_old: float) -> float:
        """An image-mean (rloss-family) term's weight: ``w_old · images / seeds``."""
        return w_old * self.images / self.seeds

    def per_unlabelled(self, w_old: float) -> float:
        """An unlabelled-pixel-mean term's weight: ``w_old · unlabelled / seeds``."""
        return w_old * self.unlabelled / self.seeds

    def lr(self, lr_old: float) -> float:
        """The learning rate that undoes the loss's overall factor: ``lr_old · seeds / valid``."""
        return lr_old * self.seeds / self.valid


#: The demo-data tuning runs (docs/demo-results.md): 64 train images 96², `prepare-scribbles --width 1` of
#: every object (the earlier generator; 3.04 % of the pixels, 3.08 % of the valid crop pixels), batch 4,
#: crop 96, 30 epochs (480 batches).
DEMO_TUNING = TuningCounts(images=4.0, valid=31549.36, seeds=972.92, unlabelled=30576.44, nn4_pairs=62397.51,
                           what="demo data, 1-px scribbles of every object, batch 4, crop 96, 30 epochs")
#: The CamVid defaults search (docs/results.md, cpu budget): 367 train frames 240×180, 3-px scribbles of
#: every fragment (the earlier generator; 11.68 % of the pixels, 12.86 % of the valid crop pixels), batch 8
#: (7.978 images per batch on average: the last batch of an epoch holds 7), crop 128, 30 epochs (1380 batches).
CAMVID_TUNING = TuningCounts(images=7.978, valid=127964.98, seeds=16459.08, unlabelled=111505.90, nn4_pairs=253909.22,
                             what="CamVid train, 3-px scribbles of every fragment, batch 8, crop 128, 30 epochs")

__all__ = ["CAMVID_TUNING", "DEMO_TUNING", "TuningCounts"]
