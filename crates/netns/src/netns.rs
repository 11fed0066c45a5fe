//! [`NetNs`]: a handle on a network namespace, entered only on dedicated threads.
//!
//! `setns(2)` changes the namespace of the calling **thread**. A thread that switched is
//! never returned to anyone: [`NetNs::run`] and [`NetNs::spawn`] start a fresh OS thread,
//! switch it, run the work and let it die (aya's `NetNsGuard` idea, without the restore
//! step that could fail half-way). So an async runtime's worker thread is never moved.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use nix::sched::CloneFlags;

use crate::{Error, sys};

/// Which namespace a [`NetNs`] refers to, for error messages and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// The network namespace of a process, held through a pidfd.
    Pid(i32),
    /// A namespace file: `/run/netns/NAME`, `/proc/PID/ns/net`, …
    Path(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pid(pid) => write!(f, "PID {pid}"),
            Target::Path(p) => write!(f, "netns {}", p.display()),
        }
    }
}

/// A network namespace to run code in: holds a pidfd (by PID) or an open namespace file
/// (by path), so the namespace stays the same one even if the PID or the name is reused.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    target: Target,
}

/// `NSFS_MAGIC`, the filesystem of `/proc/PID/ns/*` and of `ip netns` bind mounts.
const NSFS_MAGIC: i64 = 0x6e73_6673;

impl NetNs {
    /// The network namespace of process `pid` (≈ `nsenter -t PID -n`), through a pidfd:
    /// if the process exits and its PID is recycled, entering fails with
    /// [`Error::ProcessGone`] instead of entering the newcomer's namespace.
    pub fn from_pid(pid: i32) -> Result<NetNs, Error> {
        if pid <= 0 {
            return Err(Error::ProcessGone {
                pid,
                syscall: "pidfd_open",
            });
        }
        let fd = sys::pidfd_open(pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => Error::ProcessGone {
                pid,
                syscall: "pidfd_open",
            },
            _ => Error::Syscall {
                target: Target::Pid(pid).to_string(),
                syscall: "pidfd_open",
                source: e,
            },
        })?;
        Ok(NetNs {
            fd,
            target: Target::Pid(pid),
        })
    }

    /// Use a pidfd the caller already holds (e.g. from the container runtime).
    pub fn from_pidfd(pid: i32, pidfd: OwnedFd) -> NetNs {
        NetNs {
            fd: pidfd,
            target: Target::Pid(pid),
        }
    }

    /// A namespace file (≈ `ip netns exec` with `/run/netns/NAME`, or `/proc/PID/ns/net`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<NetNs, Error> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NoSuchNetns {
                path: path.to_path_buf(),
            },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                target: Target::Path(path.to_path_buf()).to_string(),
                syscall: "open",
                capability: "CAP_SYS_PTRACE (another user's /proc/PID/ns/net)",
            },
            _ => Error::Syscall {
                target: Target::Path(path.to_path_buf()).to_string(),
                syscall: "open",
                source: e,
            },
        })?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| Error::Syscall {
            target: Target::Path(path.to_path_buf()).to_string(),
            syscall: "fstatfs",
            source: e.into(),
        })?;
        #[allow(clippy::unnecessary_cast)] // the field type differs between libcs
        if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Err(Error::NotANetns {
                path: path.to_path_buf(),
            });
        }
        Ok(NetNs {
            fd: file.into(),
            target: Target::Path(path.to_path_buf()),
        })
    }

    /// A namespace made by `ip netns add NAME`: `/run/netns/NAME`, else `/var/run/netns/NAME`.
    pub fn from_name(name: &str) -> Result<NetNs, Error> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::NoSuchNetns {
                path: PathBuf::from(name),
            });
        }
        let run = Path::new("/run/netns").join(name);
        match NetNs::from_path(&run) {
            Err(Error::NoSuchNetns { .. }) => {
                NetNs::from_path(Path::new("/var/run/netns").join(name))
            }
            other => other,
        }
    }

    /// The namespace of the calling thread (the node's, when the tool runs on the host).
    pub fn current() -> Result<NetNs, Error> {
        NetNs::from_path("/proc/thread-self/ns/net")
    }

    /// Another handle on the same namespace (the descriptor is duplicated), e.g. to hand
    /// one to a capture thread and keep one for counters.
    pub fn try_clone(&self) -> Result<NetNs, Error> {
        let fd = self.fd.try_clone().map_err(|e| Error::Syscall {
            target: self.target.to_string(),
            syscall: "dup",
            source: e,
        })?;
        Ok(NetNs {
            fd,
            target: self.target.clone(),
        })
    }

    /// The namespace's identity (device and inode of its nsfs file, as `ls -iL
    /// /proc/PID/ns/net` and `lsns -t net` show): equal ids mean the same namespace, e.g.
    /// a `hostNetwork` pod shares the node's. Found from inside, so it costs one thread.
    pub fn id(&self) -> Result<NetNsId, Error> {
        let path = "/proc/thread-self/ns/net";
        let meta = self.run(|| std::fs::metadata(path))?;
        let meta = meta.map_err(|e| Error::Syscall {
            target: self.target.to_string(),
            syscall: "stat /proc/thread-self/ns/net",
            source: e,
        })?;
        use std::os::unix::fs::MetadataExt;
        Ok(NetNsId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// What this handle refers to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Run `f` on a new thread inside the namespace and return its result; the thread ends
    /// afterwards. `f` may borrow from the caller. A panic in `f` is propagated.
    ///
    /// The calling thread itself never changes namespace, but it blocks until `f` returns:
    /// from async code, call this through the runtime's blocking pool (e.g. tokio's
    /// `spawn_blocking`), or use [`NetNs::spawn`].
    pub fn run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        thread::scope(|s| {
            let handle = thread::Builder::new()
                .name(thread_name(&self.target))
                .spawn_scoped(s, || {
                    enter(&self.fd, &self.target)?;
                    Ok(f())
                })
                .map_err(|source| Error::Thread {
                    target: self.target.to_string(),
                    source,
                })?;
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Start long-running work (a capture) on a new thread inside the namespace. Returns
    /// once the thread has entered the namespace, so a failure to enter is reported here,
    /// not at [`NetNsThread::join`].
    pub fn spawn<F, T>(&self, f: F) -> Result<NetNsThread<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let fd = self.fd.try_clone().map_err(|e| Error::Syscall {
            target: self.target.to_string(),
            syscall: "dup",
            source: e,
        })?;
        let target = self.target.clone();
        let (tx, rx) = mpsc::sync_channel::<Result<(), Error>>(1);
        let t = target.clone();
        let handle = thread::Builder::new()
            .name(thread_name(&target))
            .spawn(move || {
                let entered = enter(&fd, &t);
                drop(fd);
                let ok = entered.is_ok();
                // The receiver waits for exactly this message; if it is gone there is
                // nobody to report to, and we must not run `f` outside the namespace.
                if tx.send(entered).is_err() || !ok {
                    return None;
                }
                Some(f())
            })
            .map_err(|source| Error::Thread {
                target: target.to_string(),
                source,
            })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(NetNsThread { handle, target }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => match handle.join() {
                Ok(_) => Err(Error::Thread {
                    target: target.to_string(),
                    source: io::Error::other("namespace thread ended before entering"),
                }),
                Err(panic) => std::panic::resume_unwind(panic),
            },
        }
    }
}

/// Identity of a network namespace (see [`NetNs::id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetNsId {
    /// Device of the nsfs file.
    pub dev: u64,
    /// Inode of the nsfs file (the number in `net:[4026531840]`).
    pub ino: u64,
}

impl fmt::Display for NetNsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

/// A thread started by [`NetNs::spawn`], already inside the namespace.
#[derive(Debug)]
pub struct NetNsThread<T> {
    handle: thread::JoinHandle<Option<T>>,
    target: Target,
}

impl<T> NetNsThread<T> {
    /// Wait for the work to finish and return its result. A panic in it is propagated.
    pub fn join(self) -> Result<T, Error> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Error::Thread {
                target: self.target.to_string(),
                source: io::Error::other("namespace thread did not run its work"),
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Whether the work has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

fn thread_name(target: &Target) -> String {
    match target {
        Target::Pid(pid) => format!("netns-pid-{pid}"),
        Target::Path(p) => format!(
            "netns-{}",
            p.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ),
    }
}

/// `user:[inode]` of a namespace file, as `readlink /proc/self/ns/user` prints it.
fn userns_text(st: &nix::sys::stat::FileStat) -> String {
    format!("user:[{}]", st.st_ino)
}

/// When setns said EPERM although we are root (effective UID 0): the user namespace that
/// owns the target network namespace, if it is not ours, as (theirs, ours). `None` when
/// we are not root (then the plain "needs CAP_SYS_ADMIN" is the truth) or the owners match.
fn foreign_userns(fd: &OwnedFd, target: &Target) -> Option<(String, String)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let ours = nix::sys::stat::stat("/proc/thread-self/ns/user").ok()?;
    // A pidfd is not a namespace file: ask the process's netns file instead.
    let ns_file = match target {
        Target::Pid(pid) => std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .ok()
            .map(OwnedFd::from),
        Target::Path(_) => fd.try_clone().ok(),
    };
    let Some(ns_file) = ns_file else {
        // The process is not even inspectable from here. If our own user namespace is
        // not the initial one (its uid_map is not the identity of all 2^32 IDs), our
        // root is a namespaced root: that is the reason.
        let map = std::fs::read_to_string("/proc/thread-self/uid_map").ok()?;
        let initial = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
        return (!initial).then(|| {
            (
                "one outside ours, not visible from here".to_owned(),
                format!("{}, a child of the initial one", userns_text(&ours)),
            )
        });
    };
    let theirs = match crate::sys::ns_get_userns(ns_file.as_fd()) {
        Ok(owner) => nix::sys::stat::fstat(&owner).ok()?,
        // EPERM: the owner is not even below our user namespace, so it is not ours.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            return Some((
                "one outside ours, not visible from here".to_owned(),
                userns_text(&ours),
            ));
        }
        Err(_) => return None,
    };
    ((theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino))
        .then(|| (userns_text(&theirs), userns_text(&ours)))
}

/// `CAP_SYS_ADMIN`'s bit in the capability sets (linux/capability.h).
const CAP_SYS_ADMIN_BIT: u32 = 21;
/// `CAP_SYS_PTRACE`'s bit.
const CAP_SYS_PTRACE_BIT: u32 = 19;

/// Whether the calling thread has capability `bit` in its effective set (`CapEff` of
/// /proc/thread-self/status); `false` when that cannot be read.
fn has_effective_cap(bit: u32) -> bool {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1u64 << bit) != 0)
}

/// `setns(fd, CLONE_NEWNET)` on the calling thread, with errors that say what to do.
fn enter(fd: &OwnedFd, target: &Target) -> Result<(), Error> {
    nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
        nix::errno::Errno::EPERM => match foreign_userns(fd, target) {
            Some((target_userns, our_userns)) => Error::ForeignUserNamespace {
                target: target.to_string(),
                syscall: "setns",
                target_userns,
                our_userns,
            },
            // setns through a pidfd also asks for ptrace access to the process: a process
            // holding capabilities we lack needs CAP_SYS_PTRACE, even with CAP_SYS_ADMIN.
            None if matches!(target, Target::Pid(_))
                && has_effective_cap(CAP_SYS_ADMIN_BIT)
                && !has_effective_cap(CAP_SYS_PTRACE_BIT) =>
            {
                Error::PermissionDenied {
                    target: target.to_string(),
                    syscall: "setns",
                    capability: "CAP_SYS_PTRACE (the process holds capabilities this one lacks)",
                }
            }
            None => Error::PermissionDenied {
                target: target.to_string(),
                syscall: "setns",
                capability: "CAP_SYS_ADMIN",
            },
        },
        nix::errno::Errno::ESRCH => match target {
            Target::Pid(pid) => Error::ProcessGone {
                pid: *pid,
                syscall: "setns",
            },
            Target::Path(_) => Error::Syscall {
                target: target.to_string(),
                syscall: "setns",
                source: errno.into(),
            },
        },
        nix::errno::Errno::EINVAL => match target {
            Target::Path(p) => Error::NotANetns { path: p.clone() },
            Target::Pid(_) => Error::Syscall {
                target: format!("{target} (pidfd setns needs Linux >= 5.8)"),
                syscall: "setns",
                source: errno.into(),
            },
        },
        other => Error::Syscall {
            target: target.to_string(),
            syscall: "setns",
            source: other.into(),
        },
    })
}
