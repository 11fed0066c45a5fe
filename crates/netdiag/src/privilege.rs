//! Least privilege: once a run holds every handle it needs (capture sockets, namespace
//! file descriptors, the threads that will read the counters after), the thread that goes
//! on to parse untrusted packets gives up every capability and sets `no_new_privs`.
//!
//! Linux capabilities belong to threads: what is dropped here holds for the calling thread
//! and every thread it starts afterwards (the capture threads, which parse the packets). A
//! thread started before keeps its own (the counter readers waiting in the pod's and the
//! node's namespaces, which never see a packet).

use crate::Error;
use caps::CapSet;

/// What [`drop_privileges`] left the calling thread with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// Capabilities that were effective before (e.g. `CAP_NET_RAW`, `CAP_SYS_ADMIN`).
    pub had: Vec<String>,
}

/// Drops every capability of the calling thread (bounding, ambient, inheritable, effective
/// and permitted sets, in the order that keeps the right to drop until the end) and sets
/// `no_new_privs`, so neither an exec nor a setuid binary can bring them back.
pub fn drop_privileges() -> Result<Dropped, Error> {
    let had = caps::read(None, CapSet::Effective)
        .map_err(|e| Error::Privileges {
            step: "reading the effective capabilities",
            message: e.to_string(),
        })?
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    nix::sys::prctl::set_no_new_privs().map_err(|e| Error::Privileges {
        step: "prctl(PR_SET_NO_NEW_PRIVS)",
        message: e.to_string(),
    })?;
    // Bounding first: dropping from it needs CAP_SETPCAP, which the next steps remove.
    for (set, step) in [
        (CapSet::Bounding, "clearing the bounding set"),
        (CapSet::Ambient, "clearing the ambient set"),
        (CapSet::Inheritable, "clearing the inheritable set"),
        (CapSet::Effective, "clearing the effective set"),
        (CapSet::Permitted, "clearing the permitted set"),
    ] {
        // Without CAP_SETPCAP (not root) the bounding set cannot shrink; the effective and
        // permitted sets are what matter then, and they can always be cleared.
        if matches!(set, CapSet::Bounding)
            && !caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP)
                .unwrap_or(false)
        {
            continue;
        }
        caps::clear(None, set).map_err(|e| Error::Privileges {
            step,
            message: e.to_string(),
        })?;
    }
    Ok(Dropped { had })
}
