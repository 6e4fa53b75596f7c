#!/usr/bin/env bash
# URSS (Pan et al., ICCV 2021) end to end on the built-in demo data (CPU):
#
#   demo-data → prepare-scribbles → superpixels (pseudo-boundaries) → train --loss urss phase 1
#   (pCE + ω₁·entropy) → phase 2 from the phase-1 weights (+ ω₂·eigenspace) → predict → eval
#
#   examples/urss.sh OUT        # OUT receives every artifact, run and metrics file
#
# Budget knobs (environment): EPOCHS1 / EPOCHS2 (epochs per phase, 4 / 2), TRAIN / VAL images (32 / 16),
# CROP (96), BATCH (4), WIDTH (MobileNetV2 width multiplier, 0.5), LR1 / LR2 (1e-3 / 1e-4, the URSS code's
# effective rates) with LR_POLICY (constant, as the released code runs; poly is wsss train's default).
# Defaults of the URSS terms are wsss train's (ω₁ 1, ω₂ 30, γ 0.01; docs/methods.md, URSS).
# Everything is seeded (--seed 0); a rerun in the same OUT skips finished steps.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

OUT=${1:?usage: examples/urss.sh OUT_DIR}
EPOCHS1=${EPOCHS1:-4}
EPOCHS2=${EPOCHS2:-2}
TRAIN=${TRAIN:-32}
VAL=${VAL:-16}
CROP=${CROP:-96}
BATCH=${BATCH:-4}
WIDTH=${WIDTH:-0.5}
LR1=${LR1:-1e-3}
LR2=${LR2:-1e-4}
LR_POLICY=${LR_POLICY:-constant}
WSSS=${WSSS:-wsss}
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
common=(--loss urss --seeds "$OUT/seeds.h5" --superpixels "$OUT/superpixels.h5" --batch-size "$BATCH"
        --crop-size "$CROP" --backbone mobilenet_v2 --width-mult "$WIDTH" --lr-policy "$LR_POLICY"
        --seed 0 --log-every 50)

step "1. demo data ($TRAIN train / $VAL val images)"
[ -d "$OUT/demo" ] || $WSSS demo-data "$OUT/demo" --train "$TRAIN" --val "$VAL" --seed 0

step "2. scribbles generated from the train masks"
[ -f "$OUT/seeds.h5" ] || $WSSS prepare-scribbles "$OUT/demo" "$OUT/seeds.h5" --split train --seed 0

step "3. SLIC superpixels of the train images (their boundaries are URSS's pseudo-boundaries)"
[ -f "$OUT/superpixels.h5" ] || $WSSS superpixels "$OUT/demo" "$OUT/superpixels.h5" --split train

step "4. phase 1: pCE + ω₁·soft entropy off the pseudo-boundaries"
[ -f "$OUT/run-urss1/last.pt" ] || $WSSS train --out "$OUT/run-urss1" "${common[@]}" --epochs "$EPOCHS1" --lr "$LR1"

step "5. phase 2: from the phase-1 weights, + ω₂·eigenspace self-supervision"
[ -f "$OUT/run-urss2/last.pt" ] || $WSSS train --out "$OUT/run-urss2" "${common[@]}" --epochs "$EPOCHS2" --lr "$LR2" \
  --urss-phase 2 --init-from "$OUT/run-urss1"

step "6. predict on val and evaluate both phases"
for phase in 1 2; do
  [ -f "$OUT/pred-val-$phase.h5" ] || $WSSS predict "$OUT/run-urss$phase" --data "$OUT/demo" --split val --out "$OUT/pred-val-$phase.h5"
  [ -f "$OUT/pred-val-$phase.metrics.json" ] || $WSSS eval "$OUT/pred-val-$phase.h5" --out "$OUT/pred-val-$phase.metrics.json"
done
echo "phase 1 / phase 2 val metrics: $OUT/pred-val-1.metrics.json, $OUT/pred-val-2.metrics.json"
