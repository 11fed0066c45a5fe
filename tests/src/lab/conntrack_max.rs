//! Global state a lab may change, made safe: the machine-wide lab lock, and lowering
//! `net.netfilter.nf_conntrack_max` (global, read-only in child namespaces) with a guard
//! that puts it back.
//!
//! - Every [`Lab`](super::Lab) holds [`LOCK_PATH`] shared; a lab that changes global
//!   sysctls holds it exclusively ([`Lab::up_exclusive`](super::Lab::up_exclusive)), so it
//!   never runs beside another lab test of any process using this library.
//! - [`lower`] writes the original value to [`MARKER_PATH`] before lowering, and the
//!   returned [`ConntrackMaxGuard`] restores it on drop (also when a test panics). A run
//!   killed outright leaves the marker behind: [`restore_stale`], called by every
//!   `Lab::up` and by [`lower`], puts the saved value back first.

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use std::time::{Duration, Instant};

/// The machine-wide lab lock.
pub const LOCK_PATH: &str = "/run/ndl-lab.lock";
/// Holds the original `nf_conntrack_max` while it is lowered.
pub const MARKER_PATH: &str = "/run/ndl-conntrack-max.saved";
/// The global sysctl.
pub const SYSCTL_PATH: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// How long a lab waits for the lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(900);

/// Takes the lab lock, shared or exclusive, waiting (bounded) for holders of the other kind.
pub fn lock_labs(exclusive: bool) -> Result<Flock<std::fs::File>> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut said = false;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .with_context(|| format!("open {LOCK_PATH}"))?;
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    loop {
        match Flock::lock(file, arg) {
            Ok(l) => return Ok(l),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => file = f,
            Err((_, e)) => return Err(e).with_context(|| format!("flock {LOCK_PATH}")),
        }
        if Instant::now() > deadline {
            bail!("another lab held {LOCK_PATH} for {LOCK_WAIT:?}");
        }
        if !said {
            eprintln!(
                "lab: waiting for {} lab(s) to finish ({LOCK_PATH})",
                if exclusive { "other" } else { "an exclusive" }
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read_max() -> Result<u64> {
    let text =
        std::fs::read_to_string(SYSCTL_PATH).with_context(|| format!("read {SYSCTL_PATH}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{SYSCTL_PATH} holds {text:?}"))
}

fn write_max(v: u64) -> Result<()> {
    std::fs::write(SYSCTL_PATH, format!("{v}\n"))
        .with_context(|| format!("write {v} to {SYSCTL_PATH}"))
}

/// Puts back the `nf_conntrack_max` a killed run left lowered (the marker names it).
/// Returns the value restored, if there was a marker.
pub fn restore_stale() -> Result<Option<u64>> {
    let text = match std::fs::read_to_string(MARKER_PATH) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {MARKER_PATH}")),
    };
    let v: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("{MARKER_PATH} holds {text:?}"))?;
    write_max(v)?;
    std::fs::remove_file(MARKER_PATH).with_context(|| format!("remove {MARKER_PATH}"))?;
    eprintln!("lab: restored nf_conntrack_max to {v} (left lowered by an earlier run)");
    Ok(Some(v))
}

/// Restores `nf_conntrack_max` when dropped.
#[derive(Debug)]
pub struct ConntrackMaxGuard {
    original: u64,
}

impl ConntrackMaxGuard {
    /// The value that will be restored.
    pub fn original(&self) -> u64 {
        self.original
    }
}

impl Drop for ConntrackMaxGuard {
    fn drop(&mut self) {
        match write_max(self.original) {
            Ok(()) => {
                let _ = std::fs::remove_file(MARKER_PATH);
            }
            // The marker stays: the next lab puts the value back.
            Err(e) => eprintln!("lab: restoring nf_conntrack_max failed: {e:#}"),
        }
    }
}

/// Lowers the global `nf_conntrack_max` to `to` until the guard drops. Only under the
/// exclusive lab lock (the caller's `Lab::up_exclusive`).
pub fn lower(to: u64) -> Result<ConntrackMaxGuard> {
    restore_stale()?;
    let original = read_max()?;
    std::fs::write(MARKER_PATH, format!("{original}\n"))
        .with_context(|| format!("write {MARKER_PATH}"))?;
    let guard = ConntrackMaxGuard { original };
    write_max(to)?;
    Ok(guard)
}
