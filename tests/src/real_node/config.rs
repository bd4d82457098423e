//! The files a real node reads: containerd's config, the kubelet's config, the CNI network. Pure
//! text from paths and ports, so they are checked without starting anything.

use std::path::{Path, PathBuf};

/// Where the node's files go, all under one directory (so one sweep finds every mount).
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn containerd_config(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub fn containerd_root(&self) -> PathBuf {
        self.dir.join("containerd/root")
    }
    pub fn containerd_state(&self) -> PathBuf {
        self.dir.join("containerd/state")
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.dir.join("kubelet.yaml")
    }
    pub fn kubelet_root(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    pub fn cni_bin(&self) -> PathBuf {
        self.dir.join("cni/bin")
    }
    pub fn cni_conf(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }
    pub fn cni_ipam(&self) -> PathBuf {
        self.dir.join("cni/ipam")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn cleanup_script(&self) -> PathBuf {
        self.dir.join(".reaper-cleanup")
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{component}.log"))
    }
}

/// The kubelet's sync settings. Tests want Secret volumes to follow within seconds; a production
/// kubelet uses the defaults (`syncFrequency: 1m`, change detection `Watch`), so a renewed
/// certificate reaches a running pod within about a minute.
#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    pub sync_frequency_seconds: u32,
    pub node_status_update_seconds: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self { sync_frequency_seconds: 2, node_status_update_seconds: 2 }
    }
}

/// containerd 1.6 (config version 2): its own root, state and socket; CRI v1alpha2 for kubelet
/// 1.20; the locally imported pause image; `restrict_oom_score_adj` because this VM withholds
/// CAP_SYS_RESOURCE from root (runc fails every container without it).
pub fn containerd_toml(layout: &Layout, sandbox_image: &str) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"#,
        root = layout.containerd_root().display(),
        state = layout.containerd_state().display(),
        socket = layout.containerd_socket().display(),
        dir = layout.dir.display(),
        cni_bin = layout.cni_bin().display(),
        cni_conf = layout.cni_conf().display(),
    )
}

/// KubeletConfiguration v1beta1 for a node on 127.0.0.1.
pub fn kubelet_yaml(layout: &Layout, ca: &Path, port: u16, sync: SyncSettings) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzPort: 0
cgroupDriver: cgroupfs
failSwapOn: false
# Leave the root network namespace's iptables alone.
makeIPTablesUtilChains: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
# Never delete the locally imported images: nothing can pull them again.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
resolvConf: {resolv}
clusterDomain: cluster.local
syncFrequency: {sync}s
configMapAndSecretChangeDetectionStrategy: Watch
nodeStatusUpdateFrequency: {status}s
nodeStatusReportFrequency: {status}s
fileCheckFrequency: 20s
serializeImagePulls: false
"#,
        ca = ca.display(),
        resolv = layout.resolv_conf().display(),
        sync = sync.sync_frequency_seconds,
        status = sync.node_status_update_seconds,
    )
}

/// The pod network: Debian's `bridge` plugin, run by a wrapper inside the harness's own network
/// namespace, so the bridge and the host ends of the pods' veths live there and the root
/// namespace gets no interface, address or route.
pub fn cni_conflist(layout: &Layout, pod_cidr: &str) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "tiepdan",
        "plugins": [{
            "type": WRAPPED_BRIDGE,
            "bridge": "tiepdan0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr}]],
                "dataDir": layout.cni_ipam(),
            }
        }]
    })
    .to_string()
}

/// The CNI type name of the wrapper (see [`bridge_wrapper`]).
pub const WRAPPED_BRIDGE: &str = "tiepdan-bridge";

/// `exec`s Debian's bridge plugin inside `netns` (a name under /run/netns). stdin, the CNI_*
/// environment and the pod's netns path pass through unchanged.
pub fn bridge_wrapper(plugins: &Path, netns: &str) -> String {
    format!(
        "#!/bin/sh\n# Runs the CNI bridge plugin in the harness's network namespace, not the root one.\nexec nsenter --net=/run/netns/{netns} {}/bridge \"$@\"\n",
        plugins.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout { dir: "/tmp/n".into() }
    }

    #[test]
    fn containerd_runs_with_its_own_dirs_and_the_settings_this_vm_needs() {
        let t = containerd_toml(&layout(), "localhost/tiepdan/pause:1.20.2");
        assert!(t.contains(r#"address = "/tmp/n/containerd.sock""#));
        assert!(t.contains("restrict_oom_score_adj = true"));
        assert!(t.contains("SystemdCgroup = false"));
        assert!(t.contains(r#"sandbox_image = "localhost/tiepdan/pause:1.20.2""#));
        assert!(t.contains(r#"bin_dir = "/tmp/n/cni/bin""#));
    }

    #[test]
    fn kubelet_binds_loopback_and_syncs_as_configured() {
        let y = kubelet_yaml(&layout(), Path::new("/tmp/ca.crt"), 20250, SyncSettings::default());
        assert!(y.contains("address: 127.0.0.1\nport: 20250"));
        assert!(y.contains("makeIPTablesUtilChains: false"));
        assert!(y.contains("syncFrequency: 2s"));
        assert!(y.contains("clientCAFile: /tmp/ca.crt"));
    }

    #[test]
    fn the_bridge_runs_in_the_harness_namespace() {
        let w = bridge_wrapper(Path::new("/usr/lib/cni"), "tiepdan-1");
        assert!(w.contains("nsenter --net=/run/netns/tiepdan-1 /usr/lib/cni/bridge \"$@\""));
        let c: serde_json::Value = serde_json::from_str(&cni_conflist(&layout(), "10.244.0.0/24")).unwrap();
        assert_eq!(c["plugins"][0]["type"], WRAPPED_BRIDGE);
        assert_eq!(c["plugins"][0]["ipMasq"], false);
        assert_eq!(c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.244.0.0/24");
    }
}
