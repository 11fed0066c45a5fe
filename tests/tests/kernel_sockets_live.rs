//! Root test for `netdiag-kernel`'s socket table, live, in its own namespace (deleted on
//! success and failure): sock_diag (`tcp_sockets`) and `/proc/net/tcp` give the same
//! states, keepalive timers and half-open request sockets, grouped the same way, and
//! agree with `ss`.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use netdiag::kernel::{self, GroupSide, Snapshot, SocketTimer, TcpState};
use netdiag::netns::NetNs;

const NS: &str = "ndk-detect5-ksock";

struct Ns;

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", NS]).status();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listener(port: u16, backlog: i32) -> TcpListener {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
    use std::os::fd::{AsRawFd, OwnedFd};
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let addr = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).expect("bind");
    socket::listen(&fd, Backlog::new(backlog).expect("backlog")).expect("listen");
    TcpListener::from(fd)
}

#[test]
fn sock_diag_and_proc_net_tcp_agree_on_states_timers_and_groups() {
    if !netdiag_tests::require_root("sock_diag_and_proc_net_tcp_agree").expect("root check") {
        return;
    }
    let _ = Command::new("ip")
        .args(["netns", "del", NS])
        .stderr(Stdio::null())
        .status();
    run("ip", &["netns", "add", NS]);
    let _ns = Ns;
    run("ip", &["-n", NS, "link", "set", "lo", "up"]);
    // Final ACKs to 7002 are dropped: its handshakes stay SYN_RECV on the server side.
    run(
        "ip",
        &[
            "netns",
            "exec",
            NS,
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "7002",
            "--tcp-flags",
            "SYN,ACK,FIN,RST",
            "ACK",
            "-j",
            "DROP",
        ],
    );
    let ns = NetNs::from_name(NS).expect("netns");
    let (diag, proc_files, ss_tw, ss_ka) = ns
        .run(|| {
            let l1 = listener(7001, 8);
            let a = TcpStream::connect("127.0.0.1:7001").expect("connect");
            nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::KeepAlive, &true)
                .expect("SO_KEEPALIVE");
            let (sa, _) = l1.accept().expect("accept");
            let b = TcpStream::connect("127.0.0.1:7001").expect("connect");
            let (sb, _) = l1.accept().expect("accept");
            for _ in 0..3 {
                let c = TcpStream::connect("127.0.0.1:7001").expect("connect");
                let (s, _) = l1.accept().expect("accept");
                drop(c); // the client closes first: TIME_WAIT on its side
                std::thread::sleep(Duration::from_millis(30));
                drop(s);
            }
            let _l2 = listener(7002, 8);
            let half = std::net::TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], 7002)),
                Duration::from_secs(1),
            )
            .expect("client side completes");
            std::thread::sleep(Duration::from_millis(300));
            let diag = kernel::tcp_sockets().expect("sock_diag");
            let mut files = Vec::new();
            for f in ["tcp", "tcp6"] {
                let text =
                    std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).expect("net/tcp");
                files.push((format!("net/{f}"), text));
            }
            let ss = |args: &[&str]| {
                let mut full = vec!["netns", "exec", NS, "ss", "-Htan"];
                full.extend_from_slice(args);
                run("ip", &full).lines().count()
            };
            let tw = ss(&["state", "time-wait"]);
            let ka = run(
                "ip",
                &["netns", "exec", NS, "ss", "-Htano", "state", "established"],
            )
            .lines()
            .filter(|l| l.contains("timer:(keepalive"))
            .count();
            drop((a, sa, b, sb, half));
            (diag, files, tw, ka)
        })
        .expect("run in netns");
    let from_proc = Snapshot::from_files(proc_files)
        .expect("snapshot")
        .tcp_sockets();
    let key = |s: &kernel::TcpSocket| {
        (
            s.local,
            s.local_port,
            s.remote,
            s.remote_port,
            s.state.name(),
            s.timer,
        )
    };
    let mut d: Vec<_> = diag.iter().map(key).collect();
    let mut p: Vec<_> = from_proc.iter().map(key).collect();
    d.sort();
    p.sort();
    assert_eq!(d, p, "sock_diag and /proc/net/tcp disagree");
    let count = |st: TcpState| diag.iter().filter(|s| s.state == st).count();
    assert_eq!(count(TcpState::TimeWait), 3);
    assert_eq!(count(TcpState::TimeWait), ss_tw, "ss state time-wait");
    assert_eq!(count(TcpState::SynRecv) + count(TcpState::NewSynRecv), 1);
    let ka: Vec<_> = diag
        .iter()
        .filter(|s| s.timer == SocketTimer::Keepalive)
        .collect();
    assert_eq!(ka.len(), 1);
    assert_eq!(ka.len(), ss_ka, "ss timer:(keepalive…)");
    assert_eq!(ka[0].remote_port, 7001);
    assert!(
        ka[0].timer_ms.is_some_and(|ms| ms > 7_000_000),
        "{:?}",
        ka[0]
    );
    let groups = kernel::sockets::group_sockets(&diag);
    let to_7001 = groups
        .iter()
        .find(|g| g.side == GroupSide::Client && g.port == 7001)
        .expect("client group to 7001");
    assert_eq!(to_7001.states.get("TIME_WAIT"), Some(&3));
    assert_eq!(to_7001.states.get("ESTABLISHED"), Some(&2));
    assert_eq!((to_7001.keepalive, to_7001.local_ports), (1, 5));
    let on_7002 = groups
        .iter()
        .find(|g| g.side == GroupSide::Server && g.port == 7002)
        .expect("server group on 7002");
    assert_eq!(on_7002.states.get("SYN_RECV"), Some(&1));
    assert_eq!(groups, kernel::sockets::group_sockets(&from_proc));
}
