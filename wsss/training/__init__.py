"""Network training: data pipeline (augmentation + validity mask), loop (DDP, AMP, poly lr),
run directory with checkpoints and metrics, resume.

``train(TrainConfig(out=RUN, seeds=SEEDS, loss="collision", ...)) -> RUN``; see
:mod:`wsss.training.loop` for the options and their sources.
"""

from wsss.training.loop import SegmentationTask, TrainConfig, run_task, train
from wsss.training.run import RunDir, load_checkpoint, resolve_checkpoint
from wsss.training.task import TrainingTask

__all__ = ["RunDir", "SegmentationTask", "TrainConfig", "TrainingTask", "load_checkpoint", "resolve_checkpoint", "run_task",
           "train"]
