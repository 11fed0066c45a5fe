//! Capture files (and standard input) into the analyzer, and the annotated copy.

use crate::{Error, Event, StopHandle, Truncated};
use netdiag_analyze::{Analyzer, Report};
use netdiag_pcapio::{InterfaceDesc, PacketOut, PcapngWriter, Reader};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The name that means standard input, as for `tcpdump -r -`.
pub(crate) const STDIN: &str = "-";

/// Most packets read at once from a capture (what one window of the reader holds).
const BATCH: usize = 64;

/// How often (in packets) a file read checks the stop handle.
const STOP_CHECK_EVERY: u64 = 4096;

/// Whether `path` names standard input.
pub(crate) fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// Refuses what cannot be read as asked: standard input twice, a directory.
pub(crate) fn check_inputs(paths: &[PathBuf]) -> Result<(), Error> {
    if paths.iter().filter(|p| is_stdin(p)).count() > 1 {
        return Err(Error::Input {
            path: PathBuf::from(STDIN),
            problem: "standard input is given more than once; it can be read only once".into(),
        });
    }
    for p in paths {
        if !is_stdin(p) && p.is_dir() {
            return Err(Error::Input {
                path: p.clone(),
                problem: "is a directory; give the capture files in it (e.g. DIR/*.pcap)".into(),
            });
        }
    }
    Ok(())
}

/// Copies everything read through it into a scratch file, so standard input can be
/// annotated after it was analysed.
struct Tee<R: Read, W: Write> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Feeds every input, one source each, in order. Returns the files to annotate from
/// (the inputs, with standard input replaced by its scratch copy when `stdin_copy` is set).
pub(crate) fn feed_inputs(
    analyzer: &mut Analyzer,
    paths: &[PathBuf],
    truncated: Truncated,
    stop: &StopHandle,
    stdin_copy: Option<&Path>,
    events: &mut dyn FnMut(Event),
) -> Result<Vec<PathBuf>, Error> {
    check_inputs(paths)?;
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        if stop.is_stopped() {
            break;
        }
        if is_stdin(path) {
            let stdin = std::io::stdin().lock();
            match stdin_copy {
                Some(copy) => {
                    let file = std::fs::File::create(copy).map_err(|source| Error::Io {
                        what: "creating the scratch copy of standard input",
                        path: copy.to_path_buf(),
                        source,
                    })?;
                    let tee = Tee {
                        inner: stdin,
                        copy: std::io::BufWriter::new(file),
                    };
                    let reader = Reader::with_name(std::io::BufReader::new(tee), "<stdin>")?;
                    let mut tee =
                        feed_reader(analyzer, reader, "<stdin>", truncated, stop, events)?;
                    tee.copy.flush().map_err(|source| Error::Io {
                        what: "writing the scratch copy of standard input",
                        path: copy.to_path_buf(),
                        source,
                    })?;
                    sources.push(copy.to_path_buf());
                }
                None => {
                    let reader = Reader::with_name(
                        std::io::BufReader::with_capacity(1 << 16, stdin),
                        "<stdin>",
                    )?;
                    let _stdin = feed_reader(analyzer, reader, "<stdin>", truncated, stop, events)?;
                    sources.push(path.clone());
                }
            }
        } else {
            let reader = Reader::open(path)?;
            let name = path.display().to_string();
            if reader.is_mapped() {
                // Read in place: nothing to read ahead, every packet is there.
                feed_reader(analyzer, reader, &name, truncated, stop, events)?;
            } else {
                feed_file(
                    analyzer,
                    reader,
                    &name,
                    truncated,
                    stop,
                    events,
                    CHUNK_BYTES,
                )?;
            }
            sources.push(path.clone());
        }
    }
    Ok(sources)
}

/// Feeds one reader as one source; returns the reader's input once done.
fn feed_reader<R: Read>(
    analyzer: &mut Analyzer,
    mut reader: Reader<std::io::BufReader<R>>,
    name: &str,
    truncated: Truncated,
    stop: &StopHandle,
    events: &mut dyn FnMut(Event),
) -> Result<R, Error> {
    analyzer.begin_source(name);
    let mut n = 0u64;
    loop {
        // A window's worth of packets at a time: one look at the reader's state a batch.
        // Each packet analysed as soon as its record is read: the next record's bytes
        // arrive while this one is worked on (`Reader::for_each_packet`).
        match reader.for_each_packet(BATCH, |p| {
            analyzer.feed(p.timestamp_ns, p.link_type, p.data);
        }) {
            Ok(0) => break,
            Ok(got) => {
                let before = n;
                n += got as u64;
                if n / STOP_CHECK_EVERY != before / STOP_CHECK_EVERY && stop.is_stopped() {
                    break;
                }
            }
            Err(e) => {
                read_error(e, truncated, n, events)?;
                break;
            }
        }
    }
    Ok(reader.into_inner().into_inner())
}

/// A read error after `n` packets: a capture cut short in its last record (tcpdump
/// killed mid-write) still holds every packet before it, so unless told to fail, those
/// are reported on, as Wireshark does, with a warning that says so.
fn read_error(
    e: netdiag_pcapio::Error,
    truncated: Truncated,
    n: u64,
    events: &mut dyn FnMut(Event),
) -> Result<(), Error> {
    if e.is_truncation() && truncated == Truncated::AnalyzeCompletePackets {
        events(Event::Warning(format!(
            "{e}; analyzed the {n} complete packets before it"
        )));
        Ok(())
    } else {
        Err(e.into())
    }
}

/// Bytes of packets the read-ahead thread copies into one [`Chunk`] before handing it
/// over (a few thousand packets: one channel message per chunk, not per packet).
const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks read ahead and not yet analyzed, at most: enough to keep the analyzer busy
/// through one slow read, little enough memory (a chunk is about `CHUNK_BYTES`).
const CHUNKS_AHEAD: usize = 2;

/// Packets the read-ahead thread copied out of the reader, in capture order.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// (timestamp ns, link type, end of its bytes in `bytes`) of each packet; each
    /// packet's bytes start where the previous one's end.
    packets: Vec<(u64, u32, usize)>,
}

/// What the read-ahead thread sends.
enum Ahead {
    Chunk(Chunk),
    /// The end of the capture, or the error that ended it (after every packet before it).
    End(Result<(), netdiag_pcapio::Error>),
}

/// Feeds one capture file as one source, read on a thread of its own: the file's reads
/// (the kernel's copy into our buffer) and the record walk run beside the analysis,
/// which sees the same packets in the same order as [`feed_reader`] would give it.
/// For a file that is not read in place ([`Reader::is_mapped`]: a regular file is, and
/// then [`feed_reader`] walks it with no read and no copy, in less time than this thread
/// takes: `cargo xtask bench compare`). Standard input stays on
/// [`feed_reader`]: a read from an idle pipe can block for ever, and a stopped analysis
/// must not wait for it. Chunks of `chunk_bytes` ([`CHUNK_BYTES`]; the tests use one
/// batch a chunk).
fn feed_file(
    analyzer: &mut Analyzer,
    reader: Reader<std::io::BufReader<std::fs::File>>,
    name: &str,
    truncated: Truncated,
    stop: &StopHandle,
    events: &mut dyn FnMut(Event),
    chunk_bytes: usize,
) -> Result<(), Error> {
    analyzer.begin_source(name);
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("netdiag-read-ahead".into())
            .spawn_scoped(s, move || {
                read_ahead(reader, &full_tx, &empty_rx, chunk_bytes)
            })
            .map_err(|source| Error::Io {
                what: "starting the thread that reads ahead in",
                path: PathBuf::from(name),
                source,
            })?;
        // Owned here, so that it is dropped when this closure returns, before the scope
        // waits for the thread: a thread blocked sending to it then wakes and ends.
        let full_rx = full_rx;
        let mut n = 0u64;
        // Ends when the thread ends: its sender is dropped after the last message.
        while let Ok(msg) = full_rx.recv() {
            match msg {
                Ahead::Chunk(c) => {
                    let mut start = 0;
                    for &(ts, link, end) in &c.packets {
                        analyzer.feed(ts, link, c.bytes.get(start..end).unwrap_or_default());
                        start = end;
                    }
                    n += c.packets.len() as u64;
                    // The chunk goes back for reuse: no allocation once warm.
                    let _ = empty_tx.send(c);
                    // Once a chunk (a few thousand packets at most).
                    if stop.is_stopped() {
                        // Dropping the receiver ends the thread at its next send.
                        break;
                    }
                }
                Ahead::End(Ok(())) => break,
                Ahead::End(Err(e)) => return read_error(e, truncated, n, events),
            }
        }
        Ok(())
    })
}

/// The read-ahead thread: packets of `reader` in chunks to `full`, reusing the chunks
/// that come back on `empty`, until the capture ends or the receiver is gone.
fn read_ahead<R: Read>(
    mut reader: Reader<std::io::BufReader<R>>,
    full: &std::sync::mpsc::SyncSender<Ahead>,
    empty: &std::sync::mpsc::Receiver<Chunk>,
    chunk_bytes: usize,
) {
    loop {
        let mut c = empty.try_recv().unwrap_or_else(|_| Chunk {
            // A chunk ends after the batch that fills it: room for one more window.
            bytes: Vec::with_capacity(chunk_bytes + 256 * 1024),
            packets: Vec::with_capacity(chunk_bytes / 64),
        });
        c.bytes.clear();
        c.packets.clear();
        let end = loop {
            match reader.next_batch(BATCH) {
                Ok(b) if b.is_empty() => break Some(Ok(())),
                Ok(b) => {
                    for p in b.iter() {
                        c.bytes.extend_from_slice(p.data);
                        c.packets.push((p.timestamp_ns, p.link_type, c.bytes.len()));
                    }
                    if c.bytes.len() >= chunk_bytes {
                        break None;
                    }
                }
                Err(e) => break Some(Err(e)),
            }
        };
        if !c.packets.is_empty() && full.send(Ahead::Chunk(c)).is_err() {
            return;
        }
        if let Some(end) = end {
            let _ = full.send(Ahead::End(end));
            return;
        }
    }
}

/// Writes every packet of `files` (one source each, in order, as they were analysed) to a
/// pcapng file at `out`, with a comment on each evidence packet naming its finding
/// (Wireshark's `frame.comment`). A truncated last record ends that file's copy.
pub fn annotate(files: &[PathBuf], report: &Report, out: &Path) -> Result<(), Error> {
    let mut comments: HashMap<(u16, u64), Vec<String>> = HashMap::new();
    for f in &report.findings {
        for p in &f.evidence.packets {
            comments
                .entry((p.packet.source, p.packet.number))
                .or_default()
                .push(format!(
                    "netdiag: {} ({}): {}",
                    f.kind.as_str(),
                    f.confidence.as_str(),
                    p.role
                ));
        }
    }
    let file = std::fs::File::create(out).map_err(|source| Error::Io {
        what: "creating the annotated capture",
        path: out.to_path_buf(),
        source,
    })?;
    let mut w =
        PcapngWriter::new(std::io::BufWriter::new(file))?.with_name(out.display().to_string());
    for (source, path) in files.iter().enumerate() {
        let source = u16::try_from(source).unwrap_or(u16::MAX);
        let label = report
            .sources
            .get(usize::from(source))
            .map_or_else(|| path.display().to_string(), |s| s.name.clone());
        let mut reader = Reader::open(path)?;
        let mut ifmap: HashMap<u32, u32> = HashMap::new();
        let mut number = 0u64;
        loop {
            let (p, interfaces) = match reader.next_packet_with_interfaces() {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) if e.is_truncation() && number > 0 => break,
                Err(e) => return Err(e.into()),
            };
            number += 1;
            let iface = match ifmap.get(&p.interface) {
                Some(i) => *i,
                None => {
                    // Interfaces appear (pcapng IDBs) before their first packet.
                    let desc = interfaces
                        .get(p.interface as usize)
                        .map(InterfaceDesc::from)
                        .unwrap_or_else(|| InterfaceDesc::new(p.link_type, 0));
                    let desc = InterfaceDesc {
                        description: Some(format!("{label} (netdiag source {source})")),
                        nanos: true,
                        ..desc
                    };
                    let i = w.add_interface(&desc)?;
                    ifmap.insert(p.interface, i);
                    i
                }
            };
            let mine: Vec<&str> = comments
                .get(&(source, number))
                .map(|v| v.iter().map(String::as_str).collect())
                .unwrap_or_default();
            w.write_packet(&PacketOut {
                interface: iface,
                timestamp_ns: p.timestamp_ns,
                data: p.data,
                original_len: p.original_len,
                comments: &mine,
            })?;
        }
    }
    let mut inner = w.into_inner()?;
    inner.flush().map_err(|source| Error::Io {
        what: "writing the annotated capture",
        path: out.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// A scratch file beside `out`: `OUT.<pid>.<tag>.partial`.
pub(crate) fn scratch_path(out: &Path, tag: &str) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{tag}.partial", std::process::id()));
    out.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdiag_analyze::Config;

    /// Every lab recording of the repository's testdata.
    fn testdata() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
        let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
            .expect("testdata")
            .filter_map(|e| Some(e.ok()?.path().join("pod.pcap")))
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        assert!(v.len() >= 10, "testdata recordings: {v:?}");
        v
    }

    /// The report of `path` read on this thread ([`feed_reader`]), its warnings, and
    /// the result.
    fn in_line(path: &Path, truncated: Truncated) -> (Report, Vec<String>, Result<(), String>) {
        let mut a = Analyzer::new(Config::default());
        let mut warnings = Vec::new();
        let r = Reader::open(path).expect("open");
        let res = feed_reader(&mut a, r, "x", truncated, &StopHandle::new(), &mut |e| {
            if let Event::Warning(w) = e {
                warnings.push(w)
            }
        });
        (
            a.finish(),
            warnings,
            res.map(drop).map_err(|e| e.to_string()),
        )
    }

    /// The same, read ahead on a thread in chunks of `chunk_bytes`, stopped by `stop`.
    fn read_ahead_of(
        path: &Path,
        truncated: Truncated,
        chunk_bytes: usize,
        stop: &StopHandle,
    ) -> (Report, Vec<String>, Result<(), String>) {
        let mut a = Analyzer::new(Config::default());
        let mut warnings = Vec::new();
        let r = Reader::open(path).expect("open");
        let res = feed_file(
            &mut a,
            r,
            "x",
            truncated,
            stop,
            &mut |e| {
                if let Event::Warning(w) = e {
                    warnings.push(w)
                }
            },
            chunk_bytes,
        );
        (a.finish(), warnings, res.map_err(|e| e.to_string()))
    }

    /// Read ahead in one chunk, in chunks of one batch, or as the product does, the
    /// analyzer sees what it sees when it reads the file itself: the same report.
    #[test]
    fn reading_ahead_gives_the_reports_of_reading_in_line() {
        for path in testdata() {
            let (want, w, res) = in_line(&path, Truncated::AnalyzeCompletePackets);
            assert!(
                res.is_ok() && w.is_empty(),
                "{}: {res:?} {w:?}",
                path.display()
            );
            assert!(want.capture.packets > 0, "{}", path.display());
            for chunk in [1, CHUNK_BYTES] {
                let (got, w, res) = read_ahead_of(
                    &path,
                    Truncated::AnalyzeCompletePackets,
                    chunk,
                    &StopHandle::new(),
                );
                assert!(
                    res.is_ok() && w.is_empty(),
                    "{}: {res:?} {w:?}",
                    path.display()
                );
                assert_eq!(got, want, "{} in chunks of {chunk} bytes", path.display());
            }
        }
    }

    /// A file cut inside its last record: the complete packets are analyzed and a
    /// warning counts them, or, when told to fail, the reader's error comes back.
    #[test]
    fn a_file_cut_short_is_analyzed_up_to_its_last_complete_packet_or_refused() {
        let src = testdata()
            .into_iter()
            .find(|p| p.ends_with("healthy_udp_dns/pod.pcap"))
            .expect("healthy_udp_dns");
        let bytes = std::fs::read(&src).expect("read");
        let dir = tempfile::tempdir().expect("tempdir");
        let cut = dir.path().join("cut.pcap");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).expect("write");
        let (want, w, res) = in_line(&cut, Truncated::AnalyzeCompletePackets);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(w.len(), 1, "{w:?}");
        let complete = want.capture.packets;
        assert!(
            w[0].ends_with(&format!(
                "analyzed the {complete} complete packets before it"
            )),
            "{w:?}"
        );
        for chunk in [1, CHUNK_BYTES] {
            let (got, w2, res) = read_ahead_of(
                &cut,
                Truncated::AnalyzeCompletePackets,
                chunk,
                &StopHandle::new(),
            );
            assert!(res.is_ok(), "{res:?}");
            assert_eq!(w2, w, "in chunks of {chunk} bytes");
            assert_eq!(got, want, "in chunks of {chunk} bytes");
            let (_, w3, res) = read_ahead_of(&cut, Truncated::Fail, chunk, &StopHandle::new());
            let (_, _, want_err) = in_line(&cut, Truncated::Fail);
            assert!(res.is_err() && w3.is_empty(), "{res:?} {w3:?}");
            assert_eq!(res, want_err);
        }
    }

    /// A stopped run ends after the chunk in hand, while the thread is still reading:
    /// the thread, blocked on a full channel, ends too (the call returns).
    #[test]
    fn a_stop_ends_the_read_ahead_thread_too() {
        let path = testdata()
            .into_iter()
            .find(|p| p.ends_with("udp_rcvbuf_overflow/pod.pcap"))
            .expect("udp_rcvbuf_overflow");
        let (all, _, _) = in_line(&path, Truncated::AnalyzeCompletePackets);
        let stop = StopHandle::new();
        stop.stop();
        // On a thread of its own, so that a hang fails the test instead of stalling it.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_ahead_of(
                &p,
                Truncated::AnalyzeCompletePackets,
                1,
                &stop,
            ));
        });
        let (got, w, res) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the stopped run returned within a minute");
        assert!(res.is_ok() && w.is_empty(), "{res:?} {w:?}");
        // One chunk of one batch: at most `BATCH` packets of the file's 1,594.
        assert!(
            got.capture.packets > 0 && got.capture.packets <= BATCH as u64,
            "{} of {} packets",
            got.capture.packets,
            all.capture.packets
        );
        assert!(all.capture.packets > (CHUNKS_AHEAD as u64 + 2) * BATCH as u64);
    }
}
