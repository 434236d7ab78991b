#!/usr/bin/env bash
# PLAN's comparison on the TB benchmark (phantom chest X-rays by default); extra flags go to bench_paper.py,
# e.g. --data /data/shenzhen --layout shenzhen --gan stylegan:network.pkl, or --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/bench_paper.py --benchmark tb "$@"
