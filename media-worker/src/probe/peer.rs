//! A probe that speaks plain RTP over UDP instead of WebRTC: a send and a receive transport, each
//! paired with a local UDP socket whose first packet tells the worker where it is (comedia).

use super::camera::SyntheticCamera;
use super::client::{ClientError, SignalingClient};
use super::measure::{clock_ns, Arrivals};
use super::rtp::{
    empty_receiver_report, is_rtcp, rtp_payload, OutgoingStream, Stamp, AUDIO_PAYLOAD_TYPE, VIDEO_PAYLOAD_TYPE,
};
use super::tls::ClientTls;
use crate::ids::PointName;
use crate::signaling::protocol::{ClientMessage, Direction, ProducerInfo, ServerMessage};
use mediasoup::prelude::{
    ConsumerId, MediaKind, MimeTypeAudio, MimeTypeVideo, ProducerId, RtpCapabilities, RtpCodecParametersParameters,
    RtpParameters, TransportId,
};
use mediasoup::rtp_parameters::{RtcpParameters, RtpCodecParameters, RtpEncodingParameters};
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroU8};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Signaling(#[from] ClientError),
    #[error("failed to use a local UDP socket")]
    Socket(#[source] std::io::Error),
    #[error("the worker answered {0} with an unexpected message")]
    Unexpected(&'static str),
}

/// The two producers a peer publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub audio: ProducerId,
    pub video: ProducerId,
}

/// Received packets, shared with the receiving task.
#[derive(Debug, Default)]
pub struct Inbox {
    arrivals: Mutex<Arrivals>,
    changed: Notify,
}

impl Inbox {
    pub fn snapshot(&self) -> Arrivals {
        self.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Waits until `done` holds for the arrivals or `timeout` passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Arrivals) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if done(&self.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }
}

/// Aborts the receiving task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
pub struct PlainPeer {
    pub client: SignalingClient,
    pub point: PointName,
    /// Producers present when this peer joined.
    pub initial_producers: Vec<ProducerInfo>,
    /// Random id written into every packet this peer sends.
    pub origin: u32,
    /// What the probe can receive: everything the router can send.
    pub rtp_capabilities: RtpCapabilities,
    send_transport: TransportId,
    recv_transport: TransportId,
    send_socket: Arc<UdpSocket>,
    /// Where the worker's send transport (the one this peer produces on) announced itself.
    send_remote: SocketAddr,
    /// Media arrives here; its first packet to `recv_remote` told the worker so.
    recv_socket: Arc<UdpSocket>,
    recv_remote: SocketAddr,
    audio: OutgoingStream,
    video: OutgoingStream,
    inbox: Arc<Inbox>,
    _receiver: AbortOnDrop,
}

impl PlainPeer {
    /// Joins and sets up both transports. `local_ip` must be reachable from the worker's RTC IP.
    pub async fn join(url: &str, token: &str, local_ip: IpAddr) -> Result<Self, PeerError> {
        Self::join_with(url, token, local_ip, None).await
    }

    /// [`Self::join`] over `wss://` too, trusting `tls` (see [`SignalingClient::connect_with`]).
    pub async fn join_with(
        url: &str,
        token: &str,
        local_ip: IpAddr,
        tls: Option<&ClientTls>,
    ) -> Result<Self, PeerError> {
        let mut client = SignalingClient::connect_with(url, tls).await?;
        let ServerMessage::Joined { point, router_rtp_capabilities, producers, .. } =
            client.request(ClientMessage::Join { token: token.to_owned() }).await?
        else {
            return Err(PeerError::Unexpected("join"));
        };
        // The router's capabilities describe everything it can send; a plain receiver accepts
        // them all. Converting via JSON maps the finalized form to the request form.
        let rtp_capabilities: RtpCapabilities = serde_json::to_value(&router_rtp_capabilities)
            .and_then(serde_json::from_value)
            .map_err(|e| PeerError::Signaling(ClientError::Decode(e)))?;

        // Both transports are comedia (the worker allows nothing else): it sends to wherever the
        // first packet on a transport came from. The send socket's first RTP does that for the
        // send transport; the receive socket announces itself with an empty receiver report.
        let ServerMessage::PlainTransportCreated { transport_id: send_transport, ip, port, .. } =
            client.request(ClientMessage::CreatePlainTransport { direction: Direction::Send }).await?
        else {
            return Err(PeerError::Unexpected("createPlainTransport"));
        };
        let send_socket = UdpSocket::bind((local_ip, 0)).await.map_err(PeerError::Socket)?;
        let send_remote = SocketAddr::new(ip, port);
        send_socket.connect(send_remote).await.map_err(PeerError::Socket)?;

        let ServerMessage::PlainTransportCreated { transport_id: recv_transport, ip, port, .. } =
            client.request(ClientMessage::CreatePlainTransport { direction: Direction::Recv }).await?
        else {
            return Err(PeerError::Unexpected("createPlainTransport"));
        };
        // Not connected: the worker may send from another address than the one it announces.
        let recv_socket = Arc::new(UdpSocket::bind((local_ip, 0)).await.map_err(PeerError::Socket)?);
        let recv_remote = SocketAddr::new(ip, port);
        announce(&recv_socket, recv_remote).await?;

        let inbox = Arc::new(Inbox::default());
        let receiver = tokio::spawn(receive_loop(Arc::clone(&recv_socket), Arc::clone(&inbox)));
        let origin = rand::random::<u32>();
        Ok(Self {
            client,
            point,
            initial_producers: producers,
            origin,
            rtp_capabilities,
            send_transport,
            recv_transport,
            send_socket: Arc::new(send_socket),
            send_remote,
            recv_socket,
            recv_remote,
            audio: OutgoingStream::new(MediaKind::Audio, rand::random::<u32>() | 1),
            video: OutgoingStream::new(MediaKind::Video, rand::random::<u32>() | 1),
            inbox,
            _receiver: AbortOnDrop(receiver),
        })
    }

    /// The addresses the worker announced for this peer's send and receive transports: the RTC
    /// address and ports media flows through.
    pub fn worker_addresses(&self) -> [SocketAddr; 2] {
        [self.send_remote, self.recv_remote]
    }

    /// Produces one audio (Opus) and one video (VP8) stream.
    pub async fn publish(&mut self) -> Result<Published, PeerError> {
        let cname = format!("probe-{:08x}", self.origin);
        let audio = self.produce(MediaKind::Audio, rtp_parameters(&self.audio, &cname)).await?;
        let video = self.produce(MediaKind::Video, rtp_parameters(&self.video, &cname)).await?;
        Ok(Published { audio, video })
    }

    /// Produces a synthetic simulcast camera's audio and video (see [`SyntheticCamera`]); send
    /// its packets with [`Self::send_packet`].
    pub async fn publish_camera(&mut self, camera: &SyntheticCamera) -> Result<Published, PeerError> {
        let cname = format!("probe-{:08x}", self.origin);
        let audio = self.produce(MediaKind::Audio, camera.audio_rtp_parameters(&cname)).await?;
        let video = self.produce(MediaKind::Video, camera.video_rtp_parameters(&cname)).await?;
        Ok(Published { audio, video })
    }

    /// Sends one RTP packet to the worker's send transport.
    pub async fn send_packet(&self, packet: &[u8]) -> Result<(), PeerError> {
        self.send_socket.send(packet).await.map_err(PeerError::Socket)?;
        Ok(())
    }

    async fn produce(&mut self, kind: MediaKind, rtp_parameters: RtpParameters) -> Result<ProducerId, PeerError> {
        match self
            .client
            .request(ClientMessage::Produce { transport_id: self.send_transport, kind, rtp_parameters, source: None })
            .await?
        {
            ServerMessage::Produced { producer_id } => Ok(producer_id),
            _ => Err(PeerError::Unexpected("produce")),
        }
    }

    /// Consumes a producer (possibly our own) on the receive transport and resumes it.
    pub async fn consume(&mut self, producer_id: ProducerId) -> Result<ConsumerId, PeerError> {
        let ServerMessage::Consumed { consumer_id, .. } = self
            .client
            .request(ClientMessage::Consume {
                transport_id: self.recv_transport,
                producer_id,
                rtp_capabilities: self.rtp_capabilities.clone(),
            })
            .await?
        else {
            return Err(PeerError::Unexpected("consume"));
        };
        self.client.request(ClientMessage::ResumeConsumer { consumer_id }).await?;
        // Again, in case the first one was lost: UDP gives no receipt.
        announce(&self.recv_socket, self.recv_remote).await?;
        Ok(consumer_id)
    }

    /// Sends one audio and one video packet.
    pub async fn send_once(&mut self, rate_pps: u32) -> Result<(), PeerError> {
        for stream in [&mut self.audio, &mut self.video] {
            let packet = stream.next_packet(self.origin, clock_ns(), rate_pps);
            self.send_socket.send(&packet).await.map_err(PeerError::Socket)?;
        }
        Ok(())
    }

    /// Packets sent so far per kind.
    pub fn sent(&self, kind: MediaKind) -> u64 {
        u64::from(match kind {
            MediaKind::Audio => self.audio.sent(),
            MediaKind::Video => self.video.sent(),
        })
    }

    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Leaves politely and closes the connection.
    pub async fn leave(mut self) -> Result<(), PeerError> {
        self.client.request(ClientMessage::Leave).await?;
        self.client.close().await;
        Ok(())
    }
}

fn rtp_parameters(stream: &OutgoingStream, cname: &str) -> RtpParameters {
    plain_rtp_parameters(stream.kind, stream.ssrc, cname)
}

/// What a plain-RTP sender of `kind` (Opus or VP8, the probe's payload types) produces with:
/// one encoding with `ssrc`, RTCP muxed. The media benchmark sends with the same parameters.
pub fn plain_rtp_parameters(kind: MediaKind, ssrc: u32, cname: &str) -> RtpParameters {
    let codec = match kind {
        MediaKind::Audio => RtpCodecParameters::Audio {
            mime_type: MimeTypeAudio::Opus,
            payload_type: AUDIO_PAYLOAD_TYPE,
            clock_rate: NonZeroU32::new(48_000).expect("non-zero"),
            channels: NonZeroU8::new(2).expect("non-zero"),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: Vec::new(),
        },
        MediaKind::Video => RtpCodecParameters::Video {
            mime_type: MimeTypeVideo::Vp8,
            payload_type: VIDEO_PAYLOAD_TYPE,
            clock_rate: NonZeroU32::new(90_000).expect("non-zero"),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: Vec::new(),
        },
    };
    RtpParameters {
        mid: None,
        codecs: vec![codec],
        header_extensions: Vec::new(),
        encodings: vec![RtpEncodingParameters { ssrc: Some(ssrc), ..RtpEncodingParameters::default() }],
        rtcp: RtcpParameters { cname: Some(cname.to_owned()), reduced_size: true, mux: Some(true) },
    }
}

/// Sends an empty RTCP receiver report (RFC 3550 §6.4.2) from the receive socket to the worker's
/// receive transport `to`, so that comedia transport learns where to send.
async fn announce(socket: &UdpSocket, to: SocketAddr) -> Result<(), PeerError> {
    socket.send_to(&empty_receiver_report(rand::random::<u32>()), to).await.map_err(PeerError::Socket)?;
    Ok(())
}

async fn receive_loop(socket: Arc<UdpSocket>, inbox: Arc<Inbox>) {
    let mut buffer = vec![0_u8; 2048];
    loop {
        let Ok(len) = socket.recv(&mut buffer).await else {
            return;
        };
        let arrived_ns = clock_ns();
        let packet = &buffer[..len];
        if is_rtcp(packet) {
            continue;
        }
        let Some(stamp) = rtp_payload(packet).and_then(Stamp::find) else {
            continue;
        };
        inbox.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(stamp, arrived_ns);
        inbox.changed.notify_waiters();
    }
}
