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

/// An fd to install: target number, the open description (at a temporary number), and
/// whether it is close-on-exec.
#[derive(Debug)]
pub struct Install {
    /// The fd number in the restored process.
    pub fd: RawFd,
    /// Index into the opened descriptions.
    pub file: usize,
    /// Close-on-exec.
    pub cloexec: bool,
}

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

/// Opens every description of `p`'s fd table, each moved to a number at or above
/// `high`, and says where each goes.
pub fn open_all(
    images: &Images,
    p: &ProcessImage,
    high: RawFd,
) -> Result<(Vec<OwnedFd>, Vec<Install>)> {
    let pid = p.pid();
    let mut opened: Vec<OwnedFd> = Vec::new();
    let mut by_id: HashMap<u32, usize> = HashMap::new();
    let mut installs = Vec::new();
    for e in &p.fds {
        let file = match by_id.get(&e.id) {
            Some(i) => *i,
            None => {
                let entry = images.files.get(&e.id).ok_or_else(|| {
                    crate::error::invalid(
                        "files.img",
                        format!("fd {} refers to missing file id {}", e.fd, e.id),
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
                opened.push(fd);
                by_id.insert(e.id, opened.len() - 1);
                opened.len() - 1
            }
        };
        installs.push(Install {
            fd: e.fd as RawFd,
            file,
            cloexec: e.flags & FD_CLOEXEC != 0,
        });
    }
    Ok((opened, installs))
}

/// Puts every description at its fd numbers. The low fd range must be empty.
pub fn install(pid: Pid, opened: &[OwnedFd], installs: &[Install]) -> Result<()> {
    for i in installs {
        fs::dup_to(opened[i.file].as_fd(), i.fd, i.cloexec)
            .ctx(pid, || format!("install fd {}", i.fd))?;
    }
    Ok(())
}
