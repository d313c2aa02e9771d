//! Copying page contents into `pages-N.img` and describing them in `pagemap-*.img`.
//!
//! "Which pages" (the runs from [`crate::memory`]) is kept apart from "copy them" (here),
//! so the transport can later be a socket or a compressor instead of a file.
//!
//! The pages image is sized up front and mapped shared ([`FileWindow`]); worker threads
//! (one per core) copy batches of up to 1024 runs straight from the process into the page
//! cache with `process_vm_readv`: one copy, no intermediate buffer, no `write`. The file
//! is rewritten in place, so a dump into a directory that already holds one reuses the
//! page cache instead of freeing and allocating it again.

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use stasis_images::consts::pe_flags;
use stasis_images::{ImageDir, ImageKind, PAGE_SIZE, pb};
use stasis_sys::mem::{self, FileWindow, RemoteRange};
use stasis_sys::{Errno, Pid};

use crate::error::{DumpError, Result};
use crate::memory::{Run, ShmemObject};

/// Most bytes in one batch: small enough to share work between threads evenly.
const BATCH_BYTES: u64 = 32 << 20;
/// Copy threads.
const WORKERS: usize = 2;

fn io_error(pid: Pid, what: String, e: std::io::Error) -> DumpError {
    DumpError::Sys {
        pid,
        what,
        errno: Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

fn sys_error(pid: Pid, what: String, errno: Errno) -> DumpError {
    DumpError::Sys { pid, what, errno }
}

/// Writes the pagemap: `runs` are in the pages image `pages_id`, in order; `cow` are
/// the parent's pages (flagged, not stored). Entries go in address order.
pub fn write_pagemap(
    dir: &ImageDir,
    pid: Pid,
    pages_id: u32,
    runs: &[Run],
    cow: &[Run],
) -> Result<()> {
    let mut w = dir.create(ImageKind::Pagemap, pid as u64)?;
    w.write(&pb::PagemapHead { pages_id })?;
    let (mut own, mut shared) = (runs.iter().peekable(), cow.iter().peekable());
    loop {
        let take_own = match (own.peek(), shared.peek()) {
            (Some(a), Some(b)) => a.start < b.start,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let (r, flags) = if take_own {
            (own.next(), pe_flags::PRESENT)
        } else {
            (shared.next(), pe_flags::STASIS_COW_PARENT)
        };
        if let Some(r) = r {
            w.write(&pagemap_entry(r.start, r.len() / PAGE_SIZE, flags))?;
        }
    }
    w.finish()?;
    Ok(())
}

fn pagemap_entry(vaddr: u64, nr_pages: u64, flags: u32) -> pb::PagemapEntry {
    pb::PagemapEntry {
        vaddr,
        // Readers older than nr_pages use this field; 0 when it does not fit, like CRIU.
        compat_nr_pages: u32::try_from(nr_pages).unwrap_or(0),
        in_parent: None,
        flags: Some(flags),
        nr_pages: Some(nr_pages),
    }
}

/// One batch: up to IOV_MAX ranges totalling at most BATCH_BYTES, all to be copied with
/// process_vm_readv or all through /proc/PID/mem, and where they go in the pages image.
#[derive(Debug, Default)]
struct Batch {
    ranges: Vec<RemoteRange>,
    vm_readv: bool,
    offset: u64,
}

fn batches(runs: &[Run]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut cur = Batch {
        vm_readv: true,
        ..Batch::default()
    };
    let mut cur_len = 0u64;
    let mut offset = 0u64;
    for r in runs {
        if r.vm_readv != cur.vm_readv && !cur.ranges.is_empty() {
            out.push(std::mem::replace(
                &mut cur,
                Batch {
                    offset,
                    ..Batch::default()
                },
            ));
            cur_len = 0;
        }
        cur.vm_readv = r.vm_readv;
        let mut start = r.start;
        while start < r.end {
            let len = (r.end - start).min(BATCH_BYTES - cur_len);
            cur.ranges.push(RemoteRange { addr: start, len });
            cur_len += len;
            start += len;
            offset += len;
            if cur_len == BATCH_BYTES || cur.ranges.len() == mem::IOV_MAX {
                let vm_readv = cur.vm_readv;
                out.push(std::mem::replace(
                    &mut cur,
                    Batch {
                        offset,
                        vm_readv,
                        ..Batch::default()
                    },
                ));
                cur_len = 0;
            }
        }
    }
    if !cur.ranges.is_empty() {
        out.push(cur);
    }
    out
}

/// Copies one batch into the window.
fn copy_batch(pid: Pid, batch: &Batch, window: &FileWindow, mem_file: Option<&File>) -> Result<()> {
    let want: u64 = batch.ranges.iter().map(|r| r.len).sum();
    let first = batch.ranges[0].addr;
    match mem_file {
        // /proc/PID/mem reads like a debugger: protections ignored, nothing pinned.
        Some(f) if !batch.vm_readv => {
            let mut off = batch.offset;
            for r in &batch.ranges {
                window
                    .read_file(f.as_fd(), off, r.len, r.addr)
                    .map_err(|e| {
                        sys_error(pid, format!("read /proc/PID/mem at {:#x}", r.addr), e)
                    })?;
                off += r.len;
            }
        }
        _ => {
            let got = window
                .read_process(pid, &batch.ranges, batch.offset)
                .map_err(|e| sys_error(pid, format!("process_vm_readv at {first:#x}"), e))?;
            if got as u64 != want {
                return Err(sys_error(
                    pid,
                    format!("copy pages at {first:#x}: {got} of {want} bytes"),
                    Errno(libc::EFAULT),
                ));
            }
        }
    }
    Ok(())
}

/// Copies the private pages `runs` of `pid` into `out`, in pagemap order. Returns the
/// bytes written.
pub fn copy_private_pages(pid: Pid, runs: &[Run], out: &File) -> Result<u64> {
    let total: u64 = runs.iter().map(Run::len).sum();
    // Sizing first also cuts what an earlier, larger dump left in the file.
    out.set_len(total)
        .map_err(|e| io_error(pid, "size the pages image".into(), e))?;
    let window = FileWindow::new(out.as_fd(), total)
        .map_err(|e| sys_error(pid, "map the pages image".into(), e))?;
    // Allocating page cache and disk space up front turns a full disk into an error here.
    window.populate().map_err(|e| {
        sys_error(
            pid,
            format!("allocate {total} bytes for the pages image"),
            e,
        )
    })?;
    let batches = batches(runs);
    let mem_file = if batches.iter().any(|b| !b.vm_readv) {
        Some(
            File::open(format!("/proc/{pid}/mem"))
                .map_err(|e| io_error(pid, "open /proc/PID/mem".into(), e))?,
        )
    } else {
        None
    };
    let next = AtomicUsize::new(0);
    let work = || -> Result<()> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(batch) = batches.get(i) else {
                return Ok(());
            };
            copy_batch(pid, batch, &window, mem_file.as_ref())?;
        }
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..WORKERS.min(batches.len()))
            .map(|_| s.spawn(work))
            .collect();
        let mine = work();
        let mut result = mine;
        for h in helpers {
            let theirs = h
                .join()
                .unwrap_or_else(|_| Err(DumpError::Invalid("page copy thread panicked".into())));
            result = result.and(theirs);
        }
        result
    })?;
    Ok(total)
}

/// Writes a shmem object's populated pages to its own pages image and pagemap
/// (`pagemap-shmem-SHMID.img`, entries addressed by offset in the object).
pub fn dump_shmem(dir: &ImageDir, pid: Pid, obj: &mut ShmemObject, pages_id: u32) -> Result<u64> {
    let extents = data_extents(&obj.file, obj.size).map_err(|e| {
        io_error(
            pid,
            format!("find data in shared memory object {}", obj.shmid),
            e,
        )
    })?;
    let total: u64 = extents.iter().map(|(s, e)| e - s).sum();
    let out = dir.rewrite_raw(&ImageKind::Pages.file_name(u64::from(pages_id)))?;
    out.set_len(total)
        .map_err(|e| io_error(pid, "size the pages image".into(), e))?;
    let window = FileWindow::new(out.as_fd(), total)
        .map_err(|e| sys_error(pid, "map the pages image".into(), e))?;
    let mut pagemap = dir.create(ImageKind::ShmemPagemap, obj.shmid)?;
    pagemap.write(&pb::PagemapHead { pages_id })?;
    let mut offset = 0u64;
    for (start, end) in extents {
        pagemap.write(&pagemap_entry(
            start,
            (end - start) / PAGE_SIZE,
            pe_flags::PRESENT,
        ))?;
        // A memfd's last page may lie partly beyond its end: that part stays zero.
        window
            .read_file(obj.file.as_fd(), offset, end.min(obj.size) - start, start)
            .map_err(|e| sys_error(pid, format!("read shared memory object {}", obj.shmid), e))?;
        offset += end - start;
    }
    pagemap.finish()?;
    Ok(total)
}

/// Page-aligned ranges of `file` that hold data (SEEK_DATA / SEEK_HOLE).
fn data_extents(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match stasis_sys::fs::seek_whence(file.as_fd(), pos, libc::SEEK_DATA) {
            Ok(d) => d,
            Err(Errno(libc::ENXIO)) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = stasis_sys::fs::seek_whence(file.as_fd(), data, libc::SEEK_HOLE)?;
        let start = data / PAGE_SIZE * PAGE_SIZE;
        let end = hole.min(size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if end > start {
            out.push((start, end));
        }
        pos = end.max(pos + PAGE_SIZE);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_runs_in_order_within_limits() {
        let end = 0x10000 + 3 * BATCH_BYTES + 4096;
        let big = Run {
            start: 0x10000,
            end,
            vm_readv: true,
        };
        let b = batches(&[big]);
        assert_eq!(b.len(), 4);
        let sizes = b
            .iter()
            .map(|b| b.ranges.iter().map(|r| r.len).sum::<u64>());
        assert!(sizes.clone().all(|s| s <= BATCH_BYTES));
        assert_eq!(sizes.sum::<u64>(), end - 0x10000);
        let many: Vec<Run> = (0..3000u64)
            .map(|i| Run {
                start: i * 8192,
                end: i * 8192 + 4096,
                vm_readv: i % 7 != 3,
            })
            .collect();
        let b = batches(&many);
        assert!(b.iter().all(|b| b.ranges.len() <= mem::IOV_MAX));
        let total: u64 = b.iter().flat_map(|b| &b.ranges).map(|r| r.len).sum();
        assert_eq!(total, 3000 * 4096);
        // Order is preserved and each batch knows its place in the pages image.
        let mut offset = 0;
        let mut prev = 0;
        for batch in &b {
            assert_eq!(batch.offset, offset);
            for r in &batch.ranges {
                assert!(r.addr >= prev);
                prev = r.addr;
                assert_eq!(batch.vm_readv, (r.addr / 8192) % 7 != 3);
                offset += r.len;
            }
        }
    }
}
