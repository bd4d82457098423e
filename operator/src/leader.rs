//! Leader election on a `coordination.k8s.io/v1` Lease. kube-runtime has none, so this does what
//! client-go's `leaderelection` does (and linkerd's kubert):
//!
//! ```text
//!  candidate ── Lease absent, released, or unchanged for leaseDurationSeconds ──▶ leader
//!      ▲        as *observed* on this replica's clock (never the holder's renewTime)
//!      │
//!  (process restarts)                leader ── renew every `retry`; a failed or hung renew is
//!      │                               │       retried until `renew_deadline` has passed since
//!      └──────── stepped down ◀────────┘       the last good one, or the Lease names another holder
//! ```
//!
//! Three rules keep two replicas from acting at once:
//! - **Expiry by observation.** A candidate records when (on its own clock) it last saw the
//!   Lease change, and takes it only after that is older than the Lease's duration. Comparing
//!   the holder's `renewTime` with the local clock breaks as soon as the replicas' clocks differ.
//! - **Fencing.** Every write is a `replace` carrying the resourceVersion that was read, so a
//!   write after someone else's answers 409 and is lost, never merged.
//! - **Stepping down in time.** `renew_deadline` is shorter than the Lease's duration and every
//!   call has its own timeout, so a leader that cannot renew (a hung or failing API server) stops
//!   acting before any candidate may take over.

use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};

/// Errors talking to the API server about the Lease (conflicts are not errors: they lose).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read or write lease {name}")]
    Api { name: String, source: kube::Error },
    #[error("lease {name}: no answer within {timeout:?}")]
    TimedOut { name: String, timeout: Duration },
    #[error("invalid leader election setting {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The Lease and this replica's identity.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews (and others retry).
    pub retry: Duration,
}

impl LeaseConfig {
    /// How long a leader keeps retrying failed renewals before it stops leading: two thirds of
    /// the Lease's duration (client-go's defaults are 10 s of 15 s). A candidate waits the whole
    /// duration after the last renewal it saw, so the leader has stopped a third of it earlier.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How long one attempt (a read and a write) may take: two retry periods, so one slow
    /// answer is tolerated but a hung connection is abandoned and the attempt retried.
    pub fn attempt_timeout(&self) -> Duration {
        self.retry * 2
    }

    /// Refuses settings under which the Lease would not mean what it says: a duration the Lease
    /// cannot carry (it holds whole seconds), or a retry period so long that a failing renewal is
    /// not retried at least once before the renew deadline.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |field, reason: String| Err(Error::Invalid { field, reason });
        if self.duration.subsec_nanos() != 0 || self.duration < Duration::from_secs(1) {
            return invalid("duration", format!("{:?} is not a whole number of seconds, at least 1", self.duration));
        }
        if self.retry.is_zero() || self.retry * 2 > self.renew_deadline() {
            return invalid(
                "retry",
                format!(
                    "{:?} must be more than 0 and at most half the renew deadline ({:?}, two thirds of the {:?} lease)",
                    self.retry,
                    self.renew_deadline(),
                    self.duration
                ),
            );
        }
        Ok(())
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// When this replica last saw the Lease change, on its own clock.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// What identifies one version of the Lease: its resourceVersion, holder and renewTime.
    version: Option<(Option<String>, Option<String>, Option<Timestamp>)>,
    /// When `version` was first read.
    at: Option<Timestamp>,
}

impl Observed {
    /// Records that `lease` was read at `now`. The observation time moves only when the Lease
    /// differs from the last read, so it says how long the Lease has stood still.
    pub fn record(&mut self, lease: &Lease, now: Timestamp) {
        let spec = lease.spec.as_ref();
        let version = Some((
            lease.metadata.resource_version.clone(),
            spec.and_then(|s| s.holder_identity.clone()),
            spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
        ));
        if version != self.version {
            self.version = version;
            self.at = Some(now);
        }
    }

    /// When the Lease was last seen to change.
    pub fn at(&self) -> Option<Timestamp> {
        self.at
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it.
    Create,
    /// This replica holds it: renew it.
    Renew,
    /// Nobody holds it (released), or its holder stopped renewing it a full duration ago, as
    /// observed here: take it.
    TakeOver,
    /// Someone else holds it and renewed it recently enough.
    Wait,
}

/// Decides from the Lease as read (`lease`, already [`Observed::record`]ed at `now`). Expiry
/// uses the Lease's own `leaseDurationSeconds` (the holder's promise), `default_duration` when
/// it names none, and only this replica's clock.
pub fn decide(
    lease: Option<&Lease>,
    observed: &Observed,
    identity: &str,
    default_duration: Duration,
    now: Timestamp,
) -> Decision {
    let Some(lease) = lease else { return Decision::Create };
    let spec = lease.spec.as_ref();
    let holder = spec.and_then(|s| s.holder_identity.as_deref()).unwrap_or("");
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default_duration, Duration::from_secs);
    let duration = jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX);
    match observed.at {
        Some(at) if now.duration_since(at) >= duration => Decision::TakeOver,
        _ => Decision::Wait,
    }
}

/// Whether a leader whose last good renewal started at `renewed_at` must stop leading at `now`.
/// A clock that went back counts as too late: the time since the renewal is then unknown.
pub fn must_step_down(renewed_at: Timestamp, now: Timestamp, renew_deadline: Duration) -> bool {
    now.duration_since(renewed_at).unsigned_abs() >= renew_deadline || now < renewed_at
}

/// Reads and writes one Lease; [`KubeLease`] talks to the API server, tests use fakes that fail
/// or hang on cue.
pub trait LeaseStore: Send + Sync {
    fn get(&self) -> BoxFuture<'_, Result<Option<Lease>, kube::Error>>;
    fn create(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, kube::Error>>;
    /// Replaces the Lease; `lease.metadata.resourceVersion` fences the write (409 if it moved).
    fn replace(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, kube::Error>>;
}

/// The Lease `name` through the API server.
#[derive(Clone)]
pub struct KubeLease {
    api: Api<Lease>,
    name: String,
}

impl KubeLease {
    pub fn new(api: Api<Lease>, name: &str) -> Self {
        Self { api, name: name.to_owned() }
    }
}

impl LeaseStore for KubeLease {
    fn get(&self) -> BoxFuture<'_, Result<Option<Lease>, kube::Error>> {
        Box::pin(self.api.get_opt(&self.name))
    }

    fn create(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, kube::Error>> {
        Box::pin(async move { self.api.create(&PostParams::default(), &lease).await })
    }

    fn replace(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, kube::Error>> {
        Box::pin(async move { self.api.replace(&self.name, &PostParams::default(), &lease).await })
    }
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This replica holds the Lease: it wrote it just now.
    Holding,
    /// Another replica holds it (decided from the read, nothing written).
    HeldByOther,
    /// The write lost a race (409): someone else wrote the Lease after the read.
    Conflict,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// One attempt to acquire or renew, without a timeout: read the Lease, record the observation,
/// decide, and write fenced on what was read. A `leader` only renews: a Lease that names anyone
/// else (or nobody) means it was taken or released meanwhile, and it never takes it back.
pub async fn try_acquire(
    store: &dyn LeaseStore,
    cfg: &LeaseConfig,
    observed: &mut Observed,
    clock: &dyn Clock,
    leader: bool,
) -> Result<Outcome, Error> {
    let err = |source| Error::Api { name: cfg.name.clone(), source };
    let lease = store.get().await.map_err(err)?;
    let now = clock.now();
    if let Some(l) = &lease {
        observed.record(l, now);
    }
    let decision = decide(lease.as_ref(), observed, &cfg.identity, cfg.duration, now);
    let written = match (decision, lease) {
        (Decision::Wait, _) => return Ok(Outcome::HeldByOther),
        (Decision::TakeOver, _) if leader => return Ok(Outcome::HeldByOther),
        (Decision::Create, _) | (_, None) => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
                spec: Some(claim(cfg, None, now)),
            };
            store.create(lease).await
        }
        (Decision::Renew | Decision::TakeOver, Some(mut lease)) => {
            // The resourceVersion we read stays in the body: `replace` is fenced on it.
            lease.spec = Some(claim(cfg, lease.spec.as_ref(), now));
            store.replace(lease).await
        }
    };
    match written {
        Ok(lease) => {
            observed.record(&lease, now);
            Ok(Outcome::Holding)
        }
        Err(e) if is_conflict(&e) => Ok(Outcome::Conflict),
        Err(e) => Err(err(e)),
    }
}

/// The Lease spec with this replica holding it from `now`, after `prev`.
fn claim(cfg: &LeaseConfig, prev: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let ours = prev.and_then(|p| p.holder_identity.as_deref()) == Some(cfg.identity.as_str());
    let transitions = prev.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(secs(cfg.duration)),
        acquire_time: if ours { prev.and_then(|p| p.acquire_time.clone()) } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || prev.is_none() { transitions } else { transitions + 1 }),
        ..Default::default()
    }
}

/// [`try_acquire`] bounded by `timeout`: a call that hangs is abandoned (and its connection with
/// it), so the caller can retry or step down on time.
async fn attempt(
    store: &dyn LeaseStore,
    cfg: &LeaseConfig,
    observed: &mut Observed,
    clock: &dyn Clock,
    leader: bool,
    timeout: Duration,
) -> Result<Outcome, Error> {
    tokio::time::timeout(timeout, try_acquire(store, cfg, observed, clock, leader))
        .await
        .map_err(|_| Error::TimedOut { name: cfg.name.clone(), timeout })?
}

/// Gives the Lease up (on shutdown), so another replica need not wait for it to expire.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), Error> {
    let err = |source| Error::Api { name: cfg.name.clone(), source };
    if let Some(mut lease) = api.get_opt(&cfg.name).await.map_err(err)? {
        if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(cfg.identity.as_str()) {
            if let Some(s) = lease.spec.as_mut() {
                s.holder_identity = None;
            }
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(err(e)),
            }
        }
    }
    Ok(())
}

/// Runs the election against the API server on the system clock; see [`run_with`].
pub async fn run(client: kube::Client, cfg: LeaseConfig, leading: watch::Sender<bool>) {
    let store = KubeLease::new(Api::namespaced(client, &cfg.namespace), &cfg.name);
    run_with(&store, &cfg, &SystemClock, leading).await;
}

/// Campaigns until this replica holds the Lease, publishes `true`, renews it every `retry`, and
/// publishes `false` once it no longer can: a renewal failed or hung for `renew_deadline`, or the
/// Lease names another holder. Leadership is not taken again afterwards (as in client-go): the
/// process is meant to stop, so it cannot act on stale state. Returns once every receiver of
/// `leading` is gone.
pub async fn run_with(store: &dyn LeaseStore, cfg: &LeaseConfig, clock: &dyn Clock, leading: watch::Sender<bool>) {
    let mut observed = Observed::default();
    let mut tick = tokio::time::interval(cfg.retry);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewed_at = loop {
        tick.tick().await;
        let started = clock.now();
        match attempt(store, cfg, &mut observed, clock, false, cfg.attempt_timeout()).await {
            Ok(Outcome::Holding) => break started,
            Ok(Outcome::HeldByOther | Outcome::Conflict) => {}
            Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
        }
    };
    leading.send_replace(true);
    tracing::info!(identity = %cfg.identity, "acquired the lease");
    let deadline = jiff::SignedDuration::try_from(cfg.renew_deadline()).unwrap_or(jiff::SignedDuration::MAX);
    loop {
        // The next renewal, or the renew deadline if it comes first: after a renewal that failed
        // fast the next tick may lie past the deadline, and `leading` (which the write gate
        // follows) must turn false at the deadline, not up to `retry` later.
        let wake = renewed_at.checked_add(deadline).ok().and_then(|at| clock.real_wait_until(at));
        tokio::select! {
            _ = tick.tick() => {}
            () = sleep_for(wake) => {}
        }
        if must_step_down(renewed_at, clock.now(), cfg.renew_deadline()) {
            tracing::warn!(deadline = ?cfg.renew_deadline(), "could not renew the lease in time");
            break;
        }
        let started = clock.now();
        // Never wait on one call past the point where this replica must have stopped leading.
        let left = cfg.renew_deadline().saturating_sub(started.duration_since(renewed_at).unsigned_abs());
        let outcome = attempt(store, cfg, &mut observed, clock, true, left.min(cfg.attempt_timeout())).await;
        match outcome {
            Ok(Outcome::Holding) => {
                renewed_at = started;
                continue;
            }
            Ok(Outcome::HeldByOther) => {
                tracing::warn!(identity = %cfg.identity, "another replica holds the lease");
                break;
            }
            // Someone wrote the Lease after our read; the next read says whether they took it.
            Ok(Outcome::Conflict) => tracing::info!("lease renewal conflicted; retrying"),
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
        if must_step_down(renewed_at, clock.now(), cfg.renew_deadline()) {
            tracing::warn!(deadline = ?cfg.renew_deadline(), "could not renew the lease in time");
            break;
        }
    }
    leading.send_replace(false);
    leading.closed().await;
}

/// Sleeps for `d`; never wakes for `None` (a simulated clock, which only moves by jumps).
async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use jiff::SignedDuration;
    use kube::core::Status;

    use super::*;
    use crate::clock::SimClock;

    const T0: &str = "2027-01-01T00:00:00Z";

    fn t0() -> Timestamp {
        T0.parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        t0() + SignedDuration::from_secs(secs)
    }

    fn lease(holder: &str, renewed: Timestamp, duration: Option<i32>, rv: &str) -> Lease {
        Lease {
            metadata: ObjectMeta { name: Some("l".into()), resource_version: Some(rv.into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: duration,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_candidate_judges_expiry_by_how_long_it_saw_the_lease_unchanged() {
        let hour = 3600;
        // (what, the Lease, first seen at, decided at, decision)
        let cases: [(&str, Option<Lease>, i64, i64, Decision); 9] = [
            ("no Lease", None, 0, 0, Decision::Create),
            ("released", Some(lease("", at(0), Some(15), "1")), 0, 0, Decision::TakeOver),
            ("ours", Some(lease("a", at(-100), Some(15), "1")), 0, 0, Decision::Renew),
            ("fresh", Some(lease("b", at(0), Some(15), "1")), 0, 14, Decision::Wait),
            ("unchanged for its duration", Some(lease("b", at(0), Some(15), "1")), 0, 15, Decision::TakeOver),
            // The holder's clock is an hour behind ours: its renewTime looks an hour old, but we
            // just saw it change.
            ("holder's clock behind", Some(lease("b", at(-hour), Some(15), "1")), 0, 1, Decision::Wait),
            // The holder's clock is an hour ahead: its renewTime is in our future, but it has
            // not changed for 15 s.
            ("holder's clock ahead", Some(lease("b", at(hour), Some(15), "1")), 0, 15, Decision::TakeOver),
            ("its own duration, not ours", Some(lease("b", at(0), Some(60), "1")), 0, 59, Decision::Wait),
            ("no duration: ours", Some(lease("b", at(0), None, "1")), 0, 15, Decision::TakeOver),
        ];
        for (what, lease, seen, now, want) in cases {
            let mut observed = Observed::default();
            if let Some(l) = &lease {
                observed.record(l, at(seen));
                // Reading the same Lease again does not make it look fresh.
                observed.record(l, at(now));
            }
            let got = decide(lease.as_ref(), &observed, "a", Duration::from_secs(15), at(now));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn an_observation_moves_only_when_the_lease_changes() {
        let mut o = Observed::default();
        o.record(&lease("b", at(0), Some(15), "1"), at(0));
        o.record(&lease("b", at(0), Some(15), "1"), at(10));
        assert_eq!(o.at(), Some(at(0)), "the same version");
        o.record(&lease("b", at(0), Some(15), "2"), at(11));
        assert_eq!(o.at(), Some(at(11)), "a new resourceVersion");
        o.record(&lease("b", at(5), Some(15), "2"), at(12));
        assert_eq!(o.at(), Some(at(12)), "a new renewTime");
        o.record(&lease("c", at(5), Some(15), "2"), at(13));
        assert_eq!(o.at(), Some(at(13)), "a new holder");
    }

    #[test]
    fn a_leader_steps_down_once_the_renew_deadline_has_passed() {
        let deadline = Duration::from_secs(10);
        for (renewed, now, want) in [(0, 0, false), (0, 9, false), (0, 10, true), (0, 30, true), (5, 0, true)] {
            assert_eq!(must_step_down(at(renewed), at(now), deadline), want, "renewed {renewed}, now {now}");
        }
        let cfg = LeaseConfig {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        };
        assert_eq!(cfg.renew_deadline(), Duration::from_secs(10));
        assert!(cfg.renew_deadline() < cfg.duration, "the leader stops before anyone may take over");
    }

    /// What the fake does on one call.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Ok,
        /// A 503 from the API server.
        Fail,
        /// No answer, ever.
        Hang,
        /// Done at once, answered after this many milliseconds of tokio time.
        Slow(u64),
    }

    /// A Lease in memory with the API server's fencing (409 on a stale resourceVersion). Every
    /// call takes `per_call` of simulated time and does what the next scripted step says.
    struct Fake {
        clock: SimClock,
        per_call: SignedDuration,
        state: Mutex<FakeState>,
        calls: watch::Sender<usize>,
    }

    struct FakeState {
        lease: Option<Lease>,
        rv: u64,
        script: VecDeque<Step>,
        /// What happens once the script is used up.
        then: Step,
        replaced_with_rv: Vec<Option<String>>,
    }

    impl Fake {
        fn new(clock: &SimClock, per_call: i64, lease: Option<Lease>, script: &[Step], then: Step) -> Self {
            Self {
                clock: clock.clone(),
                per_call: SignedDuration::from_secs(per_call),
                state: Mutex::new(FakeState {
                    lease,
                    rv: 1,
                    script: script.iter().copied().collect(),
                    then,
                    replaced_with_rv: vec![],
                }),
                calls: watch::channel(0).0,
            }
        }

        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().unwrap()
        }

        /// Another replica renews the Lease (a new resourceVersion, renewTime unchanged).
        fn touch(&self) {
            let mut s = self.state();
            s.rv += 1;
            let rv = s.rv.to_string();
            if let Some(l) = s.lease.as_mut() {
                l.metadata.resource_version = Some(rv);
            }
        }

        fn call<T: Send + 'static>(
            &self,
            op: impl FnOnce(&mut FakeState) -> Result<T, kube::Error> + Send,
        ) -> BoxFuture<'_, Result<T, kube::Error>> {
            self.clock.advance(self.per_call);
            self.calls.send_modify(|n| *n += 1);
            let mut s = self.state();
            let step = s.script.pop_front().unwrap_or(s.then);
            let result = match step {
                Step::Ok => op(&mut s),
                Step::Fail => Err(status(503)),
                Step::Hang => return Box::pin(std::future::pending()),
                Step::Slow(ms) => {
                    let result = op(&mut s);
                    return Box::pin(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        result
                    });
                }
            };
            Box::pin(std::future::ready(result))
        }

        async fn wait_calls(&self, n: usize) {
            let mut rx = self.calls.subscribe();
            tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|c| *c >= n))
                .await
                .expect("the calls within the deadline")
                .expect("fake alive");
        }
    }

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status { code, message: "fake".into(), ..Default::default() }))
    }

    impl LeaseStore for Fake {
        fn get(&self) -> BoxFuture<'_, Result<Option<Lease>, kube::Error>> {
            self.call(|s| Ok(s.lease.clone()))
        }

        fn create(&self, mut lease: Lease) -> BoxFuture<'_, Result<Lease, kube::Error>> {
            self.call(move |s| {
                if s.lease.is_some() {
                    return Err(status(409));
                }
                s.rv += 1;
                lease.metadata.resource_version = Some(s.rv.to_string());
                s.lease = Some(lease.clone());
                Ok(lease)
            })
        }

        fn replace(&self, mut lease: Lease) -> BoxFuture<'_, Result<Lease, kube::Error>> {
            self.call(move |s| {
                s.replaced_with_rv.push(lease.metadata.resource_version.clone());
                let current = s.lease.as_ref().and_then(|l| l.metadata.resource_version.clone());
                if lease.metadata.resource_version != current {
                    return Err(status(409));
                }
                s.rv += 1;
                lease.metadata.resource_version = Some(s.rv.to_string());
                s.lease = Some(lease.clone());
                Ok(lease)
            })
        }
    }

    fn cfg() -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            // Real time between attempts; the election's own time is the simulated clock.
            retry: Duration::from_millis(5),
        }
    }

    fn start(fake: &std::sync::Arc<Fake>) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let (fake, clock) = (fake.clone(), fake.clock.clone());
        tokio::spawn(async move { run_with(&*fake, &cfg(), &clock, tx).await });
        rx
    }

    async fn wait_leading(rx: &mut watch::Receiver<bool>, want: bool) {
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| *l == want))
            .await
            .unwrap_or_else(|_| panic!("leading == {want} within the deadline"))
            .unwrap();
    }

    #[tokio::test]
    async fn a_leader_keeps_leading_through_failed_renewals_shorter_than_the_deadline() {
        use Step::{Fail, Ok};
        let clock = SimClock::new(t0());
        // Get and create, then five failed renewals of a second each: 7 s < the 10 s deadline.
        let fake = std::sync::Arc::new(Fake::new(&clock, 1, None, &[Ok, Ok, Fail, Fail, Fail, Fail, Fail], Ok));
        let mut rx = start(&fake);
        wait_leading(&mut rx, true).await;
        fake.wait_calls(2 + 5 + 4).await;
        assert!(*rx.borrow(), "stepped down after transient failures");
        assert!(fake.state().lease.as_ref().unwrap().spec.as_ref().unwrap().renew_time.as_ref().unwrap().0 > at(7));
    }

    #[tokio::test]
    async fn a_leader_steps_down_when_renewals_fail_until_the_deadline_before_the_lease_lapses() {
        use Step::{Fail, Ok};
        let clock = SimClock::new(t0());
        let fake = std::sync::Arc::new(Fake::new(&clock, 1, None, &[Ok, Ok], Fail));
        let mut rx = start(&fake);
        wait_leading(&mut rx, true).await;
        wait_leading(&mut rx, false).await;
        // It acquired at t0 (renewTime t0 + 1 s, when create was sent); candidates may take over
        // 15 s after they saw that, so it must have stopped within 10 s.
        let stopped = clock.now().duration_since(t0());
        assert!(stopped >= SignedDuration::from_secs(10) && stopped < SignedDuration::from_secs(12), "{stopped}");
    }

    #[tokio::test]
    async fn a_hung_renewal_is_abandoned_and_retried() {
        use Step::{Hang, Ok};
        let clock = SimClock::new(t0());
        let fake = std::sync::Arc::new(Fake::new(&clock, 1, None, &[Ok, Ok, Hang, Ok, Hang], Ok));
        let mut rx = start(&fake);
        wait_leading(&mut rx, true).await;
        fake.wait_calls(2 + 1 + 2 + 1 + 4).await;
        assert!(*rx.borrow(), "a hung call cost the leadership");
    }

    #[tokio::test]
    async fn a_leader_whose_renewals_hang_steps_down() {
        use Step::{Hang, Ok};
        let clock = SimClock::new(t0());
        let fake = std::sync::Arc::new(Fake::new(&clock, 1, None, &[Ok, Ok], Hang));
        let mut rx = start(&fake);
        wait_leading(&mut rx, true).await;
        wait_leading(&mut rx, false).await;
    }

    /// Wall time that follows tokio's clock, paused in these tests: the election's own
    /// deadlines (`real_wait_until`) and its timeouts then run on the same time.
    struct TokioClock {
        start: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> Timestamp {
            t0() + SignedDuration::try_from(self.start.elapsed()).unwrap()
        }

        fn jumps(&self) -> futures::stream::BoxStream<'static, ()> {
            use futures::StreamExt;
            futures::stream::pending().boxed()
        }
    }

    /// A 15 s Lease renewed every 3 s: the renew deadline is 10 s, an attempt may take 6 s.
    fn slow_cfg() -> LeaseConfig {
        LeaseConfig { duration: Duration::from_secs(15), retry: Duration::from_secs(3), ..cfg() }
    }

    /// Runs the election on tokio's (paused) clock against a fake following `script`, then
    /// `then`; returns its `leading` and the instant it started.
    fn start_on_tokio_time(
        script: &[Step],
        then: Step,
    ) -> (std::sync::Arc<Fake>, watch::Receiver<bool>, tokio::time::Instant) {
        let fake = std::sync::Arc::new(Fake::new(&SimClock::new(t0()), 0, None, script, then));
        let (tx, rx) = watch::channel(false);
        let start = tokio::time::Instant::now();
        let f = fake.clone();
        tokio::spawn(async move { run_with(&*f, &slow_cfg(), &TokioClock { start }, tx).await });
        (fake, rx, start)
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_renewals_fail_fast_stops_leading_at_the_renew_deadline_not_at_the_next_tick() {
        use Step::{Fail, Ok};
        // Acquired at 0 s; renewals at 3, 6 and 9 s fail at once. The next tick (12 s) lies past
        // the deadline (10 s): waiting for it would lead 2 s too long, a third of the way to
        // the 5 s margin before a candidate may take over.
        let (_fake, mut rx, start) = start_on_tokio_time(&[Ok, Ok], Fail);
        rx.wait_for(|l| *l).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        let stopped = when_down(rx.clone()).await.unwrap();
        assert_eq!(stopped - start, slow_cfg().renew_deadline(), "stopped leading off the renew deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_renewal_is_retried_until_the_renew_deadline_and_no_longer() {
        use Step::{Ok, Slow};
        // Every call answers after 4 s, so a renewal (a read and a write) needs 8 s and each
        // attempt is abandoned at its 6 s timeout: the one begun at 3 s at 9 s. The leader
        // retries rather than stepping down, and stops exactly at the deadline (10 s).
        let (fake, mut rx, start) = start_on_tokio_time(&[Ok, Ok], Slow(4_000));
        rx.wait_for(|l| *l).await.unwrap();
        let down = when_down(rx.clone());
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert!(*rx.borrow(), "stepped down before the renew deadline");
        assert!(*fake.calls.borrow() >= 2 + 3, "not retried: {} calls", *fake.calls.borrow());
        let stopped = down.await.unwrap();
        assert_eq!(stopped - start, slow_cfg().renew_deadline());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_renewals_that_answer_within_the_attempt_keep_the_lease() {
        use Step::{Ok, Slow};
        // Every call answers after 2 s: each renewal takes 4 s, longer than the 3 s period but
        // within an attempt's 6 s, and begins within 4 s of the last good one.
        let (fake, mut rx, start) = start_on_tokio_time(&[Ok, Ok], Slow(2_000));
        rx.wait_for(|l| *l).await.unwrap();
        let down = when_down(rx.clone());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!down.is_finished(), "stepped down while every renewal succeeded");
        let renewed = fake.state().lease.clone().unwrap().spec.unwrap().renew_time.unwrap().0;
        assert!(renewed > TokioClock { start }.now() - SignedDuration::from_secs(8), "last renewed {renewed}");
        down.abort();
    }

    /// The (tokio) instant `rx` turns false.
    fn when_down(mut rx: watch::Receiver<bool>) -> tokio::task::JoinHandle<tokio::time::Instant> {
        tokio::spawn(async move {
            let _ = rx.wait_for(|l| !*l).await;
            tokio::time::Instant::now()
        })
    }

    #[test]
    fn settings_under_which_the_lease_would_not_hold_are_refused() {
        let with = |duration_ms, retry_ms| LeaseConfig {
            duration: Duration::from_millis(duration_ms),
            retry: Duration::from_millis(retry_ms),
            ..cfg()
        };
        // (duration, retry, refused field)
        let cases = [
            (15_000, 3_000, None),
            (4_000, 500, None),
            (15_000, 5_000, None),
            (15_000, 5_001, Some("retry")),
            (15_000, 0, Some("retry")),
            (2_500, 100, Some("duration")),
            (0, 100, Some("duration")),
        ];
        for (d, r, want) in cases {
            let got = with(d, r).validate().err().map(|e| match e {
                Error::Invalid { field, .. } => field,
                other => panic!("{other}"),
            });
            assert_eq!(got, want, "duration {d} ms, retry {r} ms");
        }
    }

    #[tokio::test]
    async fn a_candidate_takes_a_lease_only_after_seeing_it_unchanged_for_its_duration() {
        let clock = SimClock::new(t0());
        // The holder's clock is a day ahead: by its renewTime the Lease is far from expired.
        let held = lease("b", at(86_400), Some(15), "1");
        let fake = std::sync::Arc::new(Fake::new(&clock, 0, Some(held), &[], Step::Ok));
        let mut rx = start(&fake);
        fake.wait_calls(3).await;
        // The holder keeps renewing while time passes: never taken.
        for _ in 0..5 {
            clock.advance(SignedDuration::from_secs(10));
            fake.touch();
            let n = *fake.calls.borrow();
            fake.wait_calls(n + 2).await;
            assert!(!*rx.borrow(), "took a Lease that is being renewed");
        }
        // It stops renewing: 14 s later it is still not taken, 15 s later it is.
        clock.advance(SignedDuration::from_secs(14));
        let n = *fake.calls.borrow();
        fake.wait_calls(n + 2).await;
        assert!(!*rx.borrow(), "took the Lease before its duration passed");
        clock.advance(SignedDuration::from_secs(1));
        wait_leading(&mut rx, true).await;
        let spec = fake.state().lease.clone().unwrap().spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(1));
    }

    #[tokio::test]
    async fn writes_are_fenced_on_the_resource_version_read() {
        let clock = SimClock::new(t0());
        let fake = Fake::new(&clock, 0, Some(lease("", at(0), Some(15), "1")), &[], Step::Ok);
        let mut observed = Observed::default();
        // Someone else writes between our read and our write: the write loses.
        let store = Interleave { inner: &fake };
        let got = try_acquire(&store, &cfg(), &mut observed, &clock, false).await.unwrap();
        assert_eq!(got, Outcome::Conflict);
        assert_eq!(fake.state().replaced_with_rv, vec![Some("1".to_owned())]);
        // Without the interleaving the same attempt wins.
        let got = try_acquire(&fake, &cfg(), &mut observed, &clock, false).await.unwrap();
        assert_eq!(got, Outcome::Holding);
    }

    /// A store where another replica writes the Lease right after every read.
    struct Interleave<'a> {
        inner: &'a Fake,
    }

    impl LeaseStore for Interleave<'_> {
        fn get(&self) -> BoxFuture<'_, Result<Option<Lease>, kube::Error>> {
            Box::pin(async move {
                let got = self.inner.get().await;
                self.inner.touch();
                got
            })
        }

        fn create(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, kube::Error>> {
            self.inner.create(lease)
        }

        fn replace(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, kube::Error>> {
            self.inner.replace(lease)
        }
    }
}
