//! Parsers for `/proc/PID/*`. The files are text in kernel-defined formats; each parser
//! takes the text so it can be unit-tested, and a reader function takes the pid.

mod cgroup;
mod maps;
mod mounts;
mod stat;
mod status;
mod timers;

use std::path::PathBuf;

pub use cgroup::{CgroupMember, cgroup_mounts, parse_cgroups, read_cgroups};
pub use maps::{Vma, VmaPath, parse_smaps, read_maps, read_smaps};
pub use mounts::{Mount, parse_mounts, read_mounts};
pub use stat::{Blocked, Stat, blocked_in, parse_stat, read_stat};
pub use status::{Status, parse_status, read_status};
pub use timers::{PosixTimer, SIGEV_THREAD_ID, parse_timers, read_timers};

use crate::Pid;

/// An error reading or parsing a `/proc` file.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not in the expected format.
    #[error("{path}: unexpected format: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

impl ProcError {
    /// Whether the process has gone away (the file vanished).
    pub fn is_gone(&self) -> bool {
        matches!(self, ProcError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::ESRCH))
    }
}

/// Result of a `/proc` parser.
pub type ProcResult<T> = Result<T, ProcError>;

/// The path of `/proc/PID/NAME`.
pub fn path(pid: Pid, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// Reads a `/proc` file as text.
pub fn read_text(path: PathBuf) -> ProcResult<String> {
    std::fs::read_to_string(&path).map_err(|source| ProcError::Io { path, source })
}

/// Reads a `/proc` file as bytes.
pub fn read_bytes(path: PathBuf) -> ProcResult<Vec<u8>> {
    std::fs::read(&path).map_err(|source| ProcError::Io { path, source })
}

/// Reads a symlink such as `/proc/PID/cwd` or `/proc/PID/fd/N`.
pub fn read_link(path: PathBuf) -> ProcResult<PathBuf> {
    std::fs::read_link(&path).map_err(|source| ProcError::Io { path, source })
}

/// The threads of a process (`/proc/PID/task`), sorted.
pub fn threads(pid: Pid) -> ProcResult<Vec<Pid>> {
    let dir = path(pid, "task");
    let entries = std::fs::read_dir(&dir).map_err(|source| ProcError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut tids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ProcError::Io {
            path: dir.clone(),
            source,
        })?;
        if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// The children of thread `tid` of process `pid` (`/proc/PID/task/TID/children`).
pub fn children(pid: Pid, tid: Pid) -> ProcResult<Vec<Pid>> {
    let text = read_text(path(pid, &format!("task/{tid}/children")))?;
    Ok(text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect())
}

/// The open fd numbers of a process, sorted.
pub fn fds(pid: Pid) -> ProcResult<Vec<i32>> {
    let dir = path(pid, "fd");
    let entries = std::fs::read_dir(&dir).map_err(|source| ProcError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut fds = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ProcError::Io {
            path: dir.clone(),
            source,
        })?;
        if let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// The saved auxiliary vector (`/proc/PID/auxv`) as (type, value) words.
pub fn auxv(pid: Pid) -> ProcResult<Vec<u64>> {
    let bytes = read_bytes(path(pid, "auxv"))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

/// One resource limit: soft and hard values (`u64::MAX` = unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// Soft limit.
    pub cur: u64,
    /// Hard limit.
    pub max: u64,
}

/// The limit names of `/proc/PID/limits`, in RLIMIT_* order.
const LIMIT_NAMES: [&str; 16] = [
    "Max cpu time",
    "Max file size",
    "Max data size",
    "Max stack size",
    "Max core file size",
    "Max resident set",
    "Max processes",
    "Max open files",
    "Max locked memory",
    "Max address space",
    "Max file locks",
    "Max pending signals",
    "Max msgqueue size",
    "Max nice priority",
    "Max realtime priority",
    "Max realtime timeout",
];

/// Parses `/proc/PID/limits` into the 16 limits in RLIMIT_* order. We read limits from
/// here because `prlimit` on another process needs CAP_SYS_RESOURCE, which we lack.
pub fn parse_limits(text: &str, path: PathBuf) -> ProcResult<Vec<Rlimit>> {
    let mut out = Vec::with_capacity(LIMIT_NAMES.len());
    for name in LIMIT_NAMES {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| ProcError::Format {
                path: path.clone(),
                detail: format!("no line for {name:?}"),
            })?;
        let mut words = line[name.len()..].split_whitespace();
        let mut value = |what: &str| -> ProcResult<u64> {
            match words.next() {
                Some("unlimited") => Ok(u64::MAX),
                Some(w) => w.parse().map_err(|_| ProcError::Format {
                    path: path.clone(),
                    detail: format!("bad {what} value {w:?} for {name:?}"),
                }),
                None => Err(ProcError::Format {
                    path: path.clone(),
                    detail: format!("missing {what} value for {name:?}"),
                }),
            }
        };
        let cur = value("soft")?;
        let max = value("hard")?;
        out.push(Rlimit { cur, max });
    }
    Ok(out)
}

/// Reads the resource limits of `pid`.
pub fn read_limits(pid: Pid) -> ProcResult<Vec<Rlimit>> {
    let p = path(pid, "limits");
    parse_limits(&read_text(p.clone())?, p)
}

/// The fields of `/proc/PID/fdinfo/FD` that stasis uses; type-specific lines are kept
/// as (key, value) pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// File position.
    pub pos: u64,
    /// Open flags (octal in the file), including O_CLOEXEC for the fd.
    pub flags: u32,
    /// Mount id of the file.
    pub mnt_id: i32,
    /// Inode number.
    pub ino: u64,
    /// Every other line.
    pub extra: Vec<(String, String)>,
}

/// Parses `/proc/PID/fdinfo/FD`.
pub fn parse_fdinfo(text: &str, path: PathBuf) -> ProcResult<FdInfo> {
    let mut info = FdInfo::default();
    let bad = |detail: String| ProcError::Format {
        path: path.clone(),
        detail,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "pos" => info.pos = value.parse().map_err(|_| bad(format!("pos {value:?}")))?,
            "flags" => {
                info.flags =
                    u32::from_str_radix(value, 8).map_err(|_| bad(format!("flags {value:?}")))?;
            }
            "mnt_id" => {
                info.mnt_id = value
                    .parse()
                    .map_err(|_| bad(format!("mnt_id {value:?}")))?
            }
            "ino" => info.ino = value.parse().map_err(|_| bad(format!("ino {value:?}")))?,
            _ => info.extra.push((key.to_owned(), value.to_owned())),
        }
    }
    Ok(info)
}

/// Reads `/proc/PID/fdinfo/FD`.
pub fn read_fdinfo(pid: Pid, fd: i32) -> ProcResult<FdInfo> {
    let p = path(pid, &format!("fdinfo/{fd}"));
    parse_fdinfo(&read_text(p.clone())?, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             95511                95511                processes 
Max open files            1024                 524288               files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       95511                95511                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
";

    #[test]
    fn limits() {
        let l = parse_limits(LIMITS, "x".into()).unwrap();
        assert_eq!(l.len(), 16);
        assert_eq!(
            l[3],
            Rlimit {
                cur: 8388608,
                max: u64::MAX
            }
        );
        assert_eq!(
            l[7],
            Rlimit {
                cur: 1024,
                max: 524288
            }
        );
        assert_eq!(l[13], Rlimit { cur: 0, max: 0 });
    }

    #[test]
    fn limits_missing_line_is_an_error() {
        let cut: String = LIMITS.lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(parse_limits(&cut, "x".into()).is_err());
    }

    #[test]
    fn fdinfo() {
        let text = "pos:\t4097\nflags:\t02100002\nmnt_id:\t25\nino:\t1234\nlock:\tx\n";
        let info = parse_fdinfo(text, "x".into()).unwrap();
        assert_eq!(info.pos, 4097);
        assert_eq!(info.flags, 0o2100002);
        assert_eq!(info.mnt_id, 25);
        assert_eq!(info.ino, 1234);
        assert_eq!(info.extra, vec![("lock".to_owned(), "x".to_owned())]);
    }

    #[test]
    fn own_process() {
        let me = std::process::id() as Pid;
        assert!(threads(me).unwrap().contains(&me));
        assert!(fds(me).unwrap().contains(&0) || fds(me).is_ok());
        assert!(auxv(me).unwrap().len() > 4);
        assert_eq!(read_limits(me).unwrap().len(), 16);
    }
}
