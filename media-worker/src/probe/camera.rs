//! A synthetic simulcast camera for the probe: three VP8 layers (a quarter, half and the full
//! height, each on its own SSRC) and an Opus-sized audio stream, at the bitrates the console asks
//! its camera for. It lets a benchmark fill a session with senders the SFU treats like browsers'
//! cameras (it picks a layer per receiver) without a browser per sender.
//!
//! Every frame is a VP8 key frame a decoder accepts: a valid key frame header, then partitions of
//! zero bytes. A boolean decoder reading zeros reads only 0 bits, whatever the probabilities, so
//! the frame says: no segmentation, no loop filter, quantizer 0, no probability updates, no skip
//! flags; every macroblock `B_PRED` with `B_DC_PRED` sub-blocks and `DC_PRED` chroma; every block
//! ends at once (`DCT_EOB`). That decodes to a flat grey picture of the layer's size, so a
//! browser reports the layer it receives (`frameHeight`). Each partition must hold the zeros its
//! macroblocks read (`min_frame_len`); the rest of a frame's bytes pad it to the layer's bitrate.

use mediasoup::prelude::{MediaKind, MimeTypeVideo, RtpCodecParametersParameters, RtpParameters};
use mediasoup::rtp_parameters::{RtcpParameters, RtpCodecParameters, RtpEncodingParameters};
use std::num::NonZeroU32;
use std::time::Duration;
use tiepdan_contract::media::MAX_SIMULCAST_LAYERS;

use super::rtp::{AUDIO_PAYLOAD_TYPE, VIDEO_PAYLOAD_TYPE};

/// Video frames per second, every layer. Lower than a camera's 30 so that the top layer's frame
/// at its bitrate holds the zeros a 720p key frame's macroblocks read; the SFU's layer choice and
/// what a receiver downloads depend on each layer's bitrate, not on how it is cut into frames.
pub const FRAMES_PER_SECOND: u32 = 10;
/// Audio packets per second: Opus's 20 ms frames.
pub const AUDIO_PACKETS_PER_SECOND: u32 = 50;
/// Audio payload per packet: 32 kbit/s, what Chromium's Opus sent in the four-browser
/// measurement (`download_per_office`, 31–32 kbit/s per audio consumer).
pub const AUDIO_PAYLOAD_BYTES: usize = 80;
/// VP8 data per RTP packet, below a path MTU with room for the headers.
const MAX_VP8_DATA: usize = 1100;
/// The console's camera aims its layers at nine tenths of the budget, shared 10/25/65 % from the
/// lowest (`ENCODER_HEADROOM` and `SHARES` in `media-worker/web/src/connection.ts`).
const ENCODER_HEADROOM_PERCENT: u32 = 90;
const LAYER_SHARE_PERCENT: [u32; MAX_SIMULCAST_LAYERS] = [10, 25, 65];
/// The length of a VP8 key frame's uncompressed header (frame tag, start code, sizes).
const KEY_FRAME_HEADER_LEN: usize = 10;
const VIDEO_CLOCK_RATE: u32 = 90_000;
const AUDIO_CLOCK_RATE: u32 = 48_000;
/// The largest width or height: a 4096×4096 frame's first partition (49 KB) fits the frame
/// tag's 19 bits; VP8's own limit, 16383, would not.
pub const MAX_SIDE: u16 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraError {
    #[error("a layer of {width}x{height} at {kbps} kbit/s has {got} bytes per frame; its key frame needs {needed}")]
    LayerTooThin { width: u16, height: u16, kbps: u32, got: usize, needed: usize },
    #[error("a synthetic camera sends 1 to {MAX_SIMULCAST_LAYERS} layers, not {0}")]
    LayerCount(usize),
    #[error("a layer's width and height must be between 16 and {MAX_SIDE} pixels, not {0}x{1}")]
    Size(u16, u16),
}

/// One simulcast layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    pub width: u16,
    pub height: u16,
    /// What the layer sends, and declares as its `maxBitrate`.
    pub kbps: u32,
}

/// The layers the console's camera sends with a video budget of `budget_kbps` (at least 300, so
/// three layers) and a 16:9 picture `top_height` tall: 10, 25 and 65 % of nine tenths of the
/// budget at a quarter, half and the full height. At the operator's default caps (1500 kbit/s,
/// 720p) that is 135, 337 and 878 kbit/s at 180p, 360p and 720p.
pub fn console_layers(budget_kbps: u32, top_height: u16) -> Vec<Layer> {
    let target = budget_kbps * ENCODER_HEADROOM_PERCENT / 100;
    let mut kbps: Vec<u32> = LAYER_SHARE_PERCENT.iter().map(|share| target * share / 100).collect();
    // The top layer gets what rounding left, as in the console.
    let lower: u32 = kbps[..MAX_SIMULCAST_LAYERS - 1].iter().sum();
    kbps[MAX_SIMULCAST_LAYERS - 1] = target - lower;
    kbps.iter()
        .enumerate()
        .map(|(i, kbps)| {
            let scale = 1_u16 << (MAX_SIMULCAST_LAYERS - 1 - i);
            let height = top_height / scale;
            // 16:9, rounded to even like a camera's.
            let width = u16::try_from(u32::from(height) * 16 / 9).unwrap_or(u16::MAX) & !1;
            Layer { width, height, kbps: *kbps }
        })
        .collect()
}

fn macroblocks(width: u16, height: u16) -> usize {
    usize::from(width.div_ceil(16)) * usize::from(height.div_ceil(16))
}

/// The zero bytes each partition of a `width`×`height` key frame holds: what its macroblocks read
/// with room to spare. The first partition reads the frame header (mostly the 1056 coefficient
/// update flags, at most a few bytes of zeros) and per macroblock `B_PRED`, 16 × `B_DC_PRED` and
/// `DC_PRED` at probabilities 145, 231 and 142 (RFC 6386 §11.2, §11.3), about 4 bits: 6 are kept.
/// The token partition reads 24 end-of-block tokens per macroblock, under a bit each: 14 bits
/// are kept: a decoder may take a partition read past its end for a corrupt frame.
fn partition_lens(width: u16, height: u16) -> (usize, usize) {
    let mbs = macroblocks(width, height);
    (mbs * 6 / 8 + 128, mbs * 14 / 8 + 128)
}

/// The shortest key frame [`vp8_key_frame`] builds for a `width`×`height` layer.
fn min_frame_len(width: u16, height: u16) -> usize {
    let (first, tokens) = partition_lens(width, height);
    KEY_FRAME_HEADER_LEN + first + tokens
}

/// A decodable VP8 key frame of `width`×`height` (at most [`MAX_SIDE`]), `len` bytes long (at
/// least [`min_frame_len`]; the token partition takes the extra bytes).
fn vp8_key_frame(width: u16, height: u16, len: usize) -> Vec<u8> {
    let (first, _) = partition_lens(width, height);
    let len = len.max(min_frame_len(width, height));
    // Frame tag (RFC 6386 §9.1): bit 0 key frame (0), bits 1-3 version 0, bit 4 show_frame,
    // bits 5-23 the first partition's size (below 2^19 for sides up to MAX_SIDE).
    let size = u32::try_from(first).unwrap_or(0) & 0x7_ffff;
    let tag = 0x10 | (size << 5);
    let mut frame = Vec::with_capacity(len);
    frame.extend_from_slice(&tag.to_le_bytes()[..3]);
    frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
    // 14-bit sizes, scale bits 0.
    frame.extend_from_slice(&(width & 0x3fff).to_le_bytes());
    frame.extend_from_slice(&(height & 0x3fff).to_le_bytes());
    frame.resize(len, 0);
    frame
}

/// RTP state of one outgoing stream.
#[derive(Debug, Clone)]
struct RtpState {
    ssrc: u32,
    payload_type: u8,
    clock_rate: u32,
    seq: u16,
    timestamp: u32,
    /// Packets and payload octets sent, for sender reports (both wrap, RFC 3550 §6.4.1).
    packets: u32,
    octets: u32,
}

impl RtpState {
    fn new(ssrc: u32, payload_type: u8, clock_rate: u32) -> Self {
        Self { ssrc, payload_type, clock_rate, seq: 1, timestamp: 0, packets: 0, octets: 0 }
    }

    /// An RTCP sender report (RFC 3550 §6.4.1, no report blocks): at wall-clock time `ntp`, this
    /// stream's RTP clock reads its start (0) plus `elapsed`.
    fn sender_report(&self, ntp: u64, elapsed: Duration) -> Vec<u8> {
        let ticks = elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
        // The RTP clock wraps at 2^32: keeping the low 32 bits is the wrap.
        #[allow(clippy::cast_possible_truncation)]
        let rtp_timestamp = ticks as u32;
        let mut report = Vec::with_capacity(28);
        // V=2, no padding, no report blocks; type 200; length 6 (32-bit words after the first).
        report.extend_from_slice(&[0x80, 200, 0x00, 0x06]);
        report.extend_from_slice(&self.ssrc.to_be_bytes());
        report.extend_from_slice(&ntp.to_be_bytes());
        report.extend_from_slice(&rtp_timestamp.to_be_bytes());
        report.extend_from_slice(&self.packets.to_be_bytes());
        report.extend_from_slice(&self.octets.to_be_bytes());
        report
    }

    fn packet(&mut self, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut packet = Vec::with_capacity(12 + payload.len());
        packet.push(0x80);
        packet.push(if marker { 0x80 } else { 0 } | self.payload_type);
        packet.extend_from_slice(&self.seq.to_be_bytes());
        packet.extend_from_slice(&self.timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        packet.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        packet
    }
}

/// The payloads carrying `frame` (RFC 7741): each starts with a payload descriptor with a 15-bit
/// picture id, the first with S=1 (start of partition 0).
fn vp8_payloads(frame: &[u8], picture_id: u16) -> Vec<Vec<u8>> {
    frame
        .chunks(MAX_VP8_DATA)
        .enumerate()
        .map(|(i, chunk)| {
            let start = if i == 0 { 0x10 } else { 0 };
            // X=1 (extensions follow), S, PID 0; then I=1 and the picture id with M=1.
            let mut payload = vec![0x80 | start, 0x80];
            payload.extend_from_slice(&(0x8000 | (picture_id & 0x7fff)).to_be_bytes());
            payload.extend_from_slice(chunk);
            payload
        })
        .collect()
}

/// A synthetic simulcast camera and microphone: builds the RTP packets of each frame.
#[derive(Debug, Clone)]
pub struct SyntheticCamera {
    layers: Vec<(Layer, RtpState)>,
    audio: RtpState,
    picture_id: u16,
}

impl SyntheticCamera {
    /// A camera sending `layers` (lowest first), with random SSRCs.
    pub fn new(layers: &[Layer]) -> Result<Self, CameraError> {
        if layers.is_empty() || layers.len() > MAX_SIMULCAST_LAYERS {
            return Err(CameraError::LayerCount(layers.len()));
        }
        for layer in layers {
            let (width, height) = (layer.width, layer.height);
            if !(16..=MAX_SIDE).contains(&width) || !(16..=MAX_SIDE).contains(&height) {
                return Err(CameraError::Size(width, height));
            }
            let (got, needed) = (frame_len(layer), min_frame_len(width, height));
            if got < needed {
                return Err(CameraError::LayerTooThin { width, height, kbps: layer.kbps, got, needed });
            }
        }
        Ok(Self {
            layers: layers
                .iter()
                .map(|l| (*l, RtpState::new(rand::random::<u32>() | 1, VIDEO_PAYLOAD_TYPE, VIDEO_CLOCK_RATE)))
                .collect(),
            audio: RtpState::new(rand::random::<u32>() | 1, AUDIO_PAYLOAD_TYPE, AUDIO_CLOCK_RATE),
            picture_id: 0,
        })
    }

    /// The video producer's parameters: one encoding per layer, lowest first, with its SSRC, its
    /// bitrate as `maxBitrate` and its `scaleResolutionDownBy` against the top layer, as the
    /// console declares its camera.
    pub fn video_rtp_parameters(&self, cname: &str) -> RtpParameters {
        let top = self.layers.last().map_or(1.0, |(l, _)| f64::from(l.height));
        let encodings = self
            .layers
            .iter()
            .map(|(layer, rtp)| RtpEncodingParameters {
                ssrc: Some(rtp.ssrc),
                max_bitrate: Some(layer.kbps.saturating_mul(1000)),
                scale_resolution_down_by: Some(top / f64::from(layer.height)),
                ..RtpEncodingParameters::default()
            })
            .collect();
        RtpParameters {
            mid: None,
            codecs: vec![RtpCodecParameters::Video {
                mime_type: MimeTypeVideo::Vp8,
                payload_type: VIDEO_PAYLOAD_TYPE,
                clock_rate: NonZeroU32::new(90_000).expect("non-zero"),
                parameters: RtpCodecParametersParameters::default(),
                rtcp_feedback: Vec::new(),
            }],
            header_extensions: Vec::new(),
            encodings,
            rtcp: RtcpParameters { cname: Some(cname.to_owned()), reduced_size: true, mux: Some(true) },
        }
    }

    /// The audio producer's parameters: Opus on its SSRC.
    pub fn audio_rtp_parameters(&self, cname: &str) -> RtpParameters {
        super::peer::plain_rtp_parameters(MediaKind::Audio, self.audio.ssrc, cname)
    }

    /// The packets of the next video frame, every layer's.
    pub fn video_frame(&mut self) -> Vec<Vec<u8>> {
        let picture_id = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let mut packets = Vec::new();
        for (layer, rtp) in &mut self.layers {
            let frame = vp8_key_frame(layer.width, layer.height, frame_len(layer));
            let payloads = vp8_payloads(&frame, picture_id);
            let last = payloads.len() - 1;
            for (i, payload) in payloads.iter().enumerate() {
                packets.push(rtp.packet(i == last, payload));
            }
            rtp.timestamp = rtp.timestamp.wrapping_add(VIDEO_CLOCK_RATE / FRAMES_PER_SECOND);
        }
        packets
    }

    /// The next 20 ms audio packet: an Opus TOC byte (SILK wideband 20 ms, mono, one frame), then
    /// zeros up to an Opus frame's size.
    pub fn audio_packet(&mut self) -> Vec<u8> {
        let mut payload = vec![0_u8; AUDIO_PAYLOAD_BYTES];
        payload[0] = 0x48;
        let packet = self.audio.packet(false, &payload);
        self.audio.timestamp = self.audio.timestamp.wrapping_add(AUDIO_CLOCK_RATE / AUDIO_PACKETS_PER_SECOND);
        packet
    }

    /// A sender report per stream, every layer's and the audio's, as a browser sends about once a
    /// second: at `unix_time` (since the Unix epoch) the streams' RTP clocks read `elapsed` since
    /// the camera's first frame, which is when [`Self::video_frame`] and [`Self::audio_packet`]
    /// must have been called at their rates. mediasoup moves a simulcast consumer from one layer
    /// to another only once both layers' reports tie their RTP clocks to the wall clock; without
    /// them a consumer stays on the first layer it got, whatever its tile asks for later.
    pub fn sender_reports(&self, unix_time: Duration, elapsed: Duration) -> Vec<Vec<u8>> {
        let ntp = ntp_timestamp(unix_time);
        self.layers
            .iter()
            .map(|(_, rtp)| rtp)
            .chain(std::iter::once(&self.audio))
            .map(|rtp| rtp.sender_report(ntp, elapsed))
            .collect()
    }
}

/// The NTP timestamp (RFC 3550 §4: seconds since 1900 in the high 32 bits, the fraction in the
/// low 32) of `unix_time`.
fn ntp_timestamp(unix_time: Duration) -> u64 {
    /// 1970 - 1900 in seconds: 70 years with 17 leap days.
    const UNIX_EPOCH_IN_NTP: u64 = (70 * 365 + 17) * 86_400;
    let seconds = (unix_time.as_secs() + UNIX_EPOCH_IN_NTP) & 0xffff_ffff;
    let fraction = (u64::from(unix_time.subsec_nanos()) << 32) / 1_000_000_000;
    seconds << 32 | fraction
}

/// A layer's frame length at [`FRAMES_PER_SECOND`], less the payload descriptors' 4 bytes per
/// packet so that the RTP payloads add up to the layer's bitrate.
fn frame_len(layer: &Layer) -> usize {
    let bytes = usize::try_from(u64::from(layer.kbps) * 1000 / 8 / u64::from(FRAMES_PER_SECOND)).unwrap_or(0);
    let packets = bytes.div_ceil(MAX_VP8_DATA + 4).max(1);
    bytes.saturating_sub(4 * packets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::rtp::{is_rtcp, rtp_payload};

    /// The VP8 boolean decoder (RFC 6386 §7.3), to read back what the frame says.
    struct BoolDecoder<'a> {
        data: &'a [u8],
        pos: usize,
        value: u32,
        range: u32,
        bit_count: u32,
    }

    impl<'a> BoolDecoder<'a> {
        fn new(data: &'a [u8]) -> Self {
            let value = u32::from(data[0]) << 8 | u32::from(data[1]);
            Self { data, pos: 2, value, range: 255, bit_count: 0 }
        }

        fn read(&mut self, prob: u32) -> bool {
            let split = 1 + (((self.range - 1) * prob) >> 8);
            let big_split = split << 8;
            let bit = self.value >= big_split;
            if bit {
                self.range -= split;
                self.value -= big_split;
            } else {
                self.range = split;
            }
            while self.range < 128 {
                self.value <<= 1;
                self.range <<= 1;
                self.bit_count += 1;
                if self.bit_count == 8 {
                    self.bit_count = 0;
                    self.value |= u32::from(*self.data.get(self.pos).expect("read past the partition"));
                    self.pos += 1;
                }
            }
            bit
        }

        fn literal(&mut self, bits: u32) -> u32 {
            (0..bits).fold(0, |v, _| v << 1 | u32::from(self.read(128)))
        }
    }

    #[test]
    fn the_console_s_layers_at_the_default_caps() {
        let layers = console_layers(1500, 720);
        assert_eq!(
            layers,
            vec![
                Layer { width: 320, height: 180, kbps: 135 },
                Layer { width: 640, height: 360, kbps: 337 },
                Layer { width: 1280, height: 720, kbps: 878 },
            ]
        );
        assert_eq!(layers.iter().map(|l| l.kbps).sum::<u32>(), 1350, "nine tenths of the budget");
    }

    #[test]
    fn a_key_frame_names_its_size_and_its_first_partition() {
        let frame = vp8_key_frame(1280, 720, 20_000);
        assert_eq!(frame.len(), 20_000);
        let tag = u32::from(frame[0]) | u32::from(frame[1]) << 8 | u32::from(frame[2]) << 16;
        assert_eq!(tag & 1, 0, "a key frame");
        assert_eq!(tag >> 1 & 7, 0, "version 0");
        assert_eq!(tag >> 4 & 1, 1, "shown");
        let first = usize::try_from(tag >> 5).expect("size");
        assert_eq!(first, partition_lens(1280, 720).0);
        assert_eq!(&frame[3..6], &[0x9d, 0x01, 0x2a], "start code");
        assert_eq!(u16::from_le_bytes([frame[6], frame[7]]), 1280);
        assert_eq!(u16::from_le_bytes([frame[8], frame[9]]), 720);
        assert!(first + KEY_FRAME_HEADER_LEN < frame.len(), "a token partition follows");
        assert_eq!(vp8_key_frame(320, 180, 10).len(), min_frame_len(320, 180), "never shorter than its minimum");
    }

    #[test]
    fn the_first_partition_reads_as_a_plain_frame_with_dc_predicted_macroblocks() {
        let frame = vp8_key_frame(320, 180, 0);
        let first = partition_lens(320, 180).0;
        let mut bits = BoolDecoder::new(&frame[KEY_FRAME_HEADER_LEN..KEY_FRAME_HEADER_LEN + first]);
        // color_space, clamping, segmentation, filter type, level (6), sharpness (3), lf deltas,
        // partitions (2), the base quantizer (7) and its five deltas, refresh_entropy_probs.
        for (field, bits_wide) in
            [("color", 1), ("clamp", 1), ("segmentation", 1), ("filter", 1), ("level", 6), ("sharpness", 3)]
        {
            assert_eq!(bits.literal(bits_wide), 0, "{field}");
        }
        assert_eq!(bits.literal(1), 0, "no loop filter deltas");
        assert_eq!(bits.literal(2), 0, "one token partition");
        assert_eq!(bits.literal(7), 0, "quantizer index");
        assert_eq!(bits.literal(5), 0, "no quantizer deltas");
        assert_eq!(bits.literal(1), 0, "refresh_entropy_probs");
        // Whatever the probabilities of the 1056 update flags, zeros read as "no update".
        for prob in (0..1056).map(|i| 128 + (i * 7) % 128) {
            assert!(!bits.read(prob));
        }
        assert_eq!(bits.literal(1), 0, "no skip flags");
        for _ in 0..macroblocks(320, 180) {
            assert!(!bits.read(145), "B_PRED");
            for _ in 0..16 {
                assert!(!bits.read(231), "B_DC_PRED");
            }
            assert!(!bits.read(142), "chroma DC_PRED");
        }
    }

    #[test]
    fn a_frame_is_cut_into_packets_whose_descriptors_start_once() {
        let frame = vp8_key_frame(640, 360, 4200);
        let payloads = vp8_payloads(&frame, 0x1234);
        assert_eq!(payloads.len(), 4);
        for (i, payload) in payloads.iter().enumerate() {
            assert_eq!(payload[0], if i == 0 { 0x90 } else { 0x80 }, "S only on the first");
            assert_eq!(&payload[1..4], &[0x80, 0x92, 0x34], "picture id 0x1234 with M=1");
        }
        let data: Vec<u8> = payloads.iter().flat_map(|p| p[4..].to_vec()).collect();
        assert_eq!(data, frame);
    }

    #[test]
    fn a_second_of_frames_carries_each_layer_s_bitrate_with_the_marker_on_each_frame_s_last_packet() {
        let layers = console_layers(1500, 720);
        let mut camera = SyntheticCamera::new(&layers).expect("camera");
        let ssrcs: Vec<u32> = camera.layers.iter().map(|(_, r)| r.ssrc).collect();
        let mut bytes = vec![0_usize; layers.len()];
        for _ in 0..FRAMES_PER_SECOND {
            let packets = camera.video_frame();
            for (i, ssrc) in ssrcs.iter().enumerate() {
                let mine: Vec<&Vec<u8>> =
                    packets.iter().filter(|p| u32::from_be_bytes([p[8], p[9], p[10], p[11]]) == *ssrc).collect();
                let markers: Vec<bool> = mine.iter().map(|p| p[1] & 0x80 != 0).collect();
                assert_eq!(markers.iter().filter(|m| **m).count(), 1);
                assert_eq!(markers.last(), Some(&true));
                bytes[i] += mine.iter().map(|p| rtp_payload(p).expect("rtp").len()).sum::<usize>();
            }
        }
        for (layer, bytes) in layers.iter().zip(bytes) {
            let kbps = u32::try_from(bytes * 8 / 1000).expect("kbit/s");
            assert!(kbps.abs_diff(layer.kbps) <= 1, "{layer:?} sent {kbps} kbit/s");
        }
        let audio = camera.audio_packet();
        assert_eq!(rtp_payload(&audio).map(<[u8]>::len), Some(AUDIO_PAYLOAD_BYTES));
    }

    #[test]
    fn sender_reports_tie_every_stream_s_rtp_clock_to_the_wall_clock() {
        let mut camera = SyntheticCamera::new(&console_layers(1500, 720)).expect("camera");
        let frames = camera.video_frame();
        let _ = camera.audio_packet();
        // 2026-12-06T00:00:00.25Z, 1.5 s after the first frame.
        let unix = Duration::from_millis(1_796_515_200_250);
        let reports = camera.sender_reports(unix, Duration::from_millis(1500));
        assert_eq!(reports.len(), 4, "three layers and the audio");
        let ssrcs: Vec<u32> = camera.layers.iter().map(|(_, r)| r.ssrc).chain([camera.audio.ssrc]).collect();
        let word = |r: &[u8], at: usize| u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
        for (i, (report, ssrc)) in reports.iter().zip(ssrcs).enumerate() {
            assert_eq!(report.len(), 28);
            assert!(is_rtcp(report));
            assert_eq!(&report[..4], &[0x80, 200, 0, 6], "a sender report of 7 words");
            assert_eq!(word(report, 4), ssrc);
            assert_eq!(word(report, 8), 4_005_504_000, "seconds since 1900");
            assert_eq!(word(report, 12), 1 << 30, "a quarter second");
            let (clock, payloads) = if i < 3 {
                let mine: Vec<&Vec<u8>> = frames.iter().filter(|p| word(p, 8) == ssrc).collect();
                (90_000 * 3 / 2, mine.iter().map(|p| rtp_payload(p).expect("rtp").len()).sum::<usize>())
            } else {
                (48_000 * 3 / 2, AUDIO_PAYLOAD_BYTES)
            };
            assert_eq!(word(report, 16), clock, "the RTP clock 1.5 s on");
            let packets = if i < 3 { frames.iter().filter(|p| word(p, 8) == ssrc).count() } else { 1 };
            assert_eq!(word(report, 20), u32::try_from(packets).expect("count"));
            assert_eq!(word(report, 24), u32::try_from(payloads).expect("octets"));
        }
    }

    #[test]
    fn the_producer_declares_each_layer_like_the_console() {
        let camera = SyntheticCamera::new(&console_layers(1500, 720)).expect("camera");
        let parameters = camera.video_rtp_parameters("probe");
        let declared: Vec<(Option<u32>, Option<f64>)> =
            parameters.encodings.iter().map(|e| (e.max_bitrate, e.scale_resolution_down_by)).collect();
        assert_eq!(declared, vec![(Some(135_000), Some(4.0)), (Some(337_000), Some(2.0)), (Some(878_000), Some(1.0))]);
        assert!(crate::layers::check_send(&parameters.encodings, Some(1500)).is_ok());
    }

    #[test]
    fn layers_too_thin_for_their_key_frames_or_too_many_are_refused() {
        let thin = Layer { width: 1280, height: 720, kbps: 100 };
        assert!(
            matches!(SyntheticCamera::new(&[thin]), Err(CameraError::LayerTooThin { needed, .. }) if needed > 1000)
        );
        let fine = Layer { width: 320, height: 180, kbps: 135 };
        assert_eq!(SyntheticCamera::new(&[fine; 4]).err(), Some(CameraError::LayerCount(4)));
        assert_eq!(SyntheticCamera::new(&[]).err(), Some(CameraError::LayerCount(0)));
        let tiny = Layer { width: 8, height: 8, kbps: 135 };
        assert_eq!(SyntheticCamera::new(&[tiny]).err(), Some(CameraError::Size(8, 8)));
        let huge = Layer { width: 8192, height: 4320, kbps: 100_000 };
        assert_eq!(SyntheticCamera::new(&[huge]).err(), Some(CameraError::Size(8192, 4320)));
        let (first, _) = partition_lens(MAX_SIDE, MAX_SIDE);
        assert!(first < 1 << 19, "the largest first partition fits the frame tag");
    }
}
