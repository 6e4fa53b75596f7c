#!/usr/bin/env bash
# SPML (Ke et al., ICLR 2021) end to end on the built-in demo data (CPU, minutes), per annotation type:
#
#   demo-data → seeds (scribbles, clicks; tags → CAM seeds with TAGS=1) → superpixels (the low-level regions)
#   → train --loss spml (embedding + initial classifier) → spml-labels (random-walk pseudo-labels + DenseCRF;
#   tags: the walk starts from the CAMs, --cams) [tags: → spml-relabel (nearest-neighbour relabelling, docs/methods.md §10.6)]
#   → train --loss pseudo --init-from (final classifier on the frozen embedding) → predict val → eval
#   [tags: round 2: final classifier's labels of train → spml-relabel → a second final classifier] → table
#
#   examples/spml.sh OUT           # OUT receives every artifact, run and metrics file
#   TAGS=1 examples/spml.sh OUT    # also image tags, through CAM seeds (wsss cam train / export / seeds)
#
# Budget knobs (environment): TRAIN / VAL images (32 / 16), EPOCHS (SPML embedding, 8), FINAL_EPOCHS (final
# classifier, 24: with 4 it does not fit its pseudo-labels at this budget), CROP (96), BATCH (4), BACKBONE (efficientnet_lite0: its ImageNet weights ship with its pip
# package, so nothing is downloaded), LR (3e-3, the SPML code's), DIM (embedding dimension, 64), GRID
# (k-means grid side, 6), CAM_EPOCHS (20), RELABEL_GRID (spml-relabel's grid side, 6: the code's 12 is meant
# for 512² images, 96² here), FINAL_AUG (1: the final classifier's grayscale and blur of the SPML code,
# --grayscale 0.3 --blur --blur-kernel spml; 0: off). Not passed: the code's 100-step lr warm-up
# (--lr-warmup-steps), longer than the whole embedding run here (64 steps). The SPML code trains 30 000 iterations of 16 crops of 512²
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
RELABEL_GRID=${RELABEL_GRID:-6}
FINAL_AUG=${FINAL_AUG:-1}
WSSS=${WSSS:-wsss}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
common=(--batch-size "$BATCH" --crop-size "$CROP" --backbone "$BACKBONE" --lr "$LR" --seed 0 --log-every 50)
final_aug=(); [ "$FINAL_AUG" = 1 ] && final_aug=(--grayscale 0.3 --blur --blur-kernel spml)

# final_classifier DIR RUN PSEUDOLABELS: the final classifier on the frozen embedding of DIR/run-spml, then val
final_classifier() {
  local dir=$1 run=$2 pl=$3
  if [ ! -f "$dir/$run/checkpoints/epoch-$(printf %03d "$FINAL_EPOCHS").pt" ]; then
    local resume=(); [ -f "$dir/$run/config.json" ] && resume=(--resume)
    $WSSS train --out "$dir/$run" --loss pseudo --hard --pseudolabels "$pl" --init-from "$dir/run-spml" \
      --epochs "$FINAL_EPOCHS" "${common[@]}" "${final_aug[@]}" "${resume[@]}"
  fi
  [ -f "$dir/pred-val-$run.h5" ] || $WSSS predict "$dir/$run" --data "$OUT/demo" --split val --out "$dir/pred-val-$run.h5"
  $WSSS eval "$dir/pred-val-$run.h5" --out "$dir/pred-val-$run.metrics.json" > /dev/null
}

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
  walk_from=(); [ "$kind" = tags ] && walk_from=(--cams "$dir/cams.h5")  # tags: the walk starts from the CAMs
  [ -f "$dir/pseudolabels.h5" ] || $WSSS spml-labels "$dir/run-spml" --seeds "$dir/seeds.h5" "${walk_from[@]}" \
    --out "$dir/pseudolabels.h5"
  $WSSS eval "$dir/pseudolabels.h5" --seeds "$dir/seeds.h5" --out "$dir/pseudolabels.metrics.json" > /dev/null

  labels=$dir/pseudolabels.h5
  if [ "$kind" = tags ]; then
    step "4b. [tags] nearest-neighbour relabelling, round 1 (spml-relabel --grid $RELABEL_GRID)"
    [ -f "$dir/relabel1.h5" ] || $WSSS spml-relabel "$dir/run-spml" --labels "$dir/pseudolabels.h5" --seeds "$dir/seeds.h5" \
      --grid "$RELABEL_GRID" --out "$dir/relabel1.h5"
    $WSSS eval "$dir/relabel1.h5" --seeds "$dir/seeds.h5" --out "$dir/relabel1.metrics.json" > /dev/null
    labels=$dir/relabel1.h5
  fi

  step "5. [$kind] final classifier on the frozen embedding (--loss pseudo --hard --init-from)"
  final_classifier "$dir" run-final "$labels"

  if [ "$kind" = tags ]; then
    step "5b. [tags] round 2: the final classifier's labels of train (scales 0.75, 1 + flip) → spml-relabel → final classifier"
    [ -f "$dir/pred-train-run-final.h5" ] || $WSSS predict "$dir/run-final" --data "$OUT/demo" --split train \
      --scales 0.75,1 --flip --out "$dir/pred-train-run-final.h5"
    [ -f "$dir/relabel2.h5" ] || $WSSS spml-relabel "$dir/run-spml" --labels "$dir/pred-train-run-final.h5" \
      --seeds "$dir/seeds.h5" --grid "$RELABEL_GRID" --out "$dir/relabel2.h5"
    $WSSS eval "$dir/relabel2.h5" --seeds "$dir/seeds.h5" --out "$dir/relabel2.metrics.json" > /dev/null
    final_classifier "$dir" run-final2 "$dir/relabel2.h5"
  fi
done

step "6. results (mIoU %: initial and final classifier on val; on train the initial classifier and the pseudo-labels the final classifier trains on, all pixels and the unlabelled ones; tags: the walk's labels, then relabelling rounds 1 and 2)"
"$PYTHON" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(p):
    return json.load(open(p)) if os.path.exists(p) else None
def pct(v):
    return "    -" if v is None else f"{100 * v:5.1f}"
print(f"{'':<13} {'--------- train ---------':>27} {'------ val ------':>19}")
print(f"{'annotation':<13} {'initial':>8} {'pseudo':>8} {'pseudo∖S':>9} {'initial':>9} {'final':>9}")
rows = [(kind, kind, "pseudolabels", "pred-train-initial", "pred-val-initial", "pred-val-run-final")
        for kind in ("scribbles", "clicks")]
rows += [("tags (walk)", "tags", "pseudolabels", "pred-train-initial", "pred-val-initial", None),
         ("tags round 1", "tags", "relabel1", None, None, "pred-val-run-final"),
         ("tags round 2", "tags", "relabel2", None, None, "pred-val-run-final2")]
for label, kind, *names in rows:
    pl, init_train, init, final = (load(f"{out}/{kind}/{n}.metrics.json") if n else None for n in names)
    if pl is None:
        continue
    unl = pl.get("unlabelled", {}) or {}
    print(f"{label:<13} {pct(init_train and init_train['miou']):>8} {pct(pl['miou']):>8} "
          f"{pct(unl.get('miou')):>9} {pct(init and init['miou']):>9} {pct(final and final['miou']):>9}")
EOF
