//! Copying page contents into `pages-N.img` and describing them in `pagemap-*.img`.
//!
//! "Which pages" (the runs from [`crate::memory`]) is kept apart from "copy them" (here),
//! so the transport can later be a socket or a compressor instead of a file. The copy is a
//! two-stage pipeline: a reader thread fills large buffers with `process_vm_readv` (up to
//! 1024 runs per call), the calling thread writes them out, so reading the process and
//! writing the page cache overlap on the two cores.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use stasis_images::consts::pe_flags;
use stasis_images::{ImageDir, ImageKind, PAGE_SIZE, pb};
use stasis_sys::mem::{self, RemoteRange};
use stasis_sys::{Errno, Pid};

use crate::error::{DumpError, Result};
use crate::memory::{Run, ShmemObject};

/// Size of one copy buffer.
const BUFFER_SIZE: usize = 8 << 20;
/// Buffers in flight between reader and writer.
const BUFFERS: usize = 3;

fn io_error(pid: Pid, what: String, e: std::io::Error) -> DumpError {
    DumpError::Sys {
        pid,
        what,
        errno: Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// Writes the pagemap of `runs` (all present in the pages image `pages_id`).
pub fn write_pagemap(dir: &ImageDir, pid: Pid, pages_id: u32, runs: &[Run]) -> Result<()> {
    let mut w = dir.create(ImageKind::Pagemap, pid as u64)?;
    w.write(&pb::PagemapHead { pages_id })?;
    for r in runs {
        w.write(&pagemap_entry(r.start, r.len() / PAGE_SIZE))?;
    }
    w.finish()?;
    Ok(())
}

fn pagemap_entry(vaddr: u64, nr_pages: u64) -> pb::PagemapEntry {
    pb::PagemapEntry {
        vaddr,
        // Readers older than nr_pages use this field; 0 when it does not fit, like CRIU.
        compat_nr_pages: u32::try_from(nr_pages).unwrap_or(0),
        in_parent: None,
        flags: Some(pe_flags::PRESENT),
        nr_pages: Some(nr_pages),
    }
}

/// One batch for the reader: up to IOV_MAX ranges totalling at most BUFFER_SIZE, all
/// readable or all not (those go through /proc/PID/mem).
#[derive(Debug, Default)]
struct Batch {
    ranges: Vec<RemoteRange>,
    readable: bool,
}

fn batches(runs: &[Run]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut cur: Vec<RemoteRange> = Vec::new();
    let mut cur_len = 0u64;
    let mut cur_readable = true;
    for r in runs {
        if r.readable != cur_readable && !cur.is_empty() {
            out.push(Batch {
                ranges: std::mem::take(&mut cur),
                readable: cur_readable,
            });
            cur_len = 0;
        }
        cur_readable = r.readable;
        let mut start = r.start;
        while start < r.end {
            let room = BUFFER_SIZE as u64 - cur_len;
            let len = (r.end - start).min(room);
            cur.push(RemoteRange { addr: start, len });
            cur_len += len;
            start += len;
            if cur_len == BUFFER_SIZE as u64 || cur.len() == mem::IOV_MAX {
                out.push(Batch {
                    ranges: std::mem::take(&mut cur),
                    readable: cur_readable,
                });
                cur_len = 0;
            }
        }
    }
    if !cur.is_empty() {
        out.push(Batch {
            ranges: cur,
            readable: cur_readable,
        });
    }
    out
}

/// Reads a batch of pages that process_vm_readv may not (protections) from /proc/PID/mem,
/// which reads regardless of protection, as a debugger does.
fn read_via_proc_mem(
    mem_file: &File,
    batch: &[RemoteRange],
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut off = 0usize;
    for r in batch {
        mem_file.read_exact_at(&mut buf[off..off + r.len as usize], r.addr)?;
        off += r.len as usize;
    }
    Ok(off)
}

/// Copies the private pages `runs` of `pid` into `out`. Returns the bytes written.
pub fn copy_private_pages(pid: Pid, runs: &[Run], out: &mut File) -> Result<u64> {
    let batches = batches(runs);
    let mem_file = if batches.iter().any(|b| !b.readable) {
        Some(
            File::open(format!("/proc/{pid}/mem"))
                .map_err(|e| io_error(pid, "open /proc/PID/mem".into(), e))?,
        )
    } else {
        None
    };
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        empty_tx.send(vec![0u8; BUFFER_SIZE]).ok();
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<()> {
            let mut read_time = std::time::Duration::ZERO;
            for batch in &batches {
                let Ok(mut buf) = empty_rx.recv() else {
                    return Ok(());
                };
                let ranges = &batch.ranges;
                let want: u64 = ranges.iter().map(|r| r.len).sum();
                let started = std::time::Instant::now();
                let got = match &mem_file {
                    Some(f) if !batch.readable => {
                        read_via_proc_mem(f, ranges, &mut buf).map_err(|e| {
                            io_error(
                                pid,
                                format!("read /proc/PID/mem at {:#x}", ranges[0].addr),
                                e,
                            )
                        })?
                    }
                    _ => mem::read_process_ranges(pid, ranges, &mut buf).map_err(|errno| {
                        DumpError::Sys {
                            pid,
                            what: format!("process_vm_readv at {:#x}", ranges[0].addr),
                            errno,
                        }
                    })?,
                };
                if got as u64 != want {
                    return Err(DumpError::Sys {
                        pid,
                        what: format!("copy pages at {:#x}: {got} of {want} bytes", ranges[0].addr),
                        errno: Errno(libc::EFAULT),
                    });
                }
                read_time += started.elapsed();
                if full_tx.send((buf, got)).is_err() {
                    return Ok(());
                }
            }
            log::debug!(
                "process {pid}: reading pages took {} ms",
                read_time.as_millis()
            );
            Ok(())
        });
        let mut written = 0u64;
        let mut write_error = None;
        let mut write_time = std::time::Duration::ZERO;
        for (buf, len) in full_rx.iter() {
            let started = std::time::Instant::now();
            let res = out.write_all(&buf[..len]);
            write_time += started.elapsed();
            if let Err(e) = res {
                write_error = Some(io_error(pid, "write pages image".into(), e));
                break;
            }
            written += len as u64;
            // The reader may be done already (its end of this channel dropped); what is
            // still queued for writing must be written anyway.
            let _ = empty_tx.send(buf);
        }
        log::debug!(
            "process {pid}: writing pages took {} ms",
            write_time.as_millis()
        );
        // Unblock the reader if we stopped early.
        drop(empty_tx);
        drop(full_rx);
        let read_result = reader
            .join()
            .unwrap_or_else(|_| Err(DumpError::Invalid("page reader thread panicked".into())));
        if let Some(e) = write_error {
            return Err(e);
        }
        read_result?;
        let expected: u64 = runs.iter().map(Run::len).sum();
        if written != expected {
            return Err(io_error(
                pid,
                format!("pages image got {written} of {expected} bytes"),
                std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        Ok(written)
    })
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
    let mut out = dir.create_raw(&ImageKind::Pages.file_name(u64::from(pages_id)))?;
    let mut pagemap = dir.create(ImageKind::ShmemPagemap, obj.shmid)?;
    pagemap.write(&pb::PagemapHead { pages_id })?;
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut written = 0u64;
    for (start, end) in extents {
        pagemap.write(&pagemap_entry(start, (end - start) / PAGE_SIZE))?;
        let mut off = start;
        while off < end {
            let len = ((end - off) as usize).min(buf.len());
            obj.file.read_exact_at(&mut buf[..len], off).map_err(|e| {
                io_error(pid, format!("read shared memory object {}", obj.shmid), e)
            })?;
            out.write_all(&buf[..len])
                .map_err(|e| io_error(pid, "write pages image".into(), e))?;
            off += len as u64;
            written += len as u64;
        }
    }
    pagemap.finish()?;
    Ok(written)
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
    fn batches_respect_buffer_and_iov_limits() {
        let end = 0x10000 + 3 * BUFFER_SIZE as u64 + 4096;
        let big = Run {
            start: 0x10000,
            end,
            readable: true,
        };
        let b = batches(&[big]);
        assert_eq!(b.len(), 4);
        let sizes = b
            .iter()
            .map(|b| b.ranges.iter().map(|r| r.len).sum::<u64>());
        assert!(sizes.clone().all(|s| s <= BUFFER_SIZE as u64));
        assert_eq!(sizes.sum::<u64>(), end - 0x10000);
        let many: Vec<Run> = (0..3000u64)
            .map(|i| Run {
                start: i * 8192,
                end: i * 8192 + 4096,
                readable: i % 7 != 3,
            })
            .collect();
        let b = batches(&many);
        assert!(b.iter().all(|b| b.ranges.len() <= mem::IOV_MAX));
        let total: u64 = b.iter().flat_map(|b| &b.ranges).map(|r| r.len).sum();
        assert_eq!(total, 3000 * 4096);
        // Order is preserved: the pages image is read back in pagemap order.
        let flat: Vec<u64> = b.iter().flat_map(|b| &b.ranges).map(|r| r.addr).collect();
        assert!(flat.windows(2).all(|w| w[0] < w[1]));
        // Unreadable runs travel in batches of their own.
        for batch in &b {
            for r in &batch.ranges {
                assert_eq!(batch.readable, (r.addr / 8192) % 7 != 3);
            }
        }
    }
}
