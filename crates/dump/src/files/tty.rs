//! Terminals: pseudo-terminal pairs inside the tree, and the terminal a shell job
//! inherited from outside.
//!
//! A pty whose master one of the tree's processes holds is the tree's: both ends are
//! saved as `TtyFileEntry`s (with a regular-file entry for the path they were opened by)
//! pointing at `tty-info.img` entries, one per end (CRIU's numbering: index * 2, plus 1
//! for the master), which hold the pty's index, lock, packet mode, settings, window size,
//! session and foreground group. A slave whose master is elsewhere is a terminal from
//! outside: allowed for a shell job, and reopened by path.
//!
//! The bytes in flight are read out once every process is frozen: what the slave has not
//! read (its line discipline's buffer: complete canonical lines one by one, keeping where
//! an end-of-file character ended one, then the partial line, after switching our view of
//! it to non-canonical) and what the master has not read. Reading consumes
//! them, so they are written back (`sys::tty::refill`) if the tree goes on running or the
//! dump fails.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fds, fs, proc, process, tty};

use super::{Fd, FileOptions, FileTable};
use crate::error::{DumpError, Result, SysContext};

/// `/dev/ptmx` and `/dev/pts/ptmx` are char device 5:2.
fn is_ptmx(rdev: u64) -> bool {
    libc::major(rdev) == 5 && libc::minor(rdev) == 2
}

/// The pty index of a Unix98 slave device (majors 136..=143).
fn slave_index(rdev: u64) -> Option<u32> {
    let major = libc::major(rdev);
    (136..=143)
        .contains(&major)
        .then(|| (major - 136) * 256 + libc::minor(rdev))
}

/// The `tty-info.img` id of an end of pty `index`.
pub(crate) fn info_id(index: u32, master: bool) -> u32 {
    index * 2 + u32::from(master)
}

/// A pty pair of the tree.
#[derive(Debug)]
struct Pair {
    /// A copy of the master's description (for the ioctls and the data).
    master: OwnedFd,
    /// The process that holds it (error messages).
    pid: Pid,
    /// Bytes read out: (slave input, master input), written back unless the tree dies.
    taken: Option<(Vec<u8>, Vec<u8>)>,
}

/// The terminals of the dump.
#[derive(Debug, Default)]
pub(crate) struct Ttys {
    /// Indexes of the ptys whose master the tree holds (found before any fd is dumped).
    internal: HashSet<u32>,
    pairs: HashMap<u32, Pair>,
}

impl FileTable {
    /// Finds the ptys whose master a process of the tree holds, before the fds are
    /// dumped: a slave of one of them is the tree's, any other is a terminal from outside.
    pub fn find_ptys(&mut self, pids: &[Pid]) -> Result<()> {
        for &pid in pids {
            let Ok(list) = proc::fds(pid) else { continue };
            let mut pidfd = None;
            for fd in list {
                let link_path = proc::path(pid, &format!("fd/{fd}"));
                let Ok(st) = fs::stat(&link_path) else {
                    continue;
                };
                if st.st_mode & libc::S_IFMT != libc::S_IFCHR || !is_ptmx(st.st_rdev) {
                    continue;
                }
                if pidfd.is_none() {
                    pidfd = Some(process::pidfd_open(pid).ctx(pid, || "pidfd_open".into())?);
                }
                let pfd = pidfd.as_ref().expect("just opened");
                let file =
                    process::pidfd_getfd(pfd, fd).ctx(pid, || format!("pidfd_getfd {fd}"))?;
                let index =
                    tty::pty_index(file.as_fd()).ctx(pid, || format!("fd {fd}: TIOCGPTN"))?;
                self.ttys.internal.insert(index);
            }
        }
        Ok(())
    }
}

/// A terminal open at `f`: a pty end of the tree (`Some` file id), or a terminal from
/// outside that a shell job may have (`None`: dumped as a path).
pub(crate) fn dump_tty(table: &mut FileTable, f: &Fd, opts: FileOptions) -> Result<Option<u32>> {
    let rdev = f.st.st_rdev;
    let (index, master) = if is_ptmx(rdev) {
        let index =
            tty::pty_index(f.file.as_fd()).ctx(f.pid, || format!("fd {}: TIOCGPTN", f.fd))?;
        (index, true)
    } else if let Some(index) = slave_index(rdev)
        && table.ttys.internal.contains(&index)
    {
        (index, false)
    } else if opts.shell_job {
        return Ok(None);
    } else if libc::major(rdev) == 5 && libc::minor(rdev) == 0 {
        // /dev/tty: whatever the controlling terminal is after the restore.
        return Ok(None);
    } else {
        return Err(f.unsupported(
            "this terminal belongs to no process of the tree; only a shell job (--shell-job) \
             may inherit one from outside",
        ));
    };
    if master && !table.ttys.pairs.contains_key(&index) {
        let copy = f
            .file
            .try_clone()
            .map_err(|e| f.unsupported(format!("dup the pty master: {e}")))?;
        table.ttys.pairs.insert(
            index,
            Pair {
                master: copy,
                pid: f.pid,
                taken: None,
            },
        );
    }
    let regf_id = table.path_entry(f);
    let (flags, fown) = (f.flags(), f.fown());
    Ok(Some(table.add(pb::FdTypes::Tty, |id, e| {
        e.tty = Some(pb::TtyFileEntry {
            id,
            tty_info_id: info_id(index, master),
            flags,
            fown: Some(fown),
            regf_id: Some(regf_id),
        });
    })))
}

fn termios_entry(t: &tty::Termios) -> pb::TermiosEntry {
    pb::TermiosEntry {
        c_iflag: t.iflag,
        c_oflag: t.oflag,
        c_cflag: t.cflag,
        c_lflag: t.lflag,
        c_line: u32::from(t.line),
        c_ispeed: t.ispeed,
        c_ospeed: t.ospeed,
        c_cc: t.cc.iter().map(|c| u32::from(*c)).collect(),
    }
}

impl Ttys {
    /// The `tty-info.img` entries and the bytes in flight of every pty of the tree; the
    /// bytes are taken out of the terminals (see [`Ttys::put_back`]).
    pub fn collect(&mut self) -> Result<(Vec<pb::TtyInfoEntry>, Vec<pb::TtyDataEntry>)> {
        let mut infos = Vec::new();
        let mut data = Vec::new();
        let mut indexes: Vec<u32> = self.pairs.keys().copied().collect();
        indexes.sort_unstable();
        for index in indexes {
            let pair = self.pairs.get_mut(&index).expect("listed");
            let (pid, master) = (pair.pid, pair.master.as_fd());
            let what = |s: &str| format!("pty {index}: {s}");
            let slave = tty::open_peer(master, libc::O_RDWR | libc::O_NONBLOCK)
                .ctx(pid, || what("open its slave"))?;
            let termios = tty::termios(slave.as_fd()).ctx(pid, || what("TCGETS2"))?;
            let ws = tty::winsize(slave.as_fd()).ctx(pid, || what("TIOCGWINSZ"))?;
            let sid = tty::session(master).ctx(pid, || what("TIOCGSID"))?;
            let pgrp = tty::foreground(master).ctx(pid, || what("TIOCGPGRP"))?;
            let locked = tty::pty_locked(master).ctx(pid, || what("TIOCGPTLCK"))?;
            let packet = tty::packet_mode(master).ctx(pid, || what("TIOCGPKT"))?;
            let exclusive = tty::exclusive(slave.as_fd()).ctx(pid, || what("TIOCGEXCL"))?;
            // What the slave has not read, partial canonical line included.
            let input =
                tty::take_input(slave.as_fd(), &termios).ctx(pid, || what("read its input"))?;
            // What the master has not read; the description is the process's (maybe
            // blocking), so exactly what is there.
            let pending = fds::bytes_readable(master).ctx(pid, || what("FIONREAD"))? as usize;
            let mut output = vec![0u8; pending];
            let mut got = 0;
            while got < pending {
                match fds::read_some(master, &mut output[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => {
                        // Nothing is lost: put back what was taken.
                        let _ =
                            tty::refill(master, slave.as_fd(), &input, &output[..got], &termios);
                        return Err(DumpError::Sys {
                            pid,
                            what: what("read its output"),
                            errno: e,
                        });
                    }
                }
            }
            output.truncate(got);
            if packet && !output.is_empty() {
                let _ = tty::refill(master, slave.as_fd(), &input, &output, &termios);
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!("pty {index}"),
                    reason: "data in flight on a master in packet mode is not supported".into(),
                });
            }
            let ws_entry = pb::WinsizeEntry {
                ws_row: u32::from(ws[0]),
                ws_col: u32::from(ws[1]),
                ws_xpixel: u32::from(ws[2]),
                ws_ypixel: u32::from(ws[3]),
            };
            for is_master in [false, true] {
                infos.push(pb::TtyInfoEntry {
                    id: info_id(index, is_master),
                    r#type: pb::TtyType::Pty as i32,
                    locked,
                    exclusive,
                    packet_mode: packet,
                    sid: sid.unwrap_or(0) as u32,
                    pgrp: pgrp.unwrap_or(0) as u32,
                    rdev: if is_master {
                        libc::makedev(5, 2) as u32
                    } else {
                        libc::makedev(136 + index / 256, index % 256) as u32
                    },
                    termios: Some(termios_entry(&termios)),
                    termios_locked: None,
                    winsize: Some(ws_entry.clone()),
                    pty: Some(pb::TtyPtyEntry { index }),
                    dev: None,
                    uid: None,
                    gid: None,
                });
            }
            // Stored under the end that would read them (CRIU's convention).
            for (is_master, bytes) in [(false, &input), (true, &output)] {
                if !bytes.is_empty() {
                    data.push(pb::TtyDataEntry {
                        tty_id: info_id(index, is_master),
                        data: bytes.clone(),
                    });
                }
            }
            pair.taken = Some((input, output));
        }
        Ok((infos, data))
    }

    /// Writes the bytes [`Ttys::collect`] took back into their terminals (the tree goes on
    /// running, or the dump failed).
    pub fn put_back(&mut self) {
        for (index, pair) in &mut self.pairs {
            let Some((input, output)) = pair.taken.take() else {
                continue;
            };
            let master = pair.master.as_fd();
            let Ok(slave) = tty::open_peer(master, libc::O_RDWR | libc::O_NONBLOCK) else {
                log::warn!("pty {index}: cannot put back its data in flight");
                continue;
            };
            let restored = tty::termios(slave.as_fd())
                .and_then(|t| tty::refill(master, slave.as_fd(), &input, &output, &t));
            if let Err(e) = restored {
                log::warn!("pty {index}: putting back its data in flight failed: {e}");
            }
        }
    }

    /// Writes `tty-info.img` and `tty-data.img`.
    pub fn write(&mut self, dir: &ImageDir) -> Result<()> {
        if self.pairs.is_empty() {
            return Ok(());
        }
        let (infos, data) = self.collect()?;
        dir.write_all(ImageKind::TtyInfo, 0, &infos)?;
        if !data.is_empty() {
            dir.write_all(ImageKind::TtyData, 0, &data)?;
        }
        Ok(())
    }
}
