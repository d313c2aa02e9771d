//! eventfd, signalfd, timerfd and pidfd descriptions, made again from their numbers.

use std::os::fd::{AsFd, OwnedFd};

use stasis_images::pb;
use stasis_sys::{Pid, fds, process};

use super::OpenCtx;
use crate::error::{Result, SysContext};

/// Status flags a description gets back with F_SETFL.
const SETTABLE: i32 = libc::O_NONBLOCK | libc::O_ASYNC;

fn finish(
    cx: &OpenCtx<'_>,
    fd: OwnedFd,
    flags: u32,
    fown: Option<&pb::FownEntry>,
    what: &str,
) -> Result<OwnedFd> {
    cx.finish(fd, flags, SETTABLE, fown, what)
}

pub(crate) fn open_eventfd(cx: &OpenCtx<'_>, e: &pb::EventfdFileEntry) -> Result<OwnedFd> {
    let what = "eventfd";
    let mut flags = libc::EFD_CLOEXEC;
    if e.stasis_semaphore == Some(true) {
        flags |= libc::EFD_SEMAPHORE;
    }
    let fd = fds::eventfd(0, flags).ctx(cx.pid, || format!("create {what}"))?;
    // The counter is 64 bits wide; eventfd() takes 32. A write adds to it.
    if e.counter != 0 {
        fds::write_all(fd.as_fd(), &e.counter.to_ne_bytes()).ctx(cx.pid, || {
            format!("set the {what} counter to {}", e.counter)
        })?;
    }
    finish(cx, fd, e.flags, e.fown.as_ref(), what)
}

pub(crate) fn open_signalfd(cx: &OpenCtx<'_>, e: &pb::SignalfdEntry) -> Result<OwnedFd> {
    let fd =
        fds::signalfd(e.sigmask, libc::SFD_CLOEXEC).ctx(cx.pid, || "create signalfd".into())?;
    finish(cx, fd, e.flags, e.fown.as_ref(), "signalfd")
}

pub(crate) fn open_timerfd(cx: &OpenCtx<'_>, e: &pb::TimerfdEntry) -> Result<OwnedFd> {
    let pid = cx.pid;
    let what = format!("timerfd (clock {})", e.clockid);
    let fd = fds::timerfd_create(e.clockid as i32, libc::TFD_CLOEXEC)
        .ctx(pid, || format!("create {what}"))?;
    let interval = [e.isec as i64, e.insec as i64];
    let (flags, value) = match e.stasis_realtime_target {
        // The same wall-clock moment as before (and TFD_TIMER_CANCEL_ON_SET with it).
        Some(ns) => (
            e.settime_flags as i32,
            [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64],
        ),
        // The time that was left, from now (as CRIU does).
        None => (0, [e.vsec as i64, e.vnsec as i64]),
    };
    if value != [0, 0] {
        fds::timerfd_settime(fd.as_fd(), flags, (value, interval))
            .ctx(pid, || format!("arm {what}"))?;
    }
    // Arming resets the count: the expirations not yet read come back after it.
    if e.ticks != 0 {
        fds::timerfd_set_ticks(fd.as_fd(), e.ticks)
            .ctx(pid, || format!("set {} expirations of {what}", e.ticks))?;
    }
    finish(cx, fd, e.flags, e.fown.as_ref(), &what)
}

/// The flags `pidfd_open` takes: PIDFD_NONBLOCK (O_NONBLOCK) and PIDFD_THREAD (O_EXCL).
fn pidfd_open_flags(flags: u32) -> u32 {
    flags & (libc::O_NONBLOCK | libc::O_EXCL) as u32
}

/// A pidfd of a process that is gone (its fdinfo said pid -1).
pub(crate) fn open_dead_pidfd(cx: &OpenCtx<'_>, e: &pb::PidfdEntry) -> Result<OwnedFd> {
    let fd = process::dead_pidfd(e.stasis_exit_status.unwrap_or(0))
        .ctx(cx.pid, || "make a pidfd of a dead process".into())?;
    finish(cx, fd, e.flags, e.fown.as_ref(), "pidfd")
}

/// A pidfd of process `target` of the tree, opened by the restored process `pid` itself
/// (which sees the tree's pids).
pub(crate) fn open_live_pidfd(pid: Pid, target: Pid, flags: u32) -> Result<OwnedFd> {
    process::pidfd_open_flags(target, pidfd_open_flags(flags))
        .ctx(pid, || format!("pidfd_open({target})"))
}
