#!/usr/bin/env bash
# SPML (Ke et al., ICLR 2021) end to end on the built-in demo data (CPU, minutes), per annotation type:
#
#   demo-data → seeds (scribbles, clicks; tags → CAM seeds with TAGS=1) → superpixels (the low-level regions)
#   → train --loss spml (embedding + initial classifier) → spml-labels (random-walk pseudo-labels + DenseCRF)
#   → train --loss pseudo --init-from (final classifier on the frozen embedding) → predict val → eval → table
#
#   examples/spml.sh OUT           # OUT receives every artifact, run and metrics file
#   TAGS=1 examples/spml.sh OUT    # also image tags, through CAM seeds (wsss cam train / export / seeds)
#
# Budget knobs (environment): TRAIN / VAL images (32 / 16), EPOCHS (SPML embedding, 8), FINAL_EPOCHS (final
# classifier, 24: with 4 it does not fit its pseudo-labels at this budget), CROP (96), BATCH (4), BACKBONE (efficientnet_lite0: its ImageNet weights ship with its pip
# package, so nothing is downloaded), LR (3e-3, the SPML code's), DIM (embedding dimension, 64), GRID
# (k-means grid side, 6), CAM_EPOCHS (20). The SPML code trains 30 000 iterations of 16 crops of 512²
# (final classifier: 4000); the demo budget is far below that. Everything is seeded (--seed 0); a rerun
# in the same OUT skips finished steps.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

OUT=${1:?usage: examples/spml.sh OUT_DIR}
TRAIN=${TRAIN:-32}
VAL=${VAL:-16}
EPOCHS=${EPOCHS:-8}
FINAL_EPOCHS=${FINAL_EPOCHS:-24}
CROP=${CROP:-96}
BATCH=${BATCH:-4}
BACKBONE=${BACKBONE:-efficientnet_lite0}
LR=${LR:-3e-3}
DIM=${DIM:-64}
GRID=${GRID:-6}
CAM_EPOCHS=${CAM_EPOCHS:-20}
WSSS=${WSSS:-wsss}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
common=(--batch-size "$BATCH" --crop-size "$CROP" --backbone "$BACKBONE" --lr "$LR" --seed 0 --log-every 50)

step "1. demo data ($TRAIN train / $VAL val images), SLIC superpixels of the train images"
[ -d "$OUT/demo" ] || $WSSS demo-data "$OUT/demo" --train "$TRAIN" --val "$VAL" --seed 0
[ -f "$OUT/superpixels.h5" ] || $WSSS superpixels "$OUT/demo" "$OUT/superpixels.h5" --split train

step "2. seeds: scribbles and clicks (SPML's 6 px points: radius 3) from the train masks"
[ -f "$OUT/scribbles/seeds.h5" ] || { mkdir -p "$OUT/scribbles"; $WSSS prepare-scribbles "$OUT/demo" "$OUT/scribbles/seeds.h5" --split train --seed 0; }
[ -f "$OUT/clicks/seeds.h5" ] || { mkdir -p "$OUT/clicks"; $WSSS prepare-points "$OUT/demo" "$OUT/clicks/seeds.h5" --split train --radius 3 --seed 0; }
kinds=("scribbles:scribbles" "clicks:points")

if [ -n "${TAGS:-}" ]; then
  step "2b. tags → CAM classifier → CAM seeds (docs/methods.md §6)"
  mkdir -p "$OUT/tags"
  [ -f "$OUT/tags/tags.h5" ] || $WSSS prepare-tags "$OUT/demo" "$OUT/tags/tags.h5" --split train
  if [ ! -f "$OUT/tags/cam-run/checkpoints/epoch-$(printf %03d "$CAM_EPOCHS").pt" ]; then
    resume=(); [ -f "$OUT/tags/cam-run/config.json" ] && resume=(--resume)
    $WSSS cam train --out "$OUT/tags/cam-run" --tags "$OUT/tags/tags.h5" --epochs "$CAM_EPOCHS" --batch-size 8 \
      --crop-size "$CROP" --resize-long "$CROP" "$((CROP * 3 / 2))" --seed 1 --log-every 50 "${resume[@]}"
  fi
  [ -f "$OUT/tags/cams.h5" ] || $WSSS cam export "$OUT/tags/cam-run" --out "$OUT/tags/cams.h5"
  [ -f "$OUT/tags/seeds.h5" ] || $WSSS cam seeds "$OUT/tags/cams.h5" --out "$OUT/tags/seeds.h5"
  kinds+=("tags:tags")
fi

for entry in "${kinds[@]}"; do
  kind=${entry%%:*}; annotation=${entry##*:}; dir="$OUT/$kind"
  step "3. [$kind] SPML embedding + initial classifier (--loss spml --spml-annotation $annotation)"
  if [ ! -f "$dir/run-spml/checkpoints/epoch-$(printf %03d "$EPOCHS").pt" ]; then
    resume=(); [ -f "$dir/run-spml/config.json" ] && resume=(--resume)
    $WSSS train --out "$dir/run-spml" --loss spml --spml-annotation "$annotation" --seeds "$dir/seeds.h5" \
      --superpixels "$OUT/superpixels.h5" --embedding-dim "$DIM" --kmeans-grid "$GRID" --epochs "$EPOCHS" \
      "${common[@]}" "${resume[@]}"
  fi
  [ -f "$dir/pred-val-initial.h5" ] || $WSSS predict "$dir/run-spml" --initial-classifier --data "$OUT/demo" --split val \
    --out "$dir/pred-val-initial.h5"
  $WSSS eval "$dir/pred-val-initial.h5" --out "$dir/pred-val-initial.metrics.json" > /dev/null

  [ -f "$dir/pred-train-initial.h5" ] || $WSSS predict "$dir/run-spml" --initial-classifier --data "$OUT/demo" --split train \
    --out "$dir/pred-train-initial.h5"
  $WSSS eval "$dir/pred-train-initial.h5" --out "$dir/pred-train-initial.metrics.json" > /dev/null

  step "4. [$kind] random-walk pseudo-labels on train (T^64, DenseCRF)"
  [ -f "$dir/pseudolabels.h5" ] || $WSSS spml-labels "$dir/run-spml" --seeds "$dir/seeds.h5" --out "$dir/pseudolabels.h5"
  $WSSS eval "$dir/pseudolabels.h5" --seeds "$dir/seeds.h5" --out "$dir/pseudolabels.metrics.json" > /dev/null

  step "5. [$kind] final classifier on the frozen embedding (--loss pseudo --hard --init-from)"
  if [ ! -f "$dir/run-final/checkpoints/epoch-$(printf %03d "$FINAL_EPOCHS").pt" ]; then
    resume=(); [ -f "$dir/run-final/config.json" ] && resume=(--resume)
    $WSSS train --out "$dir/run-final" --loss pseudo --hard --pseudolabels "$dir/pseudolabels.h5" \
      --init-from "$dir/run-spml" --epochs "$FINAL_EPOCHS" "${common[@]}" "${resume[@]}"
  fi
  [ -f "$dir/pred-val-final.h5" ] || $WSSS predict "$dir/run-final" --data "$OUT/demo" --split val --out "$dir/pred-val-final.h5"
  $WSSS eval "$dir/pred-val-final.h5" --out "$dir/pred-val-final.metrics.json" > /dev/null
done

step "6. results (mIoU %: initial and final classifier on val; on train the initial classifier and the pseudo-labels, all pixels and the unlabelled ones)"
"$PYTHON" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(p):
    return json.load(open(p)) if os.path.exists(p) else None
def pct(v):
    return "    -" if v is None else f"{100 * v:5.1f}"
print(f"{'':<11} {'--------- train ---------':>27} {'------ val ------':>19}")
print(f"{'annotation':<11} {'initial':>8} {'pseudo':>8} {'pseudo∖S':>9} {'initial':>9} {'final':>9}")
for kind in ("scribbles", "clicks", "tags"):
    init_train, pl, init, final = (load(f"{out}/{kind}/{name}.metrics.json") for name in
                                   ("pred-train-initial", "pseudolabels", "pred-val-initial", "pred-val-final"))
    if init is None:
        continue
    unl = (pl or {}).get("unlabelled", {}) or {}
    print(f"{kind:<11} {pct(init_train and init_train['miou']):>8} {pct(pl and pl['miou']):>8} "
          f"{pct(unl.get('miou')):>9} {pct(init['miou']):>9} {pct(final and final['miou']):>9}")
EOF
