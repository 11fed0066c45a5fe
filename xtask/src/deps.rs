//! Debian packages the build and the tests need (../shared/LAB.md).

use crate::sh;
use anyhow::{Result, bail};
use std::process::Command;

/// Packages, with the command or file that proves each is installed.
pub(crate) const PACKAGES: &[(&str, &str)] = &[
    ("libpcap-dev", "/usr/include/pcap.h"),
    ("protobuf-compiler", "/usr/bin/protoc"),
    ("tshark", "/usr/bin/tshark"),
    ("tcpdump", "/usr/bin/tcpdump"),
    ("iptables", "/usr/sbin/iptables"),
    ("conntrack", "/usr/sbin/conntrack"),
    ("nftables", "/usr/sbin/nft"),
    ("dnsmasq-base", "/usr/sbin/dnsmasq"),
    ("containerd", "/usr/bin/containerd"),
    ("runc", "/usr/sbin/runc"),
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("busybox-static", "/bin/busybox"),
    ("ethtool", "/usr/sbin/ethtool"),
    ("iproute2", "/usr/bin/ip"),
    // sysctl, ps, pkill: the lab sets ip_forward and friends in its namespaces. Debian
    // installs procps by default, but a minimal system (debootstrap minbase, container
    // images) lacks it: `cargo xtask fresh ci` failed every lab test without it.
    ("procps", "/usr/sbin/sysctl"),
    ("netsniff-ng", "/usr/sbin/trafgen"),
    ("time", "/usr/bin/time"),
    // `cargo xtask image`: strip the release binary, check the OCI archive; pip for
    // kubernetes-validate on deploy/.
    ("binutils", "/usr/bin/strip"),
    ("skopeo", "/usr/bin/skopeo"),
    ("python3-pip", "/usr/bin/pip3"),
    // musl-gcc builds the musl resolver probe of the resolver lab tests (tests/probe/).
    ("musl-tools", "/usr/bin/musl-gcc"),
    // A real Prometheus server scrapes `watch --metrics` in the watch lab test.
    ("prometheus", "/usr/bin/prometheus"),
    // libfuzzer-sys compiles libFuzzer's C++ for the fuzz targets (`cargo xtask fuzz`, the
    // smoke runs of `cargo xtask ci`): a machine with only gcc has no `c++`.
    ("g++", "/usr/bin/g++"),
];

/// Installs whatever is missing, `apt-get update` first, non-interactively.
pub(crate) fn install() -> Result<()> {
    if ensure(PACKAGES)? == 0 {
        eprintln!("xtask: Debian packages: all present");
    }
    Ok(())
}

/// Installs whichever of `packages` (name, the file that proves it installed) is missing,
/// `apt-get update` first, non-interactively (root). Returns how many it installed.
pub(crate) fn ensure(packages: &[(&str, &str)]) -> Result<usize> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, probe)| !std::path::Path::new(probe).exists())
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    if !sh::is_root() {
        bail!(
            "missing Debian packages {}; run `cargo xtask deps` as root or install them with apt-get",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    sh::run(
        Command::new("apt-get")
            .arg("update")
            .arg("-qq")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(missing.len())
}
