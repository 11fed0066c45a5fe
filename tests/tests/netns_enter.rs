//! Root tests for `netdiag-netns`: enter namespaces we create, by path, by name and by PID
//! (through a pidfd), and get clear errors for exited PIDs, missing paths and unprivileged
//! users. Every netns is `ndk-<test>` and is deleted on success and failure (Drop guards).
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netdiag::netns::{Error, NetNs};

/// `ip netns add ndk-<name>` with a veth pair `<dummy>`/`<dummy>p` inside it (this kernel
/// has no dummy driver); deleted with the namespace on drop.
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn new(name: &str, dummy: &str) -> TestNetns {
        let name = format!("ndk-{name}");
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ns = TestNetns { name };
        ip(&["netns", "add", &ns.name]);
        let peer = format!("{dummy}p");
        ip(&[
            "-n", &ns.name, "link", "add", dummy, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["-n", &ns.name, "link", "set", dummy, "up"]);
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A `sleep` process inside the namespace, killed and reaped on drop.
    fn sleeper(&self) -> Sleeper {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "sleep", "30"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let s = Sleeper(child);
        // `ip netns exec` setns()es then execs sleep: wait until it has.
        let deadline = Instant::now() + Duration::from_secs(5);
        let comm = format!("/proc/{}/comm", s.pid());
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(
                Instant::now() < deadline,
                "sleep did not start in {}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

struct Sleeper(Child);
impl Sleeper {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?} failed: {st}");
}

/// Interface names of the calling thread's namespace.
fn interfaces() -> String {
    std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()
}

#[test]
fn enter_by_path_and_name_sees_its_interfaces() {
    if !netdiag_tests::require_root("enter_by_path_and_name_sees_its_interfaces").unwrap() {
        return;
    }
    let ns = TestNetns::new("path", "ndk-path0");
    let by_path = NetNs::from_path(ns.path()).unwrap();
    assert!(by_path.run(interfaces).unwrap().contains("ndk-path0"));
    let by_name = NetNs::from_name("ndk-path").unwrap();
    assert!(by_name.run(interfaces).unwrap().contains("ndk-path0"));
    // the caller's thread never moved
    assert!(!interfaces().contains("ndk-path0"));
}

#[test]
fn enter_by_pid_sees_its_interfaces() {
    if !netdiag_tests::require_root("enter_by_pid_sees_its_interfaces").unwrap() {
        return;
    }
    let ns = TestNetns::new("pid", "ndk-pid0");
    let sleeper = ns.sleeper();
    let by_pid = NetNs::from_pid(sleeper.pid()).unwrap();
    let dev = by_pid.run(interfaces).unwrap();
    assert!(dev.contains("ndk-pid0"), "{dev}");
    // /proc/PID/ns/net is a path too
    let by_proc = NetNs::from_path(format!("/proc/{}/ns/net", sleeper.pid())).unwrap();
    assert!(by_proc.run(interfaces).unwrap().contains("ndk-pid0"));
    // same namespace by PID, by /proc path and by name; not the caller's
    let id = by_pid.id().unwrap();
    assert_eq!(id, by_proc.id().unwrap());
    assert_eq!(id, NetNs::from_name("ndk-pid").unwrap().id().unwrap());
    assert_ne!(id, NetNs::current().unwrap().id().unwrap());
    let ino = std::fs::metadata(ns.path()).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    assert_eq!(id.ino, ino.unwrap(), "{id}");
    assert!(!interfaces().contains("ndk-pid0"));
}

#[test]
fn spawn_runs_long_work_inside_and_reports_on_join() {
    if !netdiag_tests::require_root("spawn_runs_long_work_inside_and_reports_on_join").unwrap() {
        return;
    }
    let ns = TestNetns::new("spawn", "ndk-spawn0");
    let h = NetNs::from_path(ns.path())
        .unwrap()
        .spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            interfaces()
        })
        .unwrap();
    assert!(h.join().unwrap().contains("ndk-spawn0"));
}

#[test]
fn exited_pid_is_a_clear_error() {
    if !netdiag_tests::require_root("exited_pid_is_a_clear_error").unwrap() {
        return;
    }
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let err = NetNs::from_pid(pid).unwrap_err();
    assert!(
        matches!(err, Error::ProcessGone { pid: p, .. } if p == pid),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&pid.to_string())
            && msg.contains("pidfd_open")
            && msg.contains("no such process"),
        "{msg}"
    );
}

/// A process that has exited but was not yet reaped (a zombie) has no namespaces left:
/// entering it must say so rather than fail obscurely.
#[test]
fn zombie_pid_is_a_clear_error() {
    if !netdiag_tests::require_root("zombie_pid_is_a_clear_error").unwrap() {
        return;
    }
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    child.kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let stat = format!("/proc/{pid}/stat");
    while !std::fs::read_to_string(&stat)
        .unwrap_or_default()
        .contains(") Z ")
    {
        assert!(Instant::now() < deadline, "child did not become a zombie");
        std::thread::sleep(Duration::from_millis(10));
    }
    let result = NetNs::from_pid(pid).and_then(|ns| ns.run(interfaces));
    child.wait().unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(err, Error::ProcessGone { pid: p, .. } if p == pid),
        "{err:?}"
    );
}

/// The pidfd pins the process: once it has exited, entering fails even though the PID
/// number could now belong to someone else.
#[test]
fn pid_that_exits_after_open_is_never_entered() {
    if !netdiag_tests::require_root("pid_that_exits_after_open_is_never_entered").unwrap() {
        return;
    }
    let ns = TestNetns::new("gone", "ndk-gone0");
    let mut sleeper = ns.sleeper();
    let pid = sleeper.pid();
    let handle = NetNs::from_pid(pid).unwrap();
    sleeper.0.kill().unwrap();
    sleeper.0.wait().unwrap();
    let err = handle.run(interfaces).unwrap_err();
    assert!(
        matches!(err, Error::ProcessGone { pid: p, .. } if p == pid),
        "{err:?}"
    );
    assert!(err.to_string().contains("setns"), "{err}");
}

#[test]
fn missing_or_wrong_paths_are_clear_errors() {
    if !netdiag_tests::require_root("missing_or_wrong_paths_are_clear_errors").unwrap() {
        return;
    }
    let err = NetNs::from_path("/run/netns/ndk-does-not-exist").unwrap_err();
    assert!(matches!(err, Error::NoSuchNetns { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/run/netns/ndk-does-not-exist"),
        "{err}"
    );
    let err = NetNs::from_name("ndk-does-not-exist").unwrap_err();
    assert!(matches!(err, Error::NoSuchNetns { .. }), "{err:?}");
    let err = NetNs::from_path("/etc/hostname").unwrap_err();
    assert!(matches!(err, Error::NotANetns { .. }), "{err:?}");
    // a namespace file, but not a network namespace: setns(CLONE_NEWNET) refuses it
    let uts = NetNs::from_path("/proc/self/ns/uts").unwrap();
    let err = uts.run(|| ()).unwrap_err();
    assert!(matches!(err, Error::NotANetns { .. }), "{err:?}");
}

const CHILD_ENV: &str = "NDK_NETNS_UNPRIVILEGED_CHILD";

/// Re-runs this very test as user `nobody` (setpriv, no capabilities): entering by path
/// and by PID must fail with an error naming CAP_SYS_ADMIN.
#[test]
fn unprivileged_user_gets_error_naming_cap_sys_admin() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        // child, running as nobody
        let (path, pid) = spec.split_once(',').unwrap();
        for err in [
            NetNs::from_path(path).unwrap().run(interfaces).unwrap_err(),
            NetNs::from_pid(pid.parse().unwrap())
                .unwrap()
                .run(interfaces)
                .unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    Error::PermissionDenied {
                        capability: "CAP_SYS_ADMIN",
                        ..
                    }
                ),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("setns needs CAP_SYS_ADMIN"), "{msg}");
            println!("child saw: {msg}");
        }
        println!("NDK-CHILD-OK");
        return;
    }
    if !netdiag_tests::require_root("unprivileged_user_gets_error_naming_cap_sys_admin").unwrap() {
        return;
    }
    let ns = TestNetns::new("unpriv", "ndk-unpriv0");
    let sleeper = ns.sleeper();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&exe)
        .args([
            "--exact",
            "unprivileged_user_gets_error_naming_cap_sys_admin",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{},{}", ns.path(), sleeper.pid()))
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
