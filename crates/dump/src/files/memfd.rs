//! memfds: each open description is a `MemfdFileEntry` (flags, offset) pointing at the
//! inode (`memfd.img`: name, size, seals, owner), whose contents are stored like shared
//! anonymous memory (`pagemap-shmem-INO.img` and a pages image). Mappings of a memfd
//! point at a file entry of it too (vma status `MEMFD`), so fds and mappings of one memfd
//! share one object after restore.

use std::fs::File;
use std::os::fd::AsFd;

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fds, fs, proc};

use super::{Fd, FileTable};
use crate::error::{DumpError, Result, SysContext};
use crate::memory::ShmemObject;

/// A memfd inode of the dump.
#[derive(Debug)]
struct Inode {
    ino: u64,
    entry: pb::MemfdInodeEntry,
    /// A description of our own, to read the contents through.
    file: Option<File>,
    /// The process it was found in (for error messages).
    pid: Pid,
}

/// The memfd inodes of the dump.
#[derive(Debug, Default)]
pub struct MemfdTable {
    inodes: Vec<Inode>,
}

impl MemfdTable {
    /// The inode id of the memfd `ino`, first seen through `path` (a `/proc` link to it)
    /// in process `pid`.
    fn inode_id(&mut self, pid: Pid, ino: u64, path: &std::path::Path, name: &str) -> Result<u32> {
        if let Some(i) = self.inodes.iter().find(|i| i.ino == ino) {
            return Ok(i.entry.inode_id as u32);
        }
        let file = fs::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0).ctx(pid, || {
            format!("open memfd {name} through {}", path.display())
        })?;
        let st = fs::fstat(file.as_fd()).ctx(pid, || format!("fstat memfd {name}"))?;
        let seals = fds::seals(file.as_fd()).unwrap_or(0);
        let inode_id = self.inodes.len() as u64 + 1;
        self.inodes.push(Inode {
            ino,
            entry: pb::MemfdInodeEntry {
                name: name.to_owned(),
                uid: st.st_uid,
                gid: st.st_gid,
                size: st.st_size as u64,
                shmid: ino as u32,
                seals,
                inode_id,
                hugetlb_flag: None,
                mode: Some(st.st_mode),
            },
            file: Some(File::from(file)),
            pid,
        });
        Ok(inode_id as u32)
    }

    /// The contents of every inode, as shared memory objects, for the pages dump; taken
    /// once.
    pub fn take_contents(&mut self) -> Vec<(Pid, ShmemObject)> {
        self.inodes
            .iter_mut()
            .filter_map(|i| {
                i.file.take().map(|file| {
                    (
                        i.pid,
                        ShmemObject {
                            shmid: u64::from(i.entry.shmid),
                            file,
                            size: i.entry.size,
                        },
                    )
                })
            })
            .collect()
    }

    /// Writes `memfd.img`.
    pub fn write(&self, dir: &ImageDir) -> Result<()> {
        if self.inodes.is_empty() {
            return Ok(());
        }
        dir.write_all(
            ImageKind::MemfdInode,
            0,
            self.inodes.iter().map(|i| &i.entry),
        )?;
        Ok(())
    }
}

/// The memfd name in a `/memfd:NAME (deleted)` link.
fn memfd_name(link: &str) -> &str {
    let name = link.strip_prefix("/memfd:").unwrap_or(link);
    name.strip_suffix(" (deleted)").unwrap_or(name)
}

/// An open memfd; returns its file id.
pub(crate) fn dump_memfd(table: &mut FileTable, _dir: &ImageDir, f: &Fd) -> Result<u32> {
    let path = proc::path(f.pid, &format!("fd/{}", f.fd));
    let inode_id = table
        .memfds
        .inode_id(f.pid, f.st.st_ino, &path, memfd_name(&f.link))?;
    let (flags, pos, fown) = (f.flags(), f.info.pos, f.fown());
    Ok(table.add(pb::FdTypes::Memfd, |id, e| {
        e.memfd = Some(pb::MemfdFileEntry {
            id,
            flags,
            pos,
            fown: Some(fown),
            inode_id,
        });
    }))
}

impl FileTable {
    /// A file entry for a mapping of the memfd mapped at `[start, end)` of `pid` (seen as
    /// `link` in its maps); returns the file id the vma refers to.
    pub fn memfd_mapping(
        &mut self,
        pid: Pid,
        start: u64,
        end: u64,
        link: &str,
        open_flags: u32,
    ) -> Result<u32> {
        let path = proc::path(pid, &format!("map_files/{start:x}-{end:x}"));
        let st = fs::stat(&path).map_err(|errno| DumpError::Sys {
            pid,
            what: format!("stat {}", path.display()),
            errno,
        })?;
        let inode_id = self
            .memfds
            .inode_id(pid, st.st_ino, &path, memfd_name(link))?;
        Ok(self.add(pb::FdTypes::Memfd, |id, e| {
            e.memfd = Some(pb::MemfdFileEntry {
                id,
                flags: open_flags,
                pos: 0,
                fown: Some(pb::FownEntry::default()),
                inode_id,
            });
        }))
    }
}
