//! A small, panic-free reader of one fact in an ELF file: its program interpreter
//! (`PT_INTERP`, what `readelf -l` prints as "Requesting program interpreter").
//!
//! Works on the first bytes of the file only (the caller reads a bounded prefix): every
//! offset is checked against the slice, every addition is checked, and an interpreter
//! outside the prefix is reported as such rather than read.

/// What the program headers say about dynamic loading.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElfInterp {
    /// A dynamically linked program with this interpreter path
    /// (`/lib/ld-musl-x86_64.so.1`, `/lib64/ld-linux-x86-64.so.2`).
    Dynamic(String),
    /// No `PT_INTERP`: a statically linked program (or static-pie).
    Static,
}

/// Why the interpreter could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// The file does not start with `\x7fELF`.
    #[error("not an ELF file")]
    NotElf,
    /// Class or byte order is neither of the known values.
    #[error("unsupported ELF {what}: {value}")]
    Unsupported {
        /// `class` or `data encoding`.
        what: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A header or the interpreter string lies beyond the bytes available.
    #[error("ELF {what} at offset {offset} lies beyond the {available} bytes read")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Its offset in the file.
        offset: u64,
        /// Bytes available.
        available: usize,
    },
}

const PT_INTERP: u32 = 3;
/// Most program headers looked at (real programs have a dozen).
const MAX_PHDRS: u16 = 256;
/// Longest interpreter path accepted.
const MAX_INTERP: u64 = 4096;

fn u16_at(b: &[u8], off: usize, le: bool) -> Option<u16> {
    let a: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(if le {
        u16::from_le_bytes(a)
    } else {
        u16::from_be_bytes(a)
    })
}

fn u32_at(b: &[u8], off: usize, le: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    })
}

fn u64_at(b: &[u8], off: usize, le: bool) -> Option<u64> {
    let a: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(if le {
        u64::from_le_bytes(a)
    } else {
        u64::from_be_bytes(a)
    })
}

/// The program interpreter of the ELF file whose first bytes are `head`.
pub fn interpreter(head: &[u8]) -> Result<ElfInterp, ElfError> {
    if head.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError::NotElf);
    }
    let trunc = |what: &'static str, offset: u64| ElfError::Truncated {
        what,
        offset,
        available: head.len(),
    };
    let class = *head.get(4).ok_or(trunc("header", 4))?;
    let data = *head.get(5).ok_or(trunc("header", 5))?;
    let le = match data {
        1 => true,
        2 => false,
        v => {
            return Err(ElfError::Unsupported {
                what: "data encoding",
                value: v,
            });
        }
    };
    // (e_phoff offset, e_phentsize offset, e_phnum offset) and per-phdr
    // (p_offset offset, p_filesz offset), by class.
    let wide = match class {
        1 => false,
        2 => true,
        v => {
            return Err(ElfError::Unsupported {
                what: "class",
                value: v,
            });
        }
    };
    let (phoff, phentsize, phnum) = if wide {
        (
            u64_at(head, 0x20, le).ok_or(trunc("header", 0x20))?,
            u16_at(head, 0x36, le).ok_or(trunc("header", 0x36))?,
            u16_at(head, 0x38, le).ok_or(trunc("header", 0x38))?,
        )
    } else {
        (
            u64::from(u32_at(head, 0x1c, le).ok_or(trunc("header", 0x1c))?),
            u16_at(head, 0x2a, le).ok_or(trunc("header", 0x2a))?,
            u16_at(head, 0x2c, le).ok_or(trunc("header", 0x2c))?,
        )
    };
    let min_ent: u16 = if wide { 56 } else { 32 };
    if phnum == 0 {
        return Ok(ElfInterp::Static);
    }
    if phentsize < min_ent {
        return Err(trunc("program header entry", phoff));
    }
    for i in 0..phnum.min(MAX_PHDRS) {
        let at = u64::from(i)
            .checked_mul(u64::from(phentsize))
            .and_then(|x| x.checked_add(phoff))
            .ok_or(trunc("program header", phoff))?;
        let off = usize::try_from(at).map_err(|_| trunc("program header", at))?;
        let p_type = u32_at(head, off, le).ok_or(trunc("program header", at))?;
        if p_type != PT_INTERP {
            continue;
        }
        let (p_offset, p_filesz) = if wide {
            (
                off.checked_add(8).and_then(|o| u64_at(head, o, le)),
                off.checked_add(32).and_then(|o| u64_at(head, o, le)),
            )
        } else {
            (
                off.checked_add(4)
                    .and_then(|o| u32_at(head, o, le))
                    .map(u64::from),
                off.checked_add(16)
                    .and_then(|o| u32_at(head, o, le))
                    .map(u64::from),
            )
        };
        let p_offset = p_offset.ok_or(trunc("PT_INTERP header", at))?;
        let p_filesz = p_filesz.ok_or(trunc("PT_INTERP header", at))?;
        if p_filesz > MAX_INTERP {
            return Err(trunc("interpreter path", p_offset));
        }
        let start = usize::try_from(p_offset).map_err(|_| trunc("interpreter path", p_offset))?;
        let len = usize::try_from(p_filesz).map_err(|_| trunc("interpreter path", p_offset))?;
        let bytes = start
            .checked_add(len)
            .and_then(|end| head.get(start..end))
            .ok_or(trunc("interpreter path", p_offset))?;
        let path = bytes.split(|b| *b == 0).next().unwrap_or(&[]);
        return Ok(ElfInterp::Dynamic(
            String::from_utf8_lossy(path).into_owned(),
        ));
    }
    Ok(ElfInterp::Static)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_test_binary_names_its_interpreter() {
        // This test binary is a real ELF built by cargo for this machine (glibc, dynamic).
        let head = std::fs::read("/proc/self/exe").unwrap();
        let head = &head[..head.len().min(64 * 1024)];
        match interpreter(head).unwrap() {
            ElfInterp::Dynamic(p) => assert!(p.contains("ld-"), "{p}"),
            ElfInterp::Static => panic!("cargo test binaries are dynamic here"),
        }
    }

    #[test]
    fn garbage_and_cut_files_are_errors_not_panics() {
        assert_eq!(interpreter(b""), Err(ElfError::NotElf));
        assert_eq!(interpreter(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        let head = std::fs::read("/proc/self/exe").unwrap();
        // Every prefix of a real header: never a panic.
        for n in 0..head.len().min(2048) {
            let _ = interpreter(&head[..n]);
        }
        // A header pointing far away.
        let mut h = head[..64].to_vec();
        h[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(interpreter(&h).is_err());
        // Bytes flipped anywhere in the first 256: never a panic.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut h = head[..head.len().min(4096)].to_vec();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng % 256) as usize;
                h[i] = (rng >> 32) as u8;
            }
            let _ = interpreter(&h);
        }
    }

    #[test]
    fn no_program_headers_is_static() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        assert_eq!(interpreter(&h), Ok(ElfInterp::Static));
    }
}
