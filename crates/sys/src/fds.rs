//! File descriptors of every kind beyond regular files: pipes, eventfd, signalfd, timerfd,
//! epoll, inotify, fanotify, memfd. Creating them with exact parameters, and the queries
//! and copies a checkpoint needs (pipe data duplicated with `tee`, timerfd ticks set with
//! `TFD_IOC_SET_TICKS`).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::{Errno, Result};

/// Takes ownership of a new fd returned by the kernel.
fn owned(ret: libc::c_long) -> Result<OwnedFd> {
    let fd = Errno::result(ret)? as RawFd;
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---- pipes ----

/// `pipe2(flags)`: (read end, write end).
pub fn pipe2(flags: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), flags) };
    Errno::result(r.into())?;
    // SAFETY: the read end is new and ours.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: the write end is new and ours.
    let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((read, write))
}

/// The capacity of a pipe (`F_GETPIPE_SZ`).
pub fn pipe_size(fd: BorrowedFd<'_>) -> Result<u32> {
    // SAFETY: F_GETPIPE_SZ takes no argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    Errno::result(r.into()).map(|v| v as u32)
}

/// Sets the capacity of a pipe (`F_SETPIPE_SZ`); returns the capacity granted.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: u32) -> Result<u32> {
    // SAFETY: F_SETPIPE_SZ takes an integer.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
    Errno::result(r.into()).map(|v| v as u32)
}

/// Bytes waiting to be read (`FIONREAD`), for pipes, FIFOs, terminals and sockets.
pub fn bytes_readable(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    Errno::result(r.into()).map(|_| n as u32)
}

/// Bytes a socket has not sent yet (`SIOCOUTQ`).
pub fn bytes_unsent(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    Errno::result(r.into()).map(|_| n as u32)
}

/// Duplicates up to `len` bytes from the pipe `from` into the pipe `to` without consuming
/// them (`tee`, non-blocking). Nothing to copy is `Ok(0)`.
pub fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> Result<usize> {
    // SAFETY: tee takes fds and integers.
    let r = unsafe {
        libc::tee(
            from.as_raw_fd(),
            to.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    match Errno::result(r as libc::c_long) {
        Ok(n) => Ok(n as usize),
        Err(Errno(libc::EAGAIN)) => Ok(0),
        Err(e) => Err(e),
    }
}

/// One `read` into `buf` (retried on EINTR); returns the byte count.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    loop {
        // SAFETY: read writes at most buf.len() bytes into buf.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(r as libc::c_long) {
            Err(Errno(libc::EINTR)) => continue,
            other => return other.map(|n| n as usize),
        }
    }
}

/// Writes all of `data` (retried on EINTR and short writes).
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        // SAFETY: write reads at most data.len() bytes from data.
        let r = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        match Errno::result(r as libc::c_long) {
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => data = &data[n as usize..],
        }
    }
    Ok(())
}

/// The file status flags (`F_GETFL`).
pub fn status_flags(fd: BorrowedFd<'_>) -> Result<i32> {
    // SAFETY: F_GETFL takes no argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    Errno::result(r.into()).map(|v| v as i32)
}

/// Opens `/proc/self/fd/N` again: for a pipe or FIFO this is a new open file description
/// of the same pipe (with its own flags).
pub fn reopen(fd: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd> {
    crate::fs::open(
        Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())),
        flags,
        0,
    )
}

/// `mkfifo(path, mode)`.
pub fn mkfifo(path: &Path, mode: u32) -> Result<()> {
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| Errno(libc::EINVAL))?;
    // SAFETY: `c` is NUL-terminated for the call.
    Errno::result(unsafe { libc::mkfifo(c.as_ptr(), mode) }.into()).map(drop)
}

// ---- eventfd, signalfd, timerfd ----

/// `eventfd(counter, flags)`.
pub fn eventfd(counter: u32, flags: i32) -> Result<OwnedFd> {
    // SAFETY: integer arguments.
    owned(unsafe { libc::eventfd(counter, flags) }.into())
}

/// `signalfd(-1, mask, flags)`: a new signalfd accepting the signals of `mask` (bit N-1
/// for signal N).
pub fn signalfd(mask: u64, flags: i32) -> Result<OwnedFd> {
    // The kernel's sigset is 8 bytes; sizemask must be exactly that.
    // SAFETY: integer arguments and a pointer to 8 readable bytes.
    owned(unsafe { libc::syscall(libc::SYS_signalfd4, -1, &raw const mask, 8usize, flags) })
}

/// A timer specification: (value, interval), each (seconds, nanoseconds).
pub type TimerSpec = ([i64; 2], [i64; 2]);

/// `timerfd_create(clock, flags)`.
pub fn timerfd_create(clock: i32, flags: i32) -> Result<OwnedFd> {
    // SAFETY: integer arguments.
    owned(unsafe { libc::timerfd_create(clock, flags) }.into())
}

/// `timerfd_settime(fd, flags, spec)`.
pub fn timerfd_settime(fd: BorrowedFd<'_>, flags: i32, spec: TimerSpec) -> Result<()> {
    let its = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: spec.1[0],
            tv_nsec: spec.1[1],
        },
        it_value: libc::timespec {
            tv_sec: spec.0[0],
            tv_nsec: spec.0[1],
        },
    };
    // SAFETY: reads one itimerspec; the old value is not asked for.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &its, std::ptr::null_mut()) };
    Errno::result(r.into()).map(drop)
}

/// `timerfd_gettime(fd)`: time to the next expiry (relative) and the interval.
pub fn timerfd_gettime(fd: BorrowedFd<'_>) -> Result<TimerSpec> {
    // SAFETY: an all-zero itimerspec is valid.
    let mut its: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: writes one itimerspec.
    let r = unsafe { libc::timerfd_gettime(fd.as_raw_fd(), &mut its) };
    Errno::result(r.into())?;
    Ok((
        [its.it_value.tv_sec, its.it_value.tv_nsec],
        [its.it_interval.tv_sec, its.it_interval.tv_nsec],
    ))
}

/// `TFD_IOC_SET_TICKS`: sets the expirations a timerfd has counted but not reported
/// (CONFIG_CHECKPOINT_RESTORE).
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<()> {
    // _IOW('T', 0, u64)
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
    // SAFETY: the ioctl reads one u64.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &raw const ticks) };
    Errno::result(r.into()).map(drop)
}

// ---- epoll ----

/// `epoll_create1(flags)`.
pub fn epoll_create(flags: i32) -> Result<OwnedFd> {
    // SAFETY: integer argument.
    owned(unsafe { libc::epoll_create1(flags) }.into())
}

/// `epoll_ctl(epfd, op, fd, {events, data})`.
pub fn epoll_ctl(epfd: BorrowedFd<'_>, op: i32, fd: RawFd, events: u32, data: u64) -> Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: reads one epoll_event; `fd` is only a number here (the kernel checks it).
    let r = unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd, &mut ev) };
    Errno::result(r.into()).map(drop)
}

// ---- inotify, fanotify ----

/// `inotify_init1(flags)`.
pub fn inotify_init(flags: i32) -> Result<OwnedFd> {
    // SAFETY: integer argument.
    owned(unsafe { libc::inotify_init1(flags) }.into())
}

/// `inotify_add_watch(fd, path, mask)`: the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &Path, mask: u32) -> Result<i32> {
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| Errno(libc::EINVAL))?;
    // SAFETY: `c` is NUL-terminated for the call.
    let r = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    Errno::result(r.into()).map(|v| v as i32)
}

/// `inotify_rm_watch(fd, wd)`.
pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> Result<()> {
    // SAFETY: integer arguments.
    let r = unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
    Errno::result(r.into()).map(drop)
}

/// Makes the next watch added to an inotify instance get watch descriptor `wd`
/// (`INOTIFY_IOC_SETNEXTWD`, CONFIG_CHECKPOINT_RESTORE).
pub fn inotify_set_next_wd(fd: BorrowedFd<'_>, wd: i32) -> Result<()> {
    // _IOW('I', 0, __s32)
    const INOTIFY_IOC_SETNEXTWD: libc::c_ulong = 0x4004_4900;
    // SAFETY: the ioctl takes the number as its argument, not a pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), INOTIFY_IOC_SETNEXTWD, wd as libc::c_ulong) };
    Errno::result(r.into()).map(drop)
}

/// `fanotify_init(flags, event_f_flags)`.
pub fn fanotify_init(flags: u32, event_flags: u32) -> Result<OwnedFd> {
    // SAFETY: integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_fanotify_init, flags, event_flags) })
}

/// `fanotify_mark(fd, flags, mask, dirfd, path)`; `path` `None` marks `dirfd` itself.
pub fn fanotify_mark(
    fd: BorrowedFd<'_>,
    flags: u32,
    mask: u64,
    dirfd: RawFd,
    path: Option<&Path>,
) -> Result<()> {
    let c = path
        .map(|p| {
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
                .map_err(|_| Errno(libc::EINVAL))
        })
        .transpose()?;
    let ptr = c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: integer arguments and a NUL-terminated path (or null) valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fanotify_mark,
            fd.as_raw_fd(),
            flags,
            mask,
            dirfd,
            ptr,
        )
    };
    Errno::result(r).map(drop)
}

/// A file handle (`name_to_handle_at`): its type and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHandle {
    /// `handle_type`.
    pub kind: i32,
    /// `f_handle` bytes.
    pub bytes: Vec<u8>,
}

/// Opens the inode a file handle names (`open_by_handle_at`), on the filesystem of
/// `mount_fd`.
pub fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: i32,
) -> Result<OwnedFd> {
    // struct file_handle { u32 handle_bytes; int handle_type; unsigned char f_handle[]; }
    let mut buf = Vec::with_capacity(8 + handle.bytes.len());
    buf.extend_from_slice(&(handle.bytes.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle.kind.to_ne_bytes());
    buf.extend_from_slice(&handle.bytes);
    // SAFETY: the buffer holds a complete struct file_handle for the call.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            buf.as_ptr(),
            flags,
        )
    })
}

// ---- memfd ----

/// `memfd_create(name, flags)`.
pub fn memfd_create(name: &str, flags: u32) -> Result<OwnedFd> {
    let c = std::ffi::CString::new(name).map_err(|_| Errno(libc::EINVAL))?;
    // SAFETY: `c` is NUL-terminated for the call.
    owned(unsafe { libc::memfd_create(c.as_ptr(), flags) }.into())
}

/// The seals of a memfd (`F_GET_SEALS`).
pub fn seals(fd: BorrowedFd<'_>) -> Result<u32> {
    // SAFETY: F_GET_SEALS takes no argument.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    Errno::result(r.into()).map(|v| v as u32)
}

/// Adds seals to a memfd (`F_ADD_SEALS`).
pub fn add_seals(fd: BorrowedFd<'_>, seals: u32) -> Result<()> {
    // SAFETY: F_ADD_SEALS takes an integer.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) };
    Errno::result(r.into()).map(drop)
}

/// `ftruncate(fd, len)`.
pub fn truncate(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    // SAFETY: integer arguments.
    let r = unsafe { libc::ftruncate64(fd.as_raw_fd(), len as i64) };
    Errno::result(r.into()).map(drop)
}

/// `pwrite` of all of `data` at `offset`.
pub fn pwrite_all(fd: BorrowedFd<'_>, mut data: &[u8], mut offset: u64) -> Result<()> {
    while !data.is_empty() {
        // SAFETY: pwrite reads at most data.len() bytes from data.
        let r = unsafe {
            libc::pwrite64(
                fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                offset as i64,
            )
        };
        match Errno::result(r as libc::c_long) {
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => {
                data = &data[n as usize..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// `pread` into all of `buf` at `offset`; returns how much was read before end of file.
pub fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: pread writes at most the remaining length into buf.
        let r = unsafe {
            libc::pread64(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
                (offset + got as u64) as i64,
            )
        };
        match Errno::result(r as libc::c_long) {
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
            Ok(0) => break,
            Ok(n) => got += n as usize,
        }
    }
    Ok(got)
}
