//! A raw UDP relay: the least work a forwarder can do. One thread reads batches of datagrams
//! (`recvmmsg`) and writes each to every destination routed from its source (`sendmmsg`). No
//! RTP parsing, no rewriting, no statistics: the ceiling an SFU is compared with.

use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, SockaddrStorage};
use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const BATCH: usize = 64;

pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying what arrives on `socket` from each route's source to its destinations.
    pub fn start(socket: UdpSocket, routes: Vec<(SocketAddr, Vec<SocketAddr>)>) -> Relay {
        let v4 = |a: SocketAddr| match a {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => panic!("the relay is IPv4 only"),
        };
        let routes: HashMap<SocketAddrV4, Vec<SockaddrIn>> = routes
            .into_iter()
            .map(|(from, to)| (v4(from), to.into_iter().map(|a| SockaddrIn::from(v4(a))).collect()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        // A read timeout, so the thread sees `stop` when no traffic comes.
        socket.set_read_timeout(Some(Duration::from_millis(20))).expect("read timeout");
        let thread = std::thread::Builder::new()
            .name("udp-relay".to_owned())
            .spawn(move || relay(&socket, &routes, &stopping))
            .expect("relay thread");
        Relay { stop, thread: Some(thread) }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn relay(socket: &UdpSocket, routes: &HashMap<SocketAddrV4, Vec<SockaddrIn>>, stop: &AtomicBool) {
    let fd = socket.as_raw_fd();
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0; 2048]).collect();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        received.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b.as_mut_slice())]).collect();
            // Blocks for the first datagram (or the timeout), then takes whatever else is queued.
            match recvmmsg(fd, &mut recv_headers, slices.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(results) => received.extend(results.map(|r| (r.bytes, r.address))),
                Err(_) => continue,
            }
        }
        let mut out: Vec<&[u8]> = Vec::with_capacity(BATCH);
        let mut to: Vec<Option<SockaddrIn>> = Vec::with_capacity(BATCH);
        for (buf, (len, from)) in bufs.iter().zip(&received) {
            let Some(from) = from.as_ref().and_then(|a| a.as_sockaddr_in()) else { continue };
            let Some(destinations) = routes.get(&SocketAddrV4::new(from.ip(), from.port())) else { continue };
            for d in destinations {
                out.push(&buf[..*len]);
                to.push(Some(*d));
                if out.len() == BATCH {
                    send_all(fd, &mut send_headers, &out, &to);
                    out.clear();
                    to.clear();
                }
            }
        }
        send_all(fd, &mut send_headers, &out, &to);
    }
}

/// Sends every message, retrying the tail a partial `sendmmsg` left.
fn send_all(fd: i32, headers: &mut MultiHeaders<SockaddrIn>, out: &[&[u8]], to: &[Option<SockaddrIn>]) {
    let mut done = 0;
    while done < out.len() {
        let slices: Vec<[IoSlice<'_>; 1]> = out[done..].iter().map(|p| [IoSlice::new(p)]).collect();
        let cmsgs: [ControlMessage<'_>; 0] = [];
        match sendmmsg(fd, headers, &slices, &to[done..], cmsgs, MsgFlags::empty()) {
            Ok(results) => done += results.count().max(1),
            Err(nix::errno::Errno::EINTR) => {}
            // Loopback refuses only when the receiver is gone: drop the rest of the batch.
            Err(_) => return,
        }
    }
}
