//! The pod's resolver library for the analyzer: live from the ELF interpreter of the
//! container's process (`netdiag_netns::resolver_identity`), mapped to
//! [`analyze::Resolver`](crate::analyze::Resolver).

use crate::analyze::{Resolver, ResolverLibrary, ResolverSource};

/// The resolver identity of process `pid` as the analyzer takes it (root on the node).
pub fn resolver_of_pid(pid: u32) -> Result<Resolver, netdiag_netns::Error> {
    let pid = i32::try_from(pid).map_err(|_| netdiag_netns::Error::ProcessGone {
        pid: -1,
        syscall: "pidfd_open",
    })?;
    let id = netdiag_netns::resolver_identity(pid)?;
    let lib = match id.libc {
        netdiag_netns::Libc::Glibc => ResolverLibrary::Glibc,
        netdiag_netns::Libc::Musl => ResolverLibrary::Musl,
        _ => ResolverLibrary::Unknown,
    };
    let mut r = Resolver::new(lib, ResolverSource::Elf, id.describe());
    if let Some(n) = id.nsswitch_conf {
        r = r.with_nsswitch_conf(n);
    }
    Ok(r)
}
