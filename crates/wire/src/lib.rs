//! Zero-copy, panic-free views over captured frames: link layers, IPv4/IPv6, TCP, UDP, ICMP and DNS.
