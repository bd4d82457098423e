#!/usr/bin/env bash
# Builds the project's container images offline, without Docker or a registry, as OCI archives in
# $TIEPDAN_IMAGES_DIR (scripts/env.sh; default $CARGO_TARGET_DIR/images):
#   tiepdan-operator.oci.tar      $OPERATOR_IMAGE:<workspace version>
#   tiepdan-media-worker.oci.tar  $MEDIA_WORKER_IMAGE:<workspace version>
#   tiepdan-entry.oci.tar         $ENTRY_IMAGE:<workspace version>
#   pause.oci.tar                 $PAUSE_IMAGE (the sandbox image the real node's containerd needs)
# Names come from images/names.env, the version from [workspace.package] in Cargo.toml. Each
# archive is single-layer (scripts/oci_image.py): the stripped binary, its ldd libraries, no shell.
# An archive whose inputs are unchanged is not rewritten, so a warm run takes seconds.
# Load one with `ctr -n k8s.io images import <archive>`; see images/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
source images/names.env

# A key of Cargo.toml's [workspace.package] table, e.g. version = "0.1.0".
workspace_package() {
  awk -v key="$1" '
    /^\[/ { in_table = ($0 == "[workspace.package]"); next }
    in_table && $1 == key && $2 == "=" { value = $3; gsub(/"/, "", value); print value; exit }
  ' Cargo.toml
}
VERSION="$(workspace_package version)"
SOURCE="$(workspace_package repository)"
if [ -z "$VERSION" ] || [ -z "$SOURCE" ]; then
  echo "images.sh: no version or repository in [workspace.package] of Cargo.toml" >&2
  exit 1
fi
PAUSE_VERSION="${PAUSE_IMAGE##*:}"
PAUSE_BIN="$TIEPDAN_CACHE/kubernetes-$PAUSE_VERSION/bin/pause"
if [ ! -x "$PAUSE_BIN" ]; then
  echo "images.sh: the pause binary is missing at $PAUSE_BIN: run scripts/install-control-plane.sh" >&2
  exit 1
fi

echo "== cargo build --release (operator, media-worker, entry)" >&2
cargo build --release --locked -p operator -p media-worker -p tiepdan-entry --bins
RELEASE="$CARGO_TARGET_DIR/release"
mkdir -p "$TIEPDAN_IMAGES_DIR"

tiepdan_image() { # <binary> <image name> [extra generator args]
  local bin="$1" name="$2"
  shift 2
  python3 scripts/oci_image.py --out "$TIEPDAN_IMAGES_DIR/$bin.oci.tar" --name "$name:$VERSION" \
    --binary "$RELEASE/$bin" --user 65532:65532 \
    --label "org.opencontainers.image.title=$bin" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.source=$SOURCE" "$@"
}
# The operator's kube client verifies non-cluster endpoints with the system's roots
# (rustls-platform-verifier, rustls-native-certs), so it gets Debian's CA bundle. The media
# worker's only TLS client (reqwest, for OTLP) uses the compiled-in webpki-roots: no bundle.
tiepdan_image tiepdan-operator "$OPERATOR_IMAGE" --ca-certs /etc/ssl/certs/ca-certificates.crt
tiepdan_image tiepdan-media-worker "$MEDIA_WORKER_IMAGE"
# The entry's TLS clients trust only what they are given: the cluster's CA (kube client, in-cluster
# config) and the operator's trust bundle (workers). No system bundle.
tiepdan_image tiepdan-entry "$ENTRY_IMAGE"
# Like upstream's registry.k8s.io/pause: /pause alone, user 65535.
python3 scripts/oci_image.py --out "$TIEPDAN_IMAGES_DIR/pause.oci.tar" --name "$PAUSE_IMAGE" \
  --binary "$PAUSE_BIN" --path /pause --user 65535:65535 --bare \
  --label org.opencontainers.image.title=pause \
  --label "org.opencontainers.image.version=$PAUSE_VERSION" \
  --label "org.opencontainers.image.source=https://github.com/kubernetes/kubernetes/tree/v$PAUSE_VERSION/build/pause"
echo "images in $TIEPDAN_IMAGES_DIR" >&2
