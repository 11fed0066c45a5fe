//! Which C library — and so which DNS stub resolver — the container's program runs:
//! the ELF interpreter of `/proc/PID/exe`, read through the container's root.
//!
//! `ls -l /proc/PID/exe` names the program as the container sees it; the file is then
//! opened inside the container root with `openat2(RESOLVE_IN_ROOT)` (a symlink in the
//! image cannot point us at a host file), and only its first 64 KiB are read: the ELF
//! program headers and the `PT_INTERP` string live there. `ld-musl-*` is musl (Alpine),
//! `ld-linux-*` / `ld64.so.*` is glibc; no interpreter is a static binary, whose resolver is
//! compiled in (Go's own, or a static libc) and cannot be told from the file name.

use std::path::{Path, PathBuf};

use crate::elf::{self, ElfError, ElfInterp};
use crate::{ContainerRoot, Error, sys};
use std::os::fd::AsFd;

/// Bytes of the program read to find its interpreter.
const ELF_PREFIX: usize = 64 * 1024;

/// The C library a program is linked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Libc {
    /// GNU libc (`ld-linux-*.so.*`, `ld64.so.*`).
    Glibc,
    /// musl (`ld-musl-*.so.1`).
    Musl,
    /// Statically linked: the resolver is inside the binary.
    Static,
    /// Dynamically linked through another interpreter, or not an ELF program.
    Unknown,
}

impl Libc {
    /// `"glibc"`, `"musl"`, `"static"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Libc::Glibc => "glibc",
            Libc::Musl => "musl",
            Libc::Static => "static",
            Libc::Unknown => "unknown",
        }
    }

    /// The library an interpreter path names.
    pub fn from_interpreter(path: &str) -> Libc {
        let file = path.rsplit('/').next().unwrap_or(path);
        if file.starts_with("ld-musl-") {
            Libc::Musl
        } else if file.starts_with("ld-linux") || file.starts_with("ld64.so.") {
            Libc::Glibc
        } else {
            Libc::Unknown
        }
    }
}

/// What the container's main program tells about its resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolverIdentity {
    /// The program, as the container sees it (`/proc/PID/exe`).
    pub program: PathBuf,
    /// Its ELF interpreter, if dynamically linked.
    pub interpreter: Option<String>,
    /// The library that follows.
    pub libc: Libc,
    /// Why the ELF header could not be read, when it could not (then `libc` is unknown).
    pub elf_error: Option<ElfError>,
    /// Whether `/etc/nsswitch.conf` exists in the container root (`None`: could not tell).
    /// Without it glibc looks up hosts in DNS before `/etc/hosts`.
    pub nsswitch_conf: Option<bool>,
}

impl ResolverIdentity {
    /// One line: `musl: /bin/app requests /lib/ld-musl-x86_64.so.1`.
    pub fn describe(&self) -> String {
        let prog = self.program.display();
        match (&self.interpreter, &self.elf_error) {
            (Some(i), _) => format!("interpreter {i} of {prog}"),
            (None, Some(e)) => format!("{prog}: {e}"),
            (None, None) => format!("{prog} is statically linked (resolver compiled in)"),
        }
    }
}

/// The resolver identity of process `pid` (the container's main process): its program's
/// ELF interpreter and whether its root has `/etc/nsswitch.conf`. Root (or
/// CAP_SYS_PTRACE) on the node. PID reuse is caught with a pidfd: if the process exits
/// meanwhile, this is [`Error::ProcessGone`], never another process's answer.
pub fn resolver_identity(pid: i32) -> Result<ResolverIdentity, Error> {
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
    let exe = format!("/proc/{pid}/exe");
    let link = std::fs::read_link(&exe).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::ProcessGone {
            pid,
            syscall: "readlink /proc/PID/exe",
        },
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
            target: exe.clone(),
            syscall: "readlink",
            capability: "CAP_SYS_PTRACE",
        },
        _ => Error::Syscall {
            target: exe.clone(),
            syscall: "readlink",
            source: e,
        },
    })?;
    // The root is opened after the readlink and the pidfd checked after both.
    let root = ContainerRoot::from_pidfd(pid, pidfd.as_fd())?;
    identify(&root, &link)
}

/// The same for a program path inside any root (an unpacked image, a test tree).
pub fn identify(root: &ContainerRoot, program: &Path) -> Result<ResolverIdentity, Error> {
    // A replaced binary reads "/bin/app (deleted)"; the name is still the best we have.
    let text = program.to_string_lossy();
    let program = PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text));
    let head = root.read_prefix(&program, ELF_PREFIX)?;
    let (interpreter, libc, elf_error) = match elf::interpreter(&head) {
        Ok(ElfInterp::Dynamic(i)) => {
            let l = Libc::from_interpreter(&i);
            (Some(i), l, None)
        }
        Ok(ElfInterp::Static) => (None, Libc::Static, None),
        Err(e) => (None, Libc::Unknown, Some(e)),
    };
    let nsswitch_conf = match root.read("/etc/nsswitch.conf", 64 * 1024) {
        Ok(_) | Err(Error::TooLarge { .. }) | Err(Error::NotRegularFile { .. }) => Some(true),
        Err(Error::ReadInRoot { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Some(false)
        }
        Err(_) => None,
    };
    Ok(ResolverIdentity {
        program,
        interpreter,
        libc,
        elf_error,
        nsswitch_conf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_glibc_with_nsswitch_per_host() {
        let root = ContainerRoot::from_dir("/").unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let id = identify(&root, &exe).unwrap();
        assert_eq!(id.libc, Libc::Glibc, "{id:?}");
        assert_eq!(
            id.nsswitch_conf,
            Some(Path::new("/etc/nsswitch.conf").exists())
        );
        assert!(id.describe().contains("ld-linux"), "{}", id.describe());
    }

    #[test]
    fn interpreter_names() {
        assert_eq!(
            Libc::from_interpreter("/lib/ld-musl-x86_64.so.1"),
            Libc::Musl
        );
        assert_eq!(
            Libc::from_interpreter("/lib64/ld-linux-x86-64.so.2"),
            Libc::Glibc
        );
        assert_eq!(Libc::from_interpreter("/lib64/ld64.so.2"), Libc::Glibc);
        assert_eq!(Libc::from_interpreter("/opt/loader"), Libc::Unknown);
    }
}
