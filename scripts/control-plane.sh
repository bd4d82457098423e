#!/usr/bin/env bash
# A local single-node cluster for humans: etcd, kube-apiserver and kube-controller-manager on
# 127.0.0.1, and the real node (containerd + runc, kube-scheduler, kubelet 1.20.2) running the
# images of scripts/images.sh, in the foreground. Prints `export KUBECONFIG=...`; Ctrl-C stops
# everything by PID and undoes every mount, netns, route and sysctl the node changed.
#
#   scripts/control-plane.sh [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/install-control-plane.sh
bash scripts/images.sh
exec cargo run --quiet -p tiepdan-tests --bin tiepdan-harness -- up "$@"
