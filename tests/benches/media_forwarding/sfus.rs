//! The three forwarders under test, each wired for a topology: the tiepdan worker (through its
//! own signaling, as probes), bare mediasoup (a Router and PlainTransports, nothing else), and a
//! raw UDP relay.

use super::load::{set_receive_buffer, Wiring};
use super::packets::{Outgoing, Stream};
use super::relay::Relay;
use mediasoup::prelude::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::num::{NonZeroU32, NonZeroU8};
use tiepdan_media_worker::config::ServeConfig;
use tiepdan_media_worker::ids::SessionId;
use tiepdan_media_worker::probe::client::{ClientError, SignalingClient};
use tiepdan_media_worker::server::{self, RunningServer};
use tiepdan_media_worker::signaling::protocol::{ClientMessage, Direction, Role, ServerMessage};
use tiepdan_media_worker::tokens::{generate_keys, unix_now, JoinClaims, PrivateKey};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Who publishes and who consumes whom.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One publisher, N consumers.
    Fanout(usize),
    /// M members, each publishing one stream and consuming the M-1 others.
    Meeting(usize),
}

impl Shape {
    pub fn name(self) -> String {
        match self {
            Shape::Fanout(n) => format!("1 → {n}"),
            Shape::Meeting(m) => format!("{m}×{m} meeting"),
        }
    }

    /// (publishes, the members it consumes), per member.
    fn members(self) -> Vec<(bool, Vec<usize>)> {
        match self {
            Shape::Fanout(n) => std::iter::once((true, Vec::new())).chain((0..n).map(|_| (false, vec![0]))).collect(),
            Shape::Meeting(m) => (0..m).map(|i| (true, (0..m).filter(|j| *j != i).collect())).collect(),
        }
    }

    pub fn copies(self) -> usize {
        match self {
            Shape::Fanout(n) => n,
            Shape::Meeting(m) => m - 1,
        }
    }
}

pub fn receiver() -> UdpSocket {
    let socket = UdpSocket::bind((LOCALHOST, 0)).expect("bind the receive socket");
    socket.set_nonblocking(true).expect("non-blocking");
    // The generator must not be what drops: give its one receive socket room for bursts.
    set_receive_buffer(&socket, 64 << 20);
    socket
}

fn publisher(to: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((LOCALHOST, 0)).expect("bind a publisher socket");
    socket.connect(to).expect("connect");
    socket.set_nonblocking(true).expect("non-blocking");
    let _ = set_receive_buffer(&socket, 1 << 16);
    let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
    socket
}

/// An empty RTCP receiver report from the receive socket: a comedia transport sends to wherever
/// its first packet came from.
fn announce(receiver: &UdpSocket, to: SocketAddr) {
    receiver.send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], to).expect("announce");
}

fn ssrc(i: usize) -> u32 {
    0x1000_0000 + i as u32 * 7919
}

/// The probe's own RTP parameters, so the worker and bare mediasoup are fed the same way.
pub fn rtp_parameters(stream: Stream, ssrc: u32) -> RtpParameters {
    tiepdan_media_worker::probe::peer::plain_rtp_parameters(kind(stream), ssrc, "bench")
}

fn kind(stream: Stream) -> MediaKind {
    match stream {
        Stream::Opus => MediaKind::Audio,
        Stream::Vp8 => MediaKind::Video,
    }
}

/// What can be consumed: everything the router can send (the finalized form converted to the
/// request form through JSON, as the probe does).
fn capabilities(finalized: &RtpCapabilitiesFinalized) -> RtpCapabilities {
    serde_json::to_value(finalized).and_then(serde_json::from_value).expect("router capabilities")
}

// ---------------------------------------------------------------------------------------------
// The raw relay.

pub fn relay(shape: Shape, stream: Stream, ingress_buffer: Option<usize>, receiver: &UdpSocket) -> (Wiring, Relay) {
    let to = receiver.local_addr().expect("addr");
    let ingress = UdpSocket::bind((LOCALHOST, 0)).expect("bind the relay");
    if let Some(bytes) = ingress_buffer {
        set_receive_buffer(&ingress, bytes);
    }
    let ingress_addr = ingress.local_addr().expect("addr");
    let mut publishers = Vec::new();
    let mut routes = Vec::new();
    for (i, (publishes, _)) in shape.members().into_iter().enumerate() {
        if publishes {
            let socket = publisher(ingress_addr);
            routes.push((socket.local_addr().expect("addr"), vec![to; shape.copies()]));
            publishers.push((socket, Outgoing::new(stream, ssrc(i))));
        }
    }
    let relay = Relay::start(ingress, routes);
    let receiver = receiver.try_clone().expect("clone the receive socket");
    (Wiring { publishers, receiver, copies: shape.copies(), ingress_ports: vec![ingress_addr.port()] }, relay)
}

// ---------------------------------------------------------------------------------------------
// Bare mediasoup.

/// Everything that must stay alive for the forwarding to go on.
pub struct Bare {
    _manager: WorkerManager,
    _worker: Worker,
    _router: Router,
    _transports: Vec<PlainTransport>,
    _producers: Vec<Producer>,
    _consumers: Vec<Consumer>,
}

fn codecs() -> Vec<RtpCodecCapability> {
    vec![
        RtpCodecCapability::Audio {
            mime_type: MimeTypeAudio::Opus,
            preferred_payload_type: None,
            clock_rate: NonZeroU32::new(48_000).expect("non-zero"),
            channels: NonZeroU8::new(2).expect("non-zero"),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: Vec::new(),
        },
        RtpCodecCapability::Video {
            mime_type: MimeTypeVideo::Vp8,
            preferred_payload_type: None,
            clock_rate: NonZeroU32::new(90_000).expect("non-zero"),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: Vec::new(),
        },
    ]
}

pub async fn bare(shape: Shape, stream: Stream, ingress_buffer: Option<usize>, receiver: &UdpSocket) -> (Wiring, Bare) {
    let manager = WorkerManager::new();
    let worker = manager.create_worker(WorkerSettings::default()).await.expect("mediasoup worker");
    let router = worker.create_router(RouterOptions::new(codecs())).await.expect("router");
    let caps = capabilities(router.rtp_capabilities());
    let plain = || {
        let mut options = PlainTransportOptions::new(TransportListenIp { ip: LOCALHOST, announced_ip: None });
        options.comedia = true;
        options.rtcp_mux = true;
        options
    };
    let members = shape.members();
    let (mut transports, mut producers, mut consumers, mut publishers, mut ports) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut produced = vec![None; members.len()];
    for (i, (publishes, _)) in members.iter().enumerate() {
        if *publishes {
            let transport = router.create_plain_transport(plain()).await.expect("plain transport");
            let port = transport.tuple().local_port();
            if let Some(bytes) = ingress_buffer {
                // As in the worker: where pidfd_getfd is refused (a seccomp profile), the kernel's
                // default stays, and the "before/after" table shows no difference for bare mediasoup.
                if let Err(e) = tiepdan_media_worker::rtc_socket::set_receive_buffer(port, bytes) {
                    eprintln!("bare mediasoup keeps the default receive buffer on port {port}: {e}");
                }
            }
            ports.push(port);
            let outgoing = Outgoing::new(stream, ssrc(i));
            let producer = transport
                .produce(ProducerOptions::new(kind(stream), rtp_parameters(stream, outgoing.ssrc)))
                .await
                .expect("produce");
            produced[i] = Some(producer.id());
            publishers.push((publisher(SocketAddr::new(LOCALHOST, port)), outgoing));
            producers.push(producer);
            transports.push(transport);
        }
    }
    for (_, consumes) in &members {
        if consumes.is_empty() {
            continue;
        }
        let transport = router.create_plain_transport(plain()).await.expect("plain transport");
        announce(receiver, SocketAddr::new(LOCALHOST, transport.tuple().local_port()));
        for j in consumes {
            let producer = produced[*j].expect("published");
            consumers.push(transport.consume(ConsumerOptions::new(producer, caps.clone())).await.expect("consume"));
        }
        transports.push(transport);
    }
    let receiver = receiver.try_clone().expect("clone the receive socket");
    let wiring = Wiring { publishers, receiver, copies: shape.copies(), ingress_ports: ports };
    let bare = Bare {
        _manager: manager,
        _worker: worker,
        _router: router,
        _transports: transports,
        _producers: producers,
        _consumers: consumers,
    };
    (wiring, bare)
}

// ---------------------------------------------------------------------------------------------
// The tiepdan worker.

/// The running worker and its probes' signaling connections (closing one leaves the session).
pub struct Tiepdan {
    pub server: RunningServer,
    /// The scraper and one task per probe reading what the worker pushes (so no queue fills).
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Tiepdan {
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.server.stop().await.expect("worker stops");
    }
}

/// Reads and drops the worker's pushes until the connection ends; aborting it closes the
/// connection, which makes the probe leave.
fn drain(mut client: SignalingClient) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match client.next().await {
                Ok(_) | Err(ClientError::Timeout(_)) => {}
                Err(_) => return,
            }
        }
    })
}

fn probe_token(key: &PrivateKey, session: &SessionId, i: usize) -> String {
    let claims = JoinClaims::for_point(
        session,
        &format!("probe-{i:03}").parse().expect("point name"),
        &format!("Bench {i}"),
        Role::Probe,
        "Media forwarding benchmark",
        unix_now() - 5,
        3600,
    );
    key.mint_join(&claims).expect("mint")
}

/// The worker as it runs in a pod: signaling, the statistics poller (every second), and
/// `/metrics`, which a task here scrapes every second as Prometheus would (more often, in fact).
/// `rtc_receive_buffer` is the worker's setting for its RTC sockets' receive buffers.
pub async fn tiepdan(
    shape: Shape,
    stream: Stream,
    rtc_receive_buffer: Option<usize>,
    receiver: &UdpSocket,
) -> (Wiring, Tiepdan) {
    let (keys, public) = generate_keys();
    let key = keys.join;
    let session: SessionId = "bench/media-forwarding".parse().expect("session id");
    let mut config = ServeConfig::local(public);
    config.session = Some((session.clone(), "Media forwarding benchmark".to_owned()));
    config.rtc_receive_buffer = rtc_receive_buffer;
    let server = server::start(config).await.expect("worker starts");
    let url = server.ws_url();
    let metrics_url = format!("{}/metrics", server.admin_url());
    let scraper = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Ok(r) = client.get(&metrics_url).send().await {
                let _ = r.text().await;
            }
        }
    });

    let members = shape.members();
    let mut clients = Vec::new();
    let mut caps = None;
    let (mut publishers, mut ports, mut produced) = (Vec::new(), Vec::new(), vec![None; members.len()]);
    for (i, (publishes, _)) in members.iter().enumerate() {
        let mut client = SignalingClient::connect(&url).await.expect("connect");
        let ServerMessage::Joined { router_rtp_capabilities, .. } =
            client.request(ClientMessage::Join { token: probe_token(&key, &session, i) }).await.expect("join")
        else {
            panic!("join: unexpected answer");
        };
        caps.get_or_insert_with(|| capabilities(&router_rtp_capabilities));
        if *publishes {
            let ServerMessage::PlainTransportCreated { transport_id, ip, port, .. } = client
                .request(ClientMessage::CreatePlainTransport { direction: Direction::Send })
                .await
                .expect("create a send transport")
            else {
                panic!("createPlainTransport: unexpected answer");
            };
            let outgoing = Outgoing::new(stream, ssrc(i));
            let ServerMessage::Produced { producer_id } = client
                .request(ClientMessage::Produce {
                    transport_id,
                    kind: kind(stream),
                    rtp_parameters: rtp_parameters(stream, outgoing.ssrc),
                    source: None,
                })
                .await
                .expect("produce")
            else {
                panic!("produce: unexpected answer");
            };
            produced[i] = Some(producer_id);
            ports.push(port);
            publishers.push((publisher(SocketAddr::new(ip, port)), outgoing));
        }
        clients.push(client);
    }
    let caps = caps.expect("someone joined");
    for ((_, consumes), client) in members.iter().zip(&mut clients) {
        if consumes.is_empty() {
            continue;
        }
        let ServerMessage::PlainTransportCreated { transport_id, ip, port, .. } = client
            .request(ClientMessage::CreatePlainTransport { direction: Direction::Recv })
            .await
            .expect("create a receive transport")
        else {
            panic!("createPlainTransport: unexpected answer");
        };
        announce(receiver, SocketAddr::new(ip, port));
        for j in consumes {
            let producer_id = produced[*j].expect("published");
            let ServerMessage::Consumed { consumer_id, .. } = client
                .request(ClientMessage::Consume { transport_id, producer_id, rtp_capabilities: caps.clone() })
                .await
                .expect("consume")
            else {
                panic!("consume: unexpected answer");
            };
            client.request(ClientMessage::ResumeConsumer { consumer_id }).await.expect("resume");
        }
    }
    let receiver = receiver.try_clone().expect("clone the receive socket");
    let wiring = Wiring { publishers, receiver, copies: shape.copies(), ingress_ports: ports };
    let tasks = std::iter::once(scraper).chain(clients.into_iter().map(drain)).collect();
    (wiring, Tiepdan { server, tasks })
}
