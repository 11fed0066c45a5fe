//! One netlink dump request, synchronously, on a socket opened in the calling thread's
//! network namespace (which is what makes it per-netns: netlink sockets belong to the
//! namespace they were created in).

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

use crate::Error;

/// Upper bound on datagrams read for one dump, so a misbehaving kernel or a table that
/// keeps changing cannot keep us here forever (each datagram holds many records).
const MAX_DATAGRAMS: usize = 1 << 20;

/// Send `request` with `NLM_F_REQUEST | NLM_F_DUMP` on a new `protocol` socket and collect
/// every inner message until `NLMSG_DONE`. `what` names the dump in errors (`sock_diag`).
pub(crate) fn dump<M>(protocol: isize, what: &'static str, request: M) -> Result<Vec<M>, Error>
where
    M: NetlinkSerializable + NetlinkDeserializable,
{
    let mut out = Vec::new();
    dump_each(protocol, what, request, |m| {
        out.push(m);
        Ok(())
    })?;
    Ok(out)
}

/// Like [`dump`], handing each inner message to `f` as it arrives instead of collecting
/// them (a node's conntrack table can hold hundreds of thousands of entries).
pub(crate) fn dump_each<M, F>(
    protocol: isize,
    what: &'static str,
    request: M,
    mut f: F,
) -> Result<(), Error>
where
    M: NetlinkSerializable + NetlinkDeserializable,
    F: FnMut(M) -> Result<(), Error>,
{
    dump_datagrams(protocol, what, request, |data| {
        decode_datagram(what, data, &mut f)
    })
}

/// Sends `request` like [`dump_each`] and hands each datagram the kernel answers with, as
/// received, to `on_datagram`, which says whether it held `NLMSG_DONE` (the end).
pub(crate) fn dump_datagrams<M, F>(
    protocol: isize,
    what: &'static str,
    request: M,
    mut on_datagram: F,
) -> Result<(), Error>
where
    M: NetlinkSerializable,
    F: FnMut(&[u8]) -> Result<bool, Error>,
{
    let err = |source: std::io::Error| Error::Netlink { what, source };
    let mut socket = Socket::new(protocol).map_err(err)?;
    socket.bind_auto().map_err(err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(err)?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).map_err(err)?;

    for _ in 0..MAX_DATAGRAMS {
        let (data, _) = socket.recv_from_full().map_err(err)?;
        if on_datagram(&data)? {
            return Ok(());
        }
    }
    Err(Error::NetlinkDecode {
        what,
        reason: format!("no NLMSG_DONE after {MAX_DATAGRAMS} datagrams"),
    })
}

/// Decodes one datagram of a dump reply: every netlink message in it, in order, inner
/// messages handed to `f`. `Ok(true)` when it ended the dump (`NLMSG_DONE`); an error
/// reply from the kernel or bytes that do not decode are an error.
pub(crate) fn decode_datagram<M, F>(
    what: &'static str,
    data: &[u8],
    f: &mut F,
) -> Result<bool, Error>
where
    M: NetlinkDeserializable,
    F: FnMut(M) -> Result<(), Error>,
{
    let mut offset = 0;
    while offset < data.len() {
        let bytes = &data[offset..];
        let msg = NetlinkMessage::<M>::deserialize(bytes).map_err(|e| Error::NetlinkDecode {
            what,
            reason: e.to_string(),
        })?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) if e.code.is_some() => {
                // The kernel sends -errno. Not `ErrorMessage::to_io`: its `abs()` overflows
                // on i32::MIN, which a corrupt reply can carry (found by fuzzing).
                let errno = e
                    .code
                    .map_or(0, |c| c.get().checked_abs().unwrap_or(i32::MAX));
                let source = std::io::Error::from_raw_os_error(errno);
                if source.raw_os_error() == Some(libc::EPERM) {
                    // ctnetlink dumps need CAP_NET_ADMIN in the namespace's user ns
                    return Err(Error::PermissionDenied {
                        what,
                        capability: "CAP_NET_ADMIN",
                    });
                }
                return Err(Error::Netlink { what, source });
            }
            NetlinkPayload::InnerMessage(m) => f(m)?,
            _ => {}
        }
        if len == 0 {
            break;
        }
        // netlink messages are 4-byte aligned
        offset = offset.saturating_add((len + 3) & !3);
    }
    Ok(false)
}
