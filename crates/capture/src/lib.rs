//! libpcap live capture inside a network namespace.
