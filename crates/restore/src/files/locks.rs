//! File locks from `filelocks.img`, taken again by the process they were found through,
//! once its fd table is complete ([`take_locks_of`]).

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fs};

use crate::error::{RestoreError, Result, SysContext};
use crate::image::{Images, ProcessImage};

/// CRIU's lock kinds (`file_lock_entry.flag`).
mod kind {
    pub const POSIX: u32 = 1;
    pub const FLOCK: u32 = 2;
    pub const OFD: u32 = 4;
    pub const LEASE: u32 = 8;
}

/// Reads `filelocks.img` (absent: no locks).
pub fn load(dir: &ImageDir) -> Result<Vec<pb::FileLockEntry>> {
    match dir.open_optional(ImageKind::FileLocks, 0)? {
        Some(mut r) => Ok(r.collect_all()?),
        None => Ok(Vec::new()),
    }
}

fn describe(l: &pb::FileLockEntry) -> String {
    let kind = match l.flag & 0xb {
        kind::POSIX => "POSIX lock",
        kind::FLOCK => "flock",
        kind::OFD => "OFD lock",
        _ => "lease",
    };
    let ty = if l.r#type == libc::F_WRLCK as u32 {
        "write"
    } else {
        "read"
    };
    format!("{ty} {kind} on fd {} at {}+{}", l.fd, l.start, l.len)
}

/// Takes the locks found through the fds of the processes sharing `p`'s fd table, from
/// `p`, on the same fd numbers: POSIX record locks belong to the table, and the others
/// (flock, OFD, leases: the description's) are taken by the process so that `/proc/locks`
/// names it as their owner, as the kernel named it at the dump.
pub(crate) fn take_locks_of(
    images: &Images,
    locks: &[pb::FileLockEntry],
    p: &ProcessImage,
) -> Result<()> {
    let pid = p.pid();
    for l in locks {
        let Some(holder) = images.processes.iter().find(|q| q.pid() == l.pid as Pid) else {
            continue;
        };
        if holder.ids.files_id != p.ids.files_id {
            continue;
        }
        let what = || describe(l);
        let write = l.r#type == libc::F_WRLCK as u32;
        let ty = l.r#type as i32;
        let taken = if l.flag & kind::LEASE != 0 {
            fs::set_lease_fd(l.fd, if write { libc::F_WRLCK } else { libc::F_RDLCK })
        } else if l.flag & kind::FLOCK != 0 {
            fs::flock_fd(
                l.fd,
                if write { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB,
            )
        } else if l.flag & kind::OFD != 0 {
            fs::record_lock_fd(l.fd, libc::F_OFD_SETLK, ty, l.start, l.len)
        } else if l.flag & kind::POSIX != 0 {
            fs::record_lock_fd(l.fd, libc::F_SETLK, ty, l.start, l.len)
        } else {
            return Err(RestoreError::Unsupported {
                pid,
                resource: what(),
                reason: format!("unknown lock kind {:#x}", l.flag),
            });
        };
        taken.ctx(pid, what)?;
    }
    Ok(())
}
