//! `kubectl-netdiag capture`: tcpdump inside a pod's network namespace.
//!
//! `-w FILE` writes pcap or pcapng; `-w -` streams to stdout (`| wireshark -k -i -`,
//! `| tshark -r -`), flushed whenever the kernel's ring is drained: a lone packet leaves at
//! once, a flood goes out in large writes; without `-w`, one summary line per packet.

use crate::exit::Outcome;
use crate::live::{self, Ended, Flow, Limits};
use crate::signals::Interrupt;
use crate::target::{self, TargetArgs};
use anyhow::{Context, bail};
use netdiag::capture::{CaptureConfig, DEFAULT_SNAPLEN, InterfaceChoice, Packet};
use netdiag::pcapio::{InterfaceDesc, PacketOut, PcapWriter, PcapngWriter};
use netdiag::wire::{Frame, LinkType, Net, Transport};
use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Classic pcap (microsecond timestamps, as tcpdump writes).
    Pcap,
    /// pcapng (nanosecond timestamps, interface name and netns in the interface block).
    Pcapng,
}

/// Arguments of `kubectl-netdiag capture`.
#[derive(Debug, clap::Args)]
pub(crate) struct CaptureArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// Interface inside the namespace; `any` for all. Default: the default route's (eth0).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub(crate) interface: Option<String>,
    /// Write packets to FILE, or to stdout with `-`, instead of printing summaries.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub(crate) write: Option<String>,
    /// Stop after COUNT packets.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    pub(crate) count: Option<u64>,
    /// Stop after this long (30s, 500ms, 2m).
    #[arg(long, value_name = "D", value_parser = live::parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// File format for -w.
    #[arg(long, value_enum, default_value_t = Format::Pcap)]
    pub(crate) format: Format,
    /// Bytes kept per packet.
    #[arg(short = 's', long, value_name = "N", default_value_t = DEFAULT_SNAPLEN)]
    pub(crate) snaplen: u32,
    /// With `-i any`, write LINUX_SLL2 (276) instead of LINUX_SLL (113, readable by Wireshark 3.x).
    #[arg(long)]
    pub(crate) sll2: bool,
    /// `[POD] [FILTER…]`: the pod (unless --pid/--netns), then a BPF filter as for tcpdump.
    /// Options may come after POD (`capture web -w - | tshark -r -`); a filter word that
    /// starts with `-` goes after `--`.
    #[arg(value_name = "POD] [FILTER")]
    pub(crate) words: Vec<String>,
}

/// Runs `kubectl-netdiag capture`.
pub(crate) fn run(args: CaptureArgs) -> anyhow::Result<Outcome> {
    let (pod, filter_words) = if args.target.is_direct() {
        (None, &args.words[..])
    } else {
        match args.words.split_first() {
            Some((pod, rest)) => (Some(pod.as_str()), rest),
            None => (None, &args.words[..]),
        }
    };
    let filter = filter_words.join(" ");

    // Refuse before touching anything: binary data would garble the terminal.
    let to_stdout = args.write.as_deref() == Some("-");
    if to_stdout && std::io::stdout().is_terminal() {
        bail!(
            "refusing to write binary capture data to a terminal: redirect stdout or pipe it \
             (e.g. `| tshark -r -`, `| wireshark -k -i -`), or use -w FILE"
        );
    }

    let interrupt = Interrupt::install()?;
    let target = target::resolve(pod, &args.target)?;
    for note in target.notes() {
        eprintln!("note: {note}");
    }
    let config = CaptureConfig {
        interface: args
            .interface
            .as_deref()
            .map(InterfaceChoice::from_arg)
            .unwrap_or_default(),
        filter: (!filter.trim().is_empty()).then(|| filter.clone()),
        snaplen: args.snaplen,
        sll2: args.sll2,
        ..CaptureConfig::default()
    };
    let mut cap = live::open(&target, config)?;
    let link_type = cap.link_type();
    eprintln!(
        "capturing on {} in {}, link-type {}, snapshot length {} bytes{}",
        cap.interface(),
        target.label(),
        link_name(link_type),
        cap.snaplen(),
        if filter.is_empty() {
            String::new()
        } else {
            format!(", filter {filter:?}")
        }
    );
    let limits = Limits {
        count: args.count,
        duration: args.duration,
    };

    let summary = match &args.write {
        None => {
            let stdout = std::io::stdout();
            let out = std::io::BufWriter::new(stdout.lock());
            let link = LinkType::from_linktype(link_type);
            let mut n = 0u64;
            let out = std::cell::RefCell::new(out);
            let verdict = |r: std::io::Result<()>| match r {
                Ok(()) => Ok(Flow::Continue),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Flow::ReaderClosed),
                Err(e) => Err(e).context("writing to stdout"),
            };
            live::run(
                &mut cap,
                limits,
                &interrupt,
                String::new,
                |p| {
                    n += 1;
                    let line = summarize(n, link, &p);
                    verdict(writeln!(out.borrow_mut(), "{line}"))
                },
                || verdict(out.borrow_mut().flush()),
            )?
        }
        Some(path) => {
            let (sink, name): (Box<dyn Write>, String) = if to_stdout {
                (
                    // Batches are flushed whole (see the drained hook below), not written
                    // record by record.
                    Box::new(std::io::BufWriter::with_capacity(
                        1 << 16,
                        StdoutSink::new(interrupt.clone())?,
                    )),
                    "<stdout>".into(),
                )
            } else {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating capture file {path}"))?;
                (Box::new(std::io::BufWriter::new(file)), path.clone())
            };
            let broken = Rc::new(Cell::new(false));
            let sink = PipeWatch {
                inner: sink,
                broken: broken.clone(),
            };
            let desc = InterfaceDesc {
                name: Some(cap.interface().to_owned()),
                description: Some(format!("{} (kubectl-netdiag capture)", target.label())),
                nanos: true,
                ..InterfaceDesc::new(link_type, cap.snaplen())
            };
            let writer = match Writer::new(args.format, sink, &desc, &name) {
                Ok(w) => w,
                Err(_) if broken.get() => return Ok(Outcome::Clean),
                Err(e) => return Err(e),
            };
            let writer = std::cell::RefCell::new(writer);
            let verdict = |r: anyhow::Result<()>| match r {
                Ok(()) => Ok(Flow::Continue),
                Err(_) if broken.get() => Ok(Flow::ReaderClosed),
                Err(e) => Err(e),
            };
            let summary = live::run(
                &mut cap,
                limits,
                &interrupt,
                String::new,
                |p| verdict(writer.borrow_mut().write(&p)),
                // A pipe's reader sees each batch as soon as the ring is drained; a file
                // is written in large blocks like tcpdump's.
                || {
                    if to_stdout {
                        verdict(writer.borrow_mut().flush())
                    } else {
                        Ok(Flow::Continue)
                    }
                },
            );
            let writer = writer.into_inner();
            let summary = match summary {
                Ok(s) => s,
                Err(e) => {
                    drop(writer);
                    return Err(salvage(e, path, to_stdout));
                }
            };
            match writer.finish() {
                Ok(()) => {}
                Err(_) if broken.get() => {}
                Err(e) => return Err(salvage(e, path, to_stdout)),
            }
            summary
        }
    };
    if summary.ended == Ended::ReaderClosed {
        // The reader (Wireshark, head) went away: a normal way to end, said nothing about.
        return Ok(Outcome::Clean);
    }
    live::print_stats(&summary);
    Ok(if summary.ended == Ended::TargetGone {
        Outcome::TargetGone
    } else {
        Outcome::Clean
    })
}

/// After a failed write to `-w FILE` (a full disk, a quota, an I/O error), cuts the file
/// back to its last complete packet, so every reader takes it without complaint, and says
/// how much it holds.
fn salvage(e: anyhow::Error, path: &str, to_stdout: bool) -> anyhow::Error {
    let io = e
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    if to_stdout || io.is_none() {
        return e;
    }
    let what = if io == Some(std::io::ErrorKind::StorageFull) {
        "the disk is full"
    } else {
        "writing failed"
    };
    match cut_to_last_complete(std::path::Path::new(path)) {
        Ok((packets, bytes)) => e.context(format!(
            "{what} writing {path}: it was cut to its last complete packet ({packets} packets, \
             {bytes} bytes) and is readable; free space, write elsewhere, or bound the capture \
             with -c/--duration"
        )),
        Err(cut) => e.context(format!(
            "{what} writing {path}, and cutting it to its last complete packet failed too: {cut:#}"
        )),
    }
}

/// Truncates a capture file to the end of its last complete record; returns the packets and
/// bytes it keeps.
fn cut_to_last_complete(path: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let mut reader = netdiag::pcapio::Reader::open(path)?;
    let mut end = 0u64;
    let mut packets = 0u64;
    // Up to the end, or to the partial record the failed write left.
    while let Ok(Some(_)) = reader.next_packet() {
        packets += 1;
        end = reader.offset();
    }
    if packets == 0 {
        // Not even one packet: keep the file header (and pcapng's interface block).
        end = reader.offset().min(std::fs::metadata(path)?.len());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(end))
        .with_context(|| format!("truncating {}", path.display()))?;
    Ok((packets, end))
}

/// Standard output for `-w -` that never blocks the process for good: a reader that stops
/// reading (a paused Wireshark, `| (sleep 600; cat)`) makes writes wait, but a signal still
/// ends the capture. Memory stays bounded: nothing queues here, the kernel's ring drops.
struct StdoutSink {
    /// A duplicate of fd 1 (same open pipe), written directly: no std line buffer between.
    out: std::fs::File,
    interrupt: Interrupt,
    /// When the signal came while a write was waiting: a record already begun gets this
    /// long to be completed, so the reader sees whole records when it reads again.
    give_up_at: Option<std::time::Instant>,
}

/// How long a write that a signal interrupted may still wait to complete its record.
const STDOUT_GRACE: Duration = Duration::from_secs(2);

impl StdoutSink {
    fn new(interrupt: Interrupt) -> anyhow::Result<StdoutSink> {
        let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
        // O_NONBLOCK on our end of the pipe: a full pipe returns EAGAIN and we poll.
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(StdoutSink {
            out: std::fs::File::from(fd),
            interrupt,
            give_up_at: None,
        })
    }

    /// Waits until stdout takes bytes again, a tenth of a second at a time.
    fn wait_writable(&mut self) -> std::io::Result<()> {
        if self.interrupt.is_interrupted() {
            let at = *self
                .give_up_at
                .get_or_insert_with(|| std::time::Instant::now() + STDOUT_GRACE);
            if std::time::Instant::now() >= at {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the reader of stdout stopped reading and a signal ended the capture",
                ));
            }
        }
        let mut fds = [nix::poll::PollFd::new(
            self.out.as_fd(),
            nix::poll::PollFlags::POLLOUT,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Write for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.out.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.wait_writable()?,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        loop {
            match self.out.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.wait_writable()?,
                other => return other,
            }
        }
    }
}

/// Records that the destination reported EPIPE, whatever error type wraps it later.
struct PipeWatch {
    inner: Box<dyn Write>,
    broken: Rc<Cell<bool>>,
}

impl PipeWatch {
    fn note<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.broken.set(true);
            }
        }
        r
    }
}

impl Write for PipeWatch {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

enum Writer {
    Pcap(PcapWriter<PipeWatch>),
    Pcapng(PcapngWriter<PipeWatch>, u32),
}

impl Writer {
    fn new(
        format: Format,
        sink: PipeWatch,
        desc: &InterfaceDesc,
        name: &str,
    ) -> anyhow::Result<Writer> {
        Ok(match format {
            // Microseconds, like tcpdump: every pcap reader understands them.
            Format::Pcap => Writer::Pcap(
                PcapWriter::new(sink, desc.link_type, desc.snaplen, false)?.with_name(name),
            ),
            Format::Pcapng => {
                let mut w = PcapngWriter::new(sink)?.with_name(name);
                let id = w.add_interface(desc)?;
                Writer::Pcapng(w, id)
            }
        })
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Writer::Pcap(w) => w.flush()?,
            Writer::Pcapng(w, _) => w.flush()?,
        }
        Ok(())
    }

    fn write(&mut self, p: &Packet<'_>) -> anyhow::Result<()> {
        match self {
            Writer::Pcap(w) => w.write_packet(p.timestamp_ns, p.data, p.original_len)?,
            Writer::Pcapng(w, id) => w.write_packet(&PacketOut {
                interface: *id,
                timestamp_ns: p.timestamp_ns,
                data: p.data,
                original_len: p.original_len,
                comments: &[],
            })?,
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        let mut inner = match self {
            Writer::Pcap(w) => w.into_inner()?,
            Writer::Pcapng(w, _) => w.into_inner()?,
        };
        inner.flush().context("flushing the capture output")?;
        Ok(())
    }
}

fn link_name(link_type: u32) -> String {
    match LinkType::from_linktype(link_type).description() {
        Some(name) => name.to_owned(),
        None => link_type.to_string(),
    }
}

/// One tcpdump-like line: time, addresses, protocol details, length.
fn summarize(n: u64, link: LinkType, p: &Packet<'_>) -> String {
    let secs = p.timestamp_ns / 1_000_000_000;
    let micros = (p.timestamp_ns % 1_000_000_000) / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let time = format!("{h:02}:{m:02}:{s:02}.{micros:06}");
    let frame = Frame::parse(link, p.data);
    let (src, dst) = match &frame.net {
        Some(net @ (Net::Ipv4(_) | Net::Ipv6(_))) => (net.src(), net.dst()),
        _ => (None, None),
    };
    let body = match (src, dst, &frame.transport) {
        (Some(src), Some(dst), Some(Transport::Tcp(t))) => {
            let flags = t.flags;
            format!(
                "{src}.{} > {dst}.{}: TCP [{flags}] seq {} ack {} win {} len {}",
                t.src_port, t.dst_port, t.seq, t.ack, t.window, t.payload_len
            )
        }
        (Some(src), Some(dst), Some(Transport::Udp(u))) => {
            let dns = frame
                .dns()
                .and_then(Result::ok)
                .map(|m| {
                    let q = m
                        .question()
                        .map(|q| format!(" {} type {}", q.name, q.qtype))
                        .unwrap_or_default();
                    if m.is_response() {
                        format!(" DNS id {} response rcode {}{q}", m.id(), m.rcode().0)
                    } else {
                        format!(" DNS id {} query{q}", m.id())
                    }
                })
                .unwrap_or_default();
            format!(
                "{src}.{} > {dst}.{}: UDP len {}{dns}",
                u.src_port,
                u.dst_port,
                u.payload.len()
            )
        }
        (Some(src), Some(dst), Some(Transport::Icmp(i))) => {
            format!("{src} > {dst}: ICMP type {} code {}", i.icmp_type, i.code)
        }
        (Some(src), Some(dst), _) => format!("{src} > {dst}: IP"),
        _ => match &frame.net {
            Some(Net::Arp) => "ARP".to_owned(),
            Some(Net::Other { ethertype }) => format!("ethertype 0x{ethertype:04x}"),
            _ => "unparsed frame".to_owned(),
        },
    };
    format!("{n} {time} {body}, length {}", p.original_len)
}
