//! Enter Linux network namespaces safely (pidfd, dedicated thread) and read files inside a container root (openat2 RESOLVE_IN_ROOT).
