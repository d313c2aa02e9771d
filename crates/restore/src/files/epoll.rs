//! epoll instances: made empty by stasis; the process that owns one registers its targets
//! itself once its fd table is in place, since a registration names an fd number of the
//! registering process.
//!
//! A target registered under a number that now holds something else (or nothing) is
//! registered through that number for a moment: the target's file is put there, added,
//! and the number gets back what it had. The kernel keeps the registration as long as the
//! file lives, whatever the number holds afterwards.

use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use stasis_sys::process::RestoreChild;

use stasis_images::pb;
use stasis_sys::{Pid, fds, fs};

use super::OpenCtx;
use crate::error::{RestoreError, Result, SysContext};

/// Creates an (empty) epoll instance.
pub(crate) fn create(cx: &OpenCtx<'_>, e: &pb::EventpollFileEntry) -> Result<OwnedFd> {
    let fd = fds::epoll_create(libc::EPOLL_CLOEXEC).ctx(cx.pid, || "create epoll".into())?;
    cx.finish(fd, e.flags, libc::O_NONBLOCK, e.fown.as_ref(), "epoll")
}

/// What an fd number of the process holds once its table is installed: our copy of the
/// description, and whether the number is close-on-exec.
pub(crate) type Slot<'a> = Option<(BorrowedFd<'a>, bool)>;

/// Registers `targets` in the epoll `ep` (our copy of the very instance the process has)
/// from the restored process `pid`, whose fd numbers the targets name; `slot(n)` says what
/// number `n` holds.
pub(crate) fn register<'a>(
    token: &RestoreChild,
    pid: Pid,
    ep: BorrowedFd<'_>,
    targets: &[pb::EventpollTfdEntry],
    slot: impl Fn(RawFd) -> Slot<'a>,
) -> Result<()> {
    for t in targets {
        let tfd = t.tfd as RawFd;
        let what = || format!("register fd {tfd} in an epoll instance");
        let Some(now) = t.stasis_target_fd.map(|n| n as RawFd).filter(|n| *n != tfd) else {
            fds::epoll_ctl(ep, libc::EPOLL_CTL_ADD, tfd, t.events, t.data).ctx(pid, what)?;
            continue;
        };
        // The target lives at `now`; it was registered as `tfd`, which holds something
        // else (or nothing) now.
        let (file, _) = slot(now).ok_or_else(|| RestoreError::Unsupported {
            pid,
            resource: format!("epoll target fd {tfd}"),
            reason: format!("its file (at fd {now}) is not one stasis reopened"),
        })?;
        fs::dup_to(file, tfd, true).ctx(pid, what)?;
        let added = fds::epoll_ctl(ep, libc::EPOLL_CTL_ADD, tfd, t.events, t.data).ctx(pid, what);
        let back = match slot(tfd) {
            Some((old, cloexec)) => fs::dup_to(old, tfd, cloexec).ctx(pid, what),
            None => fs::close_fd(token, tfd).ctx(pid, what),
        };
        added?;
        back?;
    }
    Ok(())
}
