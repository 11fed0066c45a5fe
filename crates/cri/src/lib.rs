//! Resolve Kubernetes pods to PIDs through the CRI (containerd, CRI-O) and containerd's native API.
