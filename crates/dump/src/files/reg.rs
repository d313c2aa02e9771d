//! Regular files, directories and device nodes, and files whose name is gone.
//!
//! A file that was deleted while open has no path to reopen it by. With no link left
//! (`st_nlink == 0`) it is a **ghost**: its contents (up to `--ghost-limit` bytes of
//! allocated blocks) and attributes go to `ghost-file-ID.img`, and `remap-fpath.img`
//! points its file id at that ghost. With links left elsewhere (`--link-remap`), a hard
//! link is made to it now (`linkat` of the open file) next to where it was, named
//! `link_remap.ID`, and the remap points at a file entry of that link: the restore opens
//! the very inode through it.

use std::os::fd::AsFd;
use std::path::Path;

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fds, fs};

use super::{Fd, FileOptions, FileTable};
use crate::error::{DumpError, Result, SysContext};

/// Modification time of a stat, in nanoseconds since the epoch.
pub(crate) fn mtime(st: &libc::stat64) -> Option<u64> {
    u64::try_from(st.st_mtime)
        .ok()
        .map(|s| s * 1_000_000_000 + st.st_mtime_nsec as u64)
}

/// The ghost files of the dump and the remaps pointing at them (or at links).
#[derive(Debug, Default)]
pub(crate) struct Ghosts {
    /// Ghost images to write: id, head, extents with their bytes.
    files: Vec<GhostFile>,
    /// `remap-fpath.img`.
    remaps: Vec<pb::RemapFilePathEntry>,
    next_id: u32,
    /// Links made for `--link-remap`: removed again if the dump fails.
    links: Vec<String>,
    /// (device, inode) of each linked file, with the file id of its link.
    linked: Vec<((u64, u64), u32)>,
}

#[derive(Debug)]
struct GhostFile {
    id: u32,
    dev: u64,
    ino: u64,
    head: pb::GhostFileEntry,
    chunks: Vec<(pb::GhostChunkEntry, Vec<u8>)>,
}

impl Ghosts {
    /// Removes the links this dump made (it failed: nobody will restore through them).
    pub fn remove_links(&self) {
        for link in &self.links {
            let _ = std::fs::remove_file(link);
        }
    }

    /// Writes `ghost-file-ID.img` for each ghost and `remap-fpath.img`.
    pub fn write(&self, dir: &ImageDir) -> Result<()> {
        for g in &self.files {
            let mut w = dir.create(ImageKind::GhostFile, u64::from(g.id))?;
            w.write(&g.head)?;
            for (chunk, bytes) in &g.chunks {
                w.write(chunk)?;
                w.write_raw(bytes)?;
            }
            w.finish()?;
        }
        if !self.remaps.is_empty() {
            dir.write_all(ImageKind::RemapFpath, 0, &self.remaps)?;
        }
        Ok(())
    }
}

/// A regular file, directory or device node open at `f`; returns its file id.
pub(crate) fn dump_reg(
    table: &mut FileTable,
    _dir: &ImageDir,
    f: &Fd,
    opts: FileOptions,
) -> Result<u32> {
    let kind = f.st.st_mode & libc::S_IFMT;
    let deleted = f.link.strip_suffix(" (deleted)");
    // A name ending in " (deleted)" may also be a live file called so: trust the path only
    // if it is this very inode.
    let gone = deleted.is_some() && !same_inode(Path::new(&f.link), &f.st);
    let name = if gone {
        deleted.unwrap_or(&f.link)
    } else {
        &f.link
    };
    let id = table.add_reg(pb::RegFileEntry {
        flags: f.flags(),
        pos: f.info.pos,
        fown: Some(f.fown()),
        name: name.to_owned(),
        mnt_id: Some(f.info.mnt_id),
        size: (kind == libc::S_IFREG).then_some(f.st.st_size as u64),
        mode: Some(f.st.st_mode),
        stasis_mtime: (kind == libc::S_IFREG).then(|| mtime(&f.st)).flatten(),
        ..Default::default()
    });
    if gone {
        let source = Deleted {
            pid: f.pid,
            st: &f.st,
            reopen: stasis_sys::proc::path(f.pid, &format!("fd/{}", f.fd)),
            resource: f.resource(),
        };
        remap_deleted(table, &source, name, id, opts)?;
    }
    Ok(id)
}

/// A deleted file as the process holds it: by an fd or by a mapping.
struct Deleted<'a> {
    pid: Pid,
    st: &'a libc::stat64,
    /// A `/proc` path that opens it (`fd/N` or `map_files/START-END`).
    reopen: std::path::PathBuf,
    /// How errors name it.
    resource: String,
}

impl Deleted<'_> {
    fn unsupported(&self, reason: impl Into<String>) -> DumpError {
        DumpError::Unsupported {
            pid: self.pid,
            resource: self.resource.clone(),
            reason: reason.into(),
        }
    }

    /// A description of our own: reading it (or seeking for data and holes) must not move
    /// an offset the process shares.
    fn open(&self) -> Result<std::os::fd::OwnedFd> {
        fs::open(&self.reopen, libc::O_RDONLY | libc::O_CLOEXEC, 0).ctx(self.pid, || {
            format!("{}: reopen the deleted file", self.resource)
        })
    }
}

impl FileTable {
    /// A regular-file entry for the mapping `[start, end)` of the deleted file `name`,
    /// remapped to a ghost or a link as an fd of it would be; returns its file id.
    pub fn deleted_mapping(
        &mut self,
        pid: Pid,
        (start, end): (u64, u64),
        name: &str,
        open_flags: u32,
        opts: FileOptions,
    ) -> Result<u32> {
        let reopen = stasis_sys::proc::path(pid, &format!("map_files/{start:x}-{end:x}"));
        let resource = format!("vma {start:x}-{end:x} ({name} (deleted))");
        self.deleted_file(pid, reopen, name, open_flags, resource, opts)
    }

    /// A regular-file entry for the deleted file (or directory) `name` that `reopen` (a
    /// `/proc` link: `cwd`, `root`, `exe`, `map_files/...`) opens, remapped to a ghost or
    /// a link; returns its file id.
    pub fn deleted_file(
        &mut self,
        pid: Pid,
        reopen: std::path::PathBuf,
        name: &str,
        open_flags: u32,
        resource: String,
        opts: FileOptions,
    ) -> Result<u32> {
        let st = fs::stat(&reopen).ctx(pid, || format!("stat {}", reopen.display()))?;
        let id = self.add_reg(pb::RegFileEntry {
            flags: open_flags,
            pos: 0,
            fown: Some(pb::FownEntry::default()),
            name: name.to_owned(),
            size: Some(st.st_size as u64),
            mode: Some(st.st_mode),
            ..Default::default()
        });
        let source = Deleted {
            pid,
            st: &st,
            reopen,
            resource,
        };
        remap_deleted(self, &source, name, id, opts)?;
        Ok(id)
    }
}

fn same_inode(path: &Path, st: &libc::stat64) -> bool {
    fs::stat(path).is_ok_and(|p| p.st_dev == st.st_dev && p.st_ino == st.st_ino)
}

/// Saves how to reopen a deleted file: as a ghost, or through a link (`--link-remap`).
fn remap_deleted(
    table: &mut FileTable,
    f: &Deleted<'_>,
    name: &str,
    id: u32,
    opts: FileOptions,
) -> Result<()> {
    let kind = f.st.st_mode & libc::S_IFMT;
    if let Some(ghost) = table
        .ghosts
        .files
        .iter()
        .find(|g| g.dev == f.st.st_dev && g.ino == f.st.st_ino)
    {
        let remap_id = ghost.id;
        table.ghosts.remaps.push(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id,
            remap_type: Some(pb::RemapType::Ghost as i32),
        });
        return Ok(());
    }
    if let Some((_, link_id)) = table
        .ghosts
        .linked
        .iter()
        .find(|(ino, _)| *ino == (f.st.st_dev, f.st.st_ino))
    {
        let remap_id = *link_id;
        table.ghosts.remaps.push(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id,
            remap_type: Some(pb::RemapType::Linked as i32),
        });
        return Ok(());
    }
    if f.st.st_nlink > 0 && kind == libc::S_IFREG {
        if !opts.link_remap {
            return Err(f.unsupported(
                "the file was deleted but still has other links; dump with --link-remap to \
                 reopen it through a link made now",
            ));
        }
        let link_id = table.new_id();
        let link = link_remap_path(name, link_id);
        let file = f.open()?;
        fs::link_open_file(file.as_fd(), Path::new(&link)).ctx(f.pid, || {
            format!("{}: link the deleted file as {link}", f.resource)
        })?;
        table.ghosts.links.push(link.clone());
        table
            .ghosts
            .linked
            .push(((f.st.st_dev, f.st.st_ino), link_id));
        table.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: link_id,
            reg: Some(pb::RegFileEntry {
                id: link_id,
                flags: 0,
                pos: 0,
                fown: Some(pb::FownEntry::default()),
                name: link,
                ..Default::default()
            }),
            ..Default::default()
        });
        table.ghosts.remaps.push(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id: link_id,
            remap_type: Some(pb::RemapType::Linked as i32),
        });
        return Ok(());
    }
    let ghost = ghost_of(table, f, name, opts)?;
    table.ghosts.remaps.push(pb::RemapFilePathEntry {
        orig_id: id,
        remap_id: ghost,
        remap_type: Some(pb::RemapType::Ghost as i32),
    });
    Ok(())
}

/// `DIR/link_remap.ID` next to where the file was.
fn link_remap_path(name: &str, id: u32) -> String {
    let dir = Path::new(name)
        .parent()
        .map_or_else(|| "/".to_owned(), |d| d.to_string_lossy().into_owned());
    format!("{}/link_remap.{id}", dir.trim_end_matches('/'))
}

/// Saves the deleted inode of `f` as a ghost; returns the ghost id.
fn ghost_of(table: &mut FileTable, f: &Deleted<'_>, name: &str, opts: FileOptions) -> Result<u32> {
    let kind = f.st.st_mode & libc::S_IFMT;
    if !matches!(kind, libc::S_IFREG | libc::S_IFDIR) {
        return Err(f.unsupported("deleted files of this kind are not supported"));
    }
    let allocated = f.st.st_blocks as u64 * 512;
    if allocated > opts.ghost_limit {
        return Err(f.unsupported(format!(
            "the deleted file {name} holds {allocated} bytes, more than the ghost limit of {} \
             (raise it with --ghost-limit)",
            opts.ghost_limit
        )));
    }
    let chunks = if kind == libc::S_IFREG {
        read_extents(f, f.st.st_size as u64)?
    } else {
        Vec::new()
    };
    table.ghosts.next_id += 1;
    let id = table.ghosts.next_id;
    let time = |sec: i64, nsec: i64| pb::Timeval {
        tv_sec: sec as u64,
        tv_usec: (nsec / 1000) as u64,
    };
    table.ghosts.files.push(GhostFile {
        id,
        dev: f.st.st_dev,
        ino: f.st.st_ino,
        head: pb::GhostFileEntry {
            uid: f.st.st_uid,
            gid: f.st.st_gid,
            mode: f.st.st_mode,
            dev: Some(f.st.st_dev as u32),
            ino: Some(f.st.st_ino),
            rdev: None,
            atim: Some(time(f.st.st_atime, f.st.st_atime_nsec)),
            mtim: Some(time(f.st.st_mtime, f.st.st_mtime_nsec)),
            chunks: Some(true),
            size: Some(f.st.st_size as u64),
            symlnk_target: None,
        },
        chunks,
    });
    Ok(id)
}

/// The data extents of a file (SEEK_DATA / SEEK_HOLE) with their bytes; holes stay holes.
fn read_extents(f: &Deleted<'_>, size: u64) -> Result<Vec<(pb::GhostChunkEntry, Vec<u8>)>> {
    let pid = f.pid;
    let own = f.open()?;
    let file = own.as_fd();
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < size {
        let start = match fs::seek_whence(file, at, libc::SEEK_DATA) {
            Ok(s) => s,
            Err(stasis_sys::Errno(libc::ENXIO)) => break,
            Err(errno) => {
                return Err(DumpError::Sys {
                    pid,
                    what: format!("{}: find data in the deleted file", f.resource),
                    errno,
                });
            }
        };
        let end = fs::seek_whence(file, start, libc::SEEK_HOLE)
            .ctx(pid, || {
                format!("{}: find holes in the deleted file", f.resource)
            })?
            .min(size);
        let mut bytes = vec![0u8; (end - start) as usize];
        let got = fds::pread_full(file, &mut bytes, start)
            .ctx(pid, || format!("{}: read the deleted file", f.resource))?;
        bytes.truncate(got);
        out.push((
            pb::GhostChunkEntry {
                len: bytes.len() as u64,
                off: start,
            },
            bytes,
        ));
        at = end;
    }
    Ok(out)
}
