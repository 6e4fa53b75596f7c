#!/usr/bin/env bash
# The main job, end to end on the built-in demo data (CPU, a few minutes):
#
#   demo-data → prepare-scribbles → train --loss collision (soft self-labeling, after pCE-only
#   warm-up epochs) → predict → solve (pseudo-labels on train) → crf → eval (+ tables) → show
#
#   examples/demo-pipeline.sh OUT          # OUT receives every artifact, run and table
#
# Budget knobs (environment): EPOCHS (default 12), TRAIN / VAL images (32 / 16), CROP (96),
# BATCH (4), BACKBONE (efficientnet_lite0, wsss train's default: ImageNet weights from the package, offline),
# WEIGHTS (packaged), WIDTH (width multiplier of mobilenet_v2 only, 1.0), LR (2e-3) and WD (5e-4, rloss's):
# chosen on the demo val set for the pretrained backbone (docs/demo-results.md, "Main job"),
# SOLVER_STEPS (20, wsss train's default).
# Everything is seeded (--seed 0): a rerun gives the same numbers; a rerun in the same OUT skips
# finished steps.
set -euo pipefail
# one torch thread per process: on a busy machine, more threads than free cores make the small
# per-image solves and predictions many times slower (measured 38× for `wsss solve` here)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

OUT=${1:?usage: examples/demo-pipeline.sh OUT_DIR}
EPOCHS=${EPOCHS:-12}
TRAIN=${TRAIN:-32}
VAL=${VAL:-16}
CROP=${CROP:-96}
BATCH=${BATCH:-4}
BACKBONE=${BACKBONE:-efficientnet_lite0}
WEIGHTS=${WEIGHTS:-packaged}
WIDTH=${WIDTH:-1.0}
LR=${LR:-2e-3}
WD=${WD:-5e-4}
SOLVER_STEPS=${SOLVER_STEPS:-20}
WSSS=${WSSS:-wsss}
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. demo data ($TRAIN train / $VAL val images)"
[ -d "$OUT/demo" ] || $WSSS demo-data "$OUT/demo" --train "$TRAIN" --val "$VAL" --seed 0

step "2. scribbles generated from the train masks"
# one scribble per object of at least 0.2 % of the image, 1 px on 96² images (prepare-scribbles' defaults):
# ≈ 3 % of the pixels, as ScribbleSup's human scribbles on VOC
[ -f "$OUT/seeds.h5" ] || $WSSS prepare-scribbles "$OUT/demo" "$OUT/seeds.h5" --split train --seed 0

step "3. train DeepLabV3+ ($BACKBONE, weights $WEIGHTS) with soft self-labeling (--loss collision)"
run="$OUT/run-collision"
if [ ! -f "$run/checkpoints/epoch-$(printf %03d "$EPOCHS").pt" ]; then
  resume=""; [ -f "$run/last.pt" ] && resume="--resume"
  $WSSS train --out "$run" --loss collision --seeds "$OUT/seeds.h5" --epochs "$EPOCHS" \
    --batch-size "$BATCH" --crop-size "$CROP" --backbone "$BACKBONE" --weights "$WEIGHTS" --width-mult "$WIDTH" \
    --lr "$LR" --weight-decay "$WD" --solver-steps "$SOLVER_STEPS" --seed 0 --log-every 50 $resume
fi

step "4. predict on val and on train"
[ -f "$OUT/pred-val.h5" ] || $WSSS predict "$run" --data "$OUT/demo" --split val --out "$OUT/pred-val.h5"
[ -f "$OUT/pred-train.h5" ] || $WSSS predict "$run" --data "$OUT/demo" --split train --out "$OUT/pred-train.h5"

step "5. solve: soft pseudo-labels on train from the network and the scribbles"
[ -f "$OUT/pseudo-train.h5" ] || $WSSS solve "$OUT/seeds.h5" --predictions "$OUT/pred-train.h5" --out "$OUT/pseudo-train.h5"

step "6. DenseCRF post-processing of the val predictions"
[ -f "$OUT/pred-val-crf.h5" ] || $WSSS crf "$OUT/pred-val.h5" --out "$OUT/pred-val-crf.h5" --workers 2

step "7. evaluation"
$WSSS eval "$OUT/seeds.h5" --out "$OUT/seeds.metrics.json"
if [ -f "$OUT/pseudo-train.h5" ]; then
  $WSSS eval "$OUT/pseudo-train.h5" --seeds "$OUT/seeds.h5" --out "$OUT/pseudo-train.metrics.json"
fi
$WSSS eval "$OUT/pred-val-crf.h5" --out "$OUT/pred-val-crf.metrics.json"
$WSSS eval "$OUT/pred-val.h5" --out "$OUT/pred-val.metrics.json"

step "8. overlays"
$WSSS show "$OUT/pred-val.h5" "$OUT/pred-val-crf.h5" -o "$OUT/overlays" --limit 4
echo "overlays in $OUT/overlays; artifacts and metrics in $OUT"
