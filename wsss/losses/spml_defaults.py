"""Defaults of ``wsss train --loss spml`` and their sources (torch-free, for ``--help``): Ke et al. 2021
(paper Tables 1 and 5) and its released code's training scripts; docs/methods.md §10.

The code scripts keep the paper's ratios of the relation weights up to a global factor (0.1 for points,
about 0.3 for boxes and tags), which acts as a lower learning rate; the scripts' values are the default.
"""

#: annotation types with their own relation weights and κ_occ
ANNOTATIONS = ("scribbles", "points", "boxes", "tags")
#: default annotation type
ANNOTATION = "scribbles"
#: where the default relation weights come from: the released code's scripts (default) or the paper
WEIGHT_SOURCES = ("code", "paper")
WEIGHT_SOURCE = "code"
#: relations of the loss, in the order of the weight tuples below
RELATIONS = ("img", "ann", "occ", "aff")

#: (w_img, w_ann, w_occ, w_aff) per annotation type [Ke et al. 2021: Tables 1 and 5]
PAPER_WEIGHTS = {
    "scribbles": (0.1, 1.0, 0.5, 0.0),
    "points": (1.0, 1.0, 1.0, 0.0),
    "boxes": (0.3, 1.0, 1.0, 0.0),
    "tags": (0.3, 1.0, 1.0, 0.0),
}
#: (w_img, w_ann, w_occ, w_aff) per annotation type [Ke et al. 2021, released code's training scripts]
CODE_WEIGHTS = {
    "scribbles": (0.1, 1.0, 0.5, 0.0),
    "points": (0.1, 0.1, 0.1, 0.0),
    "boxes": (0.1, 0.3, 0.3, 0.0),
    "tags": (0.1, 0.3, 0.3, 0.0),
}

#: concentration κ of each relation [Ke et al. 2021: Table 5, the same in its code]
KAPPA_IMG = 16.0
KAPPA_ANN = 6.0
#: κ_occ: 12 for scribbles, 8 for points, boxes and tags
KAPPA_OCC = {"scribbles": 12.0, "points": 8.0, "boxes": 8.0, "tags": 8.0}
#: κ_aff (the paper uses the relation for DensePose points only)
KAPPA_AFF = 12.0

#: previous batches whose segment prototypes the memory bank keeps for ann and occ [Ke et al. 2021: 2]
MEMORY_BATCHES = 2


def relation_weights(annotation: str, source: str) -> tuple[float, float, float, float]:
    """``(w_img, w_ann, w_occ, w_aff)`` of an annotation type from ``code`` or ``paper``."""
    table = CODE_WEIGHTS if source == "code" else PAPER_WEIGHTS
    return table[annotation]


def describe_weights(source: str) -> str:
    """``scribbles 0.1/1/0.5/0, points ...`` for ``--help``."""
    table = CODE_WEIGHTS if source == "code" else PAPER_WEIGHTS
    return ", ".join(f"{a} " + "/".join(f"{w:g}" for w in table[a]) for a in ANNOTATIONS)
