//! The RTP the generator sends: Opus-sized (~100 B payload) and VP8-sized (~1,100 B) packets,
//! each stamped at its very end with the trial it belongs to and its send time. The end, because
//! an SFU may rewrite or add header extensions and codec descriptors in front, never behind.

use std::sync::OnceLock;
use std::time::Instant;

pub const OPUS_PT: u8 = 100;
pub const VP8_PT: u8 = 101;
const MAGIC: [u8; 4] = *b"TDMF";
/// trial (4) + send time (8) + magic (4).
const STAMP_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Opus,
    Vp8,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Opus => "Opus",
            Stream::Vp8 => "VP8",
        }
    }

    pub fn payload_type(self) -> u8 {
        match self {
            Stream::Opus => OPUS_PT,
            Stream::Vp8 => VP8_PT,
        }
    }

    /// RTP payload bytes, stamp included.
    pub fn payload_len(self) -> usize {
        match self {
            Stream::Opus => 100,
            Stream::Vp8 => 1100,
        }
    }
}

/// Nanoseconds on a monotonic clock shared by the generator and the receiver.
pub fn clock_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One publisher's outgoing RTP stream.
#[derive(Debug, Clone)]
pub struct Outgoing {
    stream: Stream,
    pub ssrc: u32,
    seq: u16,
    timestamp: u32,
    picture_id: u16,
}

impl Outgoing {
    pub fn new(stream: Stream, ssrc: u32) -> Self {
        Outgoing { stream, ssrc, seq: 1, timestamp: 0, picture_id: 0 }
    }

    /// Writes the next packet into `out` (cleared first).
    pub fn next(&mut self, trial: u32, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        // Marker on every video packet: each one is a whole frame.
        let marker = if self.stream == Stream::Vp8 { 0x80 } else { 0 };
        out.push(marker | self.stream.payload_type());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let start = out.len();
        match self.stream {
            // An Opus TOC byte (config 15, stereo, one frame).
            Stream::Opus => out.push(0x7c),
            Stream::Vp8 => {
                // VP8 payload descriptor (X, S; I; a 15-bit picture id), then a key frame header
                // (P bit 0): mediasoup forwards to a new consumer only from a key frame on.
                out.extend_from_slice(&[0x90, 0x80]);
                out.extend_from_slice(&(0x8000 | self.picture_id).to_be_bytes());
                out.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
                self.picture_id = (self.picture_id + 1) & 0x7fff;
            }
        }
        out.resize(start + self.stream.payload_len() - STAMP_LEN, 0);
        out.extend_from_slice(&trial.to_be_bytes());
        out.extend_from_slice(&clock_ns().to_be_bytes());
        out.extend_from_slice(&MAGIC);
        self.seq = self.seq.wrapping_add(1);
        // 20 ms frames at 48 kHz / 33 ms at 90 kHz: the SFU does not care, but it sees a clock.
        self.timestamp = self.timestamp.wrapping_add(match self.stream {
            Stream::Opus => 960,
            Stream::Vp8 => 3000,
        });
    }
}

/// The trial and send time stamped on a forwarded packet; `None` for RTCP and anything else.
pub fn stamp(packet: &[u8]) -> Option<(u32, u64)> {
    let n = packet.len();
    if n < 12 + STAMP_LEN || packet[n - 4..] != MAGIC {
        return None;
    }
    let trial = u32::from_be_bytes(packet[n - 16..n - 12].try_into().ok()?);
    let sent = u64::from_be_bytes(packet[n - 12..n - 4].try_into().ok()?);
    Some((trial, sent))
}
