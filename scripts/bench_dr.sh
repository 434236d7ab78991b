#!/usr/bin/env bash
# PLAN's comparison on the DR benchmark (phantom fundus photographs by default); extra flags go to bench_paper.py,
# e.g. --data /data/aptos --layout aptos --gan stylegan:network.pkl, or --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/bench_paper.py --benchmark dr "$@"
