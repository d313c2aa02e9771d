//! File locks (`--file-locks`), from the `lock:` lines of `/proc/PID/fdinfo/N`, into
//! `filelocks.img`.
//!
//! A POSIX record lock belongs to the process (its fd table) and shows in the fdinfo of
//! every fd it has on the file; flock locks, OFD locks and leases belong to the open file
//! description and show in the fdinfo of its fds. Each is saved once, with the process
//! and fd it was found through, which is where the restore takes it again.

use std::collections::HashSet;

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, proc};

use crate::error::{DumpError, Result};

/// CRIU's lock kinds (`file_lock_entry.flag`).
pub(crate) mod kind {
    pub const POSIX: u32 = 1;
    pub const FLOCK: u32 = 2;
    pub const OFD: u32 = 4;
    pub const LEASE: u32 = 8;
    /// With LEASE: the lease was being broken.
    pub const LEASE_BREAKING: u32 = 4;
}

/// The locks of the dump.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    entries: Vec<pb::FileLockEntry>,
    /// (table or description key, kind, type, start, len) already saved.
    seen: HashSet<(u64, u32, u32, i64, i64)>,
}

/// One parsed `lock:` line: kind, type (F_RDLCK / F_WRLCK), start, length (0: to the end).
fn parse_lock(line: &str) -> Option<(u32, u32, i64, i64)> {
    // "1: POSIX  ADVISORY  WRITE 12345 fe:00:10010916 0 99" (the "lock:" key removed),
    // a lease: "2: LEASE  ACTIVE    READ 19777 fe:00:10011010 0 EOF".
    let mut w = line.split_whitespace();
    w.next()?; // "N:"
    let mut flag = match w.next()? {
        "POSIX" => kind::POSIX,
        "FLOCK" => kind::FLOCK,
        "OFDLCK" => kind::OFD,
        "LEASE" => kind::LEASE,
        _ => return None,
    };
    let state = w.next()?;
    if flag == kind::LEASE && state == "BREAKING" {
        flag |= kind::LEASE_BREAKING;
    }
    let ty = match w.next()? {
        "READ" => libc::F_RDLCK,
        "WRITE" => libc::F_WRLCK,
        "UNLCK" => libc::F_UNLCK,
        _ => return None,
    } as u32;
    let _pid = w.next()?;
    let _inode = w.next()?;
    let start: i64 = w.next()?.parse().ok()?;
    let len = match w.next()? {
        "EOF" => 0,
        end => end.parse::<i64>().ok()? - start + 1,
    };
    Some((flag, ty, start, len))
}

impl Locks {
    /// Notes the locks the fdinfo of fd `fd` of `pid` shows. `table` identifies the
    /// process's fd table (POSIX locks), `file_id` the description (the others).
    pub fn note(
        &mut self,
        pid: Pid,
        fd: i32,
        table: u32,
        file_id: u32,
        info: &proc::FdInfo,
        allowed: bool,
    ) -> Result<()> {
        for (key, value) in info.extra.iter().filter(|(k, _)| k == "lock") {
            let Some((flag, ty, start, len)) = parse_lock(value) else {
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!("fd {fd}"),
                    reason: format!("cannot parse its lock line {key}: {value:?}"),
                });
            };
            if !allowed {
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!("fd {fd}"),
                    reason: "the process holds file locks; dump with --file-locks to save them"
                        .into(),
                });
            }
            let owner = if flag == kind::POSIX {
                u64::from(table)
            } else {
                1 << 32 | u64::from(file_id)
            };
            if !self.seen.insert((owner, flag, ty, start, len)) {
                continue;
            }
            self.entries.push(pb::FileLockEntry {
                flag,
                r#type: ty,
                pid,
                fd,
                start,
                len,
            });
        }
        Ok(())
    }

    /// Writes `filelocks.img` (when there are locks).
    pub fn write(&self, dir: &ImageDir) -> Result<()> {
        if !self.entries.is_empty() {
            dir.write_all(ImageKind::FileLocks, 0, &self.entries)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines() {
        assert_eq!(
            parse_lock("1: POSIX  ADVISORY  WRITE 12345 fe:00:10010916 0 99"),
            Some((kind::POSIX, libc::F_WRLCK as u32, 0, 100))
        );
        assert_eq!(
            parse_lock("2: LEASE  ACTIVE    READ 19777 fe:00:10011010 0 EOF"),
            Some((kind::LEASE, libc::F_RDLCK as u32, 0, 0))
        );
        assert_eq!(
            parse_lock("3: OFDLCK ADVISORY  WRITE -1 fe:00:10010977 10 59"),
            Some((kind::OFD, libc::F_WRLCK as u32, 10, 50))
        );
        assert_eq!(
            parse_lock("4: LEASE  BREAKING  READ 1 fe:00:1 0 EOF").map(|l| l.0),
            Some(kind::LEASE | kind::LEASE_BREAKING)
        );
        assert_eq!(parse_lock("5: DELEG ACTIVE READ 1 fe:00:1 0 EOF"), None);
    }
}
