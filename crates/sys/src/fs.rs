//! File descriptors: opening with exact flags, placing at exact numbers, querying.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{Errno, Result, abi};

fn cstr(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno(libc::EINVAL))
}

/// `open(path, flags, mode)`, returning an owned fd.
pub fn open(path: &Path, flags: i32, mode: u32) -> Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe { libc::open(c.as_ptr(), flags, mode) };
    let fd = Errno::result(fd.into())? as RawFd;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Duplicates `fd` onto exactly `target` (closing what was there), with O_CLOEXEC if
/// `cloexec`. Returns nothing: the new fd is owned by whoever will use that number.
pub fn dup_to(fd: BorrowedFd<'_>, target: RawFd, cloexec: bool) -> Result<()> {
    if fd.as_raw_fd() == target {
        return set_cloexec(target, cloexec);
    }
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 only manipulates the fd table; `target` is a number the caller
    // reserved for this purpose.
    let r = unsafe { libc::dup3(fd.as_raw_fd(), target, flags) };
    Errno::result(r.into()).map(drop)
}

/// Moves `fd` to the lowest free number at or above `min` (F_DUPFD_CLOEXEC) and closes
/// the original.
pub fn move_above(fd: OwnedFd, min: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    let new = Errno::result(r.into())? as RawFd;
    drop(fd);
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sets or clears FD_CLOEXEC on `fd`.
pub fn set_cloexec(fd: RawFd, cloexec: bool) -> Result<()> {
    let flag = if cloexec { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD takes an integer argument.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, flag) };
    Errno::result(r.into()).map(drop)
}

/// Sets the file status flags (F_SETFL: O_APPEND, O_NONBLOCK, O_ASYNC, O_DIRECT, O_NOATIME).
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> Result<()> {
    // SAFETY: F_SETFL takes an integer argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) };
    Errno::result(r.into()).map(drop)
}

/// Sets the file position.
pub fn seek_to(fd: BorrowedFd<'_>, pos: u64) -> Result<()> {
    // SAFETY: lseek takes integers.
    let r = unsafe { libc::lseek64(fd.as_raw_fd(), pos as i64, libc::SEEK_SET) };
    Errno::result(r as libc::c_long).map(drop)
}

/// Reserves `len` bytes of disk for `fd` from `offset` without changing its size
/// (`FALLOC_FL_KEEP_SIZE`): writes there later cannot fail for want of space.
pub fn reserve_space(fd: BorrowedFd<'_>, offset: u64, len: u64) -> Result<()> {
    // SAFETY: integer arguments.
    let r = unsafe {
        libc::fallocate64(
            fd.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off64_t,
            len as libc::off64_t,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// `fstat` of an fd.
pub fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat64> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`.
    let r = unsafe { libc::fstat64(fd.as_raw_fd(), &mut st) };
    Errno::result(r.into()).map(|_| st)
}

/// `stat` of a path (following symlinks).
pub fn stat(path: &Path) -> Result<libc::stat64> {
    let c = cstr(path)?;
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated; stat writes only into `st`.
    let r = unsafe { libc::stat64(c.as_ptr(), &mut st) };
    Errno::result(r.into()).map(|_| st)
}

/// Changes the working directory to the directory open at `fd`.
pub fn fchdir(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: integer argument.
    Errno::result(unsafe { libc::fchdir(fd.as_raw_fd()) }.into()).map(drop)
}

/// Changes the root directory to `path` (relative to the current root).
pub fn chroot(path: &Path) -> Result<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is NUL-terminated.
    Errno::result(unsafe { libc::chroot(c.as_ptr()) }.into()).map(drop)
}

/// The highest fd number the process may use (RLIMIT_NOFILE soft limit - 1).
pub fn max_fd() -> RawFd {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes only into `lim`.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if r != 0 {
        1023
    } else {
        (lim.rlim_cur.min(1 << 20) as RawFd) - 1
    }
}

/// The highest fd number open in the calling process (from `/proc/self/fd`), -1 if none.
pub fn max_open_fd() -> RawFd {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()))
        .max()
        .unwrap_or(-1)
}

/// Whether fd `fd` is open in the calling process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD takes no pointer.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// The owner of an open file description (`F_GETOWN_EX`): (type, pid).
pub fn owner(fd: BorrowedFd<'_>) -> Result<(i32, i32)> {
    let mut own = abi::FOwnerEx { kind: 0, pid: 0 };
    // SAFETY: F_GETOWN_EX writes one f_owner_ex into `own`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), abi::F_GETOWN_EX, &raw mut own) };
    Errno::result(r.into()).map(|_| (own.kind, own.pid))
}

/// Sets the owner of an open file description (`F_SETOWN_EX`).
pub fn set_owner(fd: BorrowedFd<'_>, kind: i32, pid: i32) -> Result<()> {
    let own = abi::FOwnerEx { kind, pid };
    // SAFETY: F_SETOWN_EX reads one f_owner_ex from `own`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), abi::F_SETOWN_EX, &raw const own) };
    Errno::result(r.into()).map(drop)
}

/// Sets the owner of the description at fd number `fd` of the calling process (which
/// need not be one we hold as an `OwnedFd`: a restored process's own numbers).
pub fn set_owner_fd(fd: RawFd, kind: i32, pid: i32) -> Result<()> {
    let own = abi::FOwnerEx { kind, pid };
    // SAFETY: F_SETOWN_EX reads one f_owner_ex from `own`; the fd is only a number.
    let r = unsafe { libc::fcntl(fd, abi::F_SETOWN_EX, &raw const own) };
    Errno::result(r.into()).map(drop)
}

/// Takes a lease (`F_SETLEASE`: `F_RDLCK` or `F_WRLCK`) on the file at fd number `fd`.
pub fn set_lease_fd(fd: RawFd, ty: i32) -> Result<()> {
    // SAFETY: F_SETLEASE takes an integer; the fd is only a number.
    let r = unsafe { libc::fcntl(fd, libc::F_SETLEASE, ty) };
    Errno::result(r.into()).map(drop)
}

/// `flock(fd, op)` on fd number `fd`.
pub fn flock_fd(fd: RawFd, op: i32) -> Result<()> {
    // SAFETY: integer arguments.
    Errno::result(unsafe { libc::flock(fd, op) }.into()).map(drop)
}

/// A record lock request (`F_SETLK`, `F_OFD_SETLK`) of type `ty` on `[start, start+len)`
/// (`len` 0: to the end of the file), on the fd numbered `fd` of the calling process.
pub fn record_lock_fd(fd: RawFd, cmd: i32, ty: i32, start: i64, len: i64) -> Result<()> {
    // SAFETY: an all-zero flock is a valid value.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = ty as i16;
    l.l_whence = libc::SEEK_SET as i16;
    l.l_start = start;
    l.l_len = len;
    // SAFETY: the lock commands read one struct flock; the fd is only a number.
    let r = unsafe { libc::fcntl(fd, cmd, &raw const l) };
    Errno::result(r.into()).map(drop)
}

/// The signal sent for I/O events (`F_GETSIG`).
pub fn owner_signal(fd: BorrowedFd<'_>) -> Result<i32> {
    // SAFETY: F_GETSIG takes no argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), abi::F_GETSIG) };
    Errno::result(r.into()).map(|v| v as i32)
}

/// Sets the signal sent for I/O events (`F_SETSIG`).
pub fn set_owner_signal(fd: BorrowedFd<'_>, sig: i32) -> Result<()> {
    // SAFETY: F_SETSIG takes an integer.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), abi::F_SETSIG, sig) };
    Errno::result(r.into()).map(drop)
}

/// `lseek` with any whence (SEEK_DATA and SEEK_HOLE included); returns the new offset.
pub fn seek_whence(fd: BorrowedFd<'_>, offset: u64, whence: i32) -> Result<u64> {
    // SAFETY: lseek takes integers.
    let r = unsafe { libc::lseek64(fd.as_raw_fd(), offset as i64, whence) };
    Errno::result(r as libc::c_long).map(|v| v as u64)
}

/// Closes every fd of the calling process below `keep_from` except those in `keep`: the
/// fd table of a restore child is rebuilt from scratch, as exec would start it.
pub fn close_all_except(
    _child: &crate::process::RestoreChild,
    keep: &[RawFd],
    keep_from: RawFd,
) -> Result<()> {
    let limit = keep_from.max(0) as u32;
    let mut keep: Vec<u32> = keep
        .iter()
        .map(|&fd| fd as u32)
        .filter(|fd| *fd < limit)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    keep.push(limit);
    let mut first = 0u32;
    for k in keep {
        if k > first {
            // SAFETY: the RestoreChild token proves no code that owns these fds will run
            // again in this process (it becomes the restored process or exits).
            let r = unsafe { libc::syscall(libc::SYS_close_range, first, k - 1, 0) };
            Errno::result(r)?;
        }
        first = k.saturating_add(1);
    }
    Ok(())
}

/// Gives up ownership of `fd` without closing it (the restorer blob closes it).
pub fn leak(fd: OwnedFd) -> RawFd {
    use std::os::fd::IntoRawFd;
    fd.into_raw_fd()
}

/// `mkdir(path, mode)`.
pub fn mkdir(path: &Path, mode: u32) -> Result<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is NUL-terminated for the call.
    Errno::result(unsafe { libc::mkdir(c.as_ptr(), mode) }.into()).map(drop)
}

/// Changes the owner of an open file (`fchown`).
pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<()> {
    // SAFETY: integer arguments.
    Errno::result(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }.into()).map(drop)
}

/// Changes the mode of an open file (`fchmod`).
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
    // SAFETY: integer arguments.
    Errno::result(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }.into()).map(drop)
}

/// Sets the access and modification times of an open file, each (seconds, microseconds).
pub fn set_times(fd: BorrowedFd<'_>, atime: (u64, u64), mtime: (u64, u64)) -> Result<()> {
    let ts = |(s, us): (u64, u64)| libc::timespec {
        tv_sec: s as i64,
        tv_nsec: (us * 1000) as i64,
    };
    let times = [ts(atime), ts(mtime)];
    // SAFETY: futimens reads two timespecs.
    Errno::result(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) }.into()).map(drop)
}

/// Gives the open file `fd` a new name `path` (`linkat` with `AT_EMPTY_PATH`): a file
/// deleted while open, but still linked elsewhere, becomes reachable again.
pub fn link_open_file(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let c = cstr(path)?;
    // SAFETY: an empty NUL-terminated string and `c` live across the call.
    let r = unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// Makes every mount of our mount namespace private (recursively), so mounts made in it
/// from now on do not propagate to the namespace it was copied from.
pub fn make_mounts_private() -> Result<()> {
    // SAFETY: a constant, NUL-terminated path; the other pointers are null, as
    // MS_PRIVATE allows.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    Errno::result(r.into()).map(drop)
}

/// Mounts a new procfs (of our pid namespace) on `target`.
pub fn mount_proc(target: &Path) -> Result<()> {
    let target = cstr(target)?;
    // SAFETY: NUL-terminated strings that live across the call; no data argument.
    let r = unsafe {
        libc::mount(
            c"proc".as_ptr(),
            target.as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    Errno::result(r.into()).map(drop)
}

/// Takes ownership of an fd number our parent handed us (e.g. `--ready-fd 3`); `None`
/// if it is not open.
pub fn adopt_inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return None;
    }
    // SAFETY: the fd is open, and the caller's parent handed the number to it to own:
    // nothing else in this process owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a new pseudo-terminal pair: (master, slave, slave path).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd, std::path::PathBuf)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds into our locals; the name, termios and winsize
    // arguments are null (not wanted).
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    Errno::result(r.into())?;
    // SAFETY: openpty just gave us this fd.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: likewise.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    set_cloexec(master.as_raw_fd(), true)?;
    set_cloexec(slave.as_raw_fd(), true)?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok((master, slave, path))
}

/// Writes all of `data` to an fd we do not own as a Rust object (an inherited pipe).
/// Returns whether everything was written.
pub fn write_all_fd(fd: RawFd, data: &[u8]) -> bool {
    let mut done = 0;
    while done < data.len() {
        // SAFETY: writes from a slice we borrow to an fd number; no memory of ours changes.
        let r = unsafe { libc::write(fd, data[done..].as_ptr().cast(), data.len() - done) };
        if r > 0 {
            done += r as usize;
        } else if r == -1 && Errno::last().0 == libc::EINTR {
            continue;
        } else {
            return false;
        }
    }
    true
}

/// Reads exactly `buf.len()` bytes from an fd we do not own as a Rust object. Returns
/// whether it did (end of file or an error is `false`).
pub fn read_exact_fd(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: reads into a slice we borrow mutably.
        let r = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        if r > 0 {
            done += r as usize;
        } else if r == -1 && Errno::last().0 == libc::EINTR {
            continue;
        } else {
            return false;
        }
    }
    true
}

/// Closes an inherited fd number in a restore child.
pub fn close_fd(_child: &crate::process::RestoreChild, fd: RawFd) -> Result<()> {
    // SAFETY: the RestoreChild token proves no code owning this number runs again.
    Errno::result(unsafe { libc::close(fd) }.into()).map(drop)
}
