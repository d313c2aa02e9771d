//! Regular files, directories and device nodes: opened by path with their flags, offset
//! and owner, after checking they are still what the process had open. Files deleted
//! while open come back from their ghost image (recreated under their old name, opened,
//! and unlinked again) or through the link the dump made (`--link-remap`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fds, fs};

use super::{OpenCtx, Validation};
use crate::error::{RestoreError, Result, SysContext, invalid};

/// Flags that only matter at open time and must not be replayed (O_TRUNC would destroy
/// the file's contents).
const OPEN_ONLY_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC;

/// Opens a regular-file entry as the dumped process had it open.
pub fn open_reg(pid: Pid, reg: &pb::RegFileEntry, validation: Validation) -> Result<OwnedFd> {
    // Files of /proc and /sys are made up by the kernel as they are read: sizes and times
    // say nothing about whether they are the same file.
    let synthetic = ["/proc/", "/sys/"].iter().any(|p| reg.name.starts_with(p));
    open_reg_at(
        pid,
        reg,
        Path::new(&reg.name),
        (!synthetic).then_some(validation),
    )
}

/// Opens `reg` (its flags, offset and owner) through `path`, checking the file first if
/// asked.
fn open_reg_at(
    pid: Pid,
    reg: &pb::RegFileEntry,
    path: &Path,
    validation: Option<Validation>,
) -> Result<OwnedFd> {
    let flags = (reg.flags as i32 & !OPEN_ONLY_FLAGS) | libc::O_CLOEXEC | libc::O_NOCTTY;
    let fd = fs::open(path, flags, 0).ctx(pid, || {
        format!("open {} (flags {:#o})", reg.name, reg.flags)
    })?;
    if flags & libc::O_PATH != 0 {
        return Ok(fd);
    }
    let st = fs::fstat(fd.as_fd()).ctx(pid, || format!("fstat {}", reg.name))?;
    if let Some(v) = validation {
        validate(pid, reg, &st, v)?;
    }
    let kind = st.st_mode & libc::S_IFMT;
    if (kind == libc::S_IFREG || kind == libc::S_IFDIR) && reg.pos != 0 {
        fs::seek_to(fd.as_fd(), reg.pos)
            .ctx(pid, || format!("seek {} to {}", reg.name, reg.pos))?;
    }
    set_fown(pid, fd.as_fd(), reg.fown.as_ref(), &reg.name)?;
    Ok(fd)
}

/// Opens a file under `/proc/PID` of a process of the tree, from that process once the
/// tree exists. Its size and times are the kernel's of the moment: not checked.
pub(crate) fn open_proc_file(pid: Pid, reg: &pb::RegFileEntry) -> Result<OwnedFd> {
    open_reg_at(pid, reg, Path::new(&reg.name), None)
}

/// Gives a description the signal the dump saw (`F_SETSIG`). Its owner (`F_SETOWN_EX`)
/// names a process of the tree, which does not exist yet: the process that holds the
/// description sets it later ([`super::OpenedFiles::install_late`]).
pub(crate) fn set_fown(
    pid: Pid,
    fd: std::os::fd::BorrowedFd<'_>,
    own: Option<&pb::FownEntry>,
    what: &str,
) -> Result<()> {
    let Some(own) = own else { return Ok(()) };
    if own.signum != 0 {
        fs::set_owner_signal(fd, own.signum as i32).ctx(pid, || format!("F_SETSIG on {what}"))?;
    }
    Ok(())
}

/// A file must still be what the process had open: the same kind and permissions, and a
/// regular file the same size and modification time. A log the process only appends to
/// (`O_WRONLY|O_APPEND`) may have grown: whatever the process writes goes to its end.
fn validate(pid: Pid, reg: &pb::RegFileEntry, st: &libc::stat64, v: Validation) -> Result<()> {
    let changed = |what: String| RestoreError::Unsupported {
        pid,
        resource: format!("file {}", reg.name),
        reason: format!("{what} (restore anyway with --skip-file-validation)"),
    };
    if let Some(mode) = reg.mode {
        let mask = if v.rwx { !0 } else { !0o777 };
        if mode & mask != st.st_mode & mask {
            return Err(RestoreError::Unsupported {
                pid,
                resource: format!("file {}", reg.name),
                reason: format!(
                    "its mode changed since the dump ({:o} then, {:o} now; permission bits can \
                     be ignored with --skip-file-rwx-check)",
                    mode, st.st_mode
                ),
            });
        }
    }
    let flags = reg.flags as i32;
    let append_only = flags & libc::O_ACCMODE == libc::O_WRONLY && flags & libc::O_APPEND != 0;
    if !v.contents || append_only || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(());
    }
    if let Some(size) = reg.size
        && size != st.st_size as u64
    {
        return Err(changed(format!(
            "its size changed since the dump ({size} bytes then, {} now)",
            st.st_size
        )));
    }
    let now = u64::try_from(st.st_mtime)
        .ok()
        .map(|s| s * 1_000_000_000 + st.st_mtime_nsec as u64);
    if let Some(then) = reg.stasis_mtime
        && Some(then) != now
    {
        return Err(changed("it was modified since the dump".into()));
    }
    Ok(())
}

/// A deleted file saved by the dump: attributes and data extents.
#[derive(Debug)]
pub struct Ghost {
    head: pb::GhostFileEntry,
    extents: Vec<(u64, Vec<u8>)>,
}

/// Reads `ghost-file-ID.img`.
pub fn load_ghost(dir: &ImageDir, id: u32) -> Result<Ghost> {
    let mut r = dir.open_image(ImageKind::GhostFile, u64::from(id))?;
    let head: pb::GhostFileEntry = r.expect()?;
    let mut extents = Vec::new();
    if head.chunks == Some(true) {
        while let Some(c) = r.next::<pb::GhostChunkEntry>()? {
            let bytes = r.read_payload(c.len)?;
            extents.push((c.off, bytes));
        }
    } else {
        extents.push((0, r.read_rest()?));
    }
    let size = head
        .size
        .unwrap_or_else(|| extents.iter().map(|(_, b)| b.len() as u64).sum());
    if extents.iter().any(|(off, b)| off + b.len() as u64 > size) {
        return Err(invalid(
            ImageKind::GhostFile.file_name(u64::from(id)),
            "data extent beyond the file's size",
        ));
    }
    Ok(Ghost { head, extents })
}

/// Ghost files recreated for this restore: each under a name, removed once every
/// description of it is open.
#[derive(Debug, Default)]
pub(crate) struct GhostFiles {
    made: Vec<(u32, PathBuf)>,
}

impl GhostFiles {
    /// Where ghost `id` was recreated, creating it the first time.
    fn path(&mut self, cx: &OpenCtx<'_>, id: u32, name: &str) -> Result<PathBuf> {
        if let Some((_, p)) = self.made.iter().find(|(g, _)| *g == id) {
            return Ok(p.clone());
        }
        let ghost =
            cx.images.file_data.ghosts.get(&id).ok_or_else(|| {
                invalid("remap-fpath.img", format!("ghost file {id} was not loaded"))
            })?;
        let path = recreate(cx, ghost, id, name)?;
        self.made.push((id, path.clone()));
        Ok(path)
    }

    /// Links `from` as `to` if `to` is free; the link is removed by [`Self::finish`].
    fn link_back(&mut self, from: &Path, to: &Path) -> bool {
        if self.made.iter().any(|(_, p)| p == to) {
            return true;
        }
        if std::fs::hard_link(from, to).is_ok() {
            self.made.push((u32::MAX, to.to_path_buf()));
            return true;
        }
        false
    }

    /// Unlinks every recreated ghost: the descriptions keep them alive, nameless, as they
    /// were.
    pub fn finish(&mut self) {
        for (_, p) in self.made.drain(..) {
            let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir(&p));
        }
    }
}

impl Drop for GhostFiles {
    /// A restore that fails half-way leaves no recreated file behind.
    fn drop(&mut self) {
        self.finish();
    }
}

/// Makes the ghost's file again: at its old name if that is free (so `/proc` shows the
/// name the process saw), else next to it.
fn recreate(cx: &OpenCtx<'_>, g: &Ghost, id: u32, name: &str) -> Result<PathBuf> {
    let pid = cx.pid;
    let kind = g.head.mode & libc::S_IFMT;
    let old = PathBuf::from(name);
    let candidates = [
        old.clone(),
        PathBuf::from(format!("{name}.stasis-ghost.{id}")),
    ];
    for path in candidates {
        let made = if kind == libc::S_IFDIR {
            fs::mkdir(&path, 0o700).and_then(|()| {
                fs::open(
                    &path,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    0,
                )
            })
        } else {
            fs::open(
                &path,
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        let file = match made {
            Ok(f) => f,
            Err(stasis_sys::Errno(libc::EEXIST)) => continue,
            Err(errno) => {
                return Err(RestoreError::Sys {
                    pid,
                    what: format!("recreate deleted file {name}"),
                    errno,
                });
            }
        };
        let what = || format!("write deleted file {name}");
        for (off, bytes) in &g.extents {
            fds::pwrite_all(file.as_fd(), bytes, *off).ctx(pid, what)?;
        }
        if let Some(size) = g.head.size.filter(|_| kind == libc::S_IFREG) {
            fds::truncate(file.as_fd(), size).ctx(pid, what)?;
        }
        // Ownership and times as they were (best effort: the mode is what matters).
        let _ = fs::chown_fd(file.as_fd(), g.head.uid, g.head.gid);
        let _ = fs::fchmod(file.as_fd(), g.head.mode & 0o7777);
        if let (Some(a), Some(m)) = (&g.head.atim, &g.head.mtim) {
            let _ = fs::set_times(file.as_fd(), (a.tv_sec, a.tv_usec), (m.tv_sec, m.tv_usec));
        }
        return Ok(path);
    }
    Err(RestoreError::Other(format!(
        "process {pid}: no free name to recreate deleted file {name}"
    )))
}

/// Opens a file whose path the dump replaced: a ghost, or a link to a deleted file.
pub(crate) fn open_remapped(
    cx: &OpenCtx<'_>,
    reg: &pb::RegFileEntry,
    remap: &pb::RemapFilePathEntry,
    ghosts: &mut GhostFiles,
    links: &mut Vec<PathBuf>,
) -> Result<OwnedFd> {
    let path = match remap.remap_type() {
        pb::RemapType::Ghost => ghosts.path(cx, remap.remap_id, &reg.name)?,
        pb::RemapType::Linked => {
            let link = cx
                .images
                .files
                .get(&remap.remap_id)
                .and_then(|f| f.reg.as_ref())
                .ok_or_else(|| {
                    invalid(
                        "files.img",
                        format!("link file {} is missing", remap.remap_id),
                    )
                })?;
            let path = PathBuf::from(&link.name);
            if !links.contains(&path) {
                links.push(path.clone());
            }
            // Opened under its old name when that is free (so /proc shows the name the
            // process saw): one more link, removed as soon as every description is open.
            // The dump's link stays until the restore succeeded, for another try.
            let old = PathBuf::from(&reg.name);
            if ghosts.link_back(&path, &old) {
                old
            } else {
                path
            }
        }
        pb::RemapType::Procfs => {
            return Err(RestoreError::Unsupported {
                pid: cx.pid,
                resource: format!("file {}", reg.name),
                reason: "/proc files of dead processes are not supported".into(),
            });
        }
    };
    // The path is ours, not the process's: the contents are the image's.
    cx.keep(open_reg_at(cx.pid, reg, &path, None)?)
}
