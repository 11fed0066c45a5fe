//! tcpdump inside a lab netns: started before a trigger, stopped after it.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `tcpdump -U -w <file>` inside one netns; stopped (SIGTERM) by [`Tcpdump::stop`] or drop.
#[derive(Debug)]
pub struct Tcpdump {
    child: Option<Child>,
    path: PathBuf,
}

impl Tcpdump {
    /// Starts `tcpdump -U --immediate-mode -n -i <iface> -c <max_packets> -w <path>` in `netns` (default
    /// snaplen, 262144) and waits until it is capturing ("listening on" on stderr).
    pub fn start(netns: &str, iface: &str, path: &Path, max_packets: u32) -> Result<Tcpdump> {
        let mut cmd = super::netns_exec(
            netns,
            &[
                "tcpdump",
                "-U",
                // Without it, packets wait in the TPACKET_V3 ring for up to a second and a
                // short trigger ends before tcpdump has written any of them.
                "--immediate-mode",
                "-n",
                "-Z",
                "root",
                "-i",
                iface,
                "-c",
                &max_packets.to_string(),
                "-w",
            ],
        );
        cmd.arg(path);
        let line = super::display(&cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start `{line}`"))?;
        let Some(stderr) = child.stderr.take() else {
            bail!("`{line}`: no stderr pipe");
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let ready = l.contains("listening on");
                said.push(l);
                if ready {
                    let _ = tx.send(Ok(()));
                }
            }
            let _ = tx.send(Err(said.join("\n")));
        });
        let mut dump = Tcpdump {
            child: Some(child),
            path: path.to_owned(),
        };
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(dump),
            Ok(Err(said)) => {
                dump.kill();
                bail!("`{line}` exited before capturing: {said}")
            }
            Err(_) => {
                dump.kill();
                bail!("`{line}` did not start capturing within 5 s")
            }
        }
    }

    /// Stops the capture (SIGTERM: tcpdump flushes and closes the file) and returns its path.
    pub fn stop(mut self) -> Result<PathBuf> {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                if child.try_wait().context("wait for tcpdump")?.is_some() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "tcpdump writing {} did not stop on SIGTERM",
                        self.path.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(self.path.clone())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        self.kill();
    }
}
