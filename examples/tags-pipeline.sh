#!/usr/bin/env bash
# Image tags → CAMs → seeds → segmentation, end to end on the built-in demo data (CPU, minutes):
#
#   demo-data → prepare-tags → cam train (binomial ISL+FSL) → cam export → eval (CAM sweep)
#   → cam seeds → eval (seeds) → train --loss collision on the CAM seeds → predict val → eval → table
#
#   examples/tags-pipeline.sh OUT             # OUT receives every artifact, run and table
#   ABLATION=1 examples/tags-pipeline.sh OUT  # also GAP / +ISL / +FSL / +ISL+FSL × binomial / multinomial
#
# Budget knobs (environment): TRAIN / VAL images (64 / 32), CAM_EPOCHS (20), CAM_LR (0.05),
# CAM_BATCH (8), CAM_CROP (96), CAM_WIDTH (MobileNetV2 width for the classifier, 0.5), SEG_EPOCHS (8),
# SEG_LR (0.02), SEG_WIDTH (0.5), SOLVER_STEPS (30), RULE (affinity), WEIGHTS (a torchvision
# MobileNetV2 state dict for both networks; default random init — nothing is downloaded).
# Small-budget deviations from docs/methods.md §6 (448 crops, 8 epochs, lr 0.01, ImageNet ResNet-50) are forced
# by the CPU budget and the random init; they are passed explicitly below. Seeded: reruns give the
# same numbers, and a rerun in the same OUT skips finished steps.
set -euo pipefail

OUT=${1:?usage: examples/tags-pipeline.sh OUT_DIR}
TRAIN=${TRAIN:-64}
VAL=${VAL:-32}
CAM_EPOCHS=${CAM_EPOCHS:-20}
CAM_LR=${CAM_LR:-0.05}
CAM_BATCH=${CAM_BATCH:-8}
CAM_CROP=${CAM_CROP:-96}
CAM_WIDTH=${CAM_WIDTH:-0.5}
SEG_EPOCHS=${SEG_EPOCHS:-8}
SEG_LR=${SEG_LR:-0.02}
SEG_WIDTH=${SEG_WIDTH:-0.5}
SOLVER_STEPS=${SOLVER_STEPS:-30}
RULE=${RULE:-affinity}
WSSS=${WSSS:-wsss}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT/cams"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
weights=()
if [ -n "${WEIGHTS:-}" ]; then weights=(--weights "$WEIGHTS"); fi

step "1. demo data ($TRAIN train / $VAL val images) and image tags from the train masks"
[ -d "$OUT/demo" ] || $WSSS demo-data "$OUT/demo" --train "$TRAIN" --val "$VAL" --seed 0
[ -f "$OUT/tags.h5" ] || $WSSS prepare-tags "$OUT/demo" "$OUT/tags.h5" --split train

# cam_run NAME [cam train options...]: train (resumable), export, evaluate the CAMs on train
cam_run() {
  local name=$1; shift
  local run="$OUT/cams/run-$name"
  if [ ! -f "$run/checkpoints/epoch-$(printf %03d "$CAM_EPOCHS").pt" ]; then
    local resume=(); [ -f "$run/last.pt" ] && resume=(--resume)
    $WSSS cam train --out "$run" --tags "$OUT/tags.h5" --backbone mobilenet_v2 --width-mult "$CAM_WIDTH" \
      --epochs "$CAM_EPOCHS" --batch-size "$CAM_BATCH" --lr "$CAM_LR" --crop-size "$CAM_CROP" \
      --resize-long "$CAM_CROP" "$((CAM_CROP * 3 / 2))" --seed 1 --log-every 50 "${weights[@]}" "$@" "${resume[@]}"
  fi
  [ -f "$OUT/cams/$name.h5" ] || $WSSS cam export "$run" --out "$OUT/cams/$name.h5" --workers 2
  [ -f "$OUT/cams/$name.metrics.json" ] || $WSSS eval "$OUT/cams/$name.h5" --out "$OUT/cams/$name.metrics.json" > /dev/null
}

step "2. CAM classifier: binomial posterior, ISL + FSL (docs/methods.md §6 defaults for the losses)"
cam_run binomial-isl-fsl --posterior binomial

if [ -n "${ABLATION:-}" ]; then
  step "2b. ablation: GAP, +ISL, +FSL, +ISL+FSL × binomial / multinomial (same budget and seed)"
  for posterior in binomial multinomial; do
    cam_run "$posterior-gap" --posterior "$posterior" --no-isl --no-fsl
    cam_run "$posterior-isl" --posterior "$posterior" --no-fsl
    cam_run "$posterior-fsl" --posterior "$posterior" --no-isl
    [ "$posterior" = binomial ] || cam_run "$posterior-isl-fsl" --posterior "$posterior"
  done
fi

step "3. CAM → seeds (rule $RULE) and their quality"
[ -f "$OUT/cam-seeds.h5" ] || $WSSS cam seeds "$OUT/cams/binomial-isl-fsl.h5" --out "$OUT/cam-seeds.h5" --rule "$RULE" --workers 2
$WSSS eval "$OUT/cam-seeds.h5" --out "$OUT/cam-seeds.metrics.json" > /dev/null

step "4. segmentation network on the CAM seeds (--loss collision)"
run="$OUT/run-collision"
if [ ! -f "$run/checkpoints/epoch-$(printf %03d "$SEG_EPOCHS").pt" ]; then
  resume=(); [ -f "$run/last.pt" ] && resume=(--resume)
  $WSSS train --out "$run" --loss collision --seeds "$OUT/cam-seeds.h5" --epochs "$SEG_EPOCHS" --batch-size 4 \
    --crop-size 96 --backbone mobilenet_v2 --width-mult "$SEG_WIDTH" --lr "$SEG_LR" --solver-steps "$SOLVER_STEPS" \
    --seed 0 --log-every 50 "${weights[@]}" "${resume[@]}"
fi
[ -f "$OUT/pred-val.h5" ] || $WSSS predict "$run" --data "$OUT/demo" --split val --out "$OUT/pred-val.h5"
$WSSS eval "$OUT/pred-val.h5" --out "$OUT/pred-val.metrics.json" > /dev/null

step "5. results"
"$PYTHON" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(p):
    return json.load(open(p)) if os.path.exists(p) else None
print("CAM pseudo-labels on train (J = mIoU %; best background threshold of the sweep; J at t = 0.25)")
print(f"{'run':<22} {'best J':>7} {'best t':>7} {'J@0.25':>7} {'F@0.25':>7}")
names = ["binomial-gap", "binomial-isl", "binomial-fsl", "binomial-isl-fsl",
         "multinomial-gap", "multinomial-isl", "multinomial-fsl", "multinomial-isl-fsl"]
for name in names:
    m = load(f"{out}/cams/{name}.metrics.json")
    if m is None:
        continue
    s = m["cam"]["sweep"]
    print(f"{name:<22} {100 * s['best_j']:7.2f} {s['best_threshold']:7.2f} {100 * m['miou']:7.2f} {100 * (m['f'] or 0):7.2f}")
s = load(f"{out}/cam-seeds.metrics.json")
p = load(f"{out}/pred-val.metrics.json")
print()
print(f"CAM seeds (train): precision {100 * s['seed_precision']:.2f} %, coverage {100 * s['coverage']:.2f} %, "
      f"mIoU on labelled pixels {100 * s['miou']:.2f} %")
print(f"tags pipeline, collision on CAM seeds, val: mIoU {100 * p['miou']:.2f} %, J&F {100 * (p['jf'] or 0):.2f} %")
EOF
