//! Finding the runtime socket, the way crictl does.

use crate::Error;
use std::path::PathBuf;

/// Sockets kubelet's runtimes listen on, in the order they are tried: containerd (kubeadm,
/// EKS, GKE, AKS), k3s/RKE2, microk8s, k0s, CRI-O, cri-dockerd, then the `/var/run` spellings
/// (a symlink to `/run` on modern systems, a separate directory on some old ones).
pub const KNOWN_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/snap/microk8s/common/run/containerd.sock",
    "/run/k0s/containerd.sock",
    "/run/crio/crio.sock",
    "/run/cri-dockerd.sock",
    "/var/run/containerd/containerd.sock",
    "/var/run/k3s/containerd/containerd.sock",
    "/var/run/k0s/containerd.sock",
    "/var/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock",
];

/// The environment variable crictl and kubelet tooling honour.
pub const ENDPOINT_ENV: &str = "CONTAINER_RUNTIME_ENDPOINT";

/// Parses `unix:///path` or `/path` into a socket path.
pub fn parse_endpoint(endpoint: &str) -> Result<PathBuf, Error> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(Error::BadEndpoint {
            endpoint: endpoint.to_string(),
        });
    }
    Ok(PathBuf::from(path))
}

/// The socket to use: `explicit` (from `--runtime-endpoint`), else `$CONTAINER_RUNTIME_ENDPOINT`,
/// else the first of [`KNOWN_SOCKETS`] that exists.
pub fn detect(explicit: Option<&str>) -> Result<PathBuf, Error> {
    if let Some(e) = explicit {
        return parse_endpoint(e);
    }
    if let Ok(e) = std::env::var(ENDPOINT_ENV) {
        if !e.is_empty() {
            return parse_endpoint(&e);
        }
    }
    detect_in(KNOWN_SOCKETS)
}

fn detect_in(candidates: &[&str]) -> Result<PathBuf, Error> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| Error::NoSocket {
            tried: std::iter::once(format!("${ENDPOINT_ENV} (unset)"))
                .chain(candidates.iter().map(|s| s.to_string()))
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            parse_endpoint("unix:///run/x.sock").ok(),
            Some(PathBuf::from("/run/x.sock"))
        );
        assert_eq!(
            parse_endpoint("/run/x.sock").ok(),
            Some(PathBuf::from("/run/x.sock"))
        );
        assert!(matches!(
            parse_endpoint("tcp://1.2.3.4:10"),
            Err(Error::BadEndpoint { .. })
        ));
    }

    #[test]
    fn no_socket_lists_every_path_tried() {
        let err = detect_in(&["/nonexistent/ndr-a.sock", "/nonexistent/ndr-b.sock"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/ndr-a.sock"), "{err}");
        assert!(err.contains("/nonexistent/ndr-b.sock"), "{err}");
        assert!(err.contains("CONTAINER_RUNTIME_ENDPOINT"), "{err}");
        assert!(err.contains("--runtime-endpoint"), "{err}");
        assert!(err.contains("hostPath volume"), "{err}");
    }

    #[test]
    fn first_existing_socket_wins() {
        let dir = std::env::temp_dir();
        let d = dir.display().to_string();
        let got = detect_in(&["/nonexistent/ndr-a.sock", &d]).ok();
        assert_eq!(got, Some(dir));
    }
}
