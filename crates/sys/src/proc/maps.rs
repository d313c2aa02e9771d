//! `/proc/PID/smaps`: the address space, one vma at a time, with its VmFlags.

use std::path::PathBuf;

use super::{ProcError, ProcResult, path, read_text};
use crate::Pid;

/// What a vma maps, from the name column of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmaPath {
    /// No name: anonymous memory.
    Anonymous,
    /// `[heap]`: the brk area.
    Heap,
    /// `[stack]`: the main thread's stack.
    Stack,
    /// `[vdso]`.
    Vdso,
    /// `[vvar]`.
    Vvar,
    /// `[vvar_vclock]` (6.13+ splits the vDSO data pages).
    VvarVclock,
    /// `[vsyscall]`: the legacy fixed page, not a real vma.
    Vsyscall,
    /// `[uprobes]`.
    Uprobes,
    /// `[anon:NAME]` or `[anon_shmem:NAME]` (PR_SET_VMA_ANON_NAME).
    AnonNamed(String),
    /// A file path; `deleted` if the kernel appended " (deleted)".
    File {
        /// The path as the kernel shows it, without the " (deleted)" suffix.
        path: String,
        /// Whether the file has been unlinked.
        deleted: bool,
    },
    /// Any other bracketed or special name.
    Other(String),
}

/// One vma.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// PROT_READ.
    pub read: bool,
    /// PROT_WRITE.
    pub write: bool,
    /// PROT_EXEC.
    pub exec: bool,
    /// MAP_SHARED (else private).
    pub shared: bool,
    /// File offset in bytes.
    pub offset: u64,
    /// Device major of the mapped file.
    pub dev_major: u32,
    /// Device minor of the mapped file.
    pub dev_minor: u32,
    /// Inode of the mapped file (0 for anonymous memory).
    pub inode: u64,
    /// The name column.
    pub path: VmaPath,
    /// The VmFlags line: two-letter kernel flag codes.
    pub vm_flags: Vec<[u8; 2]>,
    /// Resident set size in KiB.
    pub rss_kb: u64,
    /// Anonymous memory backed by transparent huge pages, in KiB.
    pub anon_huge_kb: u64,
}

impl Vma {
    /// Whether the VmFlags line has `code` (e.g. `b"gd"` for VM_GROWSDOWN).
    pub fn has_flag(&self, code: &[u8; 2]) -> bool {
        self.vm_flags.iter().any(|f| f == code)
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the vma is empty (never, for a kernel vma).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// PROT_* bits.
    pub fn prot(&self) -> i32 {
        let mut p = 0;
        if self.read {
            p |= libc::PROT_READ;
        }
        if self.write {
            p |= libc::PROT_WRITE;
        }
        if self.exec {
            p |= libc::PROT_EXEC;
        }
        p
    }
}

fn parse_name(name: &str) -> VmaPath {
    match name {
        "" => VmaPath::Anonymous,
        "[heap]" => VmaPath::Heap,
        "[stack]" => VmaPath::Stack,
        "[vdso]" => VmaPath::Vdso,
        "[vvar]" => VmaPath::Vvar,
        "[vvar_vclock]" => VmaPath::VvarVclock,
        "[vsyscall]" => VmaPath::Vsyscall,
        "[uprobes]" => VmaPath::Uprobes,
        _ => {
            if let Some(inner) = name
                .strip_prefix("[anon:")
                .or_else(|| name.strip_prefix("[anon_shmem:"))
                .and_then(|s| s.strip_suffix(']'))
            {
                VmaPath::AnonNamed(inner.to_owned())
            } else if name.starts_with('/') {
                match name.strip_suffix(" (deleted)") {
                    Some(p) => VmaPath::File {
                        path: p.to_owned(),
                        deleted: true,
                    },
                    None => VmaPath::File {
                        path: name.to_owned(),
                        deleted: false,
                    },
                }
            } else {
                VmaPath::Other(name.to_owned())
            }
        }
    }
}

fn parse_header(line: &str) -> Option<Vma> {
    let (range, rest) = line.split_once(' ')?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let rest = rest.trim_start();
    let (perms, rest) = rest.split_once(' ')?;
    let perms = perms.as_bytes();
    if perms.len() != 4 {
        return None;
    }
    let rest = rest.trim_start();
    let (offset, rest) = rest.split_once(' ')?;
    let offset = u64::from_str_radix(offset, 16).ok()?;
    let rest = rest.trim_start();
    let (dev, rest) = rest.split_once(' ')?;
    let (major, minor) = dev.split_once(':')?;
    let rest = rest.trim_start();
    let (inode, name) = match rest.split_once(' ') {
        Some((i, n)) => (i, n.trim_start()),
        None => (rest, ""),
    };
    Some(Vma {
        start,
        end,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset,
        dev_major: u32::from_str_radix(major, 16).ok()?,
        dev_minor: u32::from_str_radix(minor, 16).ok()?,
        inode: inode.parse().ok()?,
        path: parse_name(name),
        vm_flags: Vec::new(),
        rss_kb: 0,
        anon_huge_kb: 0,
    })
}

fn is_header(line: &str) -> bool {
    line.split(' ')
        .next()
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && a.bytes().all(|c| c.is_ascii_hexdigit())
                && b.bytes().all(|c| c.is_ascii_hexdigit())
        })
}

fn kb(value: &str) -> u64 {
    value
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Parses the text of `/proc/PID/smaps` (or `maps`, which just lacks the detail lines).
pub fn parse_smaps(text: &str, file: PathBuf) -> ProcResult<Vec<Vma>> {
    let mut vmas: Vec<Vma> = Vec::new();
    for line in text.lines() {
        if is_header(line) {
            let vma = parse_header(line).ok_or_else(|| ProcError::Format {
                path: file.clone(),
                detail: format!("bad vma line {line:?}"),
            })?;
            vmas.push(vma);
            continue;
        }
        let Some(vma) = vmas.last_mut() else {
            return Err(ProcError::Format {
                path: file,
                detail: format!("detail line before any vma: {line:?}"),
            });
        };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Rss" => vma.rss_kb = kb(value),
            "AnonHugePages" => vma.anon_huge_kb = kb(value),
            "VmFlags" => {
                vma.vm_flags = value
                    .split_whitespace()
                    .filter_map(|f| <[u8; 2]>::try_from(f.as_bytes()).ok())
                    .collect();
            }
            _ => {}
        }
    }
    Ok(vmas)
}

/// Reads `/proc/PID/smaps`.
pub fn read_smaps(pid: Pid) -> ProcResult<Vec<Vma>> {
    let p = path(pid, "smaps");
    parse_smaps(&read_text(p.clone())?, p)
}

/// The vmas of process `pid` from `/proc/PID/maps`: ranges, protections and backing
/// only (no VmFlags, no Rss), but without smaps's walk over every page.
pub fn read_maps(pid: Pid) -> ProcResult<Vec<Vma>> {
    let p = path(pid, "maps");
    parse_smaps(&read_text(p.clone())?, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d1c3a00000-55d1c3a02000 r--p 00000000 fe:00 325843                     /usr/bin/cat
Size:                  8 kB
Rss:                   8 kB
AnonHugePages:         0 kB
VmFlags: rd mr mw me sd 
7f0000000000-7f0000200000 rw-s 00000000 00:01 1027                       /dev/zero (deleted)
Rss:                   4 kB
VmFlags: rd wr sh mr mw me ms sd 
7f0000400000-7f0000600000 rw-p 00000000 00:00 0 
AnonHugePages:      2048 kB
VmFlags: rd wr mr mw me ac sd hg 
7f0000800000-7f0000801000 rw-p 00000000 00:00 0                          [anon:my name]
VmFlags: rd wr mr mw me ac sd 
7fff1641e000-7fff1643f000 rw-p 00000000 00:00 0                          [stack]
VmFlags: rd wr mr mw me gd ac 
7fff16500000-7fff16504000 r--p 00000000 00:00 0                          [vvar]
VmFlags: rd mr pf io de dd sd 
7fff16504000-7fff16506000 r--p 00000000 00:00 0                          [vvar_vclock]
7fff16506000-7fff16508000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_every_kind() {
        let v = parse_smaps(SMAPS, "x".into()).unwrap();
        assert_eq!(v.len(), 9);
        assert_eq!(
            v[0].path,
            VmaPath::File {
                path: "/usr/bin/cat".into(),
                deleted: false
            }
        );
        assert_eq!(
            (v[0].start, v[0].end, v[0].inode),
            (0x55d1c3a00000, 0x55d1c3a02000, 325843)
        );
        assert_eq!((v[0].dev_major, v[0].dev_minor), (0xfe, 0));
        assert!(v[0].read && !v[0].write && !v[0].shared);
        assert_eq!(
            v[1].path,
            VmaPath::File {
                path: "/dev/zero".into(),
                deleted: true
            }
        );
        assert!(v[1].shared && v[1].write);
        assert_eq!(v[2].path, VmaPath::Anonymous);
        assert_eq!(v[2].anon_huge_kb, 2048);
        assert!(v[2].has_flag(b"hg"));
        assert_eq!(v[3].path, VmaPath::AnonNamed("my name".into()));
        assert_eq!(v[4].path, VmaPath::Stack);
        assert!(v[4].has_flag(b"gd"));
        assert_eq!(v[5].path, VmaPath::Vvar);
        assert_eq!(v[6].path, VmaPath::VvarVclock);
        assert_eq!(v[7].path, VmaPath::Vdso);
        assert_eq!(v[8].path, VmaPath::Vsyscall);
        assert_eq!(v[8].start, 0xffffffffff600000);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_smaps("Rss: 4 kB\n", "x".into()).is_err());
        assert!(parse_smaps("1000-2000 rw\n", "x".into()).is_err());
    }

    #[test]
    fn own_smaps() {
        let v = read_smaps(std::process::id() as Pid).unwrap();
        assert!(v.iter().any(|v| v.path == VmaPath::Stack));
        assert!(v.iter().any(|v| v.path == VmaPath::Vdso));
    }
}
