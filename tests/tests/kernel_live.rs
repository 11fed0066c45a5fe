//! Root tests for `netdiag-kernel` live, each in its own `ndk-k…` namespace entered with
//! `netdiag-netns` (deleted on success and failure), cross-checked against the tools
//! people use: `ss -lnt`, `conntrack -S`, `conntrack -L`, `ip route`.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use netdiag::kernel::{self, Snapshot, conntrack};
use netdiag::netns::NetNs;

struct TestNetns {
    name: String,
}

impl TestNetns {
    fn new(name: &str) -> TestNetns {
        let name = format!("ndk-{name}");
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ns = TestNetns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }
    fn ip(&self, args: &[&str]) {
        if !std::path::Path::new(&format!("/run/netns/{}", self.name)).exists() {
            run("ip", &["netns", "add", &self.name]);
        }
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full);
    }
    /// Run a command inside the namespace; its stdout.
    fn exec(&self, cmd: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        run("ip", &full)
    }
    fn netns(&self) -> NetNs {
        NetNs::from_name(&self.name).unwrap()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A listener with an explicit `listen(2)` backlog (std always asks for 128).
fn listen_with_backlog(addr: SocketAddr, backlog: i32) -> TcpListener {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
    use std::os::fd::{AsRawFd, OwnedFd};
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(v4)).unwrap();
    socket::listen(&fd, Backlog::new(backlog).unwrap()).unwrap();
    TcpListener::from(fd)
}

/// In a fresh `ndk-<name>` namespace: a listener that never accepts, with the given
/// `listen(2)` backlog and the namespace's `somaxconn`, and 3 connects. The effective
/// backlog is min(backlog, somaxconn) = 1, so 2 connections queue (backlog + 1) and the
/// third SYN is dropped. sock_diag must report queued 2 >= backlog 1, exactly as
/// `ss -lnt`, and TcpExt.ListenOverflows must rise.
fn check_full_accept_queue(name: &str, listen_backlog: i32, somaxconn: u32) {
    let ns = TestNetns::new(name);
    ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.core.somaxconn={somaxconn}"),
    ]);
    let netns = ns.netns();
    let before = netns.run(Snapshot::capture_current).unwrap().unwrap();
    let addr = SocketAddr::new(LOCAL, 18081);
    // Listener and clients are created inside the namespace; they stay there afterwards.
    let (listener, clients) = netns
        .run(|| {
            let l = listen_with_backlog(addr, listen_backlog);
            let clients: Vec<_> = (0..3)
                .map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)))
                .collect();
            (l, clients)
        })
        .unwrap();
    assert!(clients[0].is_ok() && clients[1].is_ok(), "{clients:?}");

    let listeners = netns.run(kernel::tcp_listeners).unwrap().unwrap();
    let l = listeners
        .iter()
        .find(|l| l.port == 18081)
        .unwrap_or_else(|| panic!("no listener on 18081 in {listeners:?}"));
    assert_eq!(l.addr, LOCAL);
    assert_eq!(l.backlog, Some(1), "{l:?}");
    assert_eq!(l.queued, 2, "{l:?}");
    assert_eq!(l.is_full(), Some(true));

    // `ss -lnt` shows the same Recv-Q / Send-Q
    let ss = ns.exec(&["ss", "-lnt", "sport", "= :18081"]);
    let row: Vec<&str> = ss
        .lines()
        .find(|r| r.contains(":18081"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((row[1], row[2]), ("2", "1"), "ss: {ss}");

    // the snapshot carries the sock_diag listeners, and the overflow is counted
    let after = netns.run(Snapshot::capture_current).unwrap().unwrap();
    assert!(after.listeners().iter().any(|x| x == l));
    let d = after.delta(&before);
    assert!(d.get("TcpExt.ListenOverflows").unwrap() >= 1, "{d:?}");
    assert_eq!(
        after.get("sysctl.net.core.somaxconn"),
        Some(u64::from(somaxconn))
    );
    drop((listener, clients));
}

#[test]
fn listen_backlog_1_full_queue_shows_queued_at_least_backlog_via_sock_diag() {
    if !netdiag_tests::require_root("listen_backlog_1_full_queue").unwrap() {
        return;
    }
    check_full_accept_queue("klisten", 1, 4096);
}

#[test]
fn somaxconn_1_clamps_the_backlog_and_sock_diag_shows_it() {
    if !netdiag_tests::require_root("somaxconn_1_clamps_the_backlog").unwrap() {
        return;
    }
    // DETECTION.md §2: accept queue = min(listen backlog, the pod netns' somaxconn)
    check_full_accept_queue("ksomax", 128, 1);
}

#[test]
fn live_snapshot_reads_the_namespace_and_round_trips_the_layout() {
    if !netdiag_tests::require_root("live_snapshot_round_trips").unwrap() {
        return;
    }
    let ns = TestNetns::new("ksnap");
    ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_local_port_range=40000 40100",
    ]);
    // an IPv6 listener with one queued connection: sock_diag's AF_INET6 dump and
    // /proc/net/tcp6 must both see it
    let v6 = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 18086);
    let (snap, _v6_listener, _v6_client) = ns
        .netns()
        .run(|| {
            let l = TcpListener::bind(v6).unwrap();
            let c = TcpStream::connect_timeout(&v6, Duration::from_secs(2)).unwrap();
            (Snapshot::capture_current(), l, c)
        })
        .unwrap();
    let snap = snap.unwrap();
    assert_eq!(snap.sock_diag_error(), None);
    let live = snap.listeners();
    let l6 = live.iter().find(|l| l.port == 18086).unwrap();
    assert_eq!((l6.addr, l6.queued, l6.backlog), (v6.ip(), 1, Some(128)));
    let from_proc = Snapshot::from_files(
        snap.paths()
            .map(|p| (p.to_owned(), snap.raw(p).unwrap().to_owned())),
    )
    .unwrap()
    .listeners();
    let p6 = from_proc.iter().find(|l| l.port == 18086).unwrap();
    assert_eq!((p6.addr, p6.queued, p6.backlog), (v6.ip(), 1, None));
    assert_eq!(p6.inode, l6.inode, "same socket by both routes");
    assert_eq!(
        snap.get("sysctl.net.ipv4.ip_local_port_range.min"),
        Some(40000)
    );
    assert_eq!(
        snap.get("sysctl.net.ipv4.ip_local_port_range.max"),
        Some(40100)
    );
    // the caller's namespace is untouched and different
    let here = Snapshot::capture_current().unwrap();
    assert_ne!(
        here.get("sysctl.net.ipv4.ip_local_port_range.min"),
        Some(40000)
    );
    for f in [
        "net/netstat",
        "net/snmp",
        "net/snmp6",
        "net/tcp",
        "net/tcp6",
    ] {
        assert!(snap.raw(f).is_some(), "{f} missing");
    }
    assert!(snap.get("TcpExt.ListenOverflows").is_some());
    assert!(snap.get("Tcp.RetransSegs").is_some());
    assert!(snap.get("Ip6.InReceives").is_some());

    let dir = std::env::temp_dir().join(format!("ndk-ksnap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    snap.write_dir(&dir).unwrap();
    let back = Snapshot::read_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(back.unwrap().flat(), snap.flat());
}

#[test]
fn links_addresses_routes_and_default_route_interface() {
    if !netdiag_tests::require_root("links_addresses_routes").unwrap() {
        return;
    }
    let ns = TestNetns::new("kroute");
    let netns = ns.netns();
    assert_eq!(
        netns.run(kernel::default_route_interface).unwrap().unwrap(),
        None
    );

    ns.ip(&[
        "link", "add", "ndk-kr0", "type", "veth", "peer", "name", "ndk-kr1",
    ]);
    ns.ip(&["addr", "add", "10.254.7.2/24", "dev", "ndk-kr0"]);
    ns.ip(&["link", "set", "ndk-kr0", "up"]);
    ns.ip(&["link", "set", "ndk-kr1", "up"]);
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "10.254.7.1",
        "dev",
        "ndk-kr0",
    ]);

    let (links, addrs, routes, default) = netns
        .run(|| {
            (
                kernel::links().unwrap(),
                kernel::addresses().unwrap(),
                kernel::routes().unwrap(),
                kernel::default_route_interface().unwrap(),
            )
        })
        .unwrap();
    let kr0 = links.iter().find(|l| l.name == "ndk-kr0").unwrap();
    assert_eq!(kr0.kind.as_deref(), Some("veth"));
    assert!(kr0.up);
    assert!(links.iter().any(|l| l.name == "lo" && l.loopback));
    assert!(
        addrs.iter().any(|a| a.index == kr0.index
            && a.addr == IpAddr::from([10, 254, 7, 2])
            && a.prefix_len == 24),
        "{addrs:?}"
    );
    let def = routes
        .iter()
        .find(|r| r.prefix_len == 0 && !r.ipv6 && r.table == 254)
        .unwrap();
    assert_eq!(def.gateway, Some(IpAddr::from([10, 254, 7, 1])));
    assert_eq!(def.oif, Some(kr0.index));
    assert_eq!(default.unwrap().name, "ndk-kr0");
    // `ip route` agrees
    assert!(
        ns.exec(&["ip", "route"])
            .contains("default via 10.254.7.1 dev ndk-kr0")
    );
}

#[test]
fn conntrack_counters_and_table_summary_by_post_nat_destination() {
    if !netdiag_tests::require_root("conntrack_counters_and_table").unwrap() {
        return;
    }
    let ns = TestNetns::new("kct");
    // conntrack for this netns, strict TCP pickup, and a DNAT 127.0.0.1:9100 -> :9101
    ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.netfilter.nf_conntrack_tcp_loose=0",
    ]);
    ns.exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "127.0.0.1",
        "--dport",
        "9100",
        "-j",
        "DNAT",
        "--to-destination",
        "127.0.0.1:9101",
    ]);
    // and IPv6 conntrack too
    ns.exec(&[
        "ip6tables",
        "-A",
        "INPUT",
        "-m",
        "conntrack",
        "--ctstate",
        "INVALID",
        "-j",
        "ACCEPT",
    ]);
    let netns = ns.netns();
    let before = netns.run(Snapshot::capture_current).unwrap().unwrap();
    let (listener, mut clients, v6_pair) = netns
        .run(|| {
            let l = TcpListener::bind((LOCAL, 9101)).unwrap();
            let c: Vec<TcpStream> = (0..4)
                .map(|_| {
                    TcpStream::connect_timeout(
                        &SocketAddr::new(LOCAL, 9100),
                        Duration::from_secs(2),
                    )
                    .unwrap()
                })
                .collect();
            let v6 = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 9102);
            let l6 = TcpListener::bind(v6).unwrap();
            let c6 = TcpStream::connect_timeout(&v6, Duration::from_secs(2)).unwrap();
            (l, c, (l6, c6))
        })
        .unwrap();

    let entries = netns.run(conntrack::entries).unwrap().unwrap();
    let v6: Vec<_> = entries
        .iter()
        .filter(|e| e.orig.dst_port == Some(9102))
        .collect();
    assert_eq!(v6.len(), 1, "{entries:#?}");
    assert_eq!(v6[0].orig.src, Some("::1".parse().unwrap()));
    assert_eq!(v6[0].reply.dst, Some("::1".parse().unwrap()));
    let ours: Vec<_> = entries
        .iter()
        .filter(|e| e.orig.dst_port == Some(9100))
        .collect();
    assert_eq!(ours.len(), 4, "{entries:#?}");
    for e in &ours {
        assert_eq!(e.orig.proto, Some(6));
        assert_eq!(
            e.reply.src_port,
            Some(9101),
            "reply comes from the DNAT target"
        );
        assert!(e.status & conntrack::IPS_DST_NAT != 0);
        assert_eq!(
            e.tcp_state.map(conntrack::tcp_state_name),
            Some("ESTABLISHED")
        );
    }
    let groups = conntrack::summarize(&entries);
    let g = groups
        .iter()
        .find(|g| g.dst_port == Some(9101))
        .unwrap_or_else(|| panic!("{groups:#?}"));
    assert_eq!(
        (g.entries, g.src_ports, g.dnat, g.snat),
        (4, 4, 4, 0),
        "{g:?}"
    );
    assert_eq!(g.tcp_states.get("ESTABLISHED"), Some(&4));
    // the streamed summary (no table held) is the same
    assert_eq!(netns.run(conntrack::summary).unwrap().unwrap(), groups);
    // `conntrack -L` agrees on the count
    let listed = ns.exec(&["conntrack", "-L", "-p", "tcp", "--orig-port-dst", "9100"]);
    assert_eq!(
        listed.lines().filter(|l| l.contains("dport=9100")).count(),
        4,
        "{listed}"
    );

    // Forget the entries, then send data: with tcp_loose=0 conntrack cannot pick the
    // connection up mid-stream, so those segments are INVALID.
    ns.exec(&["conntrack", "-F"]);
    for c in &mut clients {
        c.write_all(b"x").unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let after = netns.run(Snapshot::capture_current).unwrap().unwrap();
    let d = after.delta(&before);
    assert!(d.get("conntrack.invalid").unwrap() >= 4, "{d:?}");

    // Our per-CPU sums equal `conntrack -S` (ctnetlink stats) summed over CPUs.
    let stats = ns.exec(&["conntrack", "-S"]);
    let mut sums = std::collections::BTreeMap::<String, u64>::new();
    for line in stats.lines() {
        for kv in line.split_whitespace() {
            if let Some((k, v)) = kv.split_once('=')
                && k != "cpu"
            {
                *sums.entry(k.to_owned()).or_default() += v.parse::<u64>().unwrap();
            }
        }
    }
    let flat = after.flat();
    for (ours, theirs) in [
        ("conntrack.invalid", "invalid"),
        ("conntrack.insert_failed", "insert_failed"),
        ("conntrack.drop", "drop"),
        ("conntrack.early_drop", "early_drop"),
        ("conntrack.clash_resolve", "clash_resolve"),
        ("conntrack.icmp_error", "error"),
        ("conntrack.search_restart", "search_restart"),
    ] {
        let theirs_v = sums.get(theirs).copied();
        assert!(theirs_v.is_some(), "conntrack -S has no {theirs}: {stats}");
        assert_eq!(
            flat.get(ours).copied(),
            theirs_v,
            "{ours} vs conntrack -S {theirs}"
        );
    }
    drop((listener, clients, v6_pair));
}

const CHILD_ENV: &str = "NDK_KERNEL_UNPRIVILEGED_CHILD";

/// Re-runs this test as `nobody` (setpriv, no capabilities) inside a fresh namespace's
/// process tree: /proc counters and sock_diag need no privilege, the ctnetlink dump needs
/// CAP_NET_ADMIN and must say so.
#[test]
fn unprivileged_reads_counters_but_conntrack_table_names_cap_net_admin() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let snap = Snapshot::capture_current().unwrap();
        assert!(snap.get("TcpExt.ListenOverflows").is_some());
        let err = conntrack::entries().unwrap_err();
        assert!(
            matches!(
                err,
                kernel::Error::PermissionDenied {
                    capability: "CAP_NET_ADMIN",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("needs CAP_NET_ADMIN"), "{err}");
        println!("NDK-CHILD-OK");
        return;
    }
    if !netdiag_tests::require_root("unprivileged_conntrack_names_cap_net_admin").unwrap() {
        return;
    }
    let ns = TestNetns::new("kunpriv");
    // conntrack loaded in the namespace, so the refusal is about privilege, not absence
    ns.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-m",
        "conntrack",
        "--ctstate",
        "INVALID",
        "-j",
        "DROP",
    ]);
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "setpriv"])
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&exe)
        .args([
            "--exact",
            "unprivileged_reads_counters_but_conntrack_table_names_cap_net_admin",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env_remove("CI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("NDK-CHILD-OK"),
        "child as nobody failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
