"""Network losses: partial cross-entropy, DenseCRF / normalized cut / kernel cut, grid CRF, self-labeling, …

Each loss returns its terms as :class:`~wsss.losses.term.Term` s (a weighted batch sum and the count it is
averaged over); the training loop adds the terms' means over the global batch
(:func:`~wsss.losses.term.reduce_terms`; docs/methods.md §2). Defaults and their conversion from the
earlier shared-normalizer rule: :mod:`wsss.losses.defaults`, :mod:`wsss.losses.conversion`.
"""
