//! [`ContainerRoot`]: read a file inside a container's root filesystem without letting the
//! container point us at the host's files.
//!
//! `cat /proc/PID/root/etc/resolv.conf` is not safe: if the container made `/etc/resolv.conf`
//! a symlink to `/etc/shadow` (or `../../../etc/shadow`), the kernel resolves it against
//! the **reader's** root and we would read the host's file. `openat2(2)` with
//! `RESOLVE_IN_ROOT` resolves every component, symlinks included, as if the container root
//! were `/`; `RESOLVE_NO_MAGICLINKS` refuses `/proc/self/…`-style jumps. The file must also
//! be a regular file (a FIFO would block us forever) and at most `max_len` bytes.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::{Error, sys};

/// An open handle on a root directory: a container's (`/proc/PID/root`) or any directory.
#[derive(Debug)]
pub struct ContainerRoot {
    dir: OwnedFd,
    desc: PathBuf,
    /// The process whose root this is (PID and pidfd), when opened from one: every read
    /// is checked against its exit (see [`Error::ExitedDuringRead`]).
    owner: Option<(i32, OwnedFd)>,
}

impl ContainerRoot {
    /// The root filesystem of process `pid`. A pidfd taken first and checked after opening
    /// `/proc/PID/root` proves the directory belongs to that process, not to a successor
    /// that inherited the PID in between.
    pub fn from_pid(pid: i32) -> Result<ContainerRoot, Error> {
        if pid <= 0 {
            return Err(Error::ProcessGone {
                pid,
                syscall: "pidfd_open",
            });
        }
        let pidfd = sys::pidfd_open(pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => Error::ProcessGone {
                pid,
                syscall: "pidfd_open",
            },
            _ => Error::Syscall {
                target: format!("PID {pid}"),
                syscall: "pidfd_open",
                source: e,
            },
        })?;
        ContainerRoot::from_pidfd(pid, pidfd.as_fd())
    }

    /// Like [`ContainerRoot::from_pid`] with a pidfd the caller already holds.
    pub fn from_pidfd(pid: i32, pidfd: BorrowedFd<'_>) -> Result<ContainerRoot, Error> {
        let desc = PathBuf::from(format!("/proc/{pid}/root"));
        let dir = open_dir(&desc).map_err(|e| match e {
            Error::Syscall { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => {
                Error::ProcessGone {
                    pid,
                    syscall: "open /proc/PID/root",
                }
            }
            other => other,
        })?;
        let alive = sys::pidfd_is_alive(pidfd).map_err(|e| Error::Syscall {
            target: format!("PID {pid}"),
            syscall: "pidfd_send_signal",
            source: e,
        })?;
        if !alive {
            return Err(Error::ProcessGone {
                pid,
                syscall: "pidfd_send_signal",
            });
        }
        let owner = pidfd.try_clone_to_owned().map_err(|e| Error::Syscall {
            target: format!("PID {pid}"),
            syscall: "dup pidfd",
            source: e,
        })?;
        Ok(ContainerRoot {
            dir,
            desc,
            owner: Some((pid, owner)),
        })
    }

    /// Any directory used as a root (an unpacked image, a test tree).
    pub fn from_dir(path: impl AsRef<Path>) -> Result<ContainerRoot, Error> {
        let desc = path.as_ref().to_path_buf();
        let dir = open_dir(&desc)?;
        Ok(ContainerRoot {
            dir,
            desc,
            owner: None,
        })
    }

    /// Read `path` (absolute or relative, both resolved inside this root) of at most
    /// `max_len` bytes.
    pub fn read(&self, path: impl AsRef<Path>, max_len: usize) -> Result<Vec<u8>, Error> {
        self.read_limited(path.as_ref(), max_len, true)
    }

    /// Reads, then asks whether the owner exited meanwhile: a process that exits while we
    /// hold its root takes its mount namespace along, and the path we resolved may then
    /// have named the file under a torn-down bind mount (the node's view). Checked whatever
    /// the read's outcome: an error then is as unreliable as the bytes.
    fn read_limited(&self, path: &Path, max_len: usize, whole: bool) -> Result<Vec<u8>, Error> {
        let read = self.read_unchecked(path, max_len, whole);
        if let Some((pid, pidfd)) = &self.owner {
            let exited = sys::pidfd_has_exited(pidfd.as_fd()).map_err(|e| Error::Syscall {
                target: format!("PID {pid}"),
                syscall: "poll pidfd",
                source: e,
            })?;
            if exited {
                return Err(Error::ExitedDuringRead {
                    pid: *pid,
                    path: self.desc.join(path.strip_prefix("/").unwrap_or(path)),
                });
            }
        }
        read
    }

    fn read_unchecked(&self, path: &Path, max_len: usize, whole: bool) -> Result<Vec<u8>, Error> {
        let ctx = || self.desc.join(path.strip_prefix("/").unwrap_or(path));
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::ReadInRoot {
            root: self.desc.clone(),
            path: path.to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        let fd = sys::openat2(
            self.dir.as_fd(),
            &c,
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        )
        .map_err(|source| Error::ReadInRoot {
            root: self.desc.clone(),
            path: path.to_path_buf(),
            source,
        })?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(|source| Error::ReadInRoot {
            root: self.desc.clone(),
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.file_type().is_file() {
            let kind = if meta.file_type().is_fifo() {
                "a FIFO"
            } else if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(Error::NotRegularFile { path: ctx(), kind });
        }
        let mut buf = Vec::new();
        let limit = u64::try_from(max_len).unwrap_or(u64::MAX).saturating_add(1);
        file.take(limit)
            .read_to_end(&mut buf)
            .map_err(|source| Error::ReadInRoot {
                root: self.desc.clone(),
                path: path.to_path_buf(),
                source,
            })?;
        if buf.len() > max_len && !whole {
            buf.truncate(max_len);
        }
        if buf.len() > max_len {
            return Err(Error::TooLarge {
                path: ctx(),
                max_len,
            });
        }
        Ok(buf)
    }

    /// The first `max_len` bytes of `path` (resolved inside this root like
    /// [`ContainerRoot::read`]); a longer file is not an error, its rest is not read.
    /// For headers of large files (an ELF program's program headers).
    pub fn read_prefix(&self, path: impl AsRef<Path>, max_len: usize) -> Result<Vec<u8>, Error> {
        self.read_limited(path.as_ref(), max_len, false)
    }

    /// [`ContainerRoot::read`] as UTF-8 text (invalid bytes replaced).
    pub fn read_to_string(&self, path: impl AsRef<Path>, max_len: usize) -> Result<String, Error> {
        self.read(path, max_len)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// Read one file inside the root of process `pid` (e.g. `/etc/resolv.conf`), safely.
pub fn read_in_root(pid: i32, path: impl AsRef<Path>, max_len: usize) -> Result<Vec<u8>, Error> {
    ContainerRoot::from_pid(pid)?.read(path, max_len)
}

fn open_dir(path: &Path) -> Result<OwnedFd, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                target: path.display().to_string(),
                syscall: "open",
                capability: "CAP_SYS_PTRACE",
            },
            _ => Error::Syscall {
                target: path.display().to_string(),
                syscall: "open",
                source: e,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct TempTree(PathBuf);
    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(name: &str) -> TempTree {
        let dir = std::env::temp_dir().join(format!("ndk-root-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        TempTree(dir)
    }

    #[test]
    fn absolute_symlink_stays_inside_root() {
        let t = tree("abs");
        // The host file the container points at, and a decoy of the same name in the root.
        let host_target =
            std::env::temp_dir().join(format!("ndk-host-secret-{}", std::process::id()));
        std::fs::write(&host_target, "HOST SECRET\n").unwrap();
        let inside = t.0.join(host_target.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(&inside, "container decoy\n").unwrap();
        symlink(&host_target, t.0.join("etc/resolv.conf")).unwrap();

        let root = ContainerRoot::from_dir(&t.0).unwrap();
        let got = root.read_to_string("/etc/resolv.conf", 4096);
        // A naive read through the tree follows the link to the host file: the test is real.
        let naive = std::fs::read_to_string(t.0.join("etc/resolv.conf"));
        let _ = std::fs::remove_file(&host_target);
        assert_eq!(naive.unwrap(), "HOST SECRET\n");
        assert_eq!(got.unwrap(), "container decoy\n");
    }

    #[test]
    fn relative_dotdot_symlink_is_clamped_at_root() {
        let t = tree("rel");
        symlink(
            "../../../../../../../../etc/shadow",
            t.0.join("etc/resolv.conf"),
        )
        .unwrap();
        let root = ContainerRoot::from_dir(&t.0).unwrap();
        // No etc/shadow inside the root: not found, rather than the host's /etc/shadow.
        match root.read("/etc/resolv.conf", 4096) {
            Err(Error::ReadInRoot { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT), "{source}")
            }
            other => panic!("expected ENOENT, got {other:?}"),
        }
        std::fs::write(t.0.join("etc/shadow"), "inner shadow\n").unwrap();
        assert_eq!(
            root.read("etc/resolv.conf", 4096).unwrap(),
            b"inner shadow\n"
        );
    }

    #[test]
    fn magic_links_are_refused() {
        // A running container's root has procfs mounted at /proc, and /proc/self/root is a
        // magic link to the *reader's* root (the host). Use the host root, which has /proc,
        // as the container root: the magic link must be refused (ELOOP), not followed.
        let root = ContainerRoot::from_dir("/").unwrap();
        match root.read("/proc/self/root/etc/hostname", 4096) {
            Err(Error::ReadInRoot { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{source}")
            }
            other => panic!("expected ELOOP, got {other:?}"),
        }
        // the same file without the magic link is readable, so the refusal is the link's
        assert!(root.read("/proc/sys/kernel/ostype", 4096).is_ok());
    }

    #[test]
    fn fifo_and_directory_and_size_are_refused() {
        let t = tree("kinds");
        nix::unistd::mkfifo(
            &t.0.join("etc/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        std::fs::write(t.0.join("etc/big"), vec![b'x'; 100]).unwrap();
        let root = ContainerRoot::from_dir(&t.0).unwrap();
        assert!(matches!(
            root.read("/etc/fifo", 10),
            Err(Error::NotRegularFile { kind: "a FIFO", .. })
        ));
        assert!(matches!(
            root.read("/etc", 10),
            Err(Error::NotRegularFile {
                kind: "a directory",
                ..
            })
        ));
        assert!(matches!(
            root.read("/etc/big", 99),
            Err(Error::TooLarge { max_len: 99, .. })
        ));
        assert_eq!(root.read("/etc/big", 100).unwrap().len(), 100);
    }

    #[test]
    fn own_root_reads_like_the_host() {
        let me = i32::try_from(std::process::id()).unwrap();
        let via_root = read_in_root(me, "/proc/sys/kernel/ostype", 64);
        // /proc/sys/… is reached through /proc, which is a plain mount, not a magic link.
        assert_eq!(
            via_root.unwrap(),
            std::fs::read("/proc/sys/kernel/ostype").unwrap()
        );
    }
}
