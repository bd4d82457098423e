#!/usr/bin/env bash
# Installs what the test harness's real control plane needs and builds kube-apiserver and
# kube-controller-manager 1.20.2 from Debian's source package (the only Kubernetes source that
# reaches this machine). Binaries are cached under ~/.cache/tiepdan keyed by version, so the
# 4-8 minute Go build happens once per machine.
set -euo pipefail

K8S_VERSION=1.20.2
CACHE="${TIEPDAN_CACHE:-$HOME/.cache/tiepdan}"
BIN="$CACHE/kubernetes-$K8S_VERSION/bin"

log() { printf '[control-plane] %s\n' "$*" >&2; }

apt_sources() {
  local f=/etc/apt/sources.list.d/tiepdan.sources
  if [ ! -f "$f" ]; then
    log "adding bookworm deb-src and bullseye (for golang-1.15) apt sources"
    cat >"$f" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    # bullseye only supplies what bookworm lacks (Go 1.15); never let it replace bookworm packages.
    cat >/etc/apt/preferences.d/tiepdan-bullseye <<'PIN'
Package: *
Pin: release n=bullseye
Pin-Priority: 100
PIN
    rm -f "$CACHE/.apt-updated"
  fi
  mkdir -p "$CACHE"
  if [ ! -f "$CACHE/.apt-updated" ]; then
    apt-get update -qq || log "apt-get update reported errors (unreachable third-party sources are expected)"
    touch "$CACHE/.apt-updated"
  fi
}

need_pkgs() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_sources
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

need_pkgs etcd-server openssl

# The real node: containerd 1.6 (CRI v1alpha2, which kubelet 1.20 speaks), runc, Debian's CNI plugins,
# iptables for kubelet's checks, and a static C toolchain for the pause image.
need_pkgs containerd runc containernetworking-plugins iptables libc6-dev

COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet"
have_all() { for c in $COMPONENTS pause; do [ -x "$BIN/$c" ] || return 1; done; }
if have_all; then
  log "cached: $BIN"
  exit 0
fi

need_pkgs golang-1.15-go rsync jq dpkg-dev make
SRC="$CACHE/src"
mkdir -p "$SRC"
if [ ! -d "$SRC/kubernetes-$K8S_VERSION" ]; then
  log "fetching Debian's kubernetes source package"
  (cd "$SRC" && apt-get source -qq --download-only kubernetes >/dev/null && dpkg-source -x --no-check kubernetes_*.dsc "kubernetes-$K8S_VERSION" >/dev/null)
fi
cd "$SRC/kubernetes-$K8S_VERSION"
mkdir -p .go/src/k8s.io
ln -sfn "$PWD" .go/src/k8s.io/kubernetes
log "building $COMPONENTS with Go 1.15 (about 8 min cold)"
cd .go/src/k8s.io/kubernetes
# kubelet builds static without cgo, like the rest. GOCACHE under the cache makes a rebuild ~11 s.
what=""; for c in $COMPONENTS; do what="$what cmd/$c"; done
PATH=/usr/lib/go-1.15/bin:$PATH GOPATH="$SRC/kubernetes-$K8S_VERSION/.go" GOCACHE="$CACHE/go-build-1.15" \
  CGO_ENABLED=0 make WHAT="${what# }" >"$CACHE/k8s-build.log" 2>&1 \
  || { tail -50 "$CACHE/k8s-build.log" >&2; exit 1; }
mkdir -p "$BIN"
for c in $COMPONENTS; do cp "_output/bin/$c" "$BIN/$c.partial" && mv "$BIN/$c.partial" "$BIN/$c"; done
# The sandbox ("pause") container, from the same source: kubelet's remote runtime needs it imported.
gcc -Os -static -o "$BIN/pause.partial" build/pause/linux/pause.c -DVERSION="$K8S_VERSION"
strip "$BIN/pause.partial" && mv "$BIN/pause.partial" "$BIN/pause"
log "built: $BIN"
