//! A cap on what the SFU sends a point, from the loss its receiver reports: the loss-based half of
//! Google Congestion Control (draft-ietf-rmcat-gcc-02, section 6). mediasoup's transport-cc
//! estimate is delay-based and took 5 s to step a point on a 1 Mbit/s line with 5 % loss down
//! from 720p, freezing its picture meanwhile; the receiver's RTCP reports show the overflow
//! within a poll.
//!
//! Per poll, with `p` the fraction of packets lost towards the point:
//! - above 10 %: the cap falls to what the point was sent times (1 − 0.5 p);
//! - from 2 % to 10 %: the cap holds (a line's own random loss does not lift or lower it);
//! - below 2 % three polls in a row: the cap rises by 8 % a poll, and goes once it is above
//!   the estimate.

/// Loss above which the cap falls.
const DECREASE_ABOVE: f64 = 0.10;
/// Loss below which the cap may rise.
const INCREASE_BELOW: f64 = 0.02;
/// How much the cap rises per poll once the line is calm.
const INCREASE: f64 = 1.08;
/// Polls in a row below [`INCREASE_BELOW`] before the cap rises: right after a cut the SFU
/// sends little while the receiver waits for the lower layer's key frame, and one such quiet
/// poll lifted the cap back over the old layer (CI: 360p, then 720p again for a second).
const CALM_POLLS: u8 = 3;

/// The cap on what the SFU sends one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Bits per second.
    pub bps: u32,
    /// Polls in a row below [`INCREASE_BELOW`] loss.
    calm: u8,
}

impl Cap {
    pub fn new(bps: u32) -> Self {
        Self { bps, calm: 0 }
    }
}

/// The next cap, given the current one, the loss towards the point over the poll (percent;
/// `None` when too few packets were sent to tell), what the SFU sent it (kbit/s) and the
/// transport's estimate (bits per second).
pub fn next(cap: Option<Cap>, loss_percent: Option<f64>, sent_kbps: Option<u32>, estimate: Option<u32>) -> Option<Cap> {
    let Some(p) = loss_percent.map(|l| l / 100.0) else { return cap };
    if p > DECREASE_ABOVE {
        let Some(sent) = sent_kbps else { return cap };
        let cut = (f64::from(sent) * 1000.0 * (1.0 - 0.5 * p.min(1.0))) as u32;
        return Some(Cap::new(cap.map_or(cut, |c| c.bps.min(cut))));
    }
    let cap = cap?;
    if p >= INCREASE_BELOW {
        return Some(Cap { calm: 0, ..cap });
    }
    let calm = cap.calm.saturating_add(1);
    if calm < CALM_POLLS {
        return Some(Cap { calm, ..cap });
    }
    let raised = (f64::from(cap.bps) * INCREASE).min(f64::from(u32::MAX)) as u32;
    match estimate {
        Some(e) if raised >= e => None,
        _ => Some(Cap { bps: raised, calm }),
    }
}

/// What the layers are fitted to: the estimate, lowered to the cap.
pub fn apply(estimate: Option<u32>, cap: Option<Cap>) -> Option<u32> {
    match (estimate, cap.map(|c| c.bps)) {
        (Some(e), Some(c)) => Some(e.min(c)),
        (e, c) => e.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn cap(bps: u32, calm: u8) -> Option<Cap> {
        Some(Cap { bps, calm })
    }

    #[test]
    fn the_cap_falls_with_heavy_loss_holds_with_some_and_rises_after_calm_polls() {
        // (cap, loss %, sent kbit/s, estimate) → next cap
        let table = [
            // 20 % lost of 1000 kbit/s sent: 900 kbit/s.
            (None, Some(20.0), Some(1000), Some(2_000_000), cap(900_000, 0)),
            // Never raised by a cut above it, and the calm count starts again.
            (cap(500_000, 2), Some(20.0), Some(1000), Some(2_000_000), cap(500_000, 0)),
            // A line's own 5 % loss: no change, the calm count starts again; no cap, none made.
            (cap(500_000, 2), Some(5.0), Some(1000), Some(2_000_000), cap(500_000, 0)),
            (None, Some(5.0), Some(1000), Some(2_000_000), None),
            // A clean poll counts; the third in a row lifts the cap 8 %, and so does each after.
            (cap(500_000, 0), Some(0.0), Some(400), Some(2_000_000), cap(500_000, 1)),
            (cap(500_000, 2), Some(0.0), Some(400), Some(2_000_000), cap(540_000, 3)),
            (cap(540_000, 3), Some(1.0), Some(400), Some(2_000_000), cap(583_200, 4)),
            // Lifted above the estimate: the cap goes.
            (cap(1_900_000, 5), Some(1.0), Some(400), Some(2_000_000), None),
            // Nothing measured (too few packets): nothing changes.
            (cap(500_000, 1), None, None, None, cap(500_000, 1)),
            (None, Some(30.0), None, None, None),
        ];
        for (before, loss, sent, estimate, want) in table {
            assert_eq!(next(before, loss, sent, estimate), want, "{before:?} {loss:?} {sent:?} {estimate:?}");
        }
    }

    #[test]
    fn the_layers_fit_the_lower_of_estimate_and_cap() {
        assert_eq!(apply(Some(2_000_000), Some(Cap::new(900_000))), Some(900_000));
        assert_eq!(apply(Some(600_000), Some(Cap::new(900_000))), Some(600_000));
        assert_eq!(apply(None, Some(Cap::new(900_000))), Some(900_000));
        assert_eq!(apply(Some(600_000), None), Some(600_000));
    }
}
