#!/usr/bin/env bash
# Train every shipped model in order, one run at a time (runs sharing the 2 cores slow each other
# far more than 2x: OpenMP threads spin on each other). SRGAN starts from the shipped SRResNet x4;
# each UDVD stage 2 fine-tunes its stage 1 (top-level `init`).
#   bash tools/train_all.sh            # after: python tools/prepare_data.py
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
mkdir -p runs
for cfg in srresnet_x2 srresnet_x4 srgan_x4 udvd_x2 udvd_x2_stage2 udvd_x4 udvd_x4_stage2 srcnn_x2 srcnn_x3 srcnn_x4; do
    echo "== $cfg $(date +%T)"
    .venv/bin/streamsr train "configs/$cfg.toml" > "runs/$cfg.log" 2>&1
    tail -n 12 "runs/$cfg.log"
done
