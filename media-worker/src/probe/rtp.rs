//! Synthetic RTP for the probe: just enough Opus- and VP8-shaped payload for mediasoup to forward
//! it, plus a stamp (origin, kind, sequence, send time) that survives the SFU untouched.

use mediasoup::prelude::MediaKind;

/// Marks the start of a probe stamp inside a payload.
pub const STAMP_MAGIC: [u8; 4] = *b"TDPB";
const STAMP_LEN: usize = 4 + 4 + 1 + 4 + 8;

/// Payload types the probe declares for its producers (dynamic range).
pub const AUDIO_PAYLOAD_TYPE: u8 = 100;
pub const VIDEO_PAYLOAD_TYPE: u8 = 101;

const AUDIO_CLOCK_RATE: u32 = 48_000;
const VIDEO_CLOCK_RATE: u32 = 90_000;

/// What the probe writes into every payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Identifies the sending peer, so a receiver can tell its own media from another's.
    pub origin: u32,
    pub kind: MediaKind,
    /// Probe sequence number, independent of the RTP one (which the SFU rewrites).
    pub seq: u32,
    /// Send time on the process clock ([`super::measure::clock_ns`]).
    pub sent_ns: u64,
}

impl Stamp {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&STAMP_MAGIC);
        out.extend_from_slice(&self.origin.to_be_bytes());
        out.push(match self.kind {
            MediaKind::Audio => 0,
            MediaKind::Video => 1,
        });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Finds the stamp anywhere in `payload` (the SFU may rewrite codec headers in front of it).
    pub fn find(payload: &[u8]) -> Option<Self> {
        let start = payload.windows(STAMP_MAGIC.len()).position(|w| w == STAMP_MAGIC)?;
        let s = payload.get(start + 4..start + STAMP_LEN)?;
        let origin = u32::from_be_bytes(s.get(0..4)?.try_into().ok()?);
        let kind = match s.get(4)? {
            0 => MediaKind::Audio,
            1 => MediaKind::Video,
            _ => return None,
        };
        let seq = u32::from_be_bytes(s.get(5..9)?.try_into().ok()?);
        let sent_ns = u64::from_be_bytes(s.get(9..17)?.try_into().ok()?);
        Some(Self { origin, kind, seq, sent_ns })
    }
}

/// RTP state of one outgoing stream.
#[derive(Debug, Clone)]
pub struct OutgoingStream {
    pub kind: MediaKind,
    pub ssrc: u32,
    pub payload_type: u8,
    rtp_seq: u16,
    rtp_timestamp: u32,
    probe_seq: u32,
}

impl OutgoingStream {
    pub fn new(kind: MediaKind, ssrc: u32) -> Self {
        Self {
            kind,
            ssrc,
            payload_type: match kind {
                MediaKind::Audio => AUDIO_PAYLOAD_TYPE,
                MediaKind::Video => VIDEO_PAYLOAD_TYPE,
            },
            rtp_seq: 1,
            rtp_timestamp: 0,
            probe_seq: 0,
        }
    }

    /// Packets built so far.
    pub fn sent(&self) -> u32 {
        self.probe_seq
    }

    /// The next packet, stamped with `origin` and `sent_ns`, advancing the RTP clock as if
    /// `rate_pps` frames were sent per second.
    pub fn next_packet(&mut self, origin: u32, sent_ns: u64, rate_pps: u32) -> Vec<u8> {
        let stamp = Stamp { origin, kind: self.kind, seq: self.probe_seq, sent_ns };
        let mut packet = Vec::with_capacity(256);
        // V=2, no padding/extension/CSRC; marker on video: every packet is a whole frame.
        packet.push(0x80);
        let marker = if self.kind == MediaKind::Video { 0x80 } else { 0 };
        packet.push(marker | self.payload_type);
        packet.extend_from_slice(&self.rtp_seq.to_be_bytes());
        packet.extend_from_slice(&self.rtp_timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        match self.kind {
            MediaKind::Audio => {
                // An Opus TOC byte (config 15, stereo, one frame), then the stamp.
                packet.push(0x7c);
                stamp.write(&mut packet);
                packet.resize(packet.len() + 40, 0);
            }
            MediaKind::Video => {
                // VP8 payload descriptor: X=1 S=1 PID=0; I=1; 15-bit picture id. Then a key
                // frame header (P bit 0) so mediasoup forwards it without waiting for a key
                // frame; every probe frame is a key frame.
                let picture_id = (self.probe_seq & 0x7fff) as u16;
                packet.extend_from_slice(&[0x90, 0x80]);
                packet.extend_from_slice(&(0x8000 | picture_id).to_be_bytes());
                packet.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
                stamp.write(&mut packet);
                packet.resize(packet.len() + 160, 0);
            }
        }
        self.rtp_seq = self.rtp_seq.wrapping_add(1);
        let clock = match self.kind {
            MediaKind::Audio => AUDIO_CLOCK_RATE,
            MediaKind::Video => VIDEO_CLOCK_RATE,
        };
        self.rtp_timestamp = self.rtp_timestamp.wrapping_add(clock / rate_pps.max(1));
        self.probe_seq += 1;
        packet
    }
}

/// RTCP shares the port with RTP (rtcp-mux); its packet types 192–223 sit where RTP has the
/// marker bit and payload type (RFC 5761).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

/// An RTCP receiver report with no report blocks: version 2, packet type 201, length 1 (32-bit
/// words after the first), then the sender's SSRC.
pub fn empty_receiver_report(ssrc: u32) -> [u8; 8] {
    let s = ssrc.to_be_bytes();
    [0x80, 201, 0x00, 0x01, s[0], s[1], s[2], s[3]]
}

/// The payload of an RTP packet, skipping CSRCs, header extensions and padding.
pub fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    if first >> 6 != 2 || packet.len() < 12 {
        return None;
    }
    let csrc_count = usize::from(first & 0x0f);
    let mut offset = 12 + 4 * csrc_count;
    if first & 0x10 != 0 {
        let words = packet.get(offset + 2..offset + 4)?;
        let length = usize::from(u16::from_be_bytes([words[0], words[1]]));
        offset += 4 + 4 * length;
    }
    let mut end = packet.len();
    if first & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    packet.get(offset..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_packets() {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let mut stream = OutgoingStream::new(kind, 1234);
            let _ = stream.next_packet(7, 10, 50);
            let packet = stream.next_packet(7, 99, 50);
            assert!(!is_rtcp(&packet));
            let payload = rtp_payload(&packet).expect("rtp");
            let stamp = Stamp::find(payload).expect("stamp");
            assert_eq!(stamp, Stamp { origin: 7, kind, seq: 1, sent_ns: 99 });
        }
    }

    #[test]
    fn header_extensions_are_skipped() {
        let mut stream = OutgoingStream::new(MediaKind::Audio, 1);
        let plain = stream.next_packet(1, 2, 50);
        let mut extended = plain[..12].to_vec();
        extended[0] |= 0x10;
        extended.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0xff, 0x00, 0x00]);
        extended.extend_from_slice(&plain[12..]);
        assert_eq!(rtp_payload(&extended), rtp_payload(&plain));
    }

    #[test]
    fn garbage_is_not_rtp() {
        assert_eq!(rtp_payload(&[0x00; 20]), None);
        assert_eq!(rtp_payload(&[0x90, 0, 0]), None);
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&empty_receiver_report(7)));
        assert_eq!(rtp_payload(&empty_receiver_report(7)), None);
        assert_eq!(Stamp::find(b"TDPB\x00"), None);
    }
}
