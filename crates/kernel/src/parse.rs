//! Pure parsers for the kernel's text tables (no I/O).
//!
//! Every table is parsed by the names in its header line, never by column position: the
//! kernel appends counters between releases (HOUSE_STYLE rule 4). Names we do not know are
//! kept like the ones we do.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Error;

/// `net/netstat` and `net/snmp`: pairs of lines `Group: Name1 Name2 …` / `Group: v1 v2 …`.
///
/// Produces `Group.Name` keys (`TcpExt.ListenOverflows`, `Tcp.RetransSegs`). Negative values
/// (`Tcp.MaxConn` is `-1`, "no limit") are not counters and are left out of the map; the raw
/// text keeps them.
pub(crate) fn header_pairs(
    file: &str,
    text: &str,
    out: &mut BTreeMap<String, u64>,
) -> Result<(), Error> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    while let Some((hline, header)) = lines.next() {
        let Some((group, names)) = header.split_once(':') else {
            return Err(Error::Parse {
                file: file.to_owned(),
                line: hline + 1,
                reason: "header line has no `Group:` prefix".to_owned(),
            });
        };
        let Some((vline, values)) = lines.next() else {
            return Err(Error::Parse {
                file: file.to_owned(),
                line: hline + 1,
                reason: format!("header `{group}` has no value line"),
            });
        };
        let Some((vgroup, values)) = values.split_once(':') else {
            return Err(Error::Parse {
                file: file.to_owned(),
                line: vline + 1,
                reason: "value line has no `Group:` prefix".to_owned(),
            });
        };
        if vgroup != group {
            return Err(Error::Parse {
                file: file.to_owned(),
                line: vline + 1,
                reason: format!("value line of group `{vgroup}` follows header of `{group}`"),
            });
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if names.len() != values.len() {
            return Err(Error::Parse {
                file: file.to_owned(),
                line: vline + 1,
                reason: format!(
                    "group `{group}` has {} names but {} values",
                    names.len(),
                    values.len()
                ),
            });
        }
        for (name, value) in names.iter().zip(values) {
            if value.starts_with('-') {
                continue;
            }
            let v: u64 = value.parse().map_err(|_| Error::Parse {
                file: file.to_owned(),
                line: vline + 1,
                reason: format!("`{group}.{name}` has non-numeric value `{value}`"),
            })?;
            out.insert(format!("{group}.{name}"), v);
        }
    }
    Ok(())
}

/// `net/snmp6`: `Name value` lines. `Ip6InReceives 3` becomes `Ip6.InReceives`: the group is
/// the name up to and including its first `6` (`Ip6`, `Icmp6`, `Udp6`, `UdpLite6`); a name
/// without a `6` is kept under `snmp6.`.
pub(crate) fn name_value_lines(
    file: &str,
    text: &str,
    out: &mut BTreeMap<String, u64>,
) -> Result<(), Error> {
    for (i, line) in text.lines().enumerate() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        if value.starts_with('-') {
            continue;
        }
        let v: u64 = value.parse().map_err(|_| Error::Parse {
            file: file.to_owned(),
            line: i + 1,
            reason: format!("`{name}` has non-numeric value `{value}`"),
        })?;
        let key = match name.find('6') {
            Some(pos) if pos + 1 < name.len() => {
                format!("{}.{}", &name[..=pos], &name[pos + 1..])
            }
            _ => format!("snmp6.{name}"),
        };
        out.insert(key, v);
    }
    Ok(())
}

/// `net/stat/nf_conntrack`: one header line, then one row of hex values per CPU.
///
/// Values are summed over the rows by header name into `conntrack.<name>`, except `entries`,
/// which is the global entry count repeated on every row (taken once). `clashres` is also
/// published as `conntrack.clash_resolve`, the name DETECTION.md and `conntrack -S` use.
pub(crate) fn nf_conntrack_stat(
    file: &str,
    text: &str,
    out: &mut BTreeMap<String, u64>,
) -> Result<(), Error> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(());
    };
    let names: Vec<&str> = header.split_whitespace().collect();
    let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
    let mut entries: Option<u64> = None;
    for (i, row) in lines {
        let values: Vec<&str> = row.split_whitespace().collect();
        if values.len() != names.len() {
            return Err(Error::Parse {
                file: file.to_owned(),
                line: i + 1,
                reason: format!(
                    "per-CPU row has {} values but the header names {}",
                    values.len(),
                    names.len()
                ),
            });
        }
        for (name, value) in names.iter().zip(values) {
            let v = u64::from_str_radix(value, 16).map_err(|_| Error::Parse {
                file: file.to_owned(),
                line: i + 1,
                reason: format!("`{name}` has non-hex value `{value}`"),
            })?;
            if *name == "entries" {
                entries.get_or_insert(v);
            } else {
                let sum = sums.entry(name).or_insert(0);
                *sum = sum.saturating_add(v);
            }
        }
    }
    if let Some(e) = entries {
        out.insert("conntrack.entries".to_owned(), e);
    }
    for (name, v) in sums {
        out.insert(format!("conntrack.{name}"), v);
        if name == "clashres" {
            out.insert("conntrack.clash_resolve".to_owned(), v);
        }
    }
    Ok(())
}

/// A sysctl file under `sys/`: `sys/net/core/somaxconn` → `sysctl.net.core.somaxconn`.
///
/// One value: the key itself; two (`ip_local_port_range`): `.min` and `.max`; more: `.0`,
/// `.1`, …. Non-numeric sysctls are left out of the flat map (the raw text keeps them).
pub(crate) fn sysctl(rel_path: &str, text: &str, out: &mut BTreeMap<String, u64>) {
    let Some(rest) = rel_path.strip_prefix("sys/") else {
        return;
    };
    let key = format!("sysctl.{}", rest.replace('/', "."));
    let values: Option<Vec<u64>> = text.split_whitespace().map(|v| v.parse().ok()).collect();
    let Some(values) = values else {
        return;
    };
    match values.as_slice() {
        [] => {}
        [v] => {
            out.insert(key, *v);
        }
        [min, max] => {
            out.insert(format!("{key}.min"), *min);
            out.insert(format!("{key}.max"), *max);
        }
        many => {
            for (i, v) in many.iter().enumerate() {
                out.insert(format!("{key}.{i}"), *v);
            }
        }
    }
}

/// One row of `net/tcp` or `net/tcp6`, by header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcpRow {
    pub(crate) local: IpAddr,
    pub(crate) local_port: u16,
    /// The `st` column: `0A` is LISTEN.
    pub(crate) state: u8,
    pub(crate) rx_queue: u32,
    pub(crate) inode: Option<u64>,
    /// `rem_address` (`remote_address` in `net/tcp6`), when the header has it.
    pub(crate) remote: Option<(IpAddr, u16)>,
    /// The `tr` column: which timer is pending (1 retransmit, 2 keepalive, 3 TIME_WAIT,
    /// 4 zero-window probe, 0 none).
    pub(crate) timer: Option<u8>,
    /// `tm->when`: clock ticks (USER_HZ, 1/100 s) until that timer fires.
    pub(crate) timer_ticks: Option<u64>,
}

/// Header names that the kernel prints as one `a:b` value token.
const JOINED: &[(&str, &str)] = &[("tx_queue", "rx_queue"), ("tr", "tm->when")];

/// `net/tcp` / `net/tcp6`, by header name. The kernel prints `tx_queue rx_queue` and
/// `tr tm->when` as two header words over one `a:b` value; trailing unnamed columns (ref
/// count, socket pointer, …) are ignored.
pub(crate) fn proc_net_tcp(file: &str, text: &str) -> Result<Vec<TcpRow>, Error> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let words: Vec<&str> = header.split_whitespace().collect();
    // column index (in value tokens) and which half of an `a:b` token, per name
    let mut columns: BTreeMap<&str, (usize, Option<usize>)> = BTreeMap::new();
    let mut w = 0;
    let mut col = 0;
    while w < words.len() {
        let name = words[w];
        let pair = JOINED
            .iter()
            .find(|(a, b)| *a == name && words.get(w + 1) == Some(b));
        if let Some((a, b)) = pair {
            columns.insert(a, (col, Some(0)));
            columns.insert(b, (col, Some(1)));
            w += 2;
        } else {
            columns.insert(name, (col, None));
            w += 1;
        }
        col += 1;
    }
    let need = |name: &'static str| {
        columns.get(name).copied().ok_or_else(|| Error::Parse {
            file: file.to_owned(),
            line: 1,
            reason: format!("header has no `{name}` column"),
        })
    };
    let local_col = need("local_address")?;
    let st_col = need("st")?;
    let rx_col = need("rx_queue")?;
    let inode_col = columns.get("inode").copied();
    let remote_col = columns
        .get("rem_address")
        .or_else(|| columns.get("remote_address"))
        .copied();
    let timer_col = columns.get("tr").copied();
    let when_col = columns.get("tm->when").copied();

    let mut rows = Vec::new();
    for (i, line) in lines {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let bad = |reason: String| Error::Parse {
            file: file.to_owned(),
            line: i + 1,
            reason,
        };
        let get = |(c, half): (usize, Option<usize>)| -> Option<&str> {
            let t = tokens.get(c)?;
            match half {
                None => Some(t),
                Some(h) => t.split(':').nth(h),
            }
        };
        let local = get(local_col).ok_or_else(|| bad("row has no local_address".into()))?;
        let (addr, port) = local
            .split_once(':')
            .ok_or_else(|| bad(format!("local_address `{local}` has no port")))?;
        let local_ip =
            hex_addr(addr).ok_or_else(|| bad(format!("local_address `{addr}` is not hex")))?;
        let local_port =
            u16::from_str_radix(port, 16).map_err(|_| bad(format!("port `{port}` is not hex")))?;
        let st = get(st_col).ok_or_else(|| bad("row has no st".into()))?;
        let state = u8::from_str_radix(st, 16).map_err(|_| bad(format!("st `{st}` is not hex")))?;
        let rx = get(rx_col).ok_or_else(|| bad("row has no rx_queue".into()))?;
        let rx_queue =
            u32::from_str_radix(rx, 16).map_err(|_| bad(format!("rx_queue `{rx}` is not hex")))?;
        let inode = inode_col.and_then(get).and_then(|v| v.parse().ok());
        let remote = remote_col.and_then(get).and_then(|r| {
            let (addr, port) = r.split_once(':')?;
            Some((hex_addr(addr)?, u16::from_str_radix(port, 16).ok()?))
        });
        let timer = timer_col
            .and_then(get)
            .and_then(|v| u8::from_str_radix(v, 16).ok());
        let timer_ticks = when_col
            .and_then(get)
            .and_then(|v| u64::from_str_radix(v, 16).ok());
        rows.push(TcpRow {
            local: local_ip,
            local_port,
            state,
            rx_queue,
            inode,
            remote,
            timer,
            timer_ticks,
        });
    }
    Ok(rows)
}

/// The kernel prints addresses as 32-bit words in host byte order (`%08X` of each `__be32`),
/// so each word's native-endian bytes are the address bytes.
fn hex_addr(s: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let part = s.get(i * 8..i * 8 + 8)?;
        u32::from_str_radix(part, 16).ok().map(u32::to_ne_bytes)
    };
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_addr_is_host_order_words() {
        assert_eq!(hex_addr("0100007F"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(
            hex_addr("00000000000000000000000001000000"),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(hex_addr("0100007"), None);
        assert_eq!(hex_addr("zz00007F"), None);
    }

    #[test]
    fn header_pairs_rejects_mismatched_counts() {
        let mut m = BTreeMap::new();
        let err = header_pairs("net/snmp", "Tcp: A B\nTcp: 1\n", &mut m);
        assert!(matches!(err, Err(Error::Parse { line: 2, .. })), "{err:?}");
    }

    #[test]
    fn header_pairs_by_name_not_position() {
        // The same counters in another order (a future kernel) give the same keys.
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        header_pairs(
            "x",
            "TcpExt: ListenDrops ListenOverflows\nTcpExt: 7 5\n",
            &mut a,
        )
        .unwrap();
        header_pairs(
            "x",
            "TcpExt: ListenOverflows ListenDrops\nTcpExt: 5 7\n",
            &mut b,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a["TcpExt.ListenOverflows"], 5);
    }

    #[test]
    fn nf_conntrack_columns_by_name() {
        // A kernel that moved `invalid` first and added a column still sums by name.
        let text = "invalid entries newthing\n0000000a 00000003 1\n00000001 00000003 2\n";
        let mut m = BTreeMap::new();
        nf_conntrack_stat("s", text, &mut m).unwrap();
        assert_eq!(m["conntrack.invalid"], 11);
        assert_eq!(m["conntrack.entries"], 3);
        assert_eq!(m["conntrack.newthing"], 3);
    }

    #[test]
    fn sysctl_shapes() {
        let mut m = BTreeMap::new();
        sysctl("sys/net/ipv4/ip_local_port_range", "32768\t60999\n", &mut m);
        sysctl("sys/net/core/somaxconn", "4096\n", &mut m);
        sysctl("sys/net/ipv4/tcp_rmem", "4096 131072 6291456\n", &mut m);
        sysctl("sys/kernel/hostname", "node-1\n", &mut m);
        assert_eq!(m["sysctl.net.ipv4.ip_local_port_range.min"], 32768);
        assert_eq!(m["sysctl.net.ipv4.ip_local_port_range.max"], 60999);
        assert_eq!(m["sysctl.net.core.somaxconn"], 4096);
        assert_eq!(m["sysctl.net.ipv4.tcp_rmem.2"], 6291456);
        assert!(!m.keys().any(|k| k.contains("hostname")));
    }
}
