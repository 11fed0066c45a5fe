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
            feed_reader(
                analyzer,
                reader,
                &path.display().to_string(),
                truncated,
                stop,
                events,
            )?;
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
        match reader.next_batch(BATCH) {
            Ok(b) if b.is_empty() => break,
            Ok(b) => {
                for p in b.iter() {
                    analyzer.feed(p.timestamp_ns, p.link_type, p.data);
                }
                let before = n;
                n += b.len() as u64;
                if n / STOP_CHECK_EVERY != before / STOP_CHECK_EVERY && stop.is_stopped() {
                    break;
                }
            }
            // A capture cut short in its last record (tcpdump killed mid-write) still
            // holds every packet before it: report on those, as Wireshark does, and say so.
            Err(e) if e.is_truncation() && truncated == Truncated::AnalyzeCompletePackets => {
                events(Event::Warning(format!(
                    "{e}; analyzed the {n} complete packets before it"
                )));
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(reader.into_inner().into_inner())
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
