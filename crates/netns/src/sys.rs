//! The raw syscalls that neither `std` nor `nix` wrap: `pidfd_open(2)`,
//! `pidfd_send_signal(2)` (signal 0, a liveness probe), `poll(2)` on a pidfd, `openat2(2)` and the
//! `NS_GET_USERNS` ioctl of ioctl_ns(2).
//!
//! This is the one module of the crate allowed `unsafe`; every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `struct open_how` from `<linux/openat2.h>`. `libc::open_how` is `#[non_exhaustive]`, so
/// it cannot be built outside libc; this has the same layout (three `u64`, extensible by
/// size, which we pass).
#[repr(C)]
#[derive(Debug, Default)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `pidfd_open(pid, 0)`: a file descriptor that refers to this process and no other, even
/// after its PID is recycled (Linux ≥ 5.3).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: on success the kernel returned a new descriptor that nothing else owns; the
    // OwnedFd becomes its only owner and closes it once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process behind `pidfd` is still running: `pidfd_send_signal(fd, 0)`, which
/// performs the existence and permission checks of kill(2) without sending anything.
/// `ESRCH` (exited, possibly not yet reaped) is `Ok(false)`; `EPERM` still means alive.
pub(crate) fn pidfd_is_alive(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: signal 0 with a NULL siginfo and flags 0 is the documented probe; the
    // descriptor is borrowed and valid for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0 as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        Some(libc::EPERM) => Ok(true),
        _ => Err(err),
    }
}

/// Whether the process behind `pidfd` has exited: a pidfd polls readable once it has
/// (Linux ≥ 5.3), zombie or reaped. Unlike [`pidfd_is_alive`], a zombie counts as exited:
/// its namespaces, mounts included, are already gone.
pub(crate) fn pidfd_has_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, count 1, timeout 0 (never blocks); the descriptor is
        // borrowed and valid for the duration of the call.
        let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
        if ret >= 0 {
            return Ok(ret > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// `openat2(dir, path, {flags, resolve})` (Linux ≥ 5.6).
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: u64::try_from(flags).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        mode: 0,
        resolve,
    };
    // SAFETY: `path` is a valid NUL-terminated string and `how` a properly laid out
    // `struct open_how`, both alive for the call; the size passed is exactly its size, and
    // the kernel only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a successful openat2 returns a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(fd, NS_GET_USERNS)`: the user namespace that owns the namespace behind `ns`
/// (ioctl_ns(2), Linux ≥ 4.9). `EPERM` when that user namespace is outside ours.
pub(crate) fn ns_get_userns(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    /// `_IO(0xb7, 0x1)` from `<linux/nsfs.h>`.
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: NS_GET_USERNS takes no argument and writes no memory of ours; `ns` is a
    // valid descriptor for the duration of the call.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS as _) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}
