//! Child processes that never outlive the harness.
//!
//! Every process the harness starts is a direct child, so it is stopped by its real PID
//! (`SIGTERM`, then `SIGKILL` after a bound, then `wait`). Destructors do not run when a test
//! binary exits (a shared control plane lives in a `static`) or is killed, so each owner also
//! arms a [`Reaper`]: a tiny `sh` whose stdin is a pipe from this process. The kernel closes that
//! pipe whenever this process ends, however it ends; the reaper then kills every PID still
//! tracked in its pid file and removes the owner's directory. No unsafe code, no `PR_SET_PDEATHSIG`
//! (which fires when the spawning *thread* exits, and test threads are short-lived).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("failed to start {name} ({})", program.display())]
    Spawn {
        name: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited with {status}; last lines of {}:\n{tail}", log.display())]
    Exited { name: String, status: ExitStatus, log: PathBuf, tail: String },
    #[error("failed to prepare {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Picks `n` distinct free TCP ports on 127.0.0.1 (all probed at once, so they differ).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// A free TCP port on 127.0.0.1 below Linux's ephemeral range (32768–60999), for servers whose
/// port is published (kubelet's): ephemeral ports are handed to outgoing connections and to
/// `bind(0)` callers such as the media workers, which would make a later restart collide.
/// Reserved for this process like [`free_port_block`]'s blocks.
pub fn free_port_below_ephemeral() -> std::io::Result<u16> {
    free_port_block(1)
}

/// Blocks handed out by [`free_port_block`]: `(first, len)`.
static RESERVED: Mutex<Vec<(u16, u16)>> = Mutex::new(Vec::new());

/// The first of `len` consecutive ports below the ephemeral range (aligned to `len`), each free
/// for TCP and UDP on 127.0.0.1 now and never handed out before by this process. Tests on the
/// shared real node declare these as host ports, and the scheduler refuses a pod whose ports
/// another test's pod already declares, so a block must be this process's alone: blocks picked
/// at random without this registry met in about one run in three (15 tests, 300 blocks).
pub fn free_port_block(len: u16) -> std::io::Result<u16> {
    const MIN: u16 = 20000;
    const END: u16 = 32000;
    let len = len.max(1);
    let first_block = MIN.div_ceil(len);
    let blocks = (END / len).saturating_sub(first_block);
    if blocks == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no block of {len} ports fits below {END}"),
        ));
    }
    let offset = u16::from_str_radix(&crate::random::random_hex(2)?, 16).unwrap_or(0) % blocks;
    let mut reserved = RESERVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let free = |first: u16| {
        let overlaps = reserved.iter().any(|&(r, n)| first < r + n && r < first + len);
        !overlaps
            && (first..first + len).all(|p| {
                TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
                    && std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
            })
    };
    let first = (0..blocks)
        .map(|k| (first_block + (offset + k) % blocks) * len)
        .find(|&first| free(first))
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("no free block of {len} ports in {MIN}-{END}"))
        })?;
    reserved.push((first, len));
    Ok(first)
}

/// Creates a fresh directory `<base>/<prefix>-<pid>-<n>-<random>` where base is
/// `$TIEPDAN_TMPDIR`, else the system temp dir.
pub fn make_temp_dir(prefix: &str) -> Result<PathBuf, ProcessError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var_os("TIEPDAN_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ProcessError::Io { path, source }
    };
    let suffix = crate::random::random_hex(3).map_err(io(&base))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("{prefix}-{}-{n}-{suffix}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// The last `lines` lines of a log file (or a note saying it could not be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Sends `signal` to `pid`, ignoring "no such process".
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

const REAPER_SCRIPT: &str = r#"
trap '' INT HUP
dir=$1 remove=$2
while read -r _; do :; done
pids=$(cat "$dir/.reaper-pids" 2>/dev/null)
if [ -n "$pids" ]; then
  kill -TERM $pids 2>/dev/null
  i=0
  while [ $i -lt 50 ]; do
    alive=
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1; i=$((i+1))
  done
  kill -KILL $pids 2>/dev/null
fi
# A real node leaves state outside its dir (mounts, netns, routes, sysctls): its own undo script.
[ -f "$dir/.reaper-cleanup" ] && /bin/sh "$dir/.reaper-cleanup" >/dev/null 2>&1
[ "$remove" = 1 ] && rm -rf "$dir"
exit 0
"#;

/// Kills tracked PIDs (and optionally removes a directory) when this process ends without
/// running destructors. See the module docs.
pub struct Reaper {
    child: Child,
    dir: PathBuf,
    pids: Mutex<BTreeSet<u32>>,
}

impl Reaper {
    /// Arms a reaper for `dir`, removing `dir` after the kill when `remove_dir` is set.
    pub fn arm(dir: &Path, remove_dir: bool) -> Result<Self, ProcessError> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(REAPER_SCRIPT)
            .arg("tiepdan-reaper")
            .arg(dir)
            .arg(if remove_dir { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ProcessError::Spawn { name: "reaper".into(), program: "/bin/sh".into(), source })?;
        Ok(Self { child, dir: dir.to_owned(), pids: Mutex::new(BTreeSet::new()) })
    }

    pub fn track(&self, pid: u32) {
        self.update(|pids| {
            pids.insert(pid);
        });
    }

    pub fn untrack(&self, pid: u32) {
        self.update(|pids| {
            pids.remove(&pid);
        });
    }

    fn update(&self, change: impl FnOnce(&mut BTreeSet<u32>)) {
        let mut pids = self.pids.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut pids);
        let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
        // Write-then-rename so the reaper never reads a half-written list.
        let tmp = self.dir.join(".reaper-pids.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, self.dir.join(".reaper-pids"));
        }
    }
}

impl Drop for Reaper {
    /// Disarms the reaper: the owner has already stopped what it tracked.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A long-running child process with its output in a log file. It remembers how it was started,
/// so that a test can kill it and start it again as it was ([`Supervised::kill`],
/// [`Supervised::respawn`]).
pub struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Supervised {
    /// Starts `program args…` with stdout and stderr appended to `log`, tracked by `reaper`.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I, log: &Path, reaper: &Reaper) -> Result<Self, ProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_env(name, program, args, std::iter::empty::<(&str, &str)>(), log, reaper)
    }

    /// Like [`Supervised::spawn`], with the variables `env` added to this process' environment
    /// (e.g. `KUBECONFIG` for a program that has no flag for it).
    pub fn spawn_env<I, S, E, K, V>(
        name: &str,
        program: &Path,
        args: I,
        env: E,
        log: &Path,
        reaper: &Reaper,
    ) -> Result<Self, ProcessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let env: Vec<(OsString, OsString)> =
            env.into_iter().map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())).collect();
        let child = start(name, program, &args, &env, log, reaper)?;
        Ok(Self { name: name.to_owned(), child, log: log.to_owned(), program: program.to_owned(), args, env })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process at once with `SIGKILL` (by its PID, no grace), reaps it and returns how
    /// it ended (`None` if it could not be waited for). A crash, as far as the process can tell.
    pub fn kill(&mut self, reaper: &Reaper) -> Option<ExitStatus> {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), Signal::SIGKILL);
        }
        let status = self.child.wait().ok();
        reaper.untrack(self.child.id());
        status
    }

    /// Starts the process again with the program, arguments, environment and log it was first
    /// started with (the log is appended to), killing it first if it still runs. Returns the new
    /// PID.
    pub fn respawn(&mut self, reaper: &Reaper) -> Result<u32, ProcessError> {
        self.kill(reaper);
        self.child = start(&self.name, &self.program, &self.args, &self.env, &self.log, reaper)?;
        Ok(self.child.id())
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Err` with the log's tail if the process has exited.
    pub fn check_running(&mut self) -> Result<(), ProcessError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(ProcessError::Exited {
                name: self.name.clone(),
                status,
                log: self.log.clone(),
                tail: log_tail(&self.log, 40),
            }),
            _ => Ok(()),
        }
    }

    /// `SIGTERM`, up to `grace` for it to exit, then `SIGKILL`; always reaps the child.
    pub fn stop(&mut self, grace: Duration, reaper: &Reaper) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        reaper.untrack(self.child.id());
    }
}

/// Spawns one process for [`Supervised`] with its output appended to `log`, tracked by `reaper`.
fn start(
    name: &str,
    program: &Path,
    args: &[OsString],
    env: &[(OsString, OsString)],
    log: &Path,
    reaper: &Reaper,
) -> Result<Child, ProcessError> {
    let io = |source| ProcessError::Io { path: log.to_owned(), source };
    let out = OpenOptions::new().create(true).append(true).open(log).map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| ProcessError::Spawn { name: name.to_owned(), program: program.to_owned(), source })?;
    reaper.track(child.id());
    Ok(child)
}

/// A start-up step that did not finish: a process died, or `check` never passed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Exited(#[from] ProcessError),
    #[error("{component} not ready after {waited:?} (last: {last}); read {}; its last lines:\n{tail}", log.display())]
    NotReady { component: &'static str, waited: Duration, last: String, log: PathBuf, tail: String },
}

/// Polls `check` until it succeeds, for at most `timeout`, failing at once when one of
/// `processes` has exited, and naming `component` and `log` (with its tail) on timeout. (Not
/// [`crate::wait_for`]: this one must also watch the processes.)
pub async fn poll_startup<F, Fut>(
    processes: &Mutex<Vec<Supervised>>,
    component: &'static str,
    log: &Path,
    timeout: Duration,
    mut check: F,
) -> Result<(), StartupError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut interval = Duration::from_millis(50);
    loop {
        processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
            .try_for_each(Supervised::check_running)?;
        let last = match tokio::time::timeout(Duration::from_secs(5), check()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "check timed out".into(),
        };
        if started.elapsed() >= timeout {
            let tail = log_tail(log, 40);
            return Err(StartupError::NotReady {
                component,
                waited: started.elapsed(),
                last,
                log: log.to_owned(),
                tail,
            });
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(250));
    }
}

/// Opens `path` for appending, creating it.
pub fn append_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
