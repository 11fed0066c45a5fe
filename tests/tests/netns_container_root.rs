//! Root test for `ContainerRoot`: a real process whose root is a hostile tree
//! (`/etc/resolv.conf -> /etc/shadow`, absolute and `../..` relative) must not make us read
//! the host's file through `/proc/PID/root`.
// Test helpers fail the test the way tests do: by panicking with a message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netdiag::netns::{ContainerRoot, Error, read_in_root};

/// Puts the static busybox at `dst`: a hard link when possible. A copy is a file we held
/// open for writing, and a child forked meanwhile by another test thread inherits that
/// descriptor until it execs, so exec'ing the copy can fail with ETXTBSY ("Text file
/// busy"); a link never had a writer.
fn place_busybox(dst: &Path) {
    if std::fs::hard_link("/bin/busybox", dst).is_err() {
        std::fs::copy("/bin/busybox", dst).unwrap();
    }
}

/// A temp tree with a static busybox, removed on drop.
struct Tree(PathBuf);
impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `chroot <tree> /bin/busybox sleep 30`, killed and reaped on drop.
struct Jailed(Child);
impl Drop for Jailed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hostile_tree(name: &str, link_target: &str) -> (Tree, Jailed) {
    let dir = std::env::temp_dir().join(format!("ndk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tree = Tree(dir.clone());
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    place_busybox(&dir.join("bin/busybox"));
    symlink(link_target, dir.join("etc/resolv.conf")).unwrap();
    let child = Command::new("chroot")
        .arg(&dir)
        .args(["/bin/busybox", "sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let jailed = Jailed(child);
    // wait until chroot has exec'd busybox (its root is then the tree)
    let pid = jailed.0.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/root")).ok() != Some(dir.clone()) {
        assert!(Instant::now() < deadline, "chroot did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (tree, jailed)
}

fn check_hostile(name: &str, link_target: &str) {
    let (tree, jailed) = hostile_tree(name, link_target);
    let pid = jailed.0.id() as i32;
    let host_shadow = std::fs::read("/etc/shadow").unwrap();

    // The hazard is real: the naive path resolves the link against OUR root.
    let naive = std::fs::read(format!("/proc/{pid}/root/etc/resolv.conf")).unwrap();
    assert!(
        naive == host_shadow,
        "naive read did not reach the host file; test is moot"
    );

    // Safe read: resolved inside the container root, where etc/shadow does not exist.
    match read_in_root(pid, "/etc/resolv.conf", 64 * 1024) {
        Err(Error::ReadInRoot { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{source}")
        }
        Ok(bytes) => panic!(
            "read {} bytes through a hostile symlink (host file leaked: {})",
            bytes.len(),
            bytes == host_shadow
        ),
        Err(e) => panic!("unexpected error {e}"),
    }

    // With the container's own etc/shadow present, that is what we read.
    std::fs::write(tree.0.join("etc/shadow"), "container's own\n").unwrap();
    let root = ContainerRoot::from_pid(pid).unwrap();
    assert_eq!(
        root.read_to_string("/etc/resolv.conf", 4096).unwrap(),
        "container's own\n"
    );
}

#[test]
fn hostile_absolute_symlink_to_etc_shadow_is_not_followed_to_the_host() {
    if !netdiag_tests::require_root("hostile_absolute_symlink_to_etc_shadow").unwrap() {
        return;
    }
    check_hostile("root-abs", "/etc/shadow");
}

#[test]
fn hostile_relative_symlink_to_etc_shadow_is_not_followed_to_the_host() {
    if !netdiag_tests::require_root("hostile_relative_symlink_to_etc_shadow").unwrap() {
        return;
    }
    check_hostile("root-rel", "../../../../../../../etc/shadow");
}

#[test]
fn exited_process_root_is_a_clear_error() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let err = ContainerRoot::from_pid(pid).unwrap_err();
    assert!(matches!(err, Error::ProcessGone { .. }), "{err:?}");
}

/// Runtimes bind-mount `/etc/resolv.conf` into the container's own mount namespace. The
/// read must see the container's view (the bind mount), not the file underneath that the
/// host sees at the same path.
#[test]
fn reads_the_containers_mount_namespace_view() {
    if !netdiag_tests::require_root("reads_the_containers_mount_namespace_view").unwrap() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ndk-root-mnt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tree = Tree(dir.clone());
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    place_busybox(&dir.join("bin/busybox"));
    std::fs::write(dir.join("etc/resolv.conf"), "underneath\n").unwrap();
    let source = std::env::temp_dir().join(format!("ndk-resolv-{}", std::process::id()));
    std::fs::write(&source, "nameserver 10.96.0.10\noptions ndots:5\n").unwrap();
    let script = format!(
        "mount --bind {} {}/etc/resolv.conf && exec chroot {} /bin/busybox sleep 30",
        source.display(),
        dir.display(),
        dir.display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let jailed = Jailed(child);
    let pid = jailed.0.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        != "busybox"
    {
        assert!(Instant::now() < deadline, "unshare+chroot did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = ContainerRoot::from_pid(pid as i32)
        .unwrap()
        .read_to_string("/etc/resolv.conf", 4096);
    let host_view = std::fs::read_to_string(dir.join("etc/resolv.conf"));
    drop(jailed);
    let _ = std::fs::remove_file(&source);
    drop(tree);
    assert_eq!(
        host_view.unwrap(),
        "underneath\n",
        "the bind mount leaked to the host"
    );
    assert_eq!(got.unwrap(), "nameserver 10.96.0.10\noptions ndots:5\n");
}

/// Starts `unshare --mount` with `script` (which ends by exec'ing busybox inside `dir`),
/// and waits until busybox runs.
fn start_in_private_mounts(script: &str, what: &str) -> Jailed {
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let jailed = Jailed(child);
    let pid = jailed.0.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        != "busybox"
    {
        assert!(Instant::now() < deadline, "{what}: did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    jailed
}

/// A process that exits while we hold its root takes its mount namespace along: the
/// runtime's bind mount on `/etc/resolv.conf` is torn down, and the same path, resolved
/// through the root we still hold, names the file underneath, which is the node's file at
/// that path. That must never be read as the pod's resolv.conf: the read is refused with an
/// error that says the process exited meanwhile.
#[test]
fn root_of_a_process_that_exits_mid_read_never_yields_the_file_underneath() {
    if !netdiag_tests::require_root("root_of_a_process_that_exits_mid_read").unwrap() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("rely-root-exit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tree = Tree(dir.clone());
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    place_busybox(&dir.join("bin/busybox"));
    std::fs::write(
        dir.join("etc/resolv.conf"),
        "nameserver 192.0.2.53 # node's\n",
    )
    .unwrap();
    let source = std::env::temp_dir().join(format!("rely-resolv-exit-{}", std::process::id()));
    std::fs::write(&source, "nameserver 10.96.0.10\noptions ndots:5\n").unwrap();
    let script = format!(
        "mount --bind {} {}/etc/resolv.conf && exec chroot {} /bin/busybox sleep 30",
        source.display(),
        dir.display(),
        dir.display()
    );
    let mut jailed = start_in_private_mounts(&script, "unshare+bind+chroot");
    let pid = jailed.0.id() as i32;

    let root = ContainerRoot::from_pid(pid).unwrap();
    // While the process lives: the container's view.
    assert_eq!(
        root.read_to_string("/etc/resolv.conf", 4096).unwrap(),
        "nameserver 10.96.0.10\noptions ndots:5\n"
    );
    // A plain handle on the same root, to show the hazard once the process is gone.
    let held = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(format!("/proc/{pid}/root"))
            .unwrap()
    };
    jailed.0.kill().unwrap();
    jailed.0.wait().unwrap();

    use std::os::fd::AsRawFd;
    let naive = std::fs::read_to_string(format!(
        "/proc/self/fd/{}/etc/resolv.conf",
        held.as_raw_fd()
    ));
    let got = root.read_to_string("/etc/resolv.conf", 4096);
    drop(held);
    let _ = std::fs::remove_file(&source);
    drop(tree);
    // The hazard is real: through a root held across the exit, the path now names the file
    // underneath the (gone) bind mount.
    assert_eq!(
        naive.unwrap(),
        "nameserver 192.0.2.53 # node's\n",
        "the held root still shows the bind mount after the exit; test is moot"
    );
    match got {
        Err(e @ Error::ExitedDuringRead { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("PID {pid} exited while")) && text.contains("resolv.conf"),
                "{text}"
            );
        }
        Ok(text) => panic!("read {text:?} through the root of an exited process"),
        Err(e) => panic!("expected ExitedDuringRead, got {e:?}"),
    }
}

/// The container's `/etc/resolv.conf` is a FIFO that the container itself holds open (so
/// opening it would not block) and lets go of when it exits a moment later: a read that
/// waited for data would hang until then, and then read an empty "resolv.conf". We must
/// refuse at once, naming the FIFO, through the same path the live commands use
/// (`Target::resolv_conf`, whose error becomes their warning).
#[test]
fn fifo_resolv_conf_held_by_a_process_that_exits_is_refused_at_once() {
    if !netdiag_tests::require_root("fifo_resolv_conf_held_by_a_process_that_exits").unwrap() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("rely-root-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tree = Tree(dir.clone());
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    place_busybox(&dir.join("bin/busybox"));
    let fifo = dir.join("etc/resolv.conf");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // Holds the FIFO open read-write (a writer: opening it never blocks, reading it waits
    // for data) for 3 s, then exits.
    let script = format!(
        "exec chroot {} /bin/busybox sh -c 'exec 3<>/etc/resolv.conf; exec /bin/busybox sleep 3'",
        dir.display()
    );
    let jailed = start_in_private_mounts(&script, "chroot sh holding a FIFO");
    let pid = jailed.0.id();
    // busybox sleep has the FIFO open as fd 3 once it runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_link(format!("/proc/{pid}/fd/3"))
        .is_ok_and(|l| l.to_string_lossy().contains("resolv.conf"))
    {
        assert!(Instant::now() < deadline, "the FIFO was never opened");
        std::thread::sleep(Duration::from_millis(10));
    }

    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let target = netdiag::Target::resolve(
            &netdiag::TargetSpec::Pid(pid),
            &netdiag::RuntimeOptions::default(),
        );
        let _ = tx.send(target.map(|t| t.resolv_conf()));
    });
    let outcome = rx.recv_timeout(Duration::from_secs(10));
    let took = started.elapsed();
    // Unblock a reader stuck on the FIFO (the test fails below either way).
    if outcome.is_err() {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
    }
    drop(jailed);
    drop(tree);
    let result = outcome
        .unwrap_or_else(|_| panic!("still blocked on the FIFO after {took:?}"))
        .unwrap_or_else(|e| panic!("resolving pid {pid}: {e}"));
    match result {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("a FIFO") && text.contains("etc/resolv.conf"),
                "{text}"
            );
        }
        Ok(text) => panic!("read {text:?} from a FIFO after {took:?}"),
    }
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: waited for the FIFO (its holder exits after 3 s)"
    );
}
