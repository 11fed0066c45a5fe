//! Streaming pcap and pcapng reader and writer with per-packet flush and packet comments.
