//! Root test for `ContainerRoot`: a real process whose root is a hostile tree
//! (`/etc/resolv.conf -> /etc/shadow`, absolute and `../..` relative) must not make us read
//! the host's file through `/proc/PID/root`.

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netdiag::netns::{ContainerRoot, Error, read_in_root};

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
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
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
