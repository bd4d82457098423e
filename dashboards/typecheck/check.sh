#!/usr/bin/env bash
# Type-checks the generated dashboards (dashboards/*.json) against Grafana's schema types
# (@grafana/schema) with `tsc --noEmit`. scripts/install-deps.sh installs the pinned packages
# (npm ci, from package-lock.json); scripts/test runs this.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/tsc ]; then
  echo "dashboards/typecheck: node_modules is missing; run scripts/install-deps.sh (or npm ci here)" >&2
  exit 1
fi
node_modules/.bin/tsc --noEmit -p .
echo "dashboards/typecheck: $(ls ../*.json | wc -l) dashboards match @grafana/schema"
