"""Network training: the generic loop (:mod:`wsss.training.engine`: restore or create a run, one epoch,
checkpoint; DDP, AMP, the poly schedule of :mod:`wsss.training.schedule`), the tasks it trains
(:mod:`wsss.training.segmentation` for ``wsss train``; :mod:`wsss.cam.training` for ``wsss cam train``),
the data pipeline (:mod:`wsss.training.data`) and the run directory (:mod:`wsss.training.run`).

``train(TrainConfig(out=RUN, seeds=SEEDS, loss="collision", ...)) -> RUN``; see
:mod:`wsss.training.segmentation` for the options and their sources.
"""

from wsss.training.engine import run_task
from wsss.training.run import RunDir, load_checkpoint, resolve_checkpoint
from wsss.training.schedule import PolyLR
from wsss.training.segmentation import SegmentationTask, TrainConfig, train
from wsss.training.task import TrainingTask

__all__ = ["PolyLR", "RunDir", "SegmentationTask", "TrainConfig", "TrainingTask", "load_checkpoint",
           "resolve_checkpoint", "run_task", "train"]
