//! `/proc/self/mountinfo`: which mounts exist, for finding a filesystem by device.

use std::path::PathBuf;

use super::{ProcResult, read_text};

/// One mount of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Mount id.
    pub id: i32,
    /// Device of the filesystem (major, minor).
    pub dev: (u32, u32),
    /// The directory of the filesystem that is mounted.
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        let Some((major, minor)) = f[2].split_once(':') else {
            continue;
        };
        let (Ok(id), Ok(major), Ok(minor)) = (f[0].parse(), major.parse(), minor.parse()) else {
            continue;
        };
        out.push(Mount {
            id,
            dev: (major, minor),
            root: unescape(f[3]),
            mount_point: PathBuf::from(unescape(f[4])),
            fstype: right.split(' ').next().unwrap_or_default().to_owned(),
        });
    }
    out
}

/// The mounts of our mount namespace.
pub fn read_mounts() -> ProcResult<Vec<Mount>> {
    Ok(parse_mounts(&read_text(PathBuf::from(
        "/proc/self/mountinfo",
    ))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let m = parse_mounts(
            "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
             30 22 0:26 /sub /mnt/with\\040space rw - tmpfs tmpfs rw\n\
             garbage\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].dev, (254, 0));
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(
            (m[1].root.as_str(), m[1].fstype.as_str()),
            ("/sub", "tmpfs")
        );
    }

    #[test]
    fn own_mounts_include_root() {
        let m = read_mounts().unwrap();
        assert!(m.iter().any(|m| m.mount_point == std::path::Path::new("/")));
    }
}
