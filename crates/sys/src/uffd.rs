//! userfaultfd: filling anonymous memory with `UFFDIO_COPY`, which allocates each page and
//! copies into it in one step (no zeroing first, no fault per page) — the fastest way to
//! put a pages image into freshly mapped memory. (Lazy restore will use the same fd for
//! real page faults.)

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::mem::Reservation;
use crate::{Errno, Result};

const UFFD_API: u64 = 0xaa;
const UFFDIO_API: u64 = 0xc018_aa3f;
const UFFDIO_REGISTER: u64 = 0xc020_aa00;
const UFFDIO_COPY: u64 = 0xc028_aa03;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// A read-only private mapping of a file, the source of [`Userfault::copy`].
#[derive(Debug)]
pub struct ReadWindow {
    addr: u64,
    len: u64,
}

// SAFETY: the mapping is read-only and only read by the kernel; no Rust reference to it
// exists, so sharing between threads is sound.
unsafe impl Sync for ReadWindow {}
// SAFETY: as above.
unsafe impl Send for ReadWindow {}

impl ReadWindow {
    /// Maps the first `len` bytes of `file` read-only, populated from the page cache.
    pub fn new(file: BorrowedFd<'_>, len: u64) -> Result<ReadWindow> {
        if len == 0 {
            return Ok(ReadWindow { addr: 0, len: 0 });
        }
        // SAFETY: a fresh mapping at an address the kernel chooses replaces nothing.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(ReadWindow {
            addr: r as u64,
            len,
        })
    }

    /// Length of the window.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for ReadWindow {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: our own mapping; nothing refers to it.
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
        }
    }
}

/// A userfaultfd for filling memory inside a [`Reservation`].
#[derive(Debug)]
pub struct Userfault {
    fd: OwnedFd,
}

impl Userfault {
    /// Opens a userfaultfd and negotiates the API.
    pub fn new() -> Result<Userfault> {
        // SAFETY: userfaultfd takes flags and returns a new fd.
        let r = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
        let raw = Errno::result(r)? as i32;
        // SAFETY: the kernel just gave us this fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes the struct we own.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API as _, &raw mut api) };
        Errno::result(r.into())?;
        Ok(Userfault { fd })
    }

    /// Registers `[addr, addr + len)` of the reservation (private anonymous memory) for
    /// missing-page handling, which is what makes `UFFDIO_COPY` possible there.
    pub fn register(&self, zone: &Reservation, addr: u64, len: u64) -> Result<()> {
        zone.contains(addr, len)?;
        let mut reg = UffdioRegister {
            range: UffdioRange { start: addr, len },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes the struct we own; the range is in our
        // reservation.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_REGISTER as _, &raw mut reg) };
        Errno::result(r.into()).map(drop)
    }

    /// Copies `len` bytes from `src` at `src_offset` into registered memory at `dst`.
    pub fn copy(
        &self,
        zone: &Reservation,
        dst: u64,
        src: &ReadWindow,
        src_offset: u64,
        len: u64,
    ) -> Result<()> {
        zone.contains(dst, len)?;
        if src_offset.checked_add(len).is_none_or(|e| e > src.len) {
            return Err(Errno(libc::EINVAL));
        }
        let mut done = 0u64;
        while done < len {
            let mut c = UffdioCopy {
                dst: dst + done,
                src: src.addr + src_offset + done,
                len: len - done,
                mode: 0,
                copy: 0,
            };
            // SAFETY: the destination is in our reservation (checked), the source in our
            // read-only window (checked); the kernel does the copy.
            let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_COPY as _, &raw mut c) };
            if c.copy > 0 {
                done += c.copy as u64;
            }
            if r == -1 {
                let e = Errno::last();
                // EAGAIN: a partial copy; continue from where it stopped.
                if e.0 != libc::EAGAIN || c.copy <= 0 {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
