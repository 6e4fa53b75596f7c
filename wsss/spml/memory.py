"""The segment memory bank of SPML (Ke et al. 2021; docs/methods.md §10): the prototypes of the segments of
the previous ``batches`` training batches (2 in the SPML code), with their seed labels and the tags of their
images, detached. The relations ``ann`` and ``occ`` contrast each pixel with the segments of its batch and
of the bank; nothing back-propagates into the bank.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import Tensor


class SegmentMemory:
    """First-in first-out store of the last ``batches`` batches' segments.

    :meth:`push` adds one batch's ``prototypes`` (``S×d`` float), ``labels`` (``S`` int64, 255 =
    unlabelled) and ``tags`` (``S×K`` bool, the tags of each segment's image), detached copies; once
    ``batches`` entries are held, the oldest is dropped. :meth:`contents` concatenates them oldest first.
    """

    def __init__(self, batches: int = 2):
        if batches < 0:
            raise ValueError(f"memory bank of {batches} batches")
        self.batches = int(batches)
        self.entries: deque[tuple[Tensor, Tensor, Tensor]] = deque(maxlen=max(self.batches, 1))

    def __len__(self) -> int:
        return len(self.entries) if self.batches else 0

    def push(self, prototypes: Tensor, labels: Tensor, tags: Tensor) -> None:
        """Store one batch (detached clones; shapes ``S×d``, ``S``, ``S×K``)."""
        if self.batches == 0:
            return
        if not (prototypes.shape[0] == labels.shape[0] == tags.shape[0]):
            raise ValueError(f"memory entry of {prototypes.shape[0]} prototypes, {labels.shape[0]} labels, "
                             f"{tags.shape[0]} tag rows")
        self.entries.append((prototypes.detach().clone(), labels.detach().clone(), tags.detach().bool().clone()))

    def contents(self, dim: int, num_classes: int, device: torch.device | str,
                 dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
        """``(prototypes M×dim, labels M int64, tags M×num_classes bool)`` of every stored segment on
        ``device`` (``M = 0`` when empty), no gradient."""
        if len(self) == 0:
            return (torch.zeros(0, dim, device=device, dtype=dtype), torch.zeros(0, dtype=torch.int64, device=device),
                    torch.zeros(0, num_classes, dtype=torch.bool, device=device))
        protos, labels, tags = zip(*self.entries)
        return (torch.cat(protos).to(device=device, dtype=dtype), torch.cat(labels).to(device),
                torch.cat(tags).to(device))

    def state_dict(self) -> dict[str, Any]:
        """CPU tensors of the stored batches (for checkpoints: ``--resume`` continues with the same bank)."""
        return {"batches": self.batches, "entries": [tuple(t.cpu() for t in e) for e in self.entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries.clear()
        for protos, labels, tags in state.get("entries", [])[-max(self.batches, 1):]:
            if self.batches:
                self.entries.append((protos, labels, tags))


__all__ = ["SegmentMemory"]
