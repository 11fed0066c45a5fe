//! Shared corpus loading and digests for the benchmarks.
