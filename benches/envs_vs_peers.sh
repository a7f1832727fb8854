#!/usr/bin/env bash
# dreamplay's envs against their peers, measured in one run on this machine:
# Gymnasium CarRacing-v3 (96x96 obs) and ViZDoom take_cover (160x120 obs), from ../shared/peers.
# Usage: benches/envs_vs_peers.sh [seconds per dreamplay measurement]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
peers_dir=${PEERS_DIR:-../shared/peers}

cargo build --release --quiet
ours=$(target/release/dreamplay bench envs --seconds "$seconds")
echo "$ours"

py=$("$peers_dir/setup.sh")
peers=$("$py" "$peers_dir/peer_envs.py")
echo "$peers"

car_ours=$(awk '$1 == "car-racing" {print $2}' <<<"$ours")
car_ours_all=$(awk '$1 == "car-racing" {print $3}' <<<"$ours")
doom_ours=$(awk '$1 == "take-cover" {print $2}' <<<"$ours")
doom_ours_all=$(awk '$1 == "take-cover" {print $3}' <<<"$ours")
car_peer=$(sed -n 's/^gymnasium CarRacing-v3: \([0-9.]*\) steps.*/\1/p' <<<"$peers")
doom_peer=$(sed -n 's/^vizdoom take_cover: \([0-9.]*\) steps.*/\1/p' <<<"$peers")

echo
echo "| env | peer | peer steps/s | dreamplay 1 core | ratio | dreamplay all cores | ratio |"
echo "|---|---|---:|---:|---:|---:|---:|"
awk -v o="$car_ours" -v a="$car_ours_all" -v p="$car_peer" \
  'BEGIN {printf "| CarRacing | Gymnasium CarRacing-v3 | %.0f | %.0f | %.0fx | %.0f | %.0fx |\n", p, o, o/p, a, a/p}'
awk -v o="$doom_ours" -v a="$doom_ours_all" -v p="$doom_peer" \
  'BEGIN {printf "| Take Cover | ViZDoom take_cover 160x120 | %.0f | %.0f | %.1fx | %.0f | %.1fx |\n", p, o, o/p, a, a/p}'
