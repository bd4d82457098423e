#!/usr/bin/env bash
# Regenerates what the Helm chart copies or renders (checked by operator/tests/chart.rs):
#   charts/tiepdan/crds/*.yaml              copies of crds/*.yaml
#   charts/tiepdan/files/global-rules.yaml  a copy of deploy/prometheus/global-rules.yaml
#   charts/rendered/tiepdan.yaml            helm template tiepdan charts/tiepdan --namespace tiepdan-system
# Regenerate crds/ and deploy/prometheus/ first when the Rust types or rules changed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if [ ! -x "$TIEPDAN_HELM" ]; then
  echo "helm 3.18 is missing at $TIEPDAN_HELM: run scripts/install-deps.sh" >&2
  exit 1
fi

rm -f charts/tiepdan/crds/*.yaml
cp crds/*.yaml charts/tiepdan/crds/
if [ -f deploy/prometheus/global-rules.yaml ]; then
  mkdir -p charts/tiepdan/files
  cp deploy/prometheus/global-rules.yaml charts/tiepdan/files/global-rules.yaml
else
  rm -f charts/tiepdan/files/global-rules.yaml
fi
mkdir -p charts/rendered
"$TIEPDAN_HELM" template tiepdan charts/tiepdan --namespace tiepdan-system > charts/rendered/tiepdan.yaml.partial
mv charts/rendered/tiepdan.yaml.partial charts/rendered/tiepdan.yaml
echo "charts/tiepdan/crds/ charts/tiepdan/files/ charts/rendered/tiepdan.yaml" >&2
