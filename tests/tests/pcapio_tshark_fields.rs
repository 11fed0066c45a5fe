//! What we write into pcapng is what Wireshark shows: packet comments in
//! `frame.comment`, interface names and descriptions in `frame.interface_name` and
//! `frame.interface_description`, nanosecond timestamps in `frame.time_epoch`.
//! Also: a pcap written with per-packet flush through a pipe reads in tshark.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use netdiag_pcapio::{InterfaceDesc, PacketOut, PcapWriter, PcapngWriter};

/// A minimal Ethernet/IPv4/UDP frame (42 bytes, checksums zero) from 10.0.0.1 to 10.0.0.2.
fn frame(port: u16) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
    ];
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&[0, 8, 0, 0]);
    f
}

fn tshark_fields(path: &std::path::Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("run tshark (an installed test dependency)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.is_empty() || l.starts_with("Running as user")),
        "tshark complained: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn pcapng_comments_and_interface_names_appear_in_tshark() {
    let t = netdiag_tests::TempDir::new("pcapio-tshark-fields").expect("scratch dir");
    let path = t.path().join("annotated.pcapng");
    let mut w = PcapngWriter::new(std::fs::File::create(&path).expect("create")).expect("shb");
    let mut eth0 = InterfaceDesc::new(1, 262_144);
    eth0.name = Some("eth0".into());
    eth0.description = Some("pod default/web-0 netns".into());
    eth0.nanos = true;
    let mut node = InterfaceDesc::new(1, 65_535);
    node.name = Some("cni0".into());
    node.description = Some("node netns bridge".into());
    let a = w.add_interface(&eth0).expect("idb");
    let b = w.add_interface(&node).expect("idb");
    let packets: [(u32, u64, &[&str]); 3] = [
        (
            a,
            1_700_000_000_123_456_789,
            &["SYN retransmitted: accept queue full (ListenOverflows +3)"],
        ),
        (b, 1_700_000_001_000_001_000, &[]),
        (
            a,
            1_700_000_002_000_000_001,
            &["first note", "second note ✓"],
        ),
    ];
    for (i, (iface, ts, comments)) in packets.iter().enumerate() {
        let f = frame(40_000 + i as u16);
        w.write_packet(&PacketOut {
            interface: *iface,
            timestamp_ns: *ts,
            data: &f,
            original_len: f.len() as u32,
            comments,
        })
        .expect("epb");
    }
    w.into_inner().expect("flush");

    let rows = tshark_fields(
        &path,
        &[
            "frame.interface_name",
            "frame.interface_description",
            "frame.time_epoch",
            "udp.srcport",
            "frame.comment",
        ],
    );
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let cols: Vec<Vec<&str>> = rows.iter().map(|r| r.split('|').collect()).collect();
    assert_eq!(
        cols[0][..4],
        [
            "eth0",
            "pod default/web-0 netns",
            "1700000000.123456789",
            "40000"
        ]
    );
    assert_eq!(
        cols[0][4],
        "SYN retransmitted: accept queue full (ListenOverflows +3)"
    );
    assert_eq!(
        cols[1][..4],
        ["cni0", "node netns bridge", "1700000001.000001000", "40001"]
    );
    assert_eq!(cols[1][4], "");
    assert_eq!(
        cols[2][..4],
        [
            "eth0",
            "pod default/web-0 netns",
            "1700000002.000000001",
            "40002"
        ]
    );
    // tshark joins several values of one field with ','.
    assert_eq!(cols[2][4], "first note,second note ✓");
}

#[test]
fn pcap_streamed_with_per_packet_flush_reads_in_tshark() {
    // `-w - | tshark -r -`: each packet is flushed into the pipe as it is written.
    let mut child = Command::new("tshark")
        .args([
            "-n",
            "-r",
            "-",
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "udp.srcport",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tshark");
    let stdin = child.stdin.take().expect("stdin");
    let mut w = PcapWriter::new(std::io::BufWriter::new(stdin), 1, 262_144, true).expect("header");
    w.set_flush_each_packet(true);
    for i in 0..5u16 {
        let f = frame(50_000 + i);
        w.write_packet(1_700_000_000_000_000_000 + u64::from(i), &f, f.len() as u32)
            .expect("packet");
    }
    let mut inner = w.into_inner().expect("flush");
    inner.flush().expect("flush pipe");
    drop(inner);
    let out = child.wait_with_output().expect("tshark output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        rows,
        [
            "42\t50000",
            "42\t50001",
            "42\t50002",
            "42\t50003",
            "42\t50004"
        ]
    );
}

#[test]
fn flush_each_packet_delivers_each_packet_before_the_next_is_written() {
    // Writer → BufWriter → `cat` → our Reader in another thread. The writer waits for the
    // reader to see packet N before writing packet N+1: without the per-packet flush the
    // packet would sit in the BufWriter and the wait would time out.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run cat");
    let stdin = cat.stdin.take().expect("stdin");
    let stdout = cat.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<u16>();
    let reader = std::thread::spawn(move || {
        let mut r = netdiag_pcapio::Reader::with_name(stdout, "<cat>").expect("header");
        while let Some(p) = r.next_packet().expect("packet") {
            let port = u16::from_be_bytes([p.data[34], p.data[35]]);
            if tx.send(port).is_err() {
                break;
            }
        }
    });
    let mut w = PcapngWriter::new(std::io::BufWriter::with_capacity(1 << 16, stdin)).expect("shb");
    w.set_flush_each_packet(true);
    w.add_interface(&InterfaceDesc::new(1, 0)).expect("idb");
    for i in 0..5u16 {
        let f = frame(60_000 + i);
        w.write_packet(&PacketOut {
            interface: 0,
            timestamp_ns: u64::from(i),
            data: &f,
            original_len: f.len() as u32,
            comments: &[],
        })
        .expect("packet");
        let seen = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(
            seen,
            Ok(60_000 + i),
            "packet {i} not delivered before the next write"
        );
    }
    drop(w.into_inner().expect("flush"));
    reader.join().expect("reader thread");
    let _ = cat.wait();
}
