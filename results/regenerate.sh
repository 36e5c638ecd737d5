#!/usr/bin/env bash
# Regenerates every example's results and charts: runs each scenario in scenarios/ into
# results/<name>/, then draws the FedAvg-vs-FedProx comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
for f in scenarios/*.yaml; do
  name=$(basename "$f" .yaml)
  ./target/release/fedsim run "$f" --quiet --out "results/$name"
done
./target/release/fedsim compare results/fedavg-synthetic results/fedprox-synthetic \
  --out results/fedprox-vs-fedavg.png
