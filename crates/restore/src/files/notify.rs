//! inotify and fanotify instances: made again with their watches and marks, on the paths
//! the dump resolved the watched inodes to.
//!
//! inotify watch descriptors are the process's handles on its watches, so each must come
//! back with its number: `INOTIFY_IOC_SETNEXTWD` (CONFIG_CHECKPOINT_RESTORE) makes the
//! next watch get it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use stasis_images::pb;
use stasis_sys::fds;

use super::OpenCtx;
use crate::error::{RestoreError, Result, SysContext};

fn watched_path<'e>(
    cx: &OpenCtx<'_>,
    handle: Option<&'e pb::FhEntry>,
    what: &str,
) -> Result<&'e str> {
    handle
        .and_then(|h| h.path.as_deref())
        .ok_or_else(|| RestoreError::Unsupported {
            pid: cx.pid,
            resource: what.to_owned(),
            reason: "the image does not say which path was watched".into(),
        })
}

pub(crate) fn open_inotify(cx: &OpenCtx<'_>, e: &pb::InotifyFileEntry) -> Result<OwnedFd> {
    let pid = cx.pid;
    let fd = fds::inotify_init(libc::IN_CLOEXEC).ctx(pid, || "create inotify".into())?;
    let mut wds: Vec<&pb::InotifyWdEntry> = e.wd.iter().collect();
    wds.sort_by_key(|w| w.wd);
    for w in wds {
        let what = format!("inotify watch {}", w.wd);
        let path = watched_path(cx, w.f_handle.as_ref(), &what)?;
        fds::inotify_set_next_wd(fd.as_fd(), w.wd as i32)
            .ctx(pid, || format!("{what}: INOTIFY_IOC_SETNEXTWD"))?;
        let got = fds::inotify_add_watch(fd.as_fd(), Path::new(path), w.mask)
            .ctx(pid, || format!("{what}: watch {path}"))?;
        if got != w.wd as i32 {
            return Err(RestoreError::Unsupported {
                pid,
                resource: what,
                reason: format!("the kernel gave watch descriptor {got} instead"),
            });
        }
    }
    cx.finish(fd, e.flags, libc::O_NONBLOCK, e.fown.as_ref(), "inotify")
}

pub(crate) fn open_fanotify(cx: &OpenCtx<'_>, e: &pb::FanotifyFileEntry) -> Result<OwnedFd> {
    let pid = cx.pid;
    // Exactly the dumped flags: fdinfo shows them (FAN_CLOEXEC too, which our copy does
    // not need: it is moved to a close-on-exec number).
    let fd = fds::fanotify_init(e.faflags, e.evflags).ctx(pid, || {
        format!("fanotify_init({:#x}, {:#x})", e.faflags, e.evflags)
    })?;
    for m in &e.mark {
        let (path, kind) = match (m.r#type(), &m.ie, &m.me) {
            (pb::MarkType::Inode, Some(ie), _) => (
                watched_path(cx, ie.f_handle.as_ref(), "fanotify inode mark")?,
                0,
            ),
            (pb::MarkType::Mount, _, Some(me)) => (
                me.path
                    .as_deref()
                    .ok_or_else(|| RestoreError::Unsupported {
                        pid,
                        resource: format!("fanotify mark on mount {}", me.mnt_id),
                        reason: "the image does not say where the mount was".into(),
                    })?,
                libc::FAN_MARK_MOUNT,
            ),
            _ => {
                return Err(RestoreError::Unsupported {
                    pid,
                    resource: "fanotify mark".into(),
                    reason: "the mark names no inode and no mount".into(),
                });
            }
        };
        let flags = libc::FAN_MARK_ADD | kind | m.mflags;
        let what = || format!("fanotify mark on {path}");
        if m.mask != 0 {
            fds::fanotify_mark(
                fd.as_fd(),
                flags,
                u64::from(m.mask),
                libc::AT_FDCWD,
                Some(Path::new(path)),
            )
            .ctx(pid, what)?;
        }
        if m.ignored_mask != 0 {
            fds::fanotify_mark(
                fd.as_fd(),
                flags | libc::FAN_MARK_IGNORED_MASK,
                u64::from(m.ignored_mask),
                libc::AT_FDCWD,
                Some(Path::new(path)),
            )
            .ctx(pid, what)?;
        }
    }
    cx.finish(fd, e.flags, libc::O_NONBLOCK, e.fown.as_ref(), "fanotify")
}
