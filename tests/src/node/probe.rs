//! Readiness probes: `httpGet` (plain HTTP/1.1, success is a status in 200..400, as kubelet),
//! `tcpSocket` (a connect), and `exec` (not run: counted as success, there is no container).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A readiness probe resolved against the pod's IP and the container's named ports.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub check: Check,
    pub timeout: Duration,
    /// Consecutive failures that turn a ready container unready.
    pub failure_threshold: u32,
    /// Consecutive successes that turn an unready container ready.
    pub success_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http { addr: SocketAddr, host: String, path: String, headers: Vec<(String, String)> },
    Tcp { addr: SocketAddr },
    AlwaysReady,
}

/// The container's readiness probe; `None` when it has none (ready as soon as it runs).
pub fn readiness(container: &Container, pod_ip: Ipv4Addr) -> Option<Readiness> {
    let probe: &Probe = container.readiness_probe.as_ref()?;
    let port = |p: &IntOrString| match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok()),
    };
    let at = |host: Option<&String>, p: &IntOrString| {
        let ip = host.and_then(|h| h.parse::<IpAddr>().ok()).unwrap_or(IpAddr::V4(pod_ip));
        port(p).map(|port| SocketAddr::new(ip, port))
    };
    let check = if let Some(get) = &probe.http_get {
        // An unresolvable port never answers, which is what kubelet would report too.
        let addr = at(get.host.as_ref(), &get.port).unwrap_or(SocketAddr::new(pod_ip.into(), 0));
        Check::Http {
            addr,
            host: get.host.clone().unwrap_or_else(|| pod_ip.to_string()),
            path: get.path.clone().unwrap_or_else(|| "/".into()),
            headers: get.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect(),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        Check::Tcp { addr: at(tcp.host.as_ref(), &tcp.port).unwrap_or(SocketAddr::new(pod_ip.into(), 0)) }
    } else {
        Check::AlwaysReady
    };
    let positive =
        |v: Option<i32>, default: u32| v.and_then(|v| u32::try_from(v).ok()).filter(|&v| v > 0).unwrap_or(default);
    Some(Readiness {
        check,
        timeout: Duration::from_secs(u64::from(positive(probe.timeout_seconds, 1))),
        failure_threshold: positive(probe.failure_threshold, 3),
        success_threshold: positive(probe.success_threshold, 1),
    })
}

/// Runs one probe; `true` on success.
pub async fn run(check: &Check, timeout: Duration) -> bool {
    let attempt = async {
        match check {
            Check::AlwaysReady => true,
            Check::Tcp { addr } => TcpStream::connect(addr).await.is_ok(),
            Check::Http { addr, host, path, headers } => {
                http_status(*addr, host, path, headers).await.is_some_and(|s| (200..400).contains(&s))
            }
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or(false)
}

async fn http_status(addr: SocketAddr, host: &str, path: &str, headers: &[(String, String)]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: kube-probe/tiepdan-harness\r\n\
         Accept: */*\r\nConnection: close\r\n",
        addr.port()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 4096 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    // "HTTP/1.1 200 OK"
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::net::TcpListener;

    #[test]
    fn http_probe_resolves_named_ports_on_the_pod_ip() {
        let container: Container = serde_json::from_value(json!({
            "name": "media-worker",
            "ports": [{"name": "signaling", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "signaling"}, "failureThreshold": 2}
        }))
        .expect("valid container");
        let ip = Ipv4Addr::new(127, 0, 1, 3);
        let r = readiness(&container, ip).expect("has a probe");
        assert_eq!(r.failure_threshold, 2);
        assert_eq!(
            r.check,
            Check::Http {
                addr: SocketAddr::new(ip.into(), 8080),
                host: "127.0.1.3".into(),
                path: "/readyz".into(),
                headers: vec![],
            }
        );
    }

    async fn serve_once(status_line: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(status_line.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_succeeds_on_2xx_and_fails_on_5xx_or_no_listener() {
        let check = |addr| Check::Http { addr, host: "h".into(), path: "/readyz".into(), headers: vec![] };
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert!(run(&check(ok), Duration::from_secs(2)).await);
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert!(!run(&check(bad), Duration::from_secs(2)).await);
        let closed = crate::process::free_ports(1).expect("port")[0];
        let nobody = SocketAddr::from(([127, 0, 0, 1], closed));
        assert!(!run(&check(nobody), Duration::from_secs(2)).await);
    }
}
