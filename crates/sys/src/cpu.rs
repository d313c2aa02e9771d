//! CPU facts: the XSAVE layout the kernel uses for signal frames and ptrace.

use core::arch::x86_64::{__cpuid_count, _xgetbv};

/// XSAVE feature bit of AMX tile data (needs a permission request, ARCH_REQ_XCOMP_PERM).
pub const XFEATURE_XTILEDATA: u32 = 18;

/// The size of the standard-format XSAVE area for the features enabled in XCR0.
pub fn xsave_size() -> u32 {
    __cpuid_count(0xd, 0).ebx
}

/// The features enabled in XCR0 (what user-space XSAVE may hold).
pub fn xcr0() -> u64 {
    if __cpuid_count(1, 0).ecx & (1 << 27) == 0 {
        return 0;
    }
    // SAFETY: OSXSAVE is set (checked above), so XGETBV is available at CPL 3.
    unsafe { _xgetbv(0) }
}

/// Offset and size of XSAVE component `feature` in the standard format.
pub fn xfeature_offset(feature: u32) -> (u32, u32) {
    let r = __cpuid_count(0xd, feature);
    (r.ebx, r.eax)
}
