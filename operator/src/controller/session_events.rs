//! The events step of the session reconcile: which transitions a human should hear about, from
//! the difference between the previous and the next status (and what the apply step did). Pure;
//! the driver publishes them after the status is written.

use super::session_plan::Plan;
use super::session_status::{self as ss, Allocated, Outcome};
use super::status as st;
use super::worker_health::WorkerHealth;
use crate::api::{CheckItem, ReceptionSessionStatus, SessionCondition as SC, SessionPhase};
use crate::validate::{self, ValidSession};

/// Normal or Warning, as Kubernetes events are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// One event to publish about the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub kind: Kind,
    /// A bounded reason, e.g. `WorkerReplaced`.
    pub reason: &'static str,
    /// What the operator was doing, e.g. `Worker`.
    pub action: &'static str,
    pub message: String,
}

fn note(kind: Kind, reason: &'static str, action: &'static str, message: String) -> Note {
    Note { kind, reason, action, message }
}

/// The events for going from `prev` to `next`.
pub fn from_diff(
    prev: &ReceptionSessionStatus,
    next: &ReceptionSessionStatus,
    valid: Result<&ValidSession, &validate::Error>,
    plan: &Plan,
    outcome: &Outcome,
) -> Vec<Note> {
    use Kind::*;
    let mut out = Vec::new();
    let v = match valid {
        Ok(v) => v,
        Err(e) => {
            // One warning when the session turns invalid (or invalid in another way); it says why.
            if ss::reason(&prev.conditions, SC::Valid) != Some(e.reason()) || prev.phase != next.phase {
                out.push(note(Warning, e.reason(), "Validate", e.to_string()));
            }
            return out;
        }
    };
    let changed = |c: SC| {
        let now = ss::reason(&next.conditions, c);
        (ss::reason(&prev.conditions, c) != now).then_some(now).flatten()
    };
    let message = |c: SC| next.conditions.iter().find(|x| x.type_ == c.as_str()).map(|x| x.message.clone());

    if changed(SC::Provisioned) == Some("PoolNotFound") {
        out.extend(message(SC::Provisioned).map(|m| note(Warning, "PoolNotFound", "Provision", m)));
    }
    if let Outcome::Provisioned(p) = outcome {
        match &p.allocated {
            Some(Allocated::TookIdle { pool }) => out.push(note(
                Normal,
                "WorkerAllocated",
                "Allocate",
                format!("Took warm worker {} from pool {pool}.", p.pod),
            )),
            Some(Allocated::Created { pool }) => out.push(note(
                Normal,
                "WorkerCreated",
                "Allocate",
                format!("No warm worker was idle in pool {pool}; created {}.", p.pod),
            )),
            None => {}
        }
        let was = ss::reason(&prev.conditions, SC::WorkerReady);
        if changed(SC::WorkerReady).is_some() {
            let msg = message(SC::WorkerReady).unwrap_or_default();
            if p.health.failed() {
                out.push(note(Warning, p.health.reason(), "Worker", msg));
            } else if p.health == WorkerHealth::Ready && was.is_some_and(WorkerHealth::is_failure_reason) {
                out.push(note(Normal, "WorkerRecovered", "Worker", msg));
            }
        }
        // Once per worker the session gets: that is when the points (re)connect and fail.
        if p.allocated.is_some() {
            for point in &p.relay_without_turn {
                out.push(note(
                    Warning,
                    "TurnNotOffered",
                    "Allocate",
                    format!(
                        "Point {point} needs a TURN relay (spec.network.turnRequired), but the session's pool offers \
                         none: its browser cannot connect. Give the pool spec.turn (the chart's coturn, or another \
                         TURN server)."
                    ),
                ));
            }
        }
        if let Some(r) = &p.replaced {
            out.push(note(Warning, "WorkerReplaced", "Worker", ss::replaced_message(r, &p.pod)));
        } else if ss::is_true(&prev.conditions, SC::Degraded) && !ss::is_true(&next.conditions, SC::Degraded) {
            out.push(note(
                Normal,
                "WorkerRestored",
                "Worker",
                format!("Worker pod {} serves the session again.", p.pod),
            ));
        }
        match changed(SC::CertificateReady) {
            Some("Serving") => {
                out.extend(message(SC::CertificateReady).map(|m| note(Normal, "CertificateServing", "Certificate", m)))
            }
            Some("CertificateFailed") => {
                out.extend(message(SC::CertificateReady).map(|m| note(Warning, "CertificateFailed", "Certificate", m)))
            }
            _ => {}
        }
    }
    let t = &v.timeline;
    if plan.rescheduled {
        out.push(note(
            Warning,
            "Rescheduled",
            "Schedule",
            format!(
                "The schedule changed after provisioning: join links were issued again (epoch {}), older links are \
                 refused, and every point must be verified again before {}.",
                next.token_epoch, t.deadline
            ),
        ));
    }
    if let Some(to) = next.phase.filter(|to| prev.phase != Some(*to)) {
        let from = prev.phase.map_or("(new)".to_owned(), |p| p.to_string());
        let msg = format!("{from} → {to}; points verified {}.", next.verified.clone().unwrap_or_default());
        out.push(match to {
            SessionPhase::NotReady => note(Warning, "DeadlineMissed", "Phase", msg),
            SessionPhase::Failed => note(Warning, "Failed", "Phase", msg),
            _ => note(Normal, to.as_str(), "Phase", msg),
        });
    }
    for p in st::newly_removed(&prev.points, &next.points) {
        out.push(note(
            Warning,
            "PointRemoved",
            "Points",
            format!(
                "Point {} is no longer in the session (its ReceptionPoint was deleted, or it was taken out of the \
                 spec): its join token was withdrawn. The session goes on with the other points.",
                p.name
            ),
        ));
    }
    for p in st::present(&next.points) {
        let before = prev.points.iter().find(|b| b.name == p.name).and_then(|b| b.link_reused_at.as_ref());
        if let Some(at) = p.link_reused_at.as_ref().filter(|at| Some(*at) != before) {
            out.push(note(
                Warning,
                "LinkInUseElsewhere",
                "Points",
                format!(
                    "Point {}'s link was opened by a second connection while the first was still in the session \
                     ({}); the newer one took over. If the office did not do this itself, its link may have leaked: \
                     issue it a new link (tiepdan-operator links <session> --rotate {}).",
                    p.name, at.0, p.name
                ),
            ));
        }
        let generation_before = prev.points.iter().find(|b| b.name == p.name).map_or(0, |b| b.link_generation);
        if p.link_generation > generation_before {
            out.push(note(
                Normal,
                "LinkRotated",
                "Points",
                format!(
                    "Point {} has a new link (generation {}); its older links are refused and their connections \
                     closed. Send the office its new link (tiepdan-operator links <session>).",
                    p.name, p.link_generation
                ),
            ));
        }
    }
    for (p, item) in st::newly_failed_checks(&prev.points, &next.points) {
        out.push(note(Warning, "CheckFailed", "Verify", check_failed_message(&p.name, item)));
    }
    for p in st::newly_verified(&prev.points, &next.points) {
        out.push(if p.verified_late {
            note(
                Warning,
                "PointVerifiedLate",
                "Verify",
                format!("Point {} was verified after the deadline {}; the session stays NotReady.", p.name, t.deadline),
            )
        } else {
            note(
                Normal,
                "PointVerified",
                "Verify",
                format!("Point {} sent and received audio and video within thresholds.", p.name),
            )
        });
    }
    out
}

/// The event for a failed check item: in Vietnamese, for the officers and the province's IT staff
/// who follow the rehearsal: what failed, in plain words, and what to do about it.
pub fn check_failed_message(point: &str, item: CheckItem) -> String {
    let (what, todo) = match item {
        CheckItem::Signaling => (
            "trình duyệt không kết nối bảo mật (https/wss) tới máy chủ",
            "mở đúng đường dẫn https được gửi cho điểm cầu, không sửa đường dẫn",
        ),
        CheckItem::IcePath => (
            "không thiết lập được đường truyền hình ảnh, âm thanh tới máy chủ",
            "nhờ cán bộ CNTT mở tường lửa theo hướng dẫn vận hành (cổng UDP/TCP của máy chủ, hoặc TURN 443), rồi vào lại phiên",
        ),
        CheckItem::Microphone => (
            "micro không thu được tiếng (bị tắt tiếng, hỏng hoặc chọn nhầm micro)",
            "kiểm tra micro đã cắm và bật, chọn đúng micro trong trang, rồi nói thử vài câu",
        ),
        CheckItem::Camera => (
            "camera chỉ cho hình tối đen",
            "mở nắp che ống kính, bật đèn phòng, chọn đúng camera trong trang",
        ),
        CheckItem::HostVideo => (
            "trình duyệt của điểm cầu không hiển thị được hình của điểm cầu chủ trì",
            "kiểm tra điểm chủ trì đã vào phiên; nếu đã vào, kiểm tra đường truyền của điểm cầu rồi vào lại phiên",
        ),
        CheckItem::HostAudio => (
            "điểm cầu không nghe được tiếng của điểm cầu chủ trì",
            "đề nghị điểm chủ trì nói thử; kiểm tra loa, âm lượng máy tính và đường truyền",
        ),
        CheckItem::SfuAudio => (
            "máy chủ không nhận được tiếng nói từ micro của điểm cầu",
            "kiểm tra micro chưa bị tắt tiếng trong trang và trong máy tính, rồi nói thử vài câu",
        ),
        CheckItem::SfuVideo => (
            "máy chủ không nhận được hình ảnh từ camera của điểm cầu",
            "kiểm tra camera đang bật trong trang và đường truyền lên của điểm cầu",
        ),
        CheckItem::MediaFlow => (
            "hình ảnh, âm thanh không truyền ổn định (mất gói hoặc trễ quá ngưỡng)",
            "dùng đường truyền ổn định hơn hoặc tắt các ứng dụng dùng mạng khác, rồi chạy thử lại",
        ),
        CheckItem::Reconnect => (
            "sau khi máy chủ ngắt thử, trang không tự kết nối lại trong 20 giây",
            "giữ trang mở (không đóng tab, không để máy tính ngủ), kiểm tra đường truyền, rồi vào lại đường dẫn",
        ),
    };
    format!("Điểm cầu {point} chưa đạt kiểm tra kết nối ({item}): {what}. Cách xử lý: {todo}.", item = item_name(item))
}

/// The item's name on the wire (`status.points[].checks[].item`).
fn item_name(item: CheckItem) -> &'static str {
    match item {
        CheckItem::Signaling => "signaling",
        CheckItem::IcePath => "icePath",
        CheckItem::Microphone => "microphone",
        CheckItem::Camera => "camera",
        CheckItem::HostVideo => "hostVideo",
        CheckItem::HostAudio => "hostAudio",
        CheckItem::SfuAudio => "sfuAudio",
        CheckItem::SfuVideo => "sfuVideo",
        CheckItem::MediaFlow => "mediaFlow",
        CheckItem::Reconnect => "reconnect",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_says_in_vietnamese_what_failed_and_what_to_do() {
        // (item, words the officer must read)
        let table: &[(CheckItem, &[&str])] = &[
            (CheckItem::Signaling, &["https", "đường dẫn"]),
            (CheckItem::IcePath, &["tường lửa", "TURN"]),
            (CheckItem::Microphone, &["micro", "nói thử"]),
            (CheckItem::Camera, &["camera", "tối đen", "nắp che"]),
            (CheckItem::HostVideo, &["hình của điểm cầu chủ trì"]),
            (CheckItem::HostAudio, &["tiếng của điểm cầu chủ trì", "loa"]),
            (CheckItem::SfuAudio, &["máy chủ", "micro"]),
            (CheckItem::SfuVideo, &["máy chủ", "camera"]),
            (CheckItem::MediaFlow, &["mất gói"]),
            (CheckItem::Reconnect, &["kết nối lại", "20 giây"]),
        ];
        for (item, words) in table {
            let message = check_failed_message("di-su", *item);
            assert!(message.starts_with("Điểm cầu di-su chưa đạt kiểm tra kết nối"), "{message}");
            assert!(message.contains("Cách xử lý:"), "{message}");
            assert!(message.contains(&format!("({})", item_name(*item))), "{message}");
            for word in *words {
                assert!(message.contains(word), "{item:?}: {message} lacks {word}");
            }
            let wire = serde_json::to_value(item).expect("serialize");
            assert_eq!(wire, item_name(*item), "the event names the status field's item");
        }
    }
}
