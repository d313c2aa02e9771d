//! Pseudo-terminal pairs of the tree: each made again with its index (`/dev/ptmx` opened
//! until the kernel hands out that index: it always gives the lowest free one), settings,
//! window size and bytes in flight; the slave's descriptions opened by path.
//!
//! The session that had the pty as its controlling terminal gets it back from its leader
//! (right after `setsid`, [`acquire_controlling`]); the foreground group is set once
//! every group exists ([`set_foreground`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fs, tty};

use super::OpenCtx;
use super::reg::set_fown;
use crate::error::{RestoreError, Result, SysContext, invalid};

/// `tty-info.img` by id, and `tty-data.img` by tty id.
#[derive(Debug, Default)]
pub struct TtyImages {
    /// Terminal entries.
    pub infos: HashMap<u32, pb::TtyInfoEntry>,
    /// Bytes in flight, by the id of the end that would read them.
    pub data: HashMap<u32, Vec<u8>>,
}

/// Reads `tty-info.img` and `tty-data.img` (absent: no terminals).
pub fn load(dir: &ImageDir) -> Result<TtyImages> {
    let mut out = TtyImages::default();
    if let Some(mut r) = dir.open_optional(ImageKind::TtyInfo, 0)? {
        for e in r.collect_all::<pb::TtyInfoEntry>()? {
            if e.r#type() == pb::TtyType::Pty && e.pty.is_none() {
                return Err(invalid(
                    "tty-info.img",
                    format!("pty {} has no index", e.id),
                ));
            }
            out.infos.insert(e.id, e);
        }
    }
    if let Some(mut r) = dir.open_optional(ImageKind::TtyData, 0)? {
        for e in r.collect_all::<pb::TtyDataEntry>()? {
            out.data.insert(e.tty_id, e.data);
        }
    }
    Ok(out)
}

fn termios_of(e: &pb::TermiosEntry) -> tty::Termios {
    let mut cc = [0u8; 19];
    for (c, v) in cc.iter_mut().zip(&e.c_cc) {
        *c = *v as u8;
    }
    tty::Termios {
        iflag: e.c_iflag,
        oflag: e.c_oflag,
        cflag: e.c_cflag,
        lflag: e.c_lflag,
        line: e.c_line as u8,
        cc,
        ispeed: e.c_ispeed,
        ospeed: e.c_ospeed,
    }
}

/// The pty pairs made so far, by index: the master.
#[derive(Debug, Default)]
pub(crate) struct Ptys {
    masters: HashMap<u32, OwnedFd>,
    /// Whether the master's description was handed out (a pty has one).
    master_used: HashMap<u32, bool>,
    /// Slaves to lock again once every description is open.
    relock: Vec<u32>,
}

/// Opens `ptmx` until the kernel gives pty `index`; the other ptys opened on the way are
/// closed again.
fn open_ptmx_at(pid: Pid, ptmx: &Path, index: u32) -> Result<OwnedFd> {
    let mut others = Vec::new();
    loop {
        let fd = fs::open(ptmx, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC, 0)
            .ctx(pid, || format!("open {} for pty {index}", ptmx.display()))?;
        let got = tty::pty_index(fd.as_fd()).ctx(pid, || "TIOCGPTN".into())?;
        if got == index {
            return Ok(fd);
        }
        if got > index || others.len() > 4096 {
            return Err(RestoreError::Unsupported {
                pid,
                resource: format!("pty {index} (/dev/pts/{index})"),
                reason: "that pty index is in use by another process".into(),
            });
        }
        others.push(fd);
    }
}

impl Ptys {
    /// Makes pty `index` (the master side of `infos[master_id]`): settings, window size,
    /// packet mode, data.
    fn pair(&mut self, cx: &OpenCtx<'_>, index: u32, ptmx: &Path) -> Result<&OwnedFd> {
        let ttys = &cx.images.ttys;
        match self.masters.entry(index) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(slot) => {
                let pid = cx.pid;
                let what = |s: &str| format!("pty {index}: {s}");
                let slave_info = ttys.infos.get(&(index * 2));
                let master_info = ttys.infos.get(&(index * 2 + 1));
                let master = open_ptmx_at(pid, ptmx, index)?;
                tty::set_pty_locked(master.as_fd(), false).ctx(pid, || what("unlock"))?;
                let slave = tty::open_peer(master.as_fd(), libc::O_RDWR | libc::O_NONBLOCK)
                    .ctx(pid, || what("open its slave"))?;
                let info = slave_info.or(master_info);
                if let Some(t) = info.and_then(|i| i.termios.as_ref()) {
                    let t = termios_of(t);
                    tty::set_termios(slave.as_fd(), &t).ctx(pid, || what("TCSETS2"))?;
                    // Input the slave had not read, output the master had not read.
                    let input = ttys.data.get(&(index * 2)).map_or(&[][..], Vec::as_slice);
                    let output = ttys
                        .data
                        .get(&(index * 2 + 1))
                        .map_or(&[][..], Vec::as_slice);
                    tty::refill(master.as_fd(), slave.as_fd(), input, output, &t)
                        .ctx(pid, || what("write back its data in flight"))?;
                }
                if let Some(w) = info.and_then(|i| i.winsize.as_ref()) {
                    let ws = [w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel].map(|v| v as u16);
                    tty::set_winsize(slave.as_fd(), ws).ctx(pid, || what("TIOCSWINSZ"))?;
                }
                if info.is_some_and(|i| i.exclusive) {
                    tty::set_exclusive(slave.as_fd()).ctx(pid, || what("TIOCEXCL"))?;
                }
                if master_info.is_some_and(|i| i.packet_mode) {
                    tty::set_packet_mode(master.as_fd(), true).ctx(pid, || what("TIOCPKT"))?;
                }
                if info.is_some_and(|i| i.locked) {
                    self.relock.push(index);
                }
                Ok(slot.insert(master))
            }
        }
    }

    /// The description of an open pty end.
    pub fn open(&mut self, cx: &OpenCtx<'_>, e: &pb::TtyFileEntry) -> Result<OwnedFd> {
        let pid = cx.pid;
        let info = cx.images.ttys.infos.get(&e.tty_info_id).ok_or_else(|| {
            invalid(
                "tty-info.img",
                format!("terminal {} of file {} is missing", e.tty_info_id, e.id),
            )
        })?;
        let index =
            info.pty
                .as_ref()
                .map(|p| p.index)
                .ok_or_else(|| RestoreError::Unsupported {
                    pid,
                    resource: format!("terminal {} ({:?})", e.tty_info_id, info.r#type()),
                    reason: "only pseudo-terminals of the tree are restored".into(),
                })?;
        let path = e
            .regf_id
            .and_then(|id| cx.images.files.get(&id))
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone());
        let is_master = e.tty_info_id % 2 == 1;
        let ptmx = if is_master {
            path.clone().unwrap_or_else(|| "/dev/ptmx".into())
        } else {
            "/dev/ptmx".into()
        };
        let what = format!("pty {index}");
        if is_master {
            let used = self.master_used.entry(index).or_insert(false);
            if *used {
                return Err(RestoreError::Unsupported {
                    pid,
                    resource: what,
                    reason: "two open descriptions of one pty master cannot be made".into(),
                });
            }
            *used = true;
        }
        let master = self.pair(cx, index, Path::new(&ptmx))?;
        let fd = if is_master {
            master
                .try_clone()
                .map_err(|err| RestoreError::Other(format!("process {pid}: dup {what}: {err}")))?
        } else {
            let slave_path = path.unwrap_or_else(|| format!("/dev/pts/{index}"));
            let flags = (e.flags as i32 & (libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_APPEND))
                | libc::O_NOCTTY
                | libc::O_CLOEXEC;
            fs::open(Path::new(&slave_path), flags, 0).ctx(pid, || format!("open {slave_path}"))?
        };
        fs::set_status_flags(
            fd.as_fd(),
            e.flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC),
        )
        .ctx(pid, || format!("F_SETFL on {what}"))?;
        set_fown(pid, fd.as_fd(), e.fown.as_ref(), &what)?;
        cx.keep(fd)
    }

    /// Locks again the slaves that were locked, once their descriptions are open.
    pub fn finish(&mut self, pid: Pid) -> Result<()> {
        for index in self.relock.drain(..) {
            if let Some(m) = self.masters.get(&index) {
                tty::set_pty_locked(m.as_fd(), true).ctx(pid, || format!("pty {index}: lock"))?;
            }
        }
        self.masters.clear();
        Ok(())
    }
}

/// The pty index whose session is `sid`, if the tree had one as controlling terminal.
pub(crate) fn controlling_of(images: &crate::image::Images, sid: Pid) -> Option<&pb::TtyInfoEntry> {
    images
        .ttys
        .infos
        .values()
        .find(|i| i.id % 2 == 0 && i.sid != 0 && i.sid as Pid == sid)
}
