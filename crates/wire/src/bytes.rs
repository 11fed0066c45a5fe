//! Checked big-endian reads used by every protocol module.
//!
//! Each helper takes a `Field` (a byte range) and returns `None`/`0` instead of
//! panicking when the range is out of bounds. Callers validate the header length once
//! (usually with `first_chunk`), after which the optimiser removes these checks.

/// A byte range inside a header, as in smoltcp's `field` modules.
pub(crate) type Field = core::ops::Range<usize>;

/// Big-endian `u16` at `f`, or 0 when out of bounds (callers check lengths first).
#[inline(always)]
pub(crate) fn be16(b: &[u8], f: Field) -> u16 {
    match b.get(f) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Big-endian `u32` at `f`, or 0 when out of bounds (callers check lengths first).
#[inline(always)]
pub(crate) fn be32(b: &[u8], f: Field) -> u32 {
    match b.get(f) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

/// The byte at `i`, or 0 when out of bounds (callers check lengths first).
#[inline(always)]
pub(crate) fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// `b[from..]`, or an empty slice when `from` is past the end.
#[inline(always)]
pub(crate) fn tail(b: &[u8], from: usize) -> &[u8] {
    b.get(from..).unwrap_or(&[])
}

/// `b[..len]`, or all of `b` when it is shorter.
#[inline(always)]
pub(crate) fn head(b: &[u8], len: usize) -> &[u8] {
    b.get(..len).unwrap_or(b)
}
