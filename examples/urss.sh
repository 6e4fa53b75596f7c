#!/usr/bin/env bash
# URSS (Pan et al., ICCV 2021) end to end on the built-in demo data (CPU):
#
#   demo-data → prepare-scribbles (full scribbles, and a shrunk + dropped variant) → superpixels
#   (pseudo-boundaries) → train --loss urss phase 1 (pCE + ω₁·entropy) → phase 2 from the phase-1 weights
#   (+ ω₂·eigenspace) → predict → eval, for each variant, ending with the table of both phases
#
#   examples/urss.sh OUT        # OUT receives every artifact, run and metrics file
#
# Budget knobs (environment): EPOCHS1 / EPOCHS2 (epochs per phase, 30 / 15), TRAIN / VAL images (64 / 32,
# the demo-data defaults), CROP (96), BATCH (4), WIDTH (MobileNetV2 width multiplier, 0.5), LR1 / LR2
# (3e-2 / 3e-3, poly: a random-initialised MobileNetV2 barely moves at the URSS code's 1e-3 / 1e-4 in this
# budget; phase 2 at a tenth of phase 1, as the code), LR_POLICY (poly, wsss train's default; constant is
# the released code's), VARIANTS ("scribbles shrunk": full scribbles, and scribble-shrink 0.5 +
# scribble-drop 0.2 per object; docs/methods.md §9), AUG ("": extra flags such as "--rotate 10 --blur",
# the URSS code's augmentations, off by default).
# Defaults of the URSS terms are wsss train's (ω₁ 1, ω₂ 30, γ 0.01; docs/methods.md §9). Prediction is single
# scale: the URSS code's multi-scale sliding windows (wsss predict --scales 0.5,0.75,1,1.25,1.5,1.75,2
# --long-side 512 --window 465) are made for 465 px training crops, not for 96 px demo images.
# Everything is seeded (--seed 0); a rerun in the same OUT skips finished steps and resumes an interrupted run.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

OUT=${1:?usage: examples/urss.sh OUT_DIR}
EPOCHS1=${EPOCHS1:-30}
EPOCHS2=${EPOCHS2:-15}
TRAIN=${TRAIN:-64}
VAL=${VAL:-32}
CROP=${CROP:-96}
BATCH=${BATCH:-4}
WIDTH=${WIDTH:-0.5}
LR1=${LR1:-3e-2}
LR2=${LR2:-3e-3}
LR_POLICY=${LR_POLICY:-poly}
VARIANTS=${VARIANTS:-scribbles shrunk}
AUG=${AUG:-}
WSSS=${WSSS:-wsss}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# train OUT_RUN EPOCHS ARGS...: start the run, or resume it when interrupted, unless it is finished
train() {
  local run=$1 epochs=$2
  shift 2
  [ -f "$run/checkpoints/epoch-$(printf %03d "$epochs").pt" ] && return 0
  local resume=()
  [ -f "$run/last.pt" ] && resume=(--resume)
  # shellcheck disable=SC2086
  $WSSS train --out "$run" --epochs "$epochs" "$@" $AUG "${resume[@]}"
}

step "1. demo data ($TRAIN train / $VAL val images)"
[ -d "$OUT/demo" ] || $WSSS demo-data "$OUT/demo" --train "$TRAIN" --val "$VAL" --seed 0

step "2. SLIC superpixels of the train images (their boundaries are URSS's pseudo-boundaries)"
[ -f "$OUT/superpixels.h5" ] || $WSSS superpixels "$OUT/demo" "$OUT/superpixels.h5" --split train

for variant in $VARIANTS; do
  case $variant in
    scribbles) extra=() ;;
    shrunk) extra=(--shrink-rate 0.5 --drop-rate 0.2) ;;
    *) echo "VARIANTS: unknown variant '$variant' (scribbles, shrunk)" >&2; exit 2 ;;
  esac
  step "3. $variant: seeds from the train masks ${extra[*]}"
  seeds="$OUT/$variant/seeds.h5"
  mkdir -p "$OUT/$variant"
  [ -f "$seeds" ] || $WSSS prepare-scribbles "$OUT/demo" "$seeds" --split train --seed 0 "${extra[@]}"
  common=(--loss urss --seeds "$seeds" --superpixels "$OUT/superpixels.h5" --batch-size "$BATCH"
          --crop-size "$CROP" --backbone mobilenet_v2 --width-mult "$WIDTH" --lr-policy "$LR_POLICY"
          --seed 0 --log-every 50)

  step "4. $variant, phase 1: pCE + ω₁·soft entropy off the pseudo-boundaries"
  train "$OUT/$variant/run-urss1" "$EPOCHS1" "${common[@]}" --lr "$LR1"

  step "5. $variant, phase 2: from the phase-1 weights, + ω₂·eigenspace self-supervision"
  train "$OUT/$variant/run-urss2" "$EPOCHS2" "${common[@]}" --lr "$LR2" --urss-phase 2 --init-from "$OUT/$variant/run-urss1"

  step "6. $variant: predict on val and evaluate both phases"
  for phase in 1 2; do
    pred="$OUT/$variant/pred-val-$phase.h5"
    [ -f "$pred" ] || $WSSS predict "$OUT/$variant/run-urss$phase" --data "$OUT/demo" --split val --out "$pred"
    [ -f "${pred%.h5}.metrics.json" ] || $WSSS eval "$pred" --out "${pred%.h5}.metrics.json" >/dev/null
  done
done

step "7. val metrics (%) and training loss (first → last epoch mean)"
# shellcheck disable=SC2086
"$PYTHON" - "$OUT" $VARIANTS <<'EOF'
import json, sys
out, variants = sys.argv[1], sys.argv[2:]
pct = lambda v: f"{100 * v:7.2f}" if v is not None else f"{'n/a':>7}"
print(f"{'seeds':<10} {'phase':<6} {'mIoU':>7} {'pix acc':>7} {'F':>7} {'J&F':>7} {'loss first→last':>17} {'train s':>8}")
for variant in variants:
    for phase in (1, 2):
        m = json.load(open(f"{out}/{variant}/pred-val-{phase}.metrics.json"))
        lines = [json.loads(line) for line in open(f"{out}/{variant}/run-urss{phase}/metrics.jsonl")]
        epochs = [r for r in lines if r.get("kind") == "epoch"]
        seconds = sum(e.get("seconds", 0.0) for e in epochs)
        curve = f"{epochs[0]['loss']:.3f} → {epochs[-1]['loss']:.3f}"
        print(f"{variant:<10} {phase:<6} {pct(m['miou'])} {pct(m['pixel_accuracy'])} {pct(m.get('f'))} "
              f"{pct(m.get('jf'))} {curve:>17} {seconds:8.0f}")
EOF
