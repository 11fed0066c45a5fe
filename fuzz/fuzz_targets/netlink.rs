//! The netlink decoders (rtnetlink links/addresses/routes, sock_diag listeners, ctnetlink
//! conntrack entries) on one datagram of a dump reply, through `replay::decode`: the code
//! the live functions run on what the kernel sends.
//!
//! Input: one byte choosing the dump, then the datagram. Seeds: this machine's kernel
//! answering each dump now (`replay::record`; ctnetlink needs CAP_NET_ADMIN, else it is
//! left out), plus the recorded replies committed in `fuzz/seeds/netlink/` (see the
//! README there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_fuzz::{Input, Seeds};
use netdiag_kernel::replay::{self, Dump};

fn seeds(s: &mut Seeds) -> std::io::Result<()> {
    for (i, dump) in Dump::ALL.iter().enumerate() {
        match replay::record(*dump) {
            Ok(datagrams) => {
                for d in datagrams {
                    let mut seed = vec![i as u8];
                    seed.extend_from_slice(&d);
                    s.add(&seed)?;
                }
            }
            Err(e) => eprintln!("netlink: no live seeds for {dump:?}: {e}"),
        }
    }
    // Recorded replies: `<dump index>-<name>.bin`, already in the input format.
    for f in s.files(|p| {
        p.parent().is_some_and(|d| d.ends_with("seeds/netlink"))
            && p.extension().is_some_and(|e| e == "bin")
    }) {
        s.add(&std::fs::read(f)?)?;
    }
    Ok(())
}

fuzz_target!(
    init: netdiag_fuzz::seed_mode("netlink", seeds),
    |data: &[u8]| {
        let mut input = Input::new(data);
        let dump = Dump::ALL[usize::from(input.u8()) % Dump::ALL.len()];
        if let Ok(d) = replay::decode(dump, input.rest()) {
            let _ = format!("{:?}", d.records);
        }
    }
);
