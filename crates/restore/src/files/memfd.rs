//! memfds: each inode made once (`memfd_create` with its name, its contents written back,
//! then its seals), each description a new open of it through `/proc/self/fd` with its
//! own flags and offset. Mappings of the memfd map the same inode.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use stasis_images::{PAGE_SIZE, pb};
use stasis_sys::mem::FileWindow;
use stasis_sys::{fds, fs};

use super::OpenCtx;
use super::reg::set_fown;
use crate::error::{Result, SysContext, invalid};

/// The memfd inodes made so far, by inode id.
#[derive(Debug, Default)]
pub(crate) struct Inodes {
    made: HashMap<u64, OwnedFd>,
}

impl Inodes {
    fn inode(&mut self, cx: &OpenCtx<'_>, inode_id: u64) -> Result<&OwnedFd> {
        match self.made.entry(inode_id) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let ino = cx.images.file_data.memfds.get(&inode_id).ok_or_else(|| {
                    invalid("memfd.img", format!("memfd inode {inode_id} is missing"))
                })?;
                Ok(slot.insert(create(cx, ino)?))
            }
        }
    }

    /// The description of a memfd fd (or mapping).
    pub fn open(&mut self, cx: &OpenCtx<'_>, e: &pb::MemfdFileEntry) -> Result<OwnedFd> {
        let pid = cx.pid;
        let inode = self.inode(cx, u64::from(e.inode_id))?;
        let what = || format!("open memfd inode {}", e.inode_id);
        let access = e.flags as i32 & (libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK);
        let fd = fds::reopen(inode.as_fd(), access | libc::O_CLOEXEC).ctx(pid, what)?;
        if e.pos != 0 {
            fs::seek_to(fd.as_fd(), e.pos).ctx(pid, what)?;
        }
        set_fown(pid, fd.as_fd(), e.fown.as_ref(), "memfd")?;
        cx.keep(fd)
    }
}

/// Makes a memfd inode: name, mode, owner, size, contents, and last the seals (which may
/// forbid writing it).
fn create(cx: &OpenCtx<'_>, ino: &pb::MemfdInodeEntry) -> Result<OwnedFd> {
    let pid = cx.pid;
    let what = || format!("create memfd {}", ino.name);
    let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    if let Some(h) = ino.hugetlb_flag {
        // MFD_HUGETLB with its page size bits.
        flags = (flags & !libc::MFD_ALLOW_SEALING) | h;
    }
    let fd = fds::memfd_create(&ino.name, flags).ctx(pid, what)?;
    fds::truncate(fd.as_fd(), ino.size).ctx(pid, what)?;
    let len = ino.size.next_multiple_of(PAGE_SIZE);
    if len > 0 {
        let window = FileWindow::new(fd.as_fd(), len).ctx(pid, what)?;
        crate::memory::fill_object(cx.images, pid, u64::from(ino.shmid), &window, len)?;
    }
    if let Some(mode) = ino.mode {
        let _ = fs::fchmod(fd.as_fd(), mode & 0o7777);
    }
    let _ = fs::chown_fd(fd.as_fd(), ino.uid, ino.gid);
    if ino.seals != 0 && ino.hugetlb_flag.is_none() {
        fds::add_seals(fd.as_fd(), ino.seals).ctx(pid, || {
            format!("seal memfd {} with {:#x}", ino.name, ino.seals)
        })?;
    }
    Ok(fd)
}
