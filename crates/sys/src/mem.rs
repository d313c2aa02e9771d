//! Memory: other processes' memory (`process_vm_readv`, `PAGEMAP_SCAN`) and our own
//! mappings (`mmap`, `mremap`, `madvise`).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::abi::{self, PageRegion, PmScanArg};
use crate::{Errno, Pid, Result};

/// Plain data that any byte pattern is a valid value of, so it can be read from another
/// process's memory or a file.
///
/// # Safety
/// Implementors must be `repr(C)` (or primitive) with no padding-dependent invariants and
/// no pointers or references: every bit pattern must be a valid value.
pub unsafe trait Pod: Copy + 'static {}

// SAFETY: integers accept every bit pattern.
unsafe impl Pod for u8 {}
// SAFETY: integers accept every bit pattern.
unsafe impl Pod for u32 {}
// SAFETY: integers accept every bit pattern.
unsafe impl Pod for u64 {}
// SAFETY: integers accept every bit pattern.
unsafe impl Pod for i32 {}
// SAFETY: integers accept every bit pattern.
unsafe impl Pod for i64 {}
// SAFETY: arrays of integers accept every bit pattern.
unsafe impl Pod for [u8; 128] {}
// SAFETY: arrays of integers accept every bit pattern.
unsafe impl Pod for [i64; 2] {}
// SAFETY: repr(C) struct of u64 fields only.
unsafe impl Pod for abi::KernelSigaction {}
// SAFETY: repr(C) struct of integer fields only.
unsafe impl Pod for abi::StackT {}
// SAFETY: repr(C) struct of integer fields only.
unsafe impl Pod for abi::Itimerval {}
// SAFETY: repr(C) struct of integer fields only.
unsafe impl Pod for abi::UserRegs {}
// SAFETY: repr(C) struct of integer fields only.
unsafe impl Pod for abi::Itimerspec {}

/// The bytes of a plain-data value.
pub fn bytes_of<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: T is Pod (no padding with invariants, no pointers); the slice covers exactly
    // the value's storage and borrows it.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// A plain-data value from bytes (which must be at least `size_of::<T>()` long).
pub fn from_bytes<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is Pod, so any bytes form a valid T; the length was checked above and
    // read_unaligned copes with the buffer's alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Reads `local.len()` bytes at `remote` in process `pid` into `local`.
/// Returns the number of bytes read (short at the first unreadable page).
pub fn read_process(pid: Pid, remote: u64, local: &mut [u8]) -> Result<usize> {
    let liov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: local.len(),
    };
    let riov = libc::iovec {
        iov_base: remote as *mut libc::c_void,
        iov_len: local.len(),
    };
    // SAFETY: the local iovec covers `local`, which we borrow mutably; the remote iovec is
    // only interpreted in the other process.
    let r = unsafe { libc::process_vm_readv(pid, &liov, 1, &riov, 1, 0) };
    Errno::result(r as libc::c_long).map(|n| n as usize)
}

/// Reads a plain-data value at `remote` in process `pid`.
pub fn read_remote<T: Pod>(pid: Pid, remote: u64) -> Result<T> {
    let mut buf = vec![0u8; size_of::<T>()];
    let n = read_process(pid, remote, &mut buf)?;
    if n != buf.len() {
        return Err(Errno(libc::EFAULT));
    }
    from_bytes(&buf).ok_or(Errno(libc::EFAULT))
}

/// Writes `data` at `remote` in process `pid`.
pub fn write_process(pid: Pid, remote: u64, data: &[u8]) -> Result<()> {
    let liov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    let riov = libc::iovec {
        iov_base: remote as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: the local iovec covers `data`, which is only read; the remote iovec is only
    // interpreted in the other process.
    let r = unsafe { libc::process_vm_writev(pid, &liov, 1, &riov, 1, 0) };
    let n = Errno::result(r as libc::c_long)? as usize;
    if n != data.len() {
        Err(Errno(libc::EFAULT))
    } else {
        Ok(())
    }
}

/// One remote range to copy into a local buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteRange {
    /// Start address in the other process.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The most iovecs one `process_vm_readv` call takes (UIO_MAXIOV).
pub const IOV_MAX: usize = 1024;

/// Copies the remote `ranges` (at most [`IOV_MAX`]) of process `pid` back to back into
/// `local`, in one system call. Returns the bytes copied, which is short if a page went
/// away under us.
pub fn read_process_ranges(pid: Pid, ranges: &[RemoteRange], local: &mut [u8]) -> Result<usize> {
    let total: u64 = ranges.iter().map(|r| r.len).sum();
    if ranges.len() > IOV_MAX || total > local.len() as u64 {
        return Err(Errno(libc::EINVAL));
    }
    let riov: Vec<libc::iovec> = ranges
        .iter()
        .map(|r| libc::iovec {
            iov_base: r.addr as *mut libc::c_void,
            iov_len: r.len as usize,
        })
        .collect();
    let liov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: total as usize,
    };
    // SAFETY: the local iovec covers the first `total` bytes of `local` (checked above);
    // the remote iovecs are only interpreted in the other process.
    let r = unsafe { libc::process_vm_readv(pid, &liov, 1, riov.as_ptr(), riov.len() as _, 0) };
    Errno::result(r as libc::c_long).map(|n| n as usize)
}

/// A PAGEMAP_SCAN query: which pages count, which categories to report.
#[derive(Clone, Copy, Debug)]
pub struct ScanQuery {
    /// Categories whose sense is inverted before matching (to require "not X").
    pub inverted: u64,
    /// Categories that must all match.
    pub required: u64,
    /// Categories of which at least one must match (0: no such condition).
    pub any_of: u64,
    /// Categories to report for each run.
    pub report: u64,
}

impl ScanQuery {
    /// Pages that hold data of their own in a private mapping: present or swapped, not
    /// the shared zero page, and not an unmodified page of a mapped file.
    pub const PRIVATE_DATA: ScanQuery = ScanQuery {
        inverted: abi::PAGE_IS_PFNZERO | abi::PAGE_IS_FILE,
        required: abi::PAGE_IS_PFNZERO | abi::PAGE_IS_FILE,
        any_of: abi::PAGE_IS_PRESENT | abi::PAGE_IS_SWAPPED,
        report: abi::PAGE_IS_PRESENT | abi::PAGE_IS_SWAPPED | abi::PAGE_IS_HUGE,
    };
}

/// Runs PAGEMAP_SCAN over `[start, end)` on an open `/proc/PID/pagemap`, appending the
/// matching runs to `out`. Uses `buf` as the kernel's output vector.
pub fn pagemap_scan(
    pagemap: BorrowedFd<'_>,
    start: u64,
    end: u64,
    query: ScanQuery,
    buf: &mut Vec<PageRegion>,
    out: &mut Vec<PageRegion>,
) -> Result<()> {
    if buf.is_empty() {
        buf.resize(1024, PageRegion::default());
    }
    let mut pos = start;
    while pos < end {
        let mut arg = PmScanArg {
            size: size_of::<PmScanArg>() as u64,
            flags: 0,
            start: pos,
            end,
            walk_end: 0,
            vec: buf.as_mut_ptr() as u64,
            vec_len: buf.len() as u64,
            max_pages: 0,
            category_inverted: query.inverted,
            category_mask: query.required,
            category_anyof_mask: query.any_of,
            return_mask: query.report,
        };
        // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points at `buf`, with `vec_len`
        // entries of page_region that the kernel may fill.
        let n = unsafe { libc::ioctl(pagemap.as_raw_fd(), abi::PAGEMAP_SCAN as _, &raw mut arg) };
        let n = Errno::result(libc::c_long::from(n))? as usize;
        let n = n.min(buf.len());
        // walk_end is only trustworthy when the output vector filled up: on 6.18 a scan
        // that completes can report a walk_end short of regions it returned (observed on
        // a 1 GiB range). A vector that did not fill means the range is done.
        let last_end = buf[..n].last().map_or(pos, |r| r.end);
        for r in &buf[..n] {
            // Never report a page twice or go backwards.
            let start = match out.last() {
                Some(prev) if r.start < prev.end => prev.end,
                _ => r.start,
            };
            if start < r.end {
                out.push(PageRegion { start, ..*r });
            }
        }
        if n < buf.len() {
            break;
        }
        let next = arg.walk_end.max(last_end);
        if next <= pos {
            break;
        }
        pos = next;
    }
    Ok(())
}

/// Reads `len` bytes of `fd` at `offset` into our memory at `addr`, looping over short
/// reads; a file that ends early is `EIO`.
///
/// # Safety
/// `[addr, addr + len)` must be memory of ours that no Rust reference points into. It
/// need not be mapped: the kernel reports a fault as `EFAULT`.
unsafe fn pread_exact(fd: BorrowedFd<'_>, addr: u64, len: u64, offset: u64) -> Result<()> {
    let mut done = 0u64;
    while done < len {
        // SAFETY: the destination lies within the range the caller vouches for.
        let r = unsafe {
            libc::pread64(
                fd.as_raw_fd(),
                (addr + done) as *mut libc::c_void,
                (len - done).min(1 << 30) as usize,
                (offset + done) as i64,
            )
        };
        match Errno::result(r as libc::c_long) {
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => done += n as u64,
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A range of our own address space reserved with `MAP_FIXED_NOREPLACE`, inside which the
/// restore child maps and fills memory. Nothing else in the process refers to it, so
/// mapping over parts of it, writing into it and reading files into it are safe; every
/// operation is bounds-checked against the reservation, and the kernel checks that the
/// memory is mapped (errors, not faults).
///
/// The reservation is never unmapped by Rust: the restorer blob moves its pieces into
/// place and unmaps the rest.
#[derive(Debug)]
pub struct Reservation {
    start: u64,
    len: u64,
}

impl Reservation {
    /// Reserves `[start, start + len)` as inaccessible memory; fails with EEXIST if any of
    /// it is in use.
    pub fn new(start: u64, len: u64) -> Result<Reservation> {
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | libc::MAP_NORESERVE
            | libc::MAP_FIXED_NOREPLACE;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let r = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len as usize,
                libc::PROT_NONE,
                flags,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        if r as u64 != start {
            // Old kernels treat NOREPLACE as a hint; undo and report.
            // SAFETY: the mapping was just created by us and nothing refers to it.
            unsafe { libc::munmap(r, len as usize) };
            return Err(Errno(libc::EEXIST));
        }
        Ok(Reservation { start, len })
    }

    /// First address.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    fn check(&self, addr: u64, len: u64) -> Result<()> {
        self.contains(addr, len)
    }

    /// EINVAL unless `[addr, addr + len)` lies inside the reservation.
    pub fn contains(&self, addr: u64, len: u64) -> Result<()> {
        if addr < self.start || addr.checked_add(len).is_none_or(|e| e > self.end()) {
            return Err(Errno(libc::EINVAL));
        }
        Ok(())
    }

    /// Maps `len` bytes at `addr` inside the reservation (MAP_FIXED is added).
    pub fn map(
        &self,
        addr: u64,
        len: u64,
        prot: i32,
        flags: i32,
        fd: Option<BorrowedFd<'_>>,
        offset: u64,
    ) -> Result<()> {
        self.check(addr, len)?;
        let raw_fd = fd.map_or(-1, |f| f.as_raw_fd());
        // SAFETY: the range lies inside our reservation, which no Rust object uses.
        let r = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len as usize,
                prot,
                flags | libc::MAP_FIXED,
                raw_fd,
                offset as i64,
            )
        };
        if r == libc::MAP_FAILED {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }

    /// Attaches SysV shared memory segment `shmid` at `addr` inside the reservation
    /// (`SHM_REMAP` replaces the reservation there); the segment spans `len` bytes.
    pub fn attach_shm(&self, addr: u64, len: u64, shmid: i32, read_only: bool) -> Result<()> {
        self.check(addr, len)?;
        let flags = libc::SHM_REMAP | if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: the range lies inside our reservation, which no Rust object uses.
        let r = unsafe { libc::shmat(shmid, addr as *const libc::c_void, flags) };
        if r as isize == -1 {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }

    /// Changes protection inside the reservation.
    pub fn protect(&self, addr: u64, len: u64, prot: i32) -> Result<()> {
        self.check(addr, len)?;
        // SAFETY: inside our reservation, which no Rust object uses.
        let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len as usize, prot) };
        Errno::result(r.into()).map(drop)
    }

    /// Gives advice about memory inside the reservation.
    pub fn advise(&self, addr: u64, len: u64, advice: i32) -> Result<()> {
        self.check(addr, len)?;
        // SAFETY: inside our reservation, which no Rust object uses.
        let r = unsafe { libc::madvise(addr as *mut libc::c_void, len as usize, advice) };
        Errno::result(r.into()).map(drop)
    }

    /// Copies `data` to `addr` inside the reservation. The kernel copies (via
    /// process_vm_writev on ourselves), so unmapped or read-only memory is an error.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.check(addr, data.len() as u64)?;
        write_process(crate::process::getpid(), addr, data)
    }

    /// Reads `len` bytes of `fd` at `offset` into `addr` inside the reservation.
    pub fn read_file(&self, fd: BorrowedFd<'_>, addr: u64, len: u64, offset: u64) -> Result<()> {
        self.check(addr, len)?;
        // SAFETY: the destination lies inside our reservation, which no Rust object uses.
        unsafe { pread_exact(fd, addr, len, offset) }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    /// PAGEMAP_SCAN over a large range, resumed after full output vectors, must report
    /// every page once and in order (the dump's pagemap depends on it). A large range is
    /// what exposed the kernel reporting a walk_end short of the regions it returned.
    #[test]
    fn pagemap_scan_reports_every_page_once() {
        for (len, every, buf_len) in [(16u64 << 20, 3u64, 10usize), (512 << 20, 97, 1024)] {
            let area = Reservation::new(0x5f00_0000_0000, len).unwrap();
            let rw = libc::PROT_READ | libc::PROT_WRITE;
            area.map(
                area.start(),
                len,
                rw,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                None,
                0,
            )
            .unwrap();
            // Data pages, never-touched holes (also whole MiBs), and pages only read (the
            // shared zero page), like the memory fixture.
            let mut expected = 0u64;
            let mut sink = [0u8; 1];
            for page in 0..len / 4096 {
                let addr = area.start() + page * 4096;
                if page % every == 0 || (page / 256) % 16 == 11 {
                    continue;
                }
                if page % 97 == 50 {
                    read_process(crate::process::getpid(), addr, &mut sink).unwrap();
                    continue;
                }
                area.write(addr, &[1]).unwrap();
                expected += 1;
            }
            let pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
            let mut buf = vec![PageRegion::default(); buf_len];
            let mut out = Vec::new();
            let q = ScanQuery::PRIVATE_DATA;
            pagemap_scan(
                pagemap.as_fd(),
                area.start(),
                area.end(),
                q,
                &mut buf,
                &mut out,
            )
            .unwrap();
            let mut prev_end = 0;
            let mut pages = 0;
            for r in &out {
                assert!(
                    r.start >= prev_end,
                    "region {r:x?} repeats (prev end {prev_end:#x})"
                );
                prev_end = r.end;
                pages += (r.end - r.start) / 4096;
            }
            assert_eq!(pages, expected);
            // SAFETY: the test owns the area and holds no references into it.
            unsafe { libc::munmap(area.start() as *mut libc::c_void, len as usize) };
        }
    }
}

/// A shared, writable mapping of a file that only the kernel writes into: the pages of an
/// image land in it straight from another process (`process_vm_readv`) or a file
/// (`pread`), one copy into the page cache instead of two. No Rust reference to the
/// mapped memory is ever made, so it may be written from several threads at once; every
/// write is bounds-checked and done by the kernel (a fault is an error, not a signal).
#[derive(Debug)]
pub struct FileWindow {
    addr: u64,
    len: u64,
}

// SAFETY: the mapping is only written by the kernel on behalf of system calls with
// bounds-checked, caller-chosen ranges; no Rust data lives in it, so sharing the handle
// between threads cannot create aliasing Rust references.
unsafe impl Sync for FileWindow {}
// SAFETY: as above; the mapping belongs to the process, not a thread.
unsafe impl Send for FileWindow {}

impl FileWindow {
    /// Maps the first `len` bytes of `file` (opened read-write, already `len` long).
    pub fn new(file: BorrowedFd<'_>, len: u64) -> Result<FileWindow> {
        if len == 0 {
            return Ok(FileWindow { addr: 0, len: 0 });
        }
        // SAFETY: a fresh shared mapping chosen by the kernel replaces nothing of ours.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(FileWindow {
            addr: r as u64,
            len,
        })
    }

    /// Faults every page in for writing (MADV_POPULATE_WRITE): allocates page cache and
    /// disk space up front, so running out of space is an error here rather than later.
    pub fn populate(&self) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: advice on our own mapping; populating changes no contents.
        let r = unsafe {
            libc::madvise(
                self.addr as *mut libc::c_void,
                self.len as usize,
                abi::MADV_POPULATE_WRITE,
            )
        };
        Errno::result(r.into()).map(drop)
    }

    fn check(&self, offset: u64, len: u64) -> Result<u64> {
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(Errno(libc::EINVAL));
        }
        Ok(self.addr + offset)
    }

    /// Copies the remote `ranges` of process `pid` (at most [`IOV_MAX`]) back to back into
    /// the window at `offset`. Returns the bytes copied.
    pub fn read_process(&self, pid: Pid, ranges: &[RemoteRange], offset: u64) -> Result<usize> {
        let total: u64 = ranges.iter().map(|r| r.len).sum();
        let dest = self.check(offset, total)?;
        if ranges.len() > IOV_MAX {
            return Err(Errno(libc::EINVAL));
        }
        let riov: Vec<libc::iovec> = ranges
            .iter()
            .map(|r| libc::iovec {
                iov_base: r.addr as *mut libc::c_void,
                iov_len: r.len as usize,
            })
            .collect();
        let liov = libc::iovec {
            iov_base: dest as *mut libc::c_void,
            iov_len: total as usize,
        };
        // SAFETY: the local iovec lies inside our mapping (checked); the kernel writes it
        // and reports faults as errors.
        let r = unsafe { libc::process_vm_readv(pid, &liov, 1, riov.as_ptr(), riov.len() as _, 0) };
        Errno::result(r as libc::c_long).map(|n| n as usize)
    }

    /// Opens the file behind the window through `/proc/self/map_files` (needs
    /// CAP_SYS_ADMIN): for a window on `/dev/zero`, the new shared anonymous object itself.
    pub fn backing_file(&self) -> Result<OwnedFd> {
        if self.len == 0 {
            return Err(Errno(libc::EINVAL));
        }
        let path = format!(
            "/proc/self/map_files/{:x}-{:x}",
            self.addr,
            self.addr + self.len
        );
        crate::fs::open(
            std::path::Path::new(&path),
            libc::O_RDWR | libc::O_CLOEXEC,
            0,
        )
    }

    /// Reads `len` bytes of `fd` at `file_offset` into the window at `offset`.
    pub fn read_file(
        &self,
        fd: BorrowedFd<'_>,
        offset: u64,
        len: u64,
        file_offset: u64,
    ) -> Result<()> {
        let dest = self.check(offset, len)?;
        // SAFETY: the destination lies inside our mapping (checked), which holds no Rust
        // data; the kernel writes it.
        unsafe { pread_exact(fd, dest, len, file_offset) }
    }
}

impl Drop for FileWindow {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: our own mapping; no Rust reference into it exists.
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
        }
    }
}

/// A page's entry in `/proc/PID/pagemap`: present bit, exclusive bit and frame number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagemapWord(pub u64);

impl PagemapWord {
    /// Whether the page is in memory.
    pub fn present(self) -> bool {
        self.0 & (1 << 63) != 0
    }

    /// Whether only this process maps the page (it cannot be shared).
    pub fn exclusive(self) -> bool {
        self.0 & (1 << 56) != 0
    }

    /// The page frame number (visible to CAP_SYS_ADMIN; 0 otherwise).
    pub fn pfn(self) -> u64 {
        self.0 & ((1 << 55) - 1)
    }
}

/// Reads the pagemap words of `pages` pages from `addr` of an open `/proc/PID/pagemap`.
pub fn read_pagemap(pagemap: BorrowedFd<'_>, addr: u64, pages: u64) -> Result<Vec<PagemapWord>> {
    let mut bytes = vec![0u8; pages as usize * 8];
    let mut done = 0usize;
    while done < bytes.len() {
        let offset = (addr / abi::PAGE_SIZE) * 8 + done as u64;
        // SAFETY: reads into our own buffer.
        let r = unsafe {
            libc::pread64(
                pagemap.as_raw_fd(),
                bytes[done..].as_mut_ptr().cast(),
                bytes.len() - done,
                offset as i64,
            )
        };
        match Errno::result(r as libc::c_long) {
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => done += n as usize,
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| PagemapWord(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))))
        .collect())
}
