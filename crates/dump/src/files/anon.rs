//! Anonymous-inode files whose whole state is a few numbers: eventfd (counter, semaphore
//! mode), signalfd (mask), timerfd (clock, time left, interval, expirations not yet read)
//! and pidfd (the process it refers to). All of it is read from `/proc/PID/fdinfo/N` and,
//! for the timerfd, `timerfd_gettime` on our copy of the description.

use std::os::fd::AsFd;

use stasis_images::pb;
use stasis_sys::{fds, proc, process};

use super::{Fd, FileTable};
use crate::error::{DumpError, Result, SysContext};

/// The value of fdinfo line `key` (of `info`, read for fd `f`), parsed with `parse`; a
/// missing or malformed line is an error naming the fd.
fn field_of<T>(
    f: &Fd,
    info: &proc::FdInfo,
    key: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T> {
    info.extra
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| parse(v))
        .ok_or_else(|| DumpError::Proc {
            pid: f.pid,
            source: proc::ProcError::Format {
                path: proc::path(f.pid, &format!("fdinfo/{}", f.fd)),
                detail: format!("no valid {key:?} line"),
            },
        })
}

/// [`field_of`] the fdinfo read when the fd was found.
fn field<T>(f: &Fd, key: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
    field_of(f, &f.info, key, parse)
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

pub(crate) fn dump_eventfd(table: &mut FileTable, f: &Fd) -> Result<u32> {
    let counter = field(f, "eventfd-count", hex)?;
    // Kernels before 6.6 do not show the semaphore mode.
    let semaphore = f.extra("eventfd-semaphore").map(|v| v.trim() == "1");
    let (flags, fown) = (f.flags(), f.fown());
    Ok(table.add(pb::FdTypes::Eventfd, |id, e| {
        e.efd = Some(pb::EventfdFileEntry {
            id,
            flags,
            fown: Some(fown),
            counter,
            stasis_semaphore: semaphore,
        });
    }))
}

pub(crate) fn dump_signalfd(table: &mut FileTable, f: &Fd) -> Result<u32> {
    let sigmask = field(f, "sigmask", hex)?;
    let (flags, fown) = (f.flags(), f.fown());
    Ok(table.add(pb::FdTypes::Signalfd, |id, e| {
        e.sgfd = Some(pb::SignalfdEntry {
            id,
            flags,
            fown: Some(fown),
            sigmask,
        });
    }))
}

pub(crate) fn dump_timerfd(table: &mut FileTable, f: &Fd) -> Result<u32> {
    // timerfd_gettime first: it folds the periods missed since the last expiry into the
    // count, which fdinfo shows only afterwards.
    let (value, interval) = fds::timerfd_gettime(f.file.as_fd())
        .ctx(f.pid, || format!("fd {}: timerfd_gettime", f.fd))?;
    let info =
        proc::read_fdinfo(f.pid, f.fd).map_err(|source| DumpError::Proc { pid: f.pid, source })?;
    let clockid = field_of(f, &info, "clockid", |v| v.trim().parse::<u32>().ok())?;
    let ticks = field_of(f, &info, "ticks", |v| v.trim().parse::<u64>().ok())?;
    // "settime flags: 01" is split at its first colon.
    let settime_flags = field_of(f, &info, "settime flags", |v| {
        u32::from_str_radix(v.trim(), 8).ok()
    })?;
    // An absolute wall-clock target stays the same wall-clock time wherever the restore
    // happens; other clocks restart from the time that was left.
    let absolute = settime_flags & 1 != 0
        && matches!(
            clockid as i32,
            libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_ALARM
        )
        && (value[0] != 0 || value[1] != 0);
    let stasis_realtime_target = if absolute {
        let now = process::clock_now(clockid as i32)
            .ctx(f.pid, || format!("fd {}: clock_gettime({clockid})", f.fd))?;
        let ns = |t: [i64; 2]| t[0] as u64 * 1_000_000_000 + t[1] as u64;
        Some(ns(now) + ns(value))
    } else {
        None
    };
    let (flags, fown) = (f.flags(), f.fown());
    Ok(table.add(pb::FdTypes::Timerfd, |id, e| {
        e.tfd = Some(pb::TimerfdEntry {
            id,
            flags,
            fown: Some(fown),
            clockid,
            ticks,
            settime_flags,
            vsec: value[0] as u64,
            vnsec: value[1] as u64,
            isec: interval[0] as u64,
            insec: interval[1] as u64,
            stasis_realtime_target,
        });
    }))
}

pub(crate) fn dump_pidfd(table: &mut FileTable, f: &Fd) -> Result<u32> {
    let pid = field(f, "Pid", |v| v.trim().parse::<i32>().ok())?;
    // The pid in the target's own (innermost) namespace is what the tree knows it by.
    let nspid = match f.extra("NSpid") {
        Some(list) => list
            .split_whitespace()
            .last()
            .and_then(|p| p.parse::<i32>().ok())
            .unwrap_or(pid),
        None => pid,
    };
    let exit_status = (pid < 0)
        .then(|| process::pidfd_exit_status(f.file.as_fd()))
        .flatten();
    let (flags, fown) = (f.flags(), f.fown());
    Ok(table.add(pb::FdTypes::Pidfd, |id, e| {
        e.pidfd = Some(pb::PidfdEntry {
            id,
            ino: f.st.st_ino as u32,
            flags,
            nspid,
            fown: Some(fown),
            stasis_exit_status: exit_status,
        });
    }))
}
