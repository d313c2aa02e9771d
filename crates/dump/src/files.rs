//! Open files: the fd table of each process (`fdinfo-N.img`) and the file descriptions
//! they point to (`files.img`), plus the files that mappings, cwd, root and the executable
//! refer to.
//!
//! An fd is inspected through `/proc/PID/fd/N` (what it points to), `/proc/PID/fdinfo/N`
//! (position, flags, mount) and a copy of the very open file description obtained with
//! `pidfd_getfd` (owner, signal). Two fds share a description if `kcmp(KCMP_FILE)` says so;
//! they then get one file id, so the offset stays shared after restore.

use std::os::fd::{AsFd, OwnedFd};

use stasis_images::consts::FD_CLOEXEC;
use stasis_images::pb;
use stasis_sys::{Pid, fs, proc, process};

use crate::error::{DumpError, ProcContext, Result, SysContext};

const KCMP_FILE: i32 = 0;

/// Character device majors of terminals: tty (4), tty/console/ptmx (5), pts (136..=143).
fn is_tty_major(major: u32) -> bool {
    matches!(major, 4 | 5 | 136..=143)
}

fn dev_major(rdev: u64) -> u32 {
    libc::major(rdev)
}

/// A file description seen through an fd, for sharing detection.
#[derive(Debug)]
struct SeenFd {
    pid: Pid,
    fd: i32,
    dev: u64,
    ino: u64,
    id: u32,
}

/// Every file entry of the dump, with ids.
#[derive(Debug, Default)]
pub struct FileTable {
    next_id: u32,
    /// The entries of `files.img`.
    pub entries: Vec<pb::FileEntry>,
    seen: Vec<SeenFd>,
    by_path: Vec<(String, u32, u32)>,
}

/// Options that change how files are dumped.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileOptions {
    /// `--shell-job`: terminals inherited from outside the tree are allowed.
    pub shell_job: bool,
}

impl FileTable {
    /// Adds a regular-file entry, giving it the next id.
    fn add_reg(&mut self, reg: pb::RegFileEntry) -> u32 {
        self.next_id += 1;
        let id = self.next_id;
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry { id, ..reg }),
            ..Default::default()
        });
        id
    }

    /// A regular-file entry for `path` opened with `flags`, shared by everything that
    /// refers to the same path with the same flags (mappings, cwd, exe).
    pub fn path_file(&mut self, pid: Pid, path: &str, flags: u32) -> Result<u32> {
        if let Some((_, _, id)) = self
            .by_path
            .iter()
            .find(|(p, f, _)| p == path && *f == flags)
        {
            return Ok(*id);
        }
        let st = fs::stat(std::path::Path::new(path)).ctx(pid, || format!("stat {path}"))?;
        let id = self.add_reg(pb::RegFileEntry {
            flags,
            pos: 0,
            fown: Some(pb::FownEntry::default()),
            name: path.to_owned(),
            size: Some(st.st_size as u64),
            mode: Some(st.st_mode),
            ..Default::default()
        });
        self.by_path.push((path.to_owned(), flags, id));
        Ok(id)
    }

    /// Dumps the fd table of `pid`, returning its fdinfo entries.
    pub fn dump_fds(&mut self, pid: Pid, opts: FileOptions) -> Result<Vec<pb::FdinfoEntry>> {
        let pidfd = process::pidfd_open(pid).ctx(pid, || "pidfd_open".to_owned())?;
        let mut out = Vec::new();
        for fd in proc::fds(pid).pctx(pid)? {
            out.push(self.dump_fd(pid, &pidfd, fd, opts)?);
        }
        Ok(out)
    }

    fn dump_fd(
        &mut self,
        pid: Pid,
        pidfd: &OwnedFd,
        fd: i32,
        opts: FileOptions,
    ) -> Result<pb::FdinfoEntry> {
        let link_path = proc::path(pid, &format!("fd/{fd}"));
        let link = proc::read_link(link_path.clone()).pctx(pid)?;
        let link = link.to_string_lossy().into_owned();
        let info = proc::read_fdinfo(pid, fd).pctx(pid)?;
        let st = fs::stat(&link_path).ctx(pid, || format!("stat fd {fd} ({link})"))?;
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let fdinfo = |id: u32| pb::FdinfoEntry {
            id,
            flags: if cloexec { FD_CLOEXEC } else { 0 },
            r#type: pb::FdTypes::Reg as i32,
            fd: fd as u32,
            xattr_security_selinux: None,
        };
        let unsupported = |what: &str| DumpError::Unsupported {
            pid,
            resource: format!("fd {fd} ({link})"),
            reason: format!("{what} are not supported yet"),
        };

        let kind = st.st_mode & libc::S_IFMT;
        match kind {
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK => {}
            libc::S_IFIFO => return Err(unsupported("pipes and FIFOs")),
            libc::S_IFSOCK => return Err(unsupported("sockets")),
            _ => return Err(unsupported("files of this kind")),
        }
        if !link.starts_with('/') {
            // anon_inode:[eventfd], anon_inode:[io_uring], ...
            return Err(unsupported(&format!("{link} descriptors")));
        }
        if kind == libc::S_IFCHR && is_tty_major(dev_major(st.st_rdev)) && !opts.shell_job {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("fd {fd} ({link})"),
                reason: "terminals are only supported as the inherited terminal of a shell job \
                         (--shell-job)"
                    .into(),
            });
        }
        if link.ends_with(" (deleted)") && st.st_nlink == 0 {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("fd {fd} ({link})"),
                reason: "open files that were deleted are not supported yet".into(),
            });
        }

        // One open file description shared by several fds gets one id.
        for seen in &self.seen {
            if seen.dev == st.st_dev
                && seen.ino == st.st_ino
                && process::kcmp(seen.pid, pid, KCMP_FILE, seen.fd as u64, fd as u64) == Ok(0)
            {
                return Ok(fdinfo(seen.id));
            }
        }

        let file = process::pidfd_getfd(pidfd, fd).ctx(pid, || format!("pidfd_getfd {fd}"))?;
        let fown = owner(pid, file.as_fd()).ok();
        let flags = info.flags & !(libc::O_CLOEXEC as u32);
        let id = self.add_reg(pb::RegFileEntry {
            flags,
            pos: info.pos,
            fown: Some(fown.unwrap_or_default()),
            name: link.clone(),
            mnt_id: Some(info.mnt_id),
            size: (kind == libc::S_IFREG).then_some(st.st_size as u64),
            mode: Some(st.st_mode),
            ..Default::default()
        });
        self.seen.push(SeenFd {
            pid,
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
            id,
        });
        Ok(fdinfo(id))
    }
}

/// The owner (F_SETOWN_EX) and signal (F_SETSIG) of an open file description.
fn owner(pid: Pid, file: std::os::fd::BorrowedFd<'_>) -> Result<pb::FownEntry> {
    let (pid_type, owner_pid) = fs::owner(file).ctx(pid, || "F_GETOWN_EX".to_owned())?;
    let signum = fs::owner_signal(file).ctx(pid, || "F_GETSIG".to_owned())?;
    Ok(pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: signum as u32,
        pid_type: pid_type as u32,
        pid: owner_pid as u32,
    })
}
