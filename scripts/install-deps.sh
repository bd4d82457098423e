#!/usr/bin/env bash
# Everything a fresh machine of this kind needs for the demo and the tests. Idempotent: each step
# returns at once when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-control-plane.sh
