//! Pipes and FIFOs: each pipe made once, sized and filled with the bytes that were in
//! flight, its ends handed to the descriptions that had them.
//!
//! A pipe has one read and one write description from `pipe2`; further descriptions of
//! the same end (a pipe end reopened through `/proc`) are opened through
//! `/proc/self/fd/N`. A FIFO is opened by path: first read-write (a "fake" end, which
//! never blocks and through which the data is written), then with each description's own
//! flags; the fake end is closed once every description exists.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::os::fd::{AsFd, OwnedFd};

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fds, fs};

use super::OpenCtx;
use super::reg::set_fown;
use crate::error::{RestoreError, Result, SysContext, invalid};

/// Reads `pipes-data.img` or `fifo-data.img` (absent means no data).
pub fn load(dir: &ImageDir, kind: ImageKind) -> Result<HashMap<u32, (pb::PipeDataEntry, Vec<u8>)>> {
    let mut out = HashMap::new();
    let Some(mut r) = dir.open_optional(kind, 0)? else {
        return Ok(out);
    };
    while let Some(e) = r.next::<pb::PipeDataEntry>()? {
        let bytes = r.read_payload(u64::from(e.bytes))?;
        let packets: u64 = e.stasis_packets.iter().map(|p| u64::from(*p)).sum();
        if !e.stasis_packets.is_empty() && packets != u64::from(e.bytes) {
            return Err(invalid(
                kind.file_name(0),
                format!(
                    "pipe {}: packets add up to {packets} of {} bytes",
                    e.pipe_id, e.bytes
                ),
            ));
        }
        out.insert(e.pipe_id, (e, bytes));
    }
    Ok(out)
}

/// The ends of one pipe made for the restore.
#[derive(Debug)]
struct Ends {
    read: Option<OwnedFd>,
    write: Option<OwnedFd>,
    /// Whether `read`/`write` were handed out already (further descriptions reopen).
    read_used: bool,
    write_used: bool,
}

/// The pipes and FIFOs made so far.
#[derive(Debug, Default)]
pub(crate) struct Pipes {
    pipes: HashMap<u32, Ends>,
    /// FIFOs by pipe id: the fake read-write end.
    fifos: HashMap<u32, OwnedFd>,
}

/// Sizes `end`'s pipe and writes `data` into it (packet by packet for packet pipes).
fn fill(
    pid: Pid,
    end: &OwnedFd,
    what: &str,
    data: Option<&(pb::PipeDataEntry, Vec<u8>)>,
) -> Result<()> {
    let Some((entry, bytes)) = data else {
        return Ok(());
    };
    if let Some(size) = entry.size {
        let granted = fds::set_pipe_size(end.as_fd(), size)
            .ctx(pid, || format!("size {what} to {size} bytes"))?;
        if granted < size {
            return Err(RestoreError::Other(format!(
                "process {pid}: {what}: the kernel granted {granted} of {size} bytes"
            )));
        }
    }
    let flags = fds::status_flags(end.as_fd()).ctx(pid, || format!("F_GETFL on {what}"))?;
    // Never block on a full pipe: the data fits by construction, anything else is an error.
    let mut fill_flags = flags | libc::O_NONBLOCK;
    if !entry.stasis_packets.is_empty() {
        fill_flags |= libc::O_DIRECT;
    }
    fs::set_status_flags(end.as_fd(), fill_flags).ctx(pid, || format!("F_SETFL on {what}"))?;
    let written = if entry.stasis_packets.is_empty() {
        fds::write_all(end.as_fd(), bytes)
    } else {
        let mut at = 0usize;
        entry.stasis_packets.iter().try_for_each(|len| {
            let len = *len as usize;
            let r = fds::write_all(end.as_fd(), &bytes[at..at + len]);
            at += len;
            r
        })
    };
    written.ctx(pid, || {
        format!("write {} bytes back into {what}", bytes.len())
    })?;
    fs::set_status_flags(end.as_fd(), flags).ctx(pid, || format!("F_SETFL on {what}"))
}

/// Applies a description's status flags and owner to a freshly made end.
fn finish_end(
    pid: Pid,
    fd: &OwnedFd,
    flags: u32,
    fown: Option<&pb::FownEntry>,
    what: &str,
) -> Result<()> {
    // Only the flags F_SETFL changes; the access mode is the end's.
    let settable =
        libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_ASYNC | libc::O_NOATIME;
    fs::set_status_flags(fd.as_fd(), flags as i32 & settable)
        .ctx(pid, || format!("F_SETFL on {what}"))?;
    set_fown(pid, fd.as_fd(), fown, what)
}

impl Pipes {
    /// The description of a pipe end.
    pub fn open_pipe(&mut self, cx: &OpenCtx<'_>, pe: &pb::PipeEntry) -> Result<OwnedFd> {
        let pid = cx.pid;
        let what = format!("pipe:[{}]", pe.pipe_id);
        let ends = match self.pipes.entry(pe.pipe_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(slot) => {
                let (r, w) = fds::pipe2(libc::O_CLOEXEC).ctx(pid, || format!("create {what}"))?;
                fill(pid, &w, &what, cx.images.file_data.pipes.get(&pe.pipe_id))?;
                slot.insert(Ends {
                    read: Some(r),
                    write: Some(w),
                    read_used: false,
                    write_used: false,
                })
            }
        };
        let reading = pe.flags as i32 & libc::O_ACCMODE == libc::O_RDONLY;
        let (slot, used) = if reading {
            (&mut ends.read, &mut ends.read_used)
        } else {
            (&mut ends.write, &mut ends.write_used)
        };
        let fd = if *used {
            // A second description of the same end: open the pipe again.
            let any = slot.as_ref().expect("kept while used");
            let mode = if reading {
                libc::O_RDONLY
            } else {
                libc::O_WRONLY
            };
            fds::reopen(any.as_fd(), mode | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .ctx(pid, || format!("reopen {what}"))?
        } else {
            *used = true;
            slot.as_ref()
                .expect("unused end")
                .try_clone()
                .map_err(|e| RestoreError::Other(format!("process {pid}: dup {what}: {e}")))?
        };
        finish_end(pid, &fd, pe.flags, pe.fown.as_ref(), &what)?;
        cx.keep(fd)
    }

    /// The description of an open FIFO.
    pub fn open_fifo(&mut self, cx: &OpenCtx<'_>, fe: &pb::FifoEntry) -> Result<OwnedFd> {
        let pid = cx.pid;
        let reg = fe
            .regf_id
            .and_then(|id| cx.images.files.get(&id))
            .and_then(|f| f.reg.as_ref())
            .ok_or_else(|| invalid("files.img", format!("FIFO {} has no path entry", fe.id)))?;
        let path = std::path::Path::new(&reg.name);
        let what = format!("FIFO {}", reg.name);
        if let Entry::Vacant(slot) = self.fifos.entry(fe.pipe_id) {
            let fake = fs::open(path, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC, 0)
                .ctx(pid, || format!("open {what}"))?;
            let st = fs::fstat(fake.as_fd()).ctx(pid, || format!("fstat {what}"))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
                return Err(RestoreError::Unsupported {
                    pid,
                    resource: what,
                    reason: "it is not a FIFO any more".into(),
                });
            }
            fill(
                pid,
                &fake,
                &what,
                cx.images.file_data.fifos.get(&fe.pipe_id),
            )?;
            slot.insert(fake);
        }
        // The fake end is a reader and a writer: neither open mode blocks.
        let flags = (reg.flags as i32 & (libc::O_ACCMODE | libc::O_NONBLOCK)) | libc::O_CLOEXEC;
        let fd = fs::open(path, flags, 0).ctx(pid, || format!("open {what}"))?;
        finish_end(pid, &fd, reg.flags, reg.fown.as_ref(), &what)?;
        cx.keep(fd)
    }

    /// Drops our own ends: the pipe ends nobody in the tree had, and the fake FIFO ends.
    pub fn finish(&mut self) {
        self.pipes.clear();
        self.fifos.clear();
    }
}
