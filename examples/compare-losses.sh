#!/usr/bin/env bash
# Train the same network with pce, gridcrf, densecrf, collision (soft self-labeling) and full
# supervision on the same demo data, scribbles and budget, then print one mIoU table (val split).
#
#   examples/compare-losses.sh OUT            # ~CPU minutes; OUT gets demo/, seeds.h5, runs/, preds/
#
# Budget knobs (environment): EPOCHS (default 8), BATCH (4), CROP (96), TRAIN (32), VAL (16),
# BACKBONE (mobilenet_v2), WIDTH (0.5), WEIGHTS (a torchvision state dict; default: random init),
# SOLVER_STEPS (collision solver steps per batch; default 50 to keep the CPU budget, paper: 200),
# LR (0.02: random-init backbone on tiny data; the paper's 0.0007 assumes ImageNet weights and
# 60 epochs of VOC), WARMUP (pCE-only epochs of collision; default EPOCHS/4).
# Every run starts from the same seed, so only the loss differs.
set -euo pipefail

OUT=${1:?usage: examples/compare-losses.sh OUT_DIR}
EPOCHS=${EPOCHS:-8}
BATCH=${BATCH:-4}
CROP=${CROP:-96}
TRAIN=${TRAIN:-32}
VAL=${VAL:-16}
BACKBONE=${BACKBONE:-mobilenet_v2}
WIDTH=${WIDTH:-0.5}
SOLVER_STEPS=${SOLVER_STEPS:-50}
LR=${LR:-0.02}
WARMUP=${WARMUP:-$((EPOCHS / 4))}
WSSS=${WSSS:-wsss}

mkdir -p "$OUT/runs" "$OUT/preds"
[ -d "$OUT/demo" ] || $WSSS demo-data "$OUT/demo" --train "$TRAIN" --val "$VAL"
[ -f "$OUT/seeds.h5" ] || $WSSS prepare-scribbles "$OUT/demo" "$OUT/seeds.h5" --split train

common=(--seeds "$OUT/seeds.h5" --epochs "$EPOCHS" --batch-size "$BATCH" --crop-size "$CROP"
        --backbone "$BACKBONE" --width-mult "$WIDTH" --lr "$LR" --seed 0 --log-every 50)
if [ -n "${WEIGHTS:-}" ]; then common+=(--weights "$WEIGHTS"); fi

declare -A extra=(
  [pce]=""
  [gridcrf]=""
  [densecrf]=""
  [collision]="--solver-steps $SOLVER_STEPS --warmup-epochs $WARMUP"
  [full]="--data $OUT/demo --split train"
)
losses=(pce gridcrf densecrf collision full)

for loss in "${losses[@]}"; do
  run="$OUT/runs/$loss"
  if [ ! -f "$run/checkpoints/epoch-$(printf %03d "$EPOCHS").pt" ]; then
    resume=""
    [ -f "$run/last.pt" ] && resume="--resume"
    # shellcheck disable=SC2086
    $WSSS train --out "$run" --loss "$loss" "${common[@]}" ${extra[$loss]} $resume
  fi
  [ -f "$OUT/preds/$loss.h5" ] || $WSSS predict "$run" --data "$OUT/demo" --split val --out "$OUT/preds/$loss.h5"
done

python_bin=${PYTHON:-python}
if $WSSS eval --help >/dev/null 2>&1; then
  for loss in "${losses[@]}"; do
    $WSSS eval "$OUT/preds/$loss.h5" --out "$OUT/preds/$loss.metrics.json" >/dev/null
  done
  "$python_bin" - "$OUT" "${losses[@]}" <<'EOF'
import json, sys
out, losses = sys.argv[1], sys.argv[2:]
print(f"{'loss':<10} {'val mIoU':>9} {'J&F':>7} {'train s':>8}")
for loss in losses:
    m = json.load(open(f"{out}/preds/{loss}.metrics.json"))
    epochs = [json.loads(l) for l in open(f"{out}/runs/{loss}/metrics.jsonl") if '"epoch"' in l]
    seconds = sum(e.get("seconds", 0.0) for e in epochs if e.get("kind") == "epoch")
    jf = m.get("jf")
    print(f"{loss:<10} {100 * m['miou']:9.2f} {100 * jf if jf is not None else float('nan'):7.2f} {seconds:8.0f}")
EOF
else
  "$python_bin" - "$OUT" "${losses[@]}" <<'EOF'
import sys
import numpy as np
from wsss.artifacts import Artifact
from wsss.data import open_recorded_dataset
from wsss.training.validate import confusion, miou
import torch
out, losses = sys.argv[1], sys.argv[2:]
print(f"{'loss':<10} {'val mIoU':>9}")
for loss in losses:
    art = Artifact(f"{out}/preds/{loss}.h5", "predictions")
    ds = open_recorded_dataset(art.dataset)
    conf = sum(confusion(torch.from_numpy(art.read(i, "label")), torch.from_numpy(ds.load_mask(i)), ds.num_classes) for i in art.ids)
    print(f"{loss:<10} {100 * miou(conf)[0]:9.2f}")
EOF
fi
