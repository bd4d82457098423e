//! The mediasoup workers of this process (one `WorkerManager`, one worker per core) and the
//! codecs every router offers.

use crate::metrics::Metrics;
use mediasoup::prelude::{
    MimeTypeAudio, MimeTypeVideo, RtcpFeedback, RtpCodecCapability, RtpCodecParametersParameters, Worker,
    WorkerManager, WorkerSettings,
};
use mediasoup::worker::{ExitError, WorkerId};
use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum WorkerPoolError {
    #[error("failed to start mediasoup worker {index}")]
    Start {
        index: usize,
        #[source]
        source: std::io::Error,
    },
}

/// Whether every mediasoup worker is still alive; read by `/readyz` and `/healthz`. The pool never
/// starts a replacement, so a death is final and the first one is kept to explain the probes'
/// answer.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    first_death: OnceLock<WorkerDeath>,
}

/// The first mediasoup worker that died, and how.
#[derive(Debug, Clone, Copy)]
pub struct WorkerDeath {
    pub worker: WorkerId,
    /// `None` when the worker's thread ended without an error (its channel closed).
    pub error: Option<ExitError>,
}

impl std::fmt::Display for WorkerDeath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Some(error) => write!(f, "mediasoup worker {} died: {error}", self.worker),
            None => write!(f, "mediasoup worker {} stopped", self.worker),
        }
    }
}

impl WorkerHealth {
    /// The first death, if any worker died.
    pub fn death(&self) -> Option<&WorkerDeath> {
        self.first_death.get()
    }

    /// What a worker's `on_dead` handler records. Public because mediasoup 0.8.5 runs each worker
    /// as a thread of this process with no API to end one, so the tests record a death here to
    /// see the probes react.
    pub fn record_death(&self, worker: WorkerId, status: Result<(), ExitError>) {
        // Later deaths keep the first one: it is the cause the probes report.
        let _ = self.first_death.set(WorkerDeath { worker, error: status.err() });
    }
}

#[derive(Debug)]
pub struct WorkerPool {
    // Kept so its executor thread lives as long as the workers.
    _manager: WorkerManager,
    workers: Vec<Worker>,
    next: AtomicUsize,
    health: Arc<WorkerHealth>,
}

impl WorkerPool {
    pub async fn start(
        count: NonZeroUsize,
        rtc_ports: RangeInclusive<u16>,
        metrics: &Metrics,
    ) -> Result<Self, WorkerPoolError> {
        let manager = WorkerManager::new();
        let health = Arc::new(WorkerHealth::default());
        let mut workers = Vec::with_capacity(count.get());
        for index in 0..count.get() {
            let mut settings = WorkerSettings::default();
            settings.rtc_ports_range = rtc_ports.clone();
            let worker =
                manager.create_worker(settings).await.map_err(|source| WorkerPoolError::Start { index, source })?;
            let id = worker.id();
            let health_on_death = Arc::clone(&health);
            let metrics_on_death = metrics.clone();
            worker
                .on_dead(move |status| {
                    tracing::error!(worker = %id, ?status, "mediasoup worker died");
                    health_on_death.record_death(id, status);
                    metrics_on_death.mediasoup_worker_deaths.inc();
                    metrics_on_death.mediasoup_workers.dec();
                })
                .detach();
            metrics.mediasoup_workers.inc();
            workers.push(worker);
        }
        tracing::info!(workers = workers.len(), ports = ?rtc_ports, "mediasoup workers started");
        Ok(Self { _manager: manager, workers, next: AtomicUsize::new(0), health })
    }

    pub fn health(&self) -> Arc<WorkerHealth> {
        Arc::clone(&self.health)
    }

    /// The next live worker, round-robin. A session has a single router, so this spreads
    /// successive sessions (after deallocation) rather than one session's load.
    pub fn pick(&self) -> Option<Worker> {
        let n = self.workers.len();
        (0..n)
            .map(|_| self.next.fetch_add(1, Ordering::Relaxed) % n)
            .map(|i| &self.workers[i])
            .find(|w| !w.closed())
            .cloned()
    }
}

/// Opus, VP8 and H.264 constrained baseline: what every browser in the reception offices can send
/// and receive without transcoding.
pub fn media_codecs() -> Vec<RtpCodecCapability> {
    let hz = |v: u32| NonZeroU32::new(v).expect("clock rates are non-zero");
    let video_feedback = vec![
        RtcpFeedback::Nack,
        RtcpFeedback::NackPli,
        RtcpFeedback::CcmFir,
        RtcpFeedback::GoogRemb,
        RtcpFeedback::TransportCc,
    ];
    vec![
        RtpCodecCapability::Audio {
            mime_type: MimeTypeAudio::Opus,
            preferred_payload_type: None,
            clock_rate: hz(48_000),
            channels: NonZeroU8::new(2).expect("two channels"),
            parameters: RtpCodecParametersParameters::from([("useinbandfec", 1_u32.into())]),
            rtcp_feedback: vec![RtcpFeedback::TransportCc],
        },
        RtpCodecCapability::Video {
            mime_type: MimeTypeVideo::Vp8,
            preferred_payload_type: None,
            clock_rate: hz(90_000),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: video_feedback.clone(),
        },
        RtpCodecCapability::Video {
            mime_type: MimeTypeVideo::H264,
            preferred_payload_type: None,
            clock_rate: hz(90_000),
            parameters: RtpCodecParametersParameters::from([
                ("packetization-mode", 1_u32.into()),
                ("level-asymmetry-allowed", 1_u32.into()),
                ("profile-level-id", "42e01f".into()),
            ]),
            rtcp_feedback: video_feedback,
        },
    ]
}
