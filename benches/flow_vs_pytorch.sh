#!/usr/bin/env bash
# The flow model against the same networks in PyTorch (benches/torch_flow.py), in one run on this machine, 2 threads
# each: the dynamics and heads' training throughput at batch 32 (a quarter of it shortcut rows) and the batch-1
# flow-dream frame (heads, 1, 2 or 4 sampling steps, decode).
# Usage: [ROUNDS=3] benches/flow_vs_pytorch.sh [timed training steps]
#
# Each round runs dreamplay's figures and PyTorch's back to back; the table gives each figure's median over the
# rounds. Release build. Stop other jobs first: two cores are easy to share.
set -euo pipefail
cd "$(dirname "$0")/.."
train_steps=${1:-10}
rounds=${ROUNDS:-3}
peers_dir=${PEERS_DIR:-../shared/peers}

cargo build --quiet --release --bin dreamplay
bin=${CARGO_TARGET_DIR:-target}/release/dreamplay
py=$("$peers_dir/setup.sh")

samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
for round in $(seq "$rounds"); do
  out=$("$bin" bench model --backend flex --env take-cover --train-steps "$train_steps" --dream-steps 100 \
    --batch-dreams 64 2>/dev/null)
  awk '/^flow training/ {print "ours train " $5} /^flow dream frame/ {print "ours frame" $4 " " $6}' <<<"$out" |
    tr -d ',' >>"$samples"
  out=$("$py" benches/torch_flow.py 2)
  sed -n 's/.*flow training batch 32 = \([0-9.]*\) samples\/s/torch train \1/p; s/.*frame \([0-9]\) step(s) = \([0-9.]*\) ms/torch frame\1 \2/p' \
    <<<"$out" >>"$samples"
  echo "round $round of $rounds:" $(grep -c . "$samples") "figures so far" >&2
done

median() {
  awk -v k="$1 $2" '$1 " " $2 == k {print $3}' "$samples" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) {print "nan"; exit} print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
echo
echo "Medians over $rounds rounds, take-cover sizes, 2 threads:"
echo
echo "| figure | dreamplay (burn-flex) | PyTorch | ratio (PyTorch time / ours) |"
echo "|---|---:|---:|---:|"
ours=$(median ours train)
torch=$(median torch train)
awk -v o="$ours" -v t="$torch" 'BEGIN {printf "| flow training, batch 32 | %.1f samples/s | %.1f samples/s | %.2fx |\n", o, t, o / t}'
for n in 1 2 4; do
  ours=$(median ours "frame$n")
  torch=$(median torch "frame$n")
  awk -v n="$n" -v o="$ours" -v t="$torch" 'BEGIN {printf "| flow dream frame, %d step(s), batch 1 | %.2f ms | %.2f ms | %.2fx |\n", n, o, t, t / o}'
done
