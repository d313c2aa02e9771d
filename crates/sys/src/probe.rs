//! Probes of the kernel features stasis relies on, for `stasis check`.

use std::fs::File;
use std::os::fd::AsFd;

use crate::abi;
use crate::mem::{self, ScanQuery};
use crate::{Errno, Result, process};

/// PAGEMAP_SCAN on our own pagemap.
pub fn pagemap_scan() -> Result<()> {
    let f = File::open("/proc/self/pagemap")
        .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let probe = vec![1u8; 4096];
    let start = probe.as_ptr() as u64 & !(abi::PAGE_SIZE - 1);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    mem::pagemap_scan(
        f.as_fd(),
        start,
        start + abi::PAGE_SIZE,
        ScanQuery::PRIVATE_DATA,
        &mut buf,
        &mut out,
    )
}

/// pidfd_open and pidfd_getfd on ourselves.
pub fn pidfd() -> Result<()> {
    let me = process::pidfd_open(process::getpid())?;
    process::pidfd_getfd(&me, 0)
        .map(drop)
        .or_else(|e| if e.0 == libc::EBADF { Ok(()) } else { Err(e) })
}

/// PR_SET_MM_MAP (asks the kernel for the structure size it expects).
pub fn prctl_mm_map() -> Result<()> {
    let mut size = 0u32;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one u32 to `size`.
    let r = unsafe { libc::prctl(abi::PR_SET_MM, abi::PR_SET_MM_MAP_SIZE, &raw mut size, 0, 0) };
    Errno::result(r.into())?;
    if size as usize == size_of::<abi::PrctlMmMap>() {
        Ok(())
    } else {
        Err(Errno(libc::EINVAL))
    }
}

/// kcmp(KCMP_FILE) on two of our own fds.
pub fn kcmp() -> Result<()> {
    let me = process::getpid();
    process::kcmp(me, me, 0, 0, 0).map(drop)
}

/// userfaultfd (user-mode-only faults suffice for lazy restore of process memory).
pub fn userfaultfd() -> Result<()> {
    const UFFD_USER_MODE_ONLY: i64 = 1;
    // SAFETY: userfaultfd takes flags and returns an fd we close at once.
    let r = unsafe {
        libc::syscall(
            libc::SYS_userfaultfd,
            i64::from(libc::O_CLOEXEC) | UFFD_USER_MODE_ONLY,
        )
    };
    let fd = Errno::result(r)?;
    // SAFETY: the fd was just returned to us.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Whether the effective capability set has `cap`.
pub fn has_capability(cap: u32) -> bool {
    crate::proc::read_status(process::getpid()).is_ok_and(|s| s.cap_eff & (1 << cap) != 0)
}
