//! The public API: group `tiepdan.io`, version `v1alpha1`.
//!
//! ```text
//!  ReceptionPoint (rp) ──parent──▶ ReceptionPoint      Province ◀─ Town ◀─ Commune
//!        ▲  ▲
//!   host │  │ points / pointSelector
//!  ReceptionSession (rsess) ──workerPool──▶ MediaWorkerPool (mwp)
//!        │ owns: worker Pod, signaling Service, join-token Secret
//! ```
//!
//! Field names are public API; every field carries a doc comment that becomes its
//! `kubectl explain` description.

// kube's derive takes repeated `printcolumn(...)` arguments, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod condition;
pub mod media_worker_pool;
pub mod reception_point;
pub mod reception_session;

pub use condition::{set_condition, ConditionStatus};
pub use media_worker_pool::{
    HostPorts, MediaWorkerPool, MediaWorkerPoolSpec, MediaWorkerPoolStatus, RtcPorts, TurnRelay, TURN_SECRET_KEY,
};
pub use reception_point::{
    Contact, Level, LinkType, NetworkProfile, PointMedia, ReceptionPoint, ReceptionPointSpec, ReceptionPointStatus,
    Verification,
};
pub use reception_session::{
    CheckItem, CheckState, IcePath, IssuerRef, MediaSpec, PointCheck, PointStatus, Readiness, ReceptionSession,
    ReceptionSessionSpec, ReceptionSessionStatus, Schedule, SessionCondition, SessionPhase, SessionSummary, TlsSpec,
    VideoSpec, WorkerStatus,
};

/// The API group of every tiepdan kind.
pub const GROUP: &str = "tiepdan.io";
