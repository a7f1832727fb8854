#!/usr/bin/env bash
# dreamplay's world model against PyTorch's, measured in one run on this machine: V training throughput
# (batch 32, the paper's VAE and loss, Adam) and the batch-1 decode the dream pays per frame, from
# ../shared/peers/torch_vae.py on 1 and 2 threads.
# Usage: [PROFILE=dev] benches/model_vs_pytorch.sh [timed V training steps]
#
# Uses the release profile (what `cargo run --release` and `cargo install` build) unless PROFILE=dev: the dev
# profile builds the dependencies (burn, gemm) at opt-level 3 but dreamplay's own code at 1, which slows the
# im2col/col2im loops of src/model/gemm_conv.rs. Stop other jobs first: two cores are easy to share.
set -euo pipefail
cd "$(dirname "$0")/.."
train_steps=${1:-6}
peers_dir=${PEERS_DIR:-../shared/peers}
profile=${PROFILE:-release}

if [ "$profile" = dev ]; then
  cargo build --quiet --bin dreamplay
  bin=target/debug/dreamplay
else
  cargo build --quiet --release --bin dreamplay
  bin=target/release/dreamplay
fi
ours=""
for env in car-racing take-cover; do
  out=$("$bin" bench model --backend flex --env "$env" --train-steps "$train_steps" --dream-steps 400 2>/dev/null)
  echo "$out"
  ours+="$env $(awk '/^V training/ {print $5}' <<<"$out") $(awk '/^V decode/ {print $5}' <<<"$out") $(awk '/^dream step/ {print $8}' <<<"$out")"$'\n'
done

py=$("$peers_dir/setup.sh")
torch1=$("$py" "$peers_dir/torch_vae.py" 32 1)
torch2=$("$py" "$peers_dir/torch_vae.py" 32 2)
echo "PyTorch, 1 thread:  $torch1"
echo "PyTorch, 2 threads: $torch2"
img_s() { sed -n 's/.* = \([0-9.]*\) img\/s.*/\1/p' <<<"$1"; }
decode_ms() { sed -n 's/.*decode b1 \([0-9.]*\) ms.*/\1/p' <<<"$1"; }

echo
echo "| env | V training img/s | PyTorch 1 / 2 threads | ratio (1 thread) | V decode ms | PyTorch 1 / 2 threads | speed-up (2 threads) | dream step ms |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
while read -r env train decode step; do
  [ -n "$env" ] || continue
  awk -v e="$env" -v t="$train" -v d="$decode" -v s="$step" \
    -v t1="$(img_s "$torch1")" -v t2="$(img_s "$torch2")" -v d1="$(decode_ms "$torch1")" -v d2="$(decode_ms "$torch2")" \
    'BEGIN {printf "| %s | %.1f | %.0f / %.0f | %.2fx | %.2f | %.2f / %.2f | %.1fx | %.2f |\n", e, t, t1, t2, t/t1, d, d1, d2, d2/d, s}'
done <<<"$ours"
