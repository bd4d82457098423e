//! The receive buffers of mediasoup's RTC (UDP) sockets.
//!
//! mediasoup 0.8.5 binds one UDP socket per transport and never sets its receive buffer, so the
//! kernel gives it `net.core.rmem_default` (212,992 B unless the node says otherwise). A
//! publisher's socket fills in a few hundred microseconds of a burst whenever the worker thread
//! is busy elsewhere, and the kernel drops the rest: the media benchmark lost packets there,
//! at the SFU's own ingress, at well under half the rate the SFU forwards without loss when the
//! buffer is larger (docs/BENCHMARKS.md).
//!
//! Neither the worker's settings nor the crate expose the option, but mediasoup's worker is a
//! thread of this process, so its sockets are this process's descriptors: this finds the one
//! bound to a transport's port and sets `SO_RCVBUF` on a duplicate of it (`pidfd_getfd` on our
//! own process, which needs no privilege; the option belongs to the socket, not the
//! descriptor). `SO_RCVBUFFORCE` is tried first, which works with CAP_NET_ADMIN; otherwise the
//! kernel caps the size at `net.core.rmem_max`, a node setting (read-only inside a pod's network
//! namespace), which the chart documents for media nodes.

use rustix::fd::OwnedFd;
use rustix::net::sockopt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RtcSocketError {
    #[error("no UDP socket of this process is bound to port {0}")]
    NotFound(u16),
    #[error("failed to read {path}")]
    Proc {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to duplicate the socket bound to port {port} (pidfd_getfd)")]
    Duplicate {
        port: u16,
        #[source]
        source: rustix::io::Errno,
    },
    #[error("failed to set or read the receive buffer of the socket bound to port {port}")]
    SetOption {
        port: u16,
        #[source]
        source: rustix::io::Errno,
    },
}

/// Sets the receive buffer of this process's UDP socket bound to `port` (IPv4 or IPv6) to
/// `bytes`, or as near as the kernel allows; returns the size the kernel reports (which counts
/// its bookkeeping too, so about twice what was asked). Blocking: it reads `/proc`.
pub fn set_receive_buffer(port: u16, bytes: usize) -> Result<usize, RtcSocketError> {
    let fd = socket_on_port(port)?;
    if sockopt::set_socket_recv_buffer_size_force(&fd, bytes).is_err() {
        sockopt::set_socket_recv_buffer_size(&fd, bytes)
            .map_err(|source| RtcSocketError::SetOption { port, source })?;
    }
    sockopt::socket_recv_buffer_size(&fd).map_err(|source| RtcSocketError::SetOption { port, source })
}

/// The receive buffer size the kernel reports for this process's UDP socket bound to `port`.
pub fn receive_buffer(port: u16) -> Result<usize, RtcSocketError> {
    let fd = socket_on_port(port)?;
    sockopt::socket_recv_buffer_size(&fd).map_err(|source| RtcSocketError::SetOption { port, source })
}

/// A duplicate of this process's descriptor for the UDP socket bound to `port`.
fn socket_on_port(port: u16) -> Result<OwnedFd, RtcSocketError> {
    let inodes: Vec<u64> = ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| inodes_on_port(&text, port))
        .collect();
    let socket = find_descriptor(&inodes)?.ok_or(RtcSocketError::NotFound(port))?;
    duplicate(socket).map_err(|source| RtcSocketError::Duplicate { port, source })
}

/// The inodes of the sockets in a `/proc/net/udp{,6}` table bound to `port` on any address.
/// The table lists the whole network namespace; the caller keeps only this process's.
fn inodes_on_port(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            (u16::from_str_radix(local_port, 16).ok()? == port).then(|| fields.get(9)?.parse().ok())?
        })
        .collect()
}

/// This process's descriptor for one of `inodes`.
fn find_descriptor(inodes: &[u64]) -> Result<Option<i32>, RtcSocketError> {
    let dir = Path::new("/proc/self/fd");
    let proc_error = |source| RtcSocketError::Proc { path: dir.display().to_string(), source };
    for entry in std::fs::read_dir(dir).map_err(proc_error)? {
        let Ok(entry) = entry else { continue };
        // Descriptors close under us (other threads); a vanished one is simply not it.
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let Some(inode) = socket_inode(&target.to_string_lossy()) else { continue };
        if inodes.contains(&inode) {
            if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                return Ok(Some(fd));
            }
        }
    }
    Ok(None)
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// A new descriptor for the same socket as this process's `fd`.
fn duplicate(fd: i32) -> rustix::io::Result<OwnedFd> {
    let me = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty())?;
    rustix::process::pidfd_getfd(&me, fd, rustix::process::PidfdGetfdFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn raises_the_buffer_of_a_socket_found_by_port() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let before = sockopt::socket_recv_buffer_size(&socket).expect("read");
        let after = set_receive_buffer(port, before * 2).expect("set");
        assert!(after > before, "{before} → {after}");
        assert_eq!(sockopt::socket_recv_buffer_size(&socket).expect("read"), after, "the same socket");
    }

    #[test]
    fn a_port_nobody_here_binds_is_an_error() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        drop(socket);
        assert!(matches!(set_receive_buffer(port, 1 << 20), Err(RtcSocketError::NotFound(p)) if p == port));
    }

    #[test]
    fn reads_the_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                     1: 0100007F:9C40 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n\
                     2: 0100007F:9C41 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 0\n";
        assert_eq!(inodes_on_port(table, 40000), vec![4242]);
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("pipe:[77]"), None);
    }
}
