//! Reopening the fd table: each file description once, then placed at every fd number
//! that shared it, with its flags, offset and owner.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::Path;

use stasis_images::consts::FD_CLOEXEC;
use stasis_images::pb;
use stasis_sys::{Pid, fs};

use crate::error::{RestoreError, Result, SysContext};
use crate::image::{Images, ProcessImage};

/// Flags that only matter at open time and must not be replayed (O_TRUNC would destroy
/// the file's contents).
const OPEN_ONLY_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC;

/// Opens a regular-file entry as the dumped process had it open.
pub fn open_reg(pid: Pid, reg: &pb::RegFileEntry, validate_size: bool) -> Result<OwnedFd> {
    let flags = (reg.flags as i32 & !OPEN_ONLY_FLAGS) | libc::O_CLOEXEC | libc::O_NOCTTY;
    let path = Path::new(&reg.name);
    let fd = fs::open(path, flags, 0).ctx(pid, || {
        format!("open {} (flags {:#o})", reg.name, reg.flags)
    })?;
    if flags & libc::O_PATH != 0 {
        return Ok(fd);
    }
    let st = fs::fstat(fd.as_fd()).ctx(pid, || format!("fstat {}", reg.name))?;
    if validate_size
        && let Some(size) = reg.size
        && st.st_mode & libc::S_IFMT == libc::S_IFREG
    {
        check_size(pid, reg, size, st.st_size as u64)?;
    }
    let kind = st.st_mode & libc::S_IFMT;
    if (kind == libc::S_IFREG || kind == libc::S_IFDIR) && reg.pos != 0 {
        fs::seek_to(fd.as_fd(), reg.pos)
            .ctx(pid, || format!("seek {} to {}", reg.name, reg.pos))?;
    }
    if let Some(own) = &reg.fown {
        if own.pid != 0 {
            fs::set_owner(fd.as_fd(), own.pid_type as i32, own.pid as i32)
                .ctx(pid, || format!("F_SETOWN_EX on {}", reg.name))?;
        }
        if own.signum != 0 {
            fs::set_owner_signal(fd.as_fd(), own.signum as i32)
                .ctx(pid, || format!("F_SETSIG on {}", reg.name))?;
        }
    }
    Ok(fd)
}

/// A file must still be what the process had open. One it only reads must not have
/// changed size; one it writes may have grown (a log the process kept appending to after a
/// `--leave-running` dump), but not shrunk below what the process saw.
fn check_size(pid: Pid, reg: &pb::RegFileEntry, then: u64, now: u64) -> Result<()> {
    let writable = reg.flags as i32 & libc::O_ACCMODE != libc::O_RDONLY;
    if now == then || (writable && now > then) {
        if now != then {
            log::warn!(
                "process {pid}: {} grew from {then} to {now} bytes since the dump",
                reg.name
            );
        }
        return Ok(());
    }
    Err(RestoreError::Unsupported {
        pid,
        resource: format!("file {}", reg.name),
        reason: format!("its size changed since the dump ({then} bytes then, {now} now)"),
    })
}

/// Every file description of the tree, opened once by stasis before any process is
/// forked and kept at numbers above every fd number the tree uses. Each process inherits
/// them all and dups the ones it needs to their numbers; descriptions shared between fds
/// and between processes stay shared (one offset), as they were.
#[derive(Debug, Default)]
pub struct OpenedFiles {
    by_id: HashMap<u32, OwnedFd>,
}

impl OpenedFiles {
    /// Opens every description any process's fd table refers to, at numbers >= `high`.
    pub fn open_all(images: &Images, high: RawFd) -> Result<OpenedFiles> {
        let mut by_id = HashMap::new();
        for p in &images.processes {
            let pid = p.pid();
            for e in &p.fds {
                if by_id.contains_key(&e.id) {
                    continue;
                }
                let entry = images.files.get(&e.id).ok_or_else(|| {
                    crate::error::invalid(
                        "files.img",
                        format!(
                            "process {pid}: fd {} refers to missing file id {}",
                            e.fd, e.id
                        ),
                    )
                })?;
                let fd = match (pb::FdTypes::try_from(entry.r#type), &entry.reg) {
                    (Ok(pb::FdTypes::Reg), Some(reg)) => open_reg(pid, reg, true)?,
                    (kind, _) => {
                        return Err(RestoreError::Unsupported {
                            pid,
                            resource: format!("fd {} (file id {}, type {:?})", e.fd, e.id, kind),
                            reason: "restoring this kind of file is not supported yet".into(),
                        });
                    }
                };
                let fd =
                    fs::move_above(fd, high).ctx(pid, || "move an fd out of the way".into())?;
                by_id.insert(e.id, fd);
            }
        }
        Ok(OpenedFiles { by_id })
    }

    /// Puts `p`'s descriptions at their fd numbers (which must be free or unused).
    pub fn install(&self, p: &ProcessImage) -> Result<()> {
        let pid = p.pid();
        for e in &p.fds {
            let file = self.by_id.get(&e.id).ok_or_else(|| {
                RestoreError::Other(format!("process {pid}: file id {} was not opened", e.id))
            })?;
            fs::dup_to(file.as_fd(), e.fd as RawFd, e.flags & FD_CLOEXEC != 0)
                .ctx(pid, || format!("install fd {}", e.fd))?;
        }
        Ok(())
    }
}
