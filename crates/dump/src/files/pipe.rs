//! Pipes and FIFOs: one `PipeEntry` (or `FifoEntry` plus a regular-file entry holding the
//! path) per open file description, and once per pipe the bytes in flight, in
//! `pipes-data.img` / `fifo-data.img` with the pipe's capacity.
//!
//! The bytes are copied without consuming them, so a `--leave-running` dump loses nothing:
//! `tee` duplicates the pipe's buffers into a pipe of ours, which we then read. `tee`
//! needs a read end; when the process only holds the write end, `/proc/PID/fd/N` is
//! opened read-only (non-blocking), which for a pipe is a new reader of the same pipe.
//! Buffers keep their packet flag through `tee`, so reading our copy returns a packet per
//! read for `O_DIRECT` pipes; their sizes are kept (`stasis_packets`) so the restore can
//! write the same packets.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fds, fs, proc};

use super::{Fd, FileTable};
use crate::error::{DumpError, Result, SysContext};

/// Bytes in flight of every pipe and FIFO of the dump.
#[derive(Debug, Default)]
pub(crate) struct PipeData {
    pipes: Vec<(pb::PipeDataEntry, Vec<u8>)>,
    fifos: Vec<(pb::PipeDataEntry, Vec<u8>)>,
    /// Pipe ids (inode numbers) whose data is saved.
    saved: HashSet<(bool, u32)>,
}

impl PipeData {
    /// Writes `pipes-data.img` and `fifo-data.img` (when there is anything to write).
    pub fn write(&self, dir: &ImageDir) -> Result<()> {
        for (kind, list) in [
            (ImageKind::PipesData, &self.pipes),
            (ImageKind::FifoData, &self.fifos),
        ] {
            if list.is_empty() {
                continue;
            }
            let mut w = dir.create(kind, 0)?;
            for (entry, bytes) in list {
                w.write(entry)?;
                w.write_raw(bytes)?;
            }
            w.finish()?;
        }
        Ok(())
    }
}

/// A pipe end; returns its file id.
pub(crate) fn dump_pipe(table: &mut FileTable, f: &Fd) -> Result<u32> {
    let pipe_id = f.st.st_ino as u32;
    save_data(table, f, false, pipe_id)?;
    let flags = f.flags();
    let fown = f.fown();
    Ok(table.add(pb::FdTypes::Pipe, |id, e| {
        e.pipe = Some(pb::PipeEntry {
            id,
            pipe_id,
            flags,
            fown: Some(fown),
        });
    }))
}

/// An open FIFO; returns its file id.
pub(crate) fn dump_fifo(table: &mut FileTable, f: &Fd) -> Result<u32> {
    let pipe_id = f.st.st_ino as u32;
    if f.link.ends_with(" (deleted)") {
        return Err(f.unsupported("FIFOs whose name was deleted are not supported"));
    }
    save_data(table, f, true, pipe_id)?;
    let regf_id = table.path_entry(f);
    Ok(table.add(pb::FdTypes::Fifo, |id, e| {
        e.fifo = Some(pb::FifoEntry {
            id,
            pipe_id,
            regf_id: Some(regf_id),
        });
    }))
}

/// Copies the bytes in flight of the pipe open at `f`, once per pipe.
fn save_data(table: &mut FileTable, f: &Fd, fifo: bool, pipe_id: u32) -> Result<()> {
    if !table.pipes.saved.insert((fifo, pipe_id)) {
        return Ok(());
    }
    let reader;
    let read_end: BorrowedFd<'_> = if f.flags() as i32 & libc::O_ACCMODE == libc::O_WRONLY {
        reader = reopen_for_reading(f.pid, f.fd)?;
        reader.as_fd()
    } else {
        f.file.as_fd()
    };
    let (entry, bytes) = copy_in_flight(f.pid, f.fd, read_end, pipe_id)?;
    if fifo {
        table.pipes.fifos.push((entry, bytes));
    } else {
        table.pipes.pipes.push((entry, bytes));
    }
    Ok(())
}

/// A read end of the pipe the process holds at `fd` (a new description, non-blocking).
fn reopen_for_reading(pid: Pid, fd: i32) -> Result<OwnedFd> {
    fs::open(
        &proc::path(pid, &format!("fd/{fd}")),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        0,
    )
    .ctx(pid, || format!("fd {fd}: open the pipe for reading"))
}

/// The bytes in flight of the pipe at `read_end`, duplicated with `tee` and read back.
fn copy_in_flight(
    pid: Pid,
    fd: i32,
    read_end: BorrowedFd<'_>,
    pipe_id: u32,
) -> Result<(pb::PipeDataEntry, Vec<u8>)> {
    let what = |s: &str| format!("fd {fd} (pipe:[{pipe_id}]): {s}");
    let size = fds::pipe_size(read_end).ctx(pid, || what("F_GETPIPE_SZ"))?;
    let in_flight = fds::bytes_readable(read_end).ctx(pid, || what("FIONREAD"))?;
    let (steal_r, steal_w) = fds::pipe2(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .ctx(pid, || what("create a pipe to copy into"))?;
    let mut bytes = Vec::with_capacity(in_flight as usize);
    let mut packets = Vec::new();
    if in_flight > 0 {
        // Our pipe must hold every buffer of theirs.
        fds::set_pipe_size(steal_w.as_fd(), size).ctx(pid, || what("size our copy pipe"))?;
        let copied = fds::tee(read_end, steal_w.as_fd(), size as usize)
            .ctx(pid, || what("tee the data in flight"))?;
        if copied != in_flight as usize {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("fd {fd} (pipe:[{pipe_id}])"),
                reason: format!("copied {copied} of its {in_flight} bytes in flight"),
            });
        }
        drop(steal_w);
        let mut buf = vec![0u8; copied.max(1)];
        loop {
            let n = fds::read_some(steal_r.as_fd(), &mut buf)
                .or_else(|e| if e.0 == libc::EAGAIN { Ok(0) } else { Err(e) })
                .ctx(pid, || what("read the copied data"))?;
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
            packets.push(n as u32);
        }
    }
    // One read returned everything unless the buffers were packets.
    if packets.len() <= 1 {
        packets.clear();
    }
    Ok((
        pb::PipeDataEntry {
            pipe_id,
            bytes: bytes.len() as u32,
            size: Some(size),
            stasis_packets: packets,
        },
        bytes,
    ))
}
