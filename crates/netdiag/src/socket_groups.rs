//! The pod's TCP sockets, grouped per peer and per listening port by `netdiag-kernel`,
//! in the analyzer's type (it does not depend on the kernel crate).

use crate::{analyze, kernel};

/// [`kernel::Snapshot::socket_groups`] as [`analyze::SocketGroup`]s.
pub(crate) fn groups(s: &kernel::Snapshot) -> Vec<analyze::SocketGroup> {
    s.socket_groups()
        .into_iter()
        .map(|g| {
            let side = match g.side {
                kernel::GroupSide::Server => analyze::SocketSide::Server,
                _ => analyze::SocketSide::Client,
            };
            analyze::SocketGroup::new(side, (g.addr, g.port), g.states, g.keepalive, g.local_ports)
        })
        .collect()
}
