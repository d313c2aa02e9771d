//! `/proc/PID/status`: credentials, capabilities, umask and friends.

use std::path::PathBuf;

use super::{ProcError, ProcResult, path, read_text};
use crate::Pid;

/// The fields of `/proc/PID/status` that stasis uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Thread group id.
    pub tgid: Pid,
    /// Parent pid.
    pub ppid: Pid,
    /// The pid in each nested pid namespace, outermost first.
    pub ns_pid: Vec<Pid>,
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Inheritable capabilities.
    pub cap_inh: u64,
    /// Permitted capabilities.
    pub cap_prm: u64,
    /// Effective capabilities.
    pub cap_eff: u64,
    /// Bounding set.
    pub cap_bnd: u64,
    /// Ambient capabilities.
    pub cap_amb: u64,
    /// The no_new_privs bit.
    pub no_new_privs: bool,
    /// Seccomp mode (0 off, 1 strict, 2 filter).
    pub seccomp: u32,
    /// Number of seccomp filters attached.
    pub seccomp_filters: u32,
    /// File mode creation mask.
    pub umask: u32,
    /// The task state letter.
    pub state: u8,
    /// Signals ignored (SIG_IGN).
    pub sig_ign: u64,
    /// Signals caught (have a handler).
    pub sig_cgt: u64,
    /// Whether THP is enabled for the process (PR_SET_THP_DISABLE clears it).
    pub thp_enabled: Option<bool>,
    /// Tracer pid, 0 if not traced.
    pub tracer_pid: Pid,
}

fn parse_ids<const N: usize>(v: &str) -> Option<[u32; N]> {
    let ids: Vec<u32> = v
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    ids.try_into().ok()
}

/// Parses the text of `/proc/PID/status`.
pub fn parse_status(text: &str, file: PathBuf) -> ProcResult<Status> {
    let mut s = Status::default();
    let mut seen_uid = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let v = value.trim();
        let bad = || ProcError::Format {
            path: file.clone(),
            detail: format!("bad {key}: {v:?}"),
        };
        let hex = || u64::from_str_radix(v, 16).map_err(|_| bad());
        match key {
            "Tgid" => s.tgid = v.parse().map_err(|_| bad())?,
            "PPid" => s.ppid = v.parse().map_err(|_| bad())?,
            "NSpid" => {
                s.ns_pid = v
                    .split_whitespace()
                    .map(|w| w.parse().map_err(|_| bad()))
                    .collect::<ProcResult<_>>()?;
            }
            "Uid" => {
                s.uid = parse_ids(v).ok_or_else(bad)?;
                seen_uid = true;
            }
            "Gid" => s.gid = parse_ids(v).ok_or_else(bad)?,
            "Groups" => {
                s.groups = v
                    .split_whitespace()
                    .map(|w| w.parse().map_err(|_| bad()))
                    .collect::<ProcResult<_>>()?;
            }
            "CapInh" => s.cap_inh = hex()?,
            "CapPrm" => s.cap_prm = hex()?,
            "CapEff" => s.cap_eff = hex()?,
            "CapBnd" => s.cap_bnd = hex()?,
            "CapAmb" => s.cap_amb = hex()?,
            "NoNewPrivs" => s.no_new_privs = v == "1",
            "Seccomp" => s.seccomp = v.parse().map_err(|_| bad())?,
            "Seccomp_filters" => s.seccomp_filters = v.parse().map_err(|_| bad())?,
            "Umask" => s.umask = u32::from_str_radix(v, 8).map_err(|_| bad())?,
            "State" => s.state = v.as_bytes().first().copied().unwrap_or(b'?'),
            "SigIgn" => s.sig_ign = hex()?,
            "SigCgt" => s.sig_cgt = hex()?,
            "THP_enabled" => s.thp_enabled = Some(v == "1"),
            "TracerPid" => s.tracer_pid = v.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    if !seen_uid {
        return Err(ProcError::Format {
            path: file,
            detail: "no Uid line".into(),
        });
    }
    Ok(s)
}

/// Reads `/proc/PID/status` (or `/proc/PID/task/TID/status` via `name`).
pub fn read_status(pid: Pid) -> ProcResult<Status> {
    let p = path(pid, "status");
    parse_status(&read_text(p.clone())?, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_status() {
        let s = read_status(std::process::id() as Pid).unwrap();
        assert_eq!(s.tgid, std::process::id() as Pid);
        assert_eq!(s.ns_pid.last().copied(), Some(s.tgid));
        assert!(s.cap_bnd != 0);
    }

    #[test]
    fn fields() {
        let text = "Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nPPid:\t1\n\
                    Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t10 20 \nNoNewPrivs:\t1\n\
                    Seccomp:\t2\nSeccomp_filters:\t3\nCapAmb:\t0000000000000400\nTHP_enabled:\t0\n";
        let s = parse_status(text, "x".into()).unwrap();
        assert_eq!(s.umask, 0o22);
        assert_eq!(s.uid, [1, 2, 3, 4]);
        assert_eq!(s.gid, [5, 6, 7, 8]);
        assert_eq!(s.groups, vec![10, 20]);
        assert!(s.no_new_privs);
        assert_eq!((s.seccomp, s.seccomp_filters), (2, 3));
        assert_eq!(s.cap_amb, 0x400);
        assert_eq!(s.thp_enabled, Some(false));
        assert_eq!(s.state, b'S');
    }

    #[test]
    fn malformed() {
        assert!(parse_status("Uid:\t1 2\n", "x".into()).is_err());
        assert!(parse_status("Name:\tx\n", "x".into()).is_err());
    }
}
