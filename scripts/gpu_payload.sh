#!/usr/bin/env bash
# Build gpu_payload/: what scripts/gpu_run.sh needs on the lent GPU machine and the repo lacks (docs/performance.md,
# "A GPU run"). Run it here, on the CPU machine:
#   scripts/gpu_payload.sh [HAM10000_DIR]   (default ../shared/data/ham10000)
# Env: WEIGHTS_DIR (../shared/weights), PAYLOAD (gpu_payload), LIMIT_MIB (64: what may travel to the machine).
#
# What goes in, and why:
# - HAM10000's 10,015 JPEGs and metadata, as they are: 38.4 MiB of bytes (du -sh says 55M: it counts 4 KiB blocks
#   per small file). Real data, no re-encode, no subset. The decode-once uint8 cache is no help: 224 px x 10,015
#   images is 1.5 GB, and its key (path, inode, ctime) would not match there anyway.
# - tf_efficientnet_lite0_imagenet_timm.pt (18.0 MiB): the default recipe's --init. Nothing else fits with the data:
#   the ResNet50 benchmark needs no weights (it times random ones); Lite2 (23.6 MiB) and the ResNet50 stem-layer3
#   (32.8 MiB) would each take the total over the 64 MiB limit, and neither is in the default recipe.
# - split.csv: the shipped ensemble's split (split seed 42, the CNN's), so the members train on the same images.
# The tracked tree travels too (weights/ hidden by the sparse checkout: about 1.5 MiB), so the payload may be at most
# LIMIT_MIB minus that; over it, this refuses and removes the folder rather than leave one that cannot travel.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ham10000}
WEIGHTS_DIR=${WEIGHTS_DIR:-../shared/weights}
PAYLOAD=${PAYLOAD:-gpu_payload}
LIMIT_MIB=${LIMIT_MIB:-64}
INIT=$WEIGHTS_DIR/tf_efficientnet_lite0_imagenet_timm.pt
SPLIT=weights/lite0_ensemble_ham10000_7class/split.csv

die() { echo "gpu_payload: $*" >&2; exit 1; }
[ -f "$DATA/HAM10000_metadata.csv" ] || die "$DATA: no HAM10000_metadata.csv (give the HAM10000 folder)"
[ -f "$INIT" ] || die "$INIT: not found (set WEIGHTS_DIR)"
[[ $LIMIT_MIB =~ ^[0-9]+([.][0-9]+)?$ ]] || die "LIMIT_MIB=$LIMIT_MIB is not a number of MiB"
bytes() { du -sb "$@" | awk '{s += $1} END {print s + 0}'; }  # bytes, not disk blocks: what travels
ids() { awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "image_id") c = i; next} c {print $c}' "$1" | sort | md5sum; }
# The shipped split only for the data it was made of (another data set, a test's tiny one, gets its own split)
[ -f "$SPLIT" ] && [ "$(ids "$SPLIT")" = "$(ids "$DATA/HAM10000_metadata.csv")" ] || SPLIT=
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

# What travels beside the payload: tracked and untracked-not-ignored files, less weights/ (hidden for the call)
tree=$(git ls-files -z --cached --others --exclude-standard | grep -zv '^weights/' \
  | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}') || true
room=$(awk -v l="$LIMIT_MIB" -v t="$tree" 'BEGIN {printf "%d", l * 1048576 - t}')
jpegs() { find "$DATA" -mindepth 2 -maxdepth 2 -name '*.jpg' "$@"; }  # in the image folders (Kaggle's two parts, or one)
images=$(jpegs | wc -l)
[ "$images" -gt 0 ] || die "$DATA: no JPEGs below it"
need=$(( $(jpegs -print0 | du -cb --files0-from=- | tail -1 | cut -f1) + $(bytes "$DATA/HAM10000_metadata.csv" "$INIT" ${SPLIT:+"$SPLIT"}) ))
# Refuse before copying 40 MB for nothing
[ "$need" -le "$room" ] || die "$(mib "$need") MiB payload + $(mib "$tree") MiB tree > the ${LIMIT_MIB} MiB limit: refused"

# Rebuilt from scratch each time, but never over a folder this script did not make
[ ! -e "$PAYLOAD" ] || [ -f "$PAYLOAD/PAYLOAD.txt" ] || die "$PAYLOAD exists and is not a payload (no PAYLOAD.txt): remove it or set PAYLOAD"
rm -rf "$PAYLOAD"
mkdir -p "$PAYLOAD/ham10000"
cp "$DATA/HAM10000_metadata.csv" "$PAYLOAD/ham10000/"
jpegs -printf '%h\n' | sort -u | while IFS= read -r part; do
  mkdir -p "$PAYLOAD/ham10000/${part##*/}"
  find "$part" -maxdepth 1 -name '*.jpg' -exec cp -t "$PAYLOAD/ham10000/${part##*/}" {} +
done
cp "$INIT" "$PAYLOAD/"
[ -z "$SPLIT" ] || cp "$SPLIT" "$PAYLOAD/split.csv"  # without it, gpu_run.sh's runs make their split from seed 42
# Inside the repo it must be ignored, or it would travel twice (as untracked files and as carry) and could be
# committed: .git/info/exclude (local to this clone) takes it if nothing ignores it yet
inside=$(realpath -m --relative-base="$PWD" "$PAYLOAD")
if [[ $inside != /* ]] && ! git check-ignore -q "$inside/"; then
  echo "/$inside/" >> "$(git rev-parse --git-path info/exclude)"
fi

total=$(bytes "$PAYLOAD")
[ "$total" -le "$room" ] || { rm -rf "$PAYLOAD"; die "$(mib "$total") MiB payload + $(mib "$tree") MiB tree > the ${LIMIT_MIB} MiB limit: refused"; }
line="gpu_payload: $PAYLOAD/ $(mib "$total") MiB ($images images, $(basename "$INIT")${SPLIT:+, split.csv})"
line="$line + tree $(mib "$tree") MiB = $(mib $((total + tree))) of ${LIMIT_MIB} MiB"
printf '%s\nmade %s from %s and %s\n' "$line" "$(date -u +%FT%TZ)" "$DATA" "$INIT" > "$PAYLOAD/PAYLOAD.txt"
echo "$line"
