#!/usr/bin/env bash
# Train wider, class-conditional demo generator candidates on a CUDA machine, then measure them on the utility
# ladder next to the shipped ones. Prepared for a lent GPU (not yet run: no GPU has been lent to this project).
#
#   bash scripts/gpu_train_demo_gans.sh            # both kinds; about 10 minutes on one modern GPU (estimate)
#   KIMG=600 bash scripts/gpu_train_demo_gans.sh   # longer
#
# Why: the utility ladder (benchmarks/RESULTS.md, utility-ladder-tb) shows the largest loss between the real images
# and G's reconstructions of them; the shipped generators are CPU-trained with 16 feature maps at 64 px. These
# candidates have 8x the feature maps at 64 px (channel_base 8192, channel_max 256) and know the label.
# Candidates are written to runs/gpu-<kind> and never installed by this script: install one with
#   python scripts/train_demo_gans.py --kind <kind> --out runs/gpu-<kind> --install
# only when its ladder section beats the shipped generator's (README: "ship new weights only when they beat").
set -euo pipefail
cd "$(dirname "$0")/.."
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_train_demo_gans.sh needs CUDA")'
KIMG="${KIMG:-300}"
# DiffAugment without color: with all three ops a fresh discriminator barely separated the demo generator's images
# from real ones in 300 steps (loss 1.23 vs 0.29 without augmentation, chance 1.39), and the CPU fine-tunes with
# color kept D at chance for 60 kimg; translation,cutout kept the fundus D learning (issue 12's note).
AUGMENT="${AUGMENT:-translation,cutout}"
for kind in cxr fundus; do
    python scripts/train_demo_gans.py --kind "$kind" --out "runs/gpu-$kind" --conditional --kimg "$KIMG" \
        --channel-base 8192 --channel-max 256 --batch 32 --augment "$AUGMENT" --device cuda --no-install --resume
done
for bench in tb dr; do
    kind=$([ "$bench" = tb ] && echo cxr || echo fundus)
    python benchmarks/bench_utility.py --benchmark "$bench" --gan "lite:runs/gpu-$kind" --space z --tag gpu-candidate
done
python scripts/check_demo_gans.py --kind cxr --gan lite:runs/gpu-cxr --space z --no-record
python scripts/check_demo_gans.py --kind fundus --gan lite:runs/gpu-fundus --space z --no-record
