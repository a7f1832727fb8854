#!/usr/bin/env bash
# dreamplay's world model against PyTorch's, measured in one run on this machine: V training throughput
# (batch 32, the paper's VAE and loss, Adam) on 2 threads and on 1, the batch-1 decode the dream pays per frame,
# and the dream step, against ../shared/peers/torch_vae.py on 1 and 2 threads.
# Usage: [PROFILE=dev] [ROUNDS=5] benches/model_vs_pytorch.sh [timed V training steps]
#
# Each round runs every measurement once, ours and PyTorch's back to back, and the table gives each figure's median
# over the rounds with its range: on a shared VM one run can be 20% off either way (PyTorch's 2-thread figure most).
# Uses the release profile (what `cargo run --release` and `cargo install` build) unless PROFILE=dev: the dev
# profile builds the dependencies (burn, gemm) at opt-level 3 but dreamplay's own code at 1, which slows the
# im2col/col2im loops of src/model/gemm_conv.rs. Stop other jobs first: two cores are easy to share.
set -euo pipefail
cd "$(dirname "$0")/.."
train_steps=${1:-40}
rounds=${ROUNDS:-5}
peers_dir=${PEERS_DIR:-../shared/peers}
profile=${PROFILE:-release}

if [ "$profile" = dev ]; then
  cargo build --quiet --bin dreamplay
  bin=target/debug/dreamplay
else
  cargo build --quiet --release --bin dreamplay
  bin=target/release/dreamplay
fi
py=$("$peers_dir/setup.sh")

ours() { # env, then extra environment (e.g. RAYON_NUM_THREADS=1): "train_img_s decode_ms step_ms"
  local out
  out=$(env "${@:2}" "$bin" bench model --backend flex --env "$1" --train-steps "$train_steps" --dream-steps 400 2>/dev/null)
  echo "$(awk '/^V training/ {print $5}' <<<"$out") $(awk '/^V decode/ {print $5}' <<<"$out") $(awk '/^dream step/ {print $8}' <<<"$out")"
}
torch() { # threads: "train_img_s decode_ms"
  local out
  out=$("$py" "$peers_dir/torch_vae.py" 32 "$1")
  echo "$(sed -n 's/.* = \([0-9.]*\) img\/s.*/\1/p' <<<"$out") $(sed -n 's/.*decode b1 \([0-9.]*\) ms.*/\1/p' <<<"$out")"
}

samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
for round in $(seq "$rounds"); do
  for env in car-racing take-cover; do
    read -r train decode step <<<"$(ours "$env")"
    read -r train1 _ _ <<<"$(ours "$env" RAYON_NUM_THREADS=1)"
    echo "$env train2 $train" >>"$samples"
    echo "$env train1 $train1" >>"$samples"
    echo "$env decode $decode" >>"$samples"
    echo "$env step $step" >>"$samples"
  done
  read -r t2 d2 <<<"$(torch 2)"
  read -r t1 d1 <<<"$(torch 1)"
  printf 'torch train2 %s\ntorch train1 %s\ntorch decode2 %s\ntorch decode1 %s\n' "$t2" "$t1" "$d2" "$d1" >>"$samples"
  echo "round $round of $rounds:" $(grep -c . "$samples") "figures so far" >&2
done

# median and range of one figure: "median (min-max)"
stat() {
  awk -v k="$1 $2" '$1 " " $2 == k {print $3}' "$samples" | sort -g |
    awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f", m, v[1], v[NR]}'
}
echo
echo "Medians over $rounds rounds (range in brackets), $train_steps timed V training steps each:"
echo
echo "| env | V training, 2 threads | PyTorch, 2 threads | ratio | V training, 1 thread | PyTorch, 1 thread | ratio | V decode, batch 1 | PyTorch decode, 2 threads | dream step, batch 1 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
read -r pt2 pt2lo pt2hi <<<"$(stat torch train2)"
read -r pt1 pt1lo pt1hi <<<"$(stat torch train1)"
read -r pd2 pd2lo pd2hi <<<"$(stat torch decode2)"
for env in car-racing take-cover; do
  read -r t2 t2lo t2hi <<<"$(stat "$env" train2)"
  read -r t1 t1lo t1hi <<<"$(stat "$env" train1)"
  read -r d dlo dhi <<<"$(stat "$env" decode)"
  read -r s slo shi <<<"$(stat "$env" step)"
  awk -v e="$env" -v t2="$t2" -v t2lo="$t2lo" -v t2hi="$t2hi" -v pt2="$pt2" -v pt2lo="$pt2lo" -v pt2hi="$pt2hi" \
    -v t1="$t1" -v t1lo="$t1lo" -v t1hi="$t1hi" -v pt1="$pt1" -v pt1lo="$pt1lo" -v pt1hi="$pt1hi" \
    -v d="$d" -v dlo="$dlo" -v dhi="$dhi" -v pd2="$pd2" -v pd2lo="$pd2lo" -v pd2hi="$pd2hi" -v s="$s" -v slo="$slo" -v shi="$shi" \
    'BEGIN {printf "| %s | %.0f (%.0f-%.0f) img/s | %.0f (%.0f-%.0f) | %.2fx | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx | %.2f (%.2f-%.2f) ms | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) ms |\n",
      e, t2, t2lo, t2hi, pt2, pt2lo, pt2hi, t2 / pt2, t1, t1lo, t1hi, pt1, pt1lo, pt1hi, t1 / pt1, d, dlo, dhi, pd2, pd2lo, pd2hi, s, slo, shi}'
done
