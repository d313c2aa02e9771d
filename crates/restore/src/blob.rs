//! The embedded restorer blob (built by build.rs from crates/restorer/src/blob.rs).

mod meta {
    include!(concat!(env!("OUT_DIR"), "/restorer-blob.rs"));
}

static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/restorer-blob.bin"));

/// Bytes the blob takes in memory, rounded up to pages.
pub fn code_len() -> u64 {
    meta::MEM_SIZE.next_multiple_of(stasis_images::PAGE_SIZE)
}

/// The blob's bytes as they must be at `base`: relocated, with its zeroed data.
pub fn image_at(base: u64) -> Vec<u8> {
    let mut img = IMAGE.to_vec();
    img.resize(code_len() as usize, 0);
    for &(offset, addend) in meta::RELOCS {
        let value = base.wrapping_add_signed(addend);
        let off = offset as usize;
        img[off..off + 8].copy_from_slice(&value.to_le_bytes());
    }
    img
}

/// The entry point when loaded at `base`.
pub fn entry(base: u64) -> u64 {
    base + meta::ENTRY
}

/// Address of a `syscall` instruction in the blob loaded at `base`, for the injected
/// system call that unmaps the bootstrap region at the end.
pub fn syscall_insn(base: u64) -> Option<u64> {
    IMAGE
        .windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|off| base + off as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_is_sane() {
        assert!(code_len() >= IMAGE.len() as u64);
        assert!(meta::ENTRY < IMAGE.len() as u64);
        assert!(syscall_insn(0).is_some());
        let a = image_at(0x1000_0000);
        assert_eq!(a.len() as u64, code_len());
    }
}
