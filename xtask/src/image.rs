//! `cargo xtask image`: the OCI image of kubectl-netdiag, written without a container engine.
//!
//! The image is one layer: the release binary at `/usr/local/bin/kubectl-netdiag` and
//! exactly the shared objects it loads (what `ldd` lists: libpcap and what libpcap needs,
//! libc, the dynamic loader), each at the path the loader looks for it, plus the empty
//! directories a runtime mounts over (`/proc`, `/sys`, `/dev`, `/run`, `/tmp`). No shell, no
//! CA bundle, no package database. The entrypoint is the binary; the default command is
//! `agent` (idle, ready for `kubectl exec`), as the DaemonSet in `deploy/` runs it.
//!
//! Reproducible: every tar header has uid/gid 0, no user or group names, mode from a fixed
//! table and the mtime `$SOURCE_DATE_EPOCH` (0 when unset), entries in sorted order; gzip
//! carries no name and no time; the JSON documents have sorted keys. The same binary gives
//! the same bytes, hence the same digest.
//!
//! The archive is an OCI image layout in a tar (`oci-archive`), which `ctr images import`,
//! `skopeo copy oci-archive:…` (to any registry) and podman accept. Its index names the image
//! twice, as `ctr export` does: `io.containerd.image.name` (the full reference, which `ctr
//! import` uses) and `org.opencontainers.image.ref.name` (the tag, as the OCI spec asks).
//!
//! Kept free of workspace crates (xtask depends on none): std, anyhow, and three small
//! crates for the formats (tar, flate2, sha2).

use anyhow::{Context, Result, bail};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the image is published; the tag is the binary's version.
pub(crate) const REPOSITORY: &str = "ghcr.io/netdiag/kubectl-netdiag";

/// Where the binary sits in the image (on `PATH`, so `kubectl exec … -- kubectl-netdiag`
/// works without a shell).
const BIN_PATH: &str = "usr/local/bin/kubectl-netdiag";

/// Directories the image holds besides the parents of its files, and their modes: mount
/// points the runtime fills, and a world-writable /tmp for `--annotate` scratch files.
const DIRS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
];

const USAGE: &str = "usage: cargo xtask image [--binary PATH] [--out PATH]
  Builds kubectl-netdiag (release, profile-guided: xtask/src/pgo.rs; root) and writes its OCI image archive to
  target/image/kubectl-netdiag.oci.tar (import: ctr -n k8s.io images import FILE;
  push: skopeo copy oci-archive:FILE docker://REGISTRY/NAME:TAG).
  --binary PATH  package this binary instead of building the release one
  --out PATH     where to write the archive
  $SOURCE_DATE_EPOCH sets the file times and the creation date (default 0).";

/// `cargo xtask image [--binary PATH] [--out PATH]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut binary = None;
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--binary" => binary = Some(PathBuf::from(it.next().context(USAGE)?)),
            "--out" => out = Some(PathBuf::from(it.next().context(USAGE)?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let binary = match binary {
        Some(b) => b,
        None => crate::pgo::release_binary()?,
    };
    let out = out.unwrap_or_else(default_out);
    let image = write_archive(&binary, &out)?;
    println!(
        "{} {} {}\n  digest {}\n  import: ctr -n k8s.io images import {}",
        out.display(),
        image.reference,
        human(image.size),
        image.digest,
        out.display()
    );
    Ok(())
}

/// What `cargo xtask ci` checks: the image builds, a second packaging of the same binary
/// gives the same digest and bytes, skopeo reads it as an OCI archive, and the manifests
/// in `deploy/` validate against the Kubernetes OpenAPI schema.
pub(crate) fn ci() -> Result<()> {
    ensure_debian_packages()?;
    let binary = crate::pgo::release_binary()?;
    let first = write_archive(&binary, &default_out())?;
    let again_path = default_out().with_file_name("kubectl-netdiag.again.oci.tar");
    let again = write_archive(&binary, &again_path)?;
    let same_bytes = std::fs::read(default_out())? == std::fs::read(&again_path)?;
    std::fs::remove_file(&again_path)?;
    if first.digest != again.digest || !same_bytes {
        bail!(
            "the image is not reproducible: {} then {} from the same binary",
            first.digest,
            again.digest
        );
    }
    eprintln!("xtask: image reproducible: {} twice", first.digest);
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", default_out().display()))
        .output()
        .context("running skopeo (Debian package skopeo)")?;
    if !inspect.status.success() {
        bail!(
            "skopeo inspect rejects the archive: {}",
            String::from_utf8_lossy(&inspect.stderr)
        );
    }
    let seen: serde_json::Value = serde_json::from_slice(&inspect.stdout)?;
    if seen["Digest"].as_str() != Some(first.digest.as_str()) {
        bail!(
            "skopeo sees digest {} where we wrote {}",
            seen["Digest"],
            first.digest
        );
    }
    validate_manifests()
}

/// The manifests in `deploy/` against the OpenAPI schema of a current Kubernetes release,
/// with PyPI's kubernetes-validate (installed with pip when missing), strictly: an unknown
/// or misspelt field is an error, not a warning.
pub(crate) fn validate_manifests() -> Result<()> {
    // Through `python3 -m`: a package pip just installed has no console script on PATH
    // yet where a version manager (pyenv) needs its shims rehashed.
    let installed = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        let pip = ["-m", "pip", "install", "--quiet", "kubernetes-validate"];
        // Debian's own python3 is "externally managed" (PEP 668): pip refuses without the
        // flag; a pyenv or venv python takes the plain command.
        if crate::sh::run(Command::new("python3").args(pip)).is_err() {
            crate::sh::run(
                Command::new("python3")
                    .args(pip)
                    .arg("--break-system-packages"),
            )?;
        }
    }
    let deploy = crate::sh::workspace_root().join("deploy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .with_context(|| format!("reading {}", deploy.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    if files.is_empty() {
        bail!("no manifests in {}", deploy.display());
    }
    crate::sh::run(
        Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict"])
            .args(&files),
    )
}

/// What the image step needs beyond `cargo xtask deps`' list: objcopy (binutils), skopeo,
/// python3's pip. Installed with apt-get when missing (root, as `cargo xtask ci` runs).
fn ensure_debian_packages() -> Result<()> {
    let present = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut missing = Vec::new();
    if !present("objcopy", &["--version"]) {
        missing.push("binutils");
    }
    if !present("skopeo", &["--version"]) {
        missing.push("skopeo");
    }
    if !present("python3", &["-m", "pip", "--version"]) {
        missing.push("python3-pip");
    }
    if missing.is_empty() {
        return Ok(());
    }
    crate::sh::run(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    crate::sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The archive `cargo xtask image` writes by default.
fn default_out() -> PathBuf {
    crate::sh::target_dir().join("image/kubectl-netdiag.oci.tar")
}

/// A written image archive.
pub(crate) struct Image {
    /// `sha256:…` of the image manifest: what a registry and `ctr images ls` show.
    pub(crate) digest: String,
    /// `REPOSITORY:VERSION`.
    pub(crate) reference: String,
    /// Size of the archive in bytes.
    pub(crate) size: u64,
}

/// Packages `binary` (and the shared objects it loads) as an OCI image archive at `out`.
pub(crate) fn write_archive(binary: &Path, out: &Path) -> Result<Image> {
    package(binary, &binary_version(binary)?, source_date_epoch()?, out)
}

fn package(binary: &Path, version: &str, epoch: u64, out: &Path) -> Result<Image> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert(BIN_PATH.to_string(), stripped(binary)?);
    for lib in loaded_objects(binary)? {
        let bytes = std::fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        files.insert(rel, bytes);
    }
    let layer_tar = layer(&files, epoch)?;
    let diff_id = sha256(&layer_tar);
    let layer_gz = gzip(&layer_tar)?;
    let created = rfc3339(epoch);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let labels = serde_json::json!({
        "org.opencontainers.image.title": "kubectl-netdiag",
        "org.opencontainers.image.description":
            "Diagnose Kubernetes pod networking on the node: conntrack, accept queues, SNAT, DNS",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.source": "https://github.com/netdiag/netdiag",
        "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
    });
    let config = to_json(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "Entrypoint": [format!("/{BIN_PATH}")],
            "Cmd": ["agent"],
            "Env": ["PATH=/usr/local/bin"],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": created, "created_by": "cargo xtask image" }],
    }))?;
    let manifest = to_json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha256(&layer_gz),
            "size": layer_gz.len(),
        }],
        "annotations": labels,
    }))?;
    let digest = sha256(&manifest);
    let reference = format!("{REPOSITORY}:{version}");
    let index = to_json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": manifest.len(),
            "platform": { "architecture": arch, "os": "linux" },
            "annotations": {
                "io.containerd.image.name": reference,
                "org.opencontainers.image.ref.name": version,
            },
        }],
    }))?;
    let mut blobs = BTreeMap::new();
    for blob in [config, manifest, layer_gz] {
        blobs.insert(sha256(&blob), blob);
    }
    let archive = layout_tar(&index, &blobs, epoch)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written beside and renamed: a reader never sees half an archive.
    let partial = out.with_extension("tar.partial");
    std::fs::write(&partial, &archive).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(Image {
        digest,
        reference,
        size: archive.len() as u64,
    })
}

/// The version the binary reports (`kubectl-netdiag 0.1.0` → `0.1.0`): the image is tagged
/// with what it really contains.
fn binary_version(binary: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1).unwrap_or_default();
    let valid = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
    if !out.status.success() || !valid {
        bail!("{} --version printed {text:?}", binary.display());
    }
    // A tag may not hold '+' (build metadata): registries use '_' instead.
    Ok(version.replace('+', "_"))
}

/// The binary without its debug sections (the release profile keeps line tables for
/// profiling on the node; the image does not need them). objcopy's output depends only
/// on its input.
fn stripped(binary: &Path) -> Result<Vec<u8>> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = crate::sh::target_dir().join(format!("image/.strip.{}.{n}", std::process::id()));
    if let Some(dir) = tmp.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&tmp)
        .status()
        .context("running objcopy (Debian package binutils)")?;
    let bytes = std::fs::read(&tmp);
    let _ = std::fs::remove_file(&tmp);
    if !status.success() {
        bail!(
            "objcopy --strip-debug {} failed: {status}",
            binary.display()
        );
    }
    bytes.with_context(|| format!("reading the stripped copy of {}", binary.display()))
}

/// The shared objects the dynamic loader maps for `binary`, and the loader itself, as `ldd`
/// lists them (DT_NEEDED, transitively, resolved the way the loader resolves them). A
/// library ldd cannot find is an error: the image would not start.
fn loaded_objects(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}{}",
            binary.display(),
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_ldd(&text)
}

/// Paths from ldd's output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO (no file) is skipped.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("ldd: {line}: install the library before building the image");
        }
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(p) if p.starts_with('/') => paths.push(PathBuf::from(p)),
            _ if line.starts_with("linux-vdso") || line.starts_with("linux-gate") => {}
            _ => bail!("ldd printed a line without a path: {line:?}"),
        }
    }
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        bail!("ldd listed no shared objects (a static binary needs no loader: not expected here)");
    }
    Ok(paths)
}

/// The layer: the directories, then every file, sorted, each directory before what it holds.
fn layer(files: &BTreeMap<String, Vec<u8>>, epoch: u64) -> Result<Vec<u8>> {
    let mut dirs: BTreeMap<String, u32> = DIRS.iter().map(|(d, m)| (d.to_string(), *m)).collect();
    for path in files.keys() {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            dirs.entry(prefix.clone()).or_insert(0o755);
        }
    }
    // Sorted by path: "usr/" sorts before "usr/local/", so parents come first.
    let mut entries: BTreeMap<String, (tar::EntryType, u32, &[u8])> = BTreeMap::new();
    for (d, mode) in &dirs {
        entries.insert(format!("{d}/"), (tar::EntryType::Directory, *mode, &[]));
    }
    for (f, bytes) in files {
        // Every file here is an ELF object (the binary, the loader, shared libraries): the
        // kernel wants the loader executable, the rest is read-only for everyone but root.
        entries.insert(
            f.clone(),
            (tar::EntryType::Regular, 0o755, bytes.as_slice()),
        );
    }
    let mut b = tar::Builder::new(Vec::new());
    for (path, (kind, mode, data)) in entries {
        append(&mut b, &path, kind, mode, data, epoch)?;
    }
    Ok(b.into_inner()?)
}

/// The OCI layout as a tar: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
fn layout_tar(index: &[u8], blobs: &BTreeMap<String, Vec<u8>>, epoch: u64) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(
        &mut b,
        "oci-layout",
        tar::EntryType::Regular,
        0o644,
        layout,
        epoch,
    )?;
    append(
        &mut b,
        "index.json",
        tar::EntryType::Regular,
        0o644,
        index,
        epoch,
    )?;
    append(
        &mut b,
        "blobs/",
        tar::EntryType::Directory,
        0o755,
        &[],
        epoch,
    )?;
    append(
        &mut b,
        "blobs/sha256/",
        tar::EntryType::Directory,
        0o755,
        &[],
        epoch,
    )?;
    for (digest, blob) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        let path = format!("blobs/sha256/{hex}");
        append(&mut b, &path, tar::EntryType::Regular, 0o644, blob, epoch)?;
    }
    Ok(b.into_inner()?)
}

/// One tar entry whose header depends only on the arguments: owner root (0:0, no names),
/// the given mode and time.
fn append(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    epoch: u64,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(epoch);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data)
        .with_context(|| format!("adding {path} to the tar"))?;
    Ok(())
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    // No file name and mtime 0 in the gzip header: only the data decides the bytes.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

pub(crate) fn sha256(data: &[u8]) -> String {
    let digest = sha2::Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Compact JSON with sorted keys (serde_json's map is a BTreeMap unless a dependency turns
/// on `preserve_order`; both are stable for one build, sorted is what we ask for).
fn to_json(v: &serde_json::Value) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

/// `$SOURCE_DATE_EPOCH` (reproducible-builds.org), else 0.
fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.is_empty() => s
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds")),
        _ => Ok(0),
    }
}

/// Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ` (UTC; days to a civil date after Howard
/// Hinnant's `civil_from_days`).
fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn human(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1700000000 +%FT%TZ`
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        // a leap day: `date -u -d @1709164800 +%FT%TZ`
        assert_eq!(rfc3339(1_709_164_800), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn ldd_lines() {
        // ldd of /usr/bin/getent on Debian 12.
        let text = "\tlinux-vdso.so.1 (0x00007ffd5b1f2000)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0d1c9d4000)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f0d1cbd3000)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibpcap.so.0.8 => not found\n").is_err());
    }

    /// The real thing on a small real ELF: /usr/bin/getent and the objects it loads,
    /// packaged twice into two archives, give the same digest and the same bytes; the
    /// layer holds the binary and every object ldd names, owned by root, at the fixed time,
    /// and no shell.
    #[test]
    fn packaging_is_reproducible_and_complete() {
        let dir = crate::sh::target_dir().join(format!("image/test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = Path::new("/usr/bin/getent");
        let (a, b) = (dir.join("a.tar"), dir.join("b.tar"));
        let first = package(bin, "0.0.0-test", 1_700_000_000, &a).unwrap();
        let again = package(bin, "0.0.0-test", 1_700_000_000, &b).unwrap();
        assert_eq!(first.digest, again.digest);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(first.reference, format!("{REPOSITORY}:0.0.0-test"));

        let mut outer = tar::Archive::new(std::fs::File::open(&a).unwrap());
        let mut blobs = BTreeMap::new();
        let mut index = Vec::new();
        for e in outer.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(
                    sha256(&bytes),
                    format!("sha256:{hex}"),
                    "blob content vs name"
                );
                blobs.insert(format!("sha256:{hex}"), bytes);
            } else if path == "index.json" {
                index = bytes;
            }
        }
        let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"].as_str(),
            Some(first.digest.as_str())
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&blobs[first.digest.as_str()]).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&blobs[manifest["config"]["digest"].as_str().unwrap()]).unwrap();
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.version"],
            "0.0.0-test"
        );
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        let gz = &blobs[manifest["layers"][0]["digest"].as_str().unwrap()];
        let mut layer = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut layer)
            .unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0].as_str(),
            Some(sha256(&layer).as_str())
        );

        let mut names = Vec::new();
        for e in tar::Archive::new(layer.as_slice()).entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            names.push(e.path().unwrap().to_string_lossy().into_owned());
        }
        assert!(names.contains(&BIN_PATH.to_string()), "{names:?}");
        for l in loaded_objects(bin).unwrap() {
            let rel = l.to_string_lossy().trim_start_matches('/').to_string();
            assert!(names.contains(&rel), "{rel} missing from {names:?}");
        }
        assert!(
            names.iter().any(|n| n.trim_end_matches('/') == "tmp"),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.ends_with("/sh")), "{names:?}");
        // Every directory comes before what it holds (an unpacker needs no second pass).
        for (i, n) in names.iter().enumerate() {
            if let Some((parent, _)) = n.trim_end_matches('/').rsplit_once('/') {
                let at = names.iter().position(|m| m.trim_end_matches('/') == parent);
                assert!(at.is_some_and(|at| at < i), "{parent} not before {n}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
