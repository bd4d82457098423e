# Sourced by the scripts: where heavy, versioned build output is cached across clones.
# Cargo's target dir lives under ~/.cache/tiepdan keyed by the toolchain, so a fresh clone (CI)
# reuses the ~8 minute mediasoup C++ build instead of redoing it. Override with CARGO_TARGET_DIR.
TIEPDAN_CACHE="${TIEPDAN_CACHE:-$HOME/.cache/tiepdan}"
_rustc_version="$(rustc --version 2>/dev/null | awk '{print $2}')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TIEPDAN_CACHE/cargo-target-${_rustc_version:-unknown}}"
# Incremental compilation only pays off for edit-compile loops; in these scripts it would add
# ~18 GB of target dir for nothing.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export TIEPDAN_MEDIA_WORKER_BIN="${TIEPDAN_MEDIA_WORKER_BIN:-$CARGO_TARGET_DIR/debug/tiepdan-media-worker}"
export TIEPDAN_CACHE
# Helm 3.18 for the chart's tests (installed by scripts/install-deps.sh).
export TIEPDAN_HELM="${TIEPDAN_HELM:-$TIEPDAN_CACHE/helm-3.18/helm}"
# The OCI image archives scripts/images.sh writes (and the real node's tests import).
export TIEPDAN_IMAGES_DIR="${TIEPDAN_IMAGES_DIR:-$CARGO_TARGET_DIR/images}"
