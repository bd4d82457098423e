#!/usr/bin/env bash
# A local control plane for humans and the README demo: etcd, kube-apiserver and
# kube-controller-manager on 127.0.0.1 plus the node emulation, in the foreground. Prints
# `export KUBECONFIG=...`; Ctrl-C stops and cleans up everything.
#
#   scripts/control-plane.sh [--dir DIR] [--media-worker-bin PATH | --real-node]
#
# --real-node: a real node (containerd + runc, kube-scheduler, kubelet 1.20.2) running the images
# of scripts/images.sh; stopped by PID with every mount, netns, route and sysctl undone.
# Otherwise the node emulation: without --media-worker-bin every pod is simulated (Running/Ready
# at once); with it, `media-worker` containers run that binary for real on their own 127.x pod IP.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/install-control-plane.sh
case " $* " in *" --real-node "*) bash scripts/images.sh;; esac
exec cargo run --quiet -p tiepdan-tests --bin tiepdan-harness -- up "$@"
