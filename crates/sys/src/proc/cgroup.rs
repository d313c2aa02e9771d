//! `/proc/PID/cgroup` and the cgroup mounts of `/proc/self/mountinfo`.

use std::path::PathBuf;

use super::{ProcError, ProcResult, path, read_text};
use crate::Pid;

/// Membership in one hierarchy: (controllers as listed, e.g. "memory" or "name=systemd",
/// empty for the unified hierarchy; path in the hierarchy).
pub type CgroupMember = (String, String);

/// Parses `/proc/PID/cgroup` lines `ID:controllers:path`.
pub fn parse_cgroups(text: &str, file: PathBuf) -> ProcResult<Vec<CgroupMember>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ProcError::Format {
                path: file,
                detail: format!("bad line {line:?}"),
            });
        };
        out.push((ctl.to_owned(), path.to_owned()));
    }
    Ok(out)
}

/// Reads `/proc/PID/cgroup`.
pub fn read_cgroups(pid: Pid) -> ProcResult<Vec<CgroupMember>> {
    let p = path(pid, "cgroup");
    parse_cgroups(&read_text(p.clone())?, p)
}

/// Where each cgroup hierarchy is mounted: (controllers as /proc/PID/cgroup names them,
/// mount point), from `/proc/self/mountinfo`.
pub fn cgroup_mounts() -> ProcResult<Vec<(String, PathBuf)>> {
    let text = read_text(PathBuf::from("/proc/self/mountinfo"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        // ... mount-point ... - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or_default();
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or_default();
        let _source = r.next();
        let options = r.next().unwrap_or_default();
        match fstype {
            "cgroup2" => out.push((String::new(), PathBuf::from(mount_point))),
            "cgroup" => {
                // The controllers (and name=) among the super options, in kernel order,
                // joined as /proc/PID/cgroup shows them.
                let ctls: Vec<&str> = options
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro")
                            && !o.starts_with("release_agent")
                            && *o != "xattr"
                            && *o != "noprefix"
                            && *o != "clone_children"
                            && *o != "cpuset_v2_mode"
                    })
                    .collect();
                out.push((ctls.join(","), PathBuf::from(mount_point)));
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_lines() {
        let c = parse_cgroups("9:name=systemd:/\n4:memory:/a/b\n0::/x:y\n", "x".into()).unwrap();
        assert_eq!(c[0], ("name=systemd".into(), "/".into()));
        assert_eq!(c[1], ("memory".into(), "/a/b".into()));
        assert_eq!(c[2], ("".into(), "/x:y".into()));
        assert!(parse_cgroups("garbage\n", "x".into()).is_err());
    }

    #[test]
    fn own_mounts_cover_own_cgroups() {
        let mine = read_cgroups(crate::process::getpid()).unwrap();
        let mounts = cgroup_mounts().unwrap();
        for (ctl, _) in mine {
            assert!(
                mounts.iter().any(|(m, _)| *m == ctl),
                "no mount for {ctl:?}: {mounts:?}"
            );
        }
    }
}
