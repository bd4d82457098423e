//! A cap on what the SFU sends a point, from the loss its receiver reports: the loss-based half of
//! Google Congestion Control (draft-ietf-rmcat-gcc-02, section 6). mediasoup's transport-cc
//! estimate is delay-based and took 5 s to step a point on a 1 Mbit/s line with 5 % loss down
//! from 720p, freezing its picture meanwhile; the receiver's RTCP reports show the overflow
//! within a poll.
//!
//! Per poll, with `p` the fraction of packets lost towards the point:
//! - above 10 %: the cap falls to what the point was sent times (1 − 0.5 p);
//! - from 2 % to 10 %: the cap holds (a line's own random loss does not lift or lower it);
//! - below 2 %: the cap rises by 8 %, and goes once it is above the estimate.

/// Loss above which the cap falls.
const DECREASE_ABOVE: f64 = 0.10;
/// Loss below which the cap rises.
const INCREASE_BELOW: f64 = 0.02;
/// How much the cap rises per poll below [`INCREASE_BELOW`].
const INCREASE: f64 = 1.08;

/// The next cap, bits per second, given the current one, the loss towards the point over the
/// poll (percent), what the SFU sent it (kbit/s) and the transport's estimate (bits per second).
pub fn next(cap: Option<u32>, loss_percent: Option<f64>, sent_kbps: Option<u32>, estimate: Option<u32>) -> Option<u32> {
    let Some(p) = loss_percent.map(|l| l / 100.0) else { return cap };
    if p > DECREASE_ABOVE {
        let Some(sent) = sent_kbps else { return cap };
        let cut = (f64::from(sent) * 1000.0 * (1.0 - 0.5 * p.min(1.0))) as u32;
        return Some(cap.map_or(cut, |c| c.min(cut)));
    }
    if p >= INCREASE_BELOW {
        return cap;
    }
    let raised = (f64::from(cap?) * INCREASE).min(f64::from(u32::MAX)) as u32;
    match estimate {
        Some(e) if raised >= e => None,
        _ => Some(raised),
    }
}

/// What the layers are fitted to: the estimate, lowered to the cap.
pub fn apply(estimate: Option<u32>, cap: Option<u32>) -> Option<u32> {
    match (estimate, cap) {
        (Some(e), Some(c)) => Some(e.min(c)),
        (e, c) => e.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_falls_with_heavy_loss_holds_with_some_and_rises_without() {
        // (cap, loss %, sent kbit/s, estimate) → next cap
        let table = [
            // 20 % lost of 1000 kbit/s sent: 900 kbit/s.
            (None, Some(20.0), Some(1000), Some(2_000_000), Some(900_000)),
            // Never raised by a cut above it.
            (Some(500_000), Some(20.0), Some(1000), Some(2_000_000), Some(500_000)),
            // A line's own 5 % loss: no change, with or without a cap.
            (Some(500_000), Some(5.0), Some(1000), Some(2_000_000), Some(500_000)),
            (None, Some(5.0), Some(1000), Some(2_000_000), None),
            // A clean line lifts the cap 8 % a poll, and drops it above the estimate.
            (Some(500_000), Some(0.0), Some(400), Some(2_000_000), Some(540_000)),
            (Some(1_900_000), Some(1.0), Some(400), Some(2_000_000), None),
            // Nothing measured: nothing changes.
            (Some(500_000), None, None, None, Some(500_000)),
            (None, Some(30.0), None, None, None),
        ];
        for (cap, loss, sent, estimate, want) in table {
            assert_eq!(next(cap, loss, sent, estimate), want, "{cap:?} {loss:?} {sent:?} {estimate:?}");
        }
    }

    #[test]
    fn the_layers_fit_the_lower_of_estimate_and_cap() {
        assert_eq!(apply(Some(2_000_000), Some(900_000)), Some(900_000));
        assert_eq!(apply(Some(600_000), Some(900_000)), Some(600_000));
        assert_eq!(apply(None, Some(900_000)), Some(900_000));
        assert_eq!(apply(Some(600_000), None), Some(600_000));
    }
}
