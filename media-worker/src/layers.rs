//! Which simulcast layer each receiver gets, and what a sender may send (pure; the room applies
//! it to mediasoup).
//!
//! Per video consumer the console reports the tile it shows the picture in (`setViewport`): its
//! height in device pixels, or hidden (scrolled away, or the window minimised). From that:
//!
//! - a hidden tile's consumer is paused: nothing is sent for a picture nobody sees;
//! - a visible tile's consumer *prefers* the smallest layer at least as tall as the tile (a
//!   thumbnail gets the 180p layer, a large tile the full picture);
//! - its priority grows with the tile, and audio's is the highest: when the receiver's bandwidth
//!   estimate (mediasoup's, from transport-cc) cannot carry every preferred layer, mediasoup
//!   gives the bitrate out by priority, so sound comes first, then big tiles, and a small tile
//!   drops to a lower layer (or temporal layer) before a big one does.
//!
//! mediasoup never forwards a layer above the preferred one, and lowers a consumer below it as the
//! estimate falls, raising it again as the estimate recovers (it probes up to what the preferred
//! layers need). So "fits the tile" is decided here and "fits the line" by mediasoup's estimate.

use crate::signaling::protocol::TileView;
use mediasoup::rtp_parameters::RtpEncodingParameters;
use tiepdan_contract::media::MAX_SIMULCAST_LAYERS;

/// Audio's consumer priority: the highest, so speech is never starved by pictures.
pub const AUDIO_PRIORITY: u8 = 255;
/// A video consumer's priority range; its tile height picks a value inside it.
const VIDEO_PRIORITY_MIN: u8 = 1;
const VIDEO_PRIORITY_MAX: u8 = 200;
/// The height the top layer is taken to have when the session sets none (`maxHeight`): what the
/// console opens the camera at then.
pub const DEFAULT_TOP_HEIGHT: u32 = 540;
/// A layer this much shorter than the tile still looks sharp enough: browsers scale up a little
/// without visible blur, and the next layer up costs about three times the bitrate.
const UPSCALE_TOLERANCE: f64 = 1.25;

/// What the room does with one video consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoChoice {
    /// The tile is hidden: pause the consumer.
    Paused,
    /// Forward at most `spatial` (0 is the lowest layer), with this consumer priority.
    Layer { spatial: u8, priority: u8 },
}

/// The layers a producer sends, lowest first, as heights in pixels: the top one is `top_height`,
/// each lower one divided by its `scaleResolutionDownBy` (mediasoup-client's default halves per
/// layer when the sender names none).
pub fn layer_heights(encodings: &[RtpEncodingParameters], top_height: u32) -> Vec<u32> {
    let count = encodings.len().clamp(1, MAX_SIMULCAST_LAYERS);
    (0..count)
        .map(|i| {
            let default_scale = f64::from(1_u32 << (count - 1 - i));
            let scale = encodings.get(i).and_then(|e| e.scale_resolution_down_by).filter(|s| *s >= 1.0);
            let height = f64::from(top_height) / scale.unwrap_or(default_scale);
            // Heights are at most a few thousand pixels: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let height = height.round() as u32;
            height
        })
        .collect()
}

/// The choice for a consumer of a producer with layers `heights` (lowest first, from
/// [`layer_heights`]), shown in `tile`; `None` when the console has not said yet, which gets the
/// middle layer: sharp enough for the usual grid, a third of the top layer's bitrate.
pub fn choose(heights: &[u32], tile: Option<&TileView>) -> VideoChoice {
    let top = u8::try_from(heights.len().saturating_sub(1)).unwrap_or(0);
    let Some(tile) = tile else {
        return VideoChoice::Layer { spatial: top.min(1), priority: priority(DEFAULT_TOP_HEIGHT / 2) };
    };
    if !tile.visible || tile.height == 0 {
        return VideoChoice::Paused;
    }
    let wanted = f64::from(tile.height) / UPSCALE_TOLERANCE;
    let spatial = heights.iter().position(|h| f64::from(*h) >= wanted).map_or(top, |i| u8::try_from(i).unwrap_or(top));
    VideoChoice::Layer { spatial, priority: priority(tile.height) }
}

/// What a receiver's audio takes of its bandwidth estimate, per audio consumer (Opus with FEC,
/// plus headers), bits per second.
pub const AUDIO_BPS: u32 = 48_000;
/// The share of the estimate pictures may be planned into: the estimate wobbles, and a line run
/// at its estimate queues and then drops.
const ESTIMATE_SHARE_PERCENT: u64 = 85;

/// One video consumer as [`fit_to_estimate`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// The layer its tile asks for ([`choose`]).
    pub wanted: u8,
    pub priority: u8,
    /// Each layer's `maxBitrate` as the sender declared it, lowest first (bits per second; 0
    /// when not declared).
    pub layer_bps: Vec<u32>,
}

/// Lowers the layers `demands` ask for until they fit the receiver's bandwidth estimate (less
/// its `audio` consumers): the largest tiles (highest priority) keep theirs first, smaller ones
/// step down, and a picture that does not fit even at its lowest layer keeps that layer (mediasoup
/// then drops its frames rather than the sound). Returns each demand's layer, in order. Without
/// an estimate every tile gets what it asks for.
pub fn fit_to_estimate(demands: &[Demand], estimate_bps: Option<u32>, audio: usize) -> Vec<u8> {
    let mut layers: Vec<u8> = demands.iter().map(|d| d.wanted).collect();
    let Some(estimate) = estimate_bps else {
        return layers;
    };
    let audio_bps = u64::from(AUDIO_BPS) * u64::try_from(audio).unwrap_or(u64::MAX);
    let mut budget = (u64::from(estimate) * ESTIMATE_SHARE_PERCENT / 100).saturating_sub(audio_bps);
    let mut order: Vec<usize> = (0..demands.len()).collect();
    // Highest priority first; ties keep the order given.
    order.sort_by_key(|i| std::cmp::Reverse(demands[*i].priority));
    for i in order {
        let demand = &demands[i];
        let cost = |layer: u8| u64::from(demand.layer_bps.get(usize::from(layer)).copied().unwrap_or(0));
        let mut layer = demand.wanted.min(u8::try_from(demand.layer_bps.len().saturating_sub(1)).unwrap_or(0));
        while layer > 0 && cost(layer) > budget {
            layer -= 1;
        }
        budget = budget.saturating_sub(cost(layer));
        layers[i] = layer;
    }
    layers
}

/// Bigger tiles first: a tile's height in device pixels, mapped into the video priority range.
fn priority(height: u32) -> u8 {
    let scaled = (height / 8).clamp(u32::from(VIDEO_PRIORITY_MIN), u32::from(VIDEO_PRIORITY_MAX));
    u8::try_from(scaled).unwrap_or(VIDEO_PRIORITY_MAX)
}

/// Why a producer's encodings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendCapError {
    #[error("a camera sends at most {MAX_SIMULCAST_LAYERS} simulcast layers; this producer has {0}")]
    TooManyLayers(usize),
    #[error("the session caps video at {cap_kbps} kbit/s; encoding {index} names no maxBitrate")]
    UncappedLayer { index: usize, cap_kbps: u32 },
    #[error("the session caps video at {cap_kbps} kbit/s; these layers ask for {asked_kbps} kbit/s together")]
    AboveCap { asked_kbps: u32, cap_kbps: u32 },
}

/// Checks a video producer's encodings against the point's video budget (kbit/s, all layers
/// together; `None` for no cap): at most three layers, each with a `maxBitrate`, summing to no
/// more than the budget. The send transport's incoming cap holds the encoder to it as well.
pub fn check_send(encodings: &[RtpEncodingParameters], budget_kbps: Option<u32>) -> Result<(), SendCapError> {
    if encodings.len() > MAX_SIMULCAST_LAYERS {
        return Err(SendCapError::TooManyLayers(encodings.len()));
    }
    let Some(cap_kbps) = budget_kbps else {
        return Ok(());
    };
    let mut total_bps = 0_u64;
    for (index, encoding) in encodings.iter().enumerate() {
        let bps = encoding.max_bitrate.ok_or(SendCapError::UncappedLayer { index, cap_kbps })?;
        total_bps += u64::from(bps);
    }
    if total_bps > u64::from(cap_kbps) * 1000 {
        let asked_kbps = u32::try_from(total_bps.div_ceil(1000)).unwrap_or(u32::MAX);
        return Err(SendCapError::AboveCap { asked_kbps, cap_kbps });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding(scale: Option<f64>, max_bitrate: Option<u32>) -> RtpEncodingParameters {
        RtpEncodingParameters { scale_resolution_down_by: scale, max_bitrate, ..RtpEncodingParameters::default() }
    }

    fn simulcast() -> Vec<RtpEncodingParameters> {
        vec![encoding(Some(4.0), Some(100_000)), encoding(Some(2.0), Some(250_000)), encoding(Some(1.0), Some(650_000))]
    }

    fn tile(height: u32, visible: bool) -> TileView {
        TileView { point: "xa-nhan-hoa".parse().expect("point"), height, visible }
    }

    #[test]
    fn layer_heights_follow_the_scales_or_halve_per_layer() {
        assert_eq!(layer_heights(&simulcast(), 720), vec![180, 360, 720]);
        assert_eq!(layer_heights(&[encoding(None, None), encoding(None, None)], 360), vec![180, 360]);
        assert_eq!(layer_heights(&[encoding(None, None)], 720), vec![720]);
        assert_eq!(layer_heights(&[], 720), vec![720], "a producer without encodings is one layer");
    }

    #[test]
    fn each_tile_gets_the_smallest_layer_that_fills_it() {
        let heights = [180, 360, 720];
        // (tile height in device pixels, visible) -> choice
        let table = [
            (0, true, VideoChoice::Paused),
            (400, false, VideoChoice::Paused),
            (90, true, VideoChoice::Layer { spatial: 0, priority: 11 }),
            (225, true, VideoChoice::Layer { spatial: 0, priority: 28 }),
            (226, true, VideoChoice::Layer { spatial: 1, priority: 28 }),
            (450, true, VideoChoice::Layer { spatial: 1, priority: 56 }),
            (451, true, VideoChoice::Layer { spatial: 2, priority: 56 }),
            (1080, true, VideoChoice::Layer { spatial: 2, priority: 135 }),
            (2160, true, VideoChoice::Layer { spatial: 2, priority: 200 }),
            (4, true, VideoChoice::Layer { spatial: 0, priority: 1 }),
        ];
        for (height, visible, want) in table {
            assert_eq!(choose(&heights, Some(&tile(height, visible))), want, "tile {height} px, visible {visible}");
        }
    }

    #[test]
    fn an_unknown_tile_gets_the_middle_layer_and_a_single_layer_is_all_there_is() {
        assert!(matches!(choose(&[180, 360, 720], None), VideoChoice::Layer { spatial: 1, .. }));
        assert!(matches!(choose(&[720], None), VideoChoice::Layer { spatial: 0, .. }));
        assert!(matches!(choose(&[720], Some(&tile(1080, true))), VideoChoice::Layer { spatial: 0, .. }));
        assert_eq!(choose(&[720], Some(&tile(1080, false))), VideoChoice::Paused);
    }

    #[test]
    fn audio_outranks_every_tile() {
        for height in [1, 100, 1000, 10_000] {
            let VideoChoice::Layer { priority, .. } = choose(&[180, 360, 720], Some(&tile(height, true))) else {
                panic!("visible");
            };
            assert!(priority < AUDIO_PRIORITY);
        }
    }

    fn demand(wanted: u8, priority: u8) -> Demand {
        // The console's split of 1350 kbit/s: 121, 303, 926.
        Demand { wanted, priority, layer_bps: vec![121_000, 303_000, 926_000] }
    }

    #[test]
    fn layers_step_down_to_fit_the_estimate_small_tiles_first() {
        let big = demand(2, 85);
        let small = demand(1, 21);
        // (estimate, audio consumers) -> [big, small]
        let table = [
            (None, 2, vec![2, 1]),
            // 10 Mbit/s: everything fits.
            (Some(10_000_000), 2, vec![2, 1]),
            // 1.6 Mbit/s: 1.36 for video less 96k audio = 1264k: 926 + 303 fits.
            (Some(1_600_000), 2, vec![2, 1]),
            // 1.2 Mbit/s: 924k: 720p (926k) does not fit even alone, so the big tile gets 360p,
            // and the small one keeps its 360p in what is left.
            (Some(1_200_000), 2, vec![1, 1]),
            // A bad commune line, 1 Mbit/s estimated at 600k: 414k: 360p for the big tile, 180p
            // for the small one (303 + 121 > 414 keeps it at its lowest layer).
            (Some(600_000), 2, vec![1, 0]),
            // Hardly anything: the lowest layers, sound first.
            (Some(100_000), 2, vec![0, 0]),
        ];
        for (estimate, audio, want) in table {
            assert_eq!(fit_to_estimate(&[big.clone(), small.clone()], estimate, audio), want, "{estimate:?}");
        }
    }

    #[test]
    fn a_tile_never_gets_more_than_it_asks_for_or_the_sender_has() {
        assert_eq!(fit_to_estimate(&[demand(0, 10)], Some(100_000_000), 0), vec![0]);
        let two = Demand { wanted: 2, priority: 10, layer_bps: vec![100_000, 300_000] };
        assert_eq!(fit_to_estimate(&[two], Some(100_000_000), 0), vec![1]);
    }

    #[test]
    fn encodings_above_the_cap_are_refused() {
        assert_eq!(check_send(&simulcast(), None), Ok(()));
        assert_eq!(check_send(&simulcast(), Some(1000)), Ok(()));
        assert_eq!(
            check_send(&simulcast(), Some(999)),
            Err(SendCapError::AboveCap { asked_kbps: 1000, cap_kbps: 999 })
        );
        let uncapped = [encoding(Some(2.0), Some(100_000)), encoding(Some(1.0), None)];
        assert_eq!(check_send(&uncapped, Some(500)), Err(SendCapError::UncappedLayer { index: 1, cap_kbps: 500 }));
        assert_eq!(check_send(&uncapped, None), Ok(()));
        let four = vec![encoding(None, Some(1)); 4];
        assert_eq!(check_send(&four, None), Err(SendCapError::TooManyLayers(4)));
    }
}
