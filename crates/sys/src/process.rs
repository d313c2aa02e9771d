//! Processes: creation with a chosen pid, pidfds, waiting, signals, prctl.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::abi::{self, CloneArgs};
use crate::{Errno, Pid, Result};

/// Which side of a fork we are on.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(Pid),
    /// In the child; the token marks code that runs only in a restore child.
    Child(RestoreChild),
}

/// Proof that we run in a child forked for a restore, which never returns to the code
/// that forked it: it either becomes the restored process (through the restorer blob) or
/// exits with `_exit`. Operations that would be unsound in an ordinary process (closing
/// fds that objects inherited from the parent still own) take this token.
#[derive(Debug, PartialEq, Eq)]
pub struct RestoreChild(());

/// Forks the calling process (an ordinary fork); `None` in the child. Refused (EBUSY)
/// unless the process has a single thread: after a fork of a multithreaded process only
/// async-signal-safe code may run in the child, which safe Rust cannot promise.
pub fn fork_single_threaded() -> Result<Option<Pid>> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?
        .count();
    if threads != 1 {
        return Err(Errno(libc::EBUSY));
    }
    // SAFETY: the process has one thread (checked above), so the child is a complete
    // copy in which any code may run.
    let r = unsafe { libc::fork() };
    match r {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Forks the calling process with `clone3`, giving the child the pid `pid` in our pid
/// namespace (needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN). `EEXIST` means the pid is in
/// use. `exit_signal` is the signal the parent gets when the child exits (normally
/// SIGCHLD). `flags` are extra CLONE_* flags.
///
/// In the child only async-signal-safe work is sound if the caller was multithreaded; the
/// restore code forks only from single-threaded processes.
pub fn fork_with_pid(pid: Pid, flags: u64, exit_signal: i32) -> Result<Forked> {
    let tids = [pid];
    let args = CloneArgs {
        flags,
        exit_signal: exit_signal as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: if pid > 0 { 1 } else { 0 },
        ..CloneArgs::default()
    };
    // SAFETY: without CLONE_VM the child gets a copy of our address space and continues
    // here with a return value of 0, as after fork(); `args` and `tids` outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &raw const args, size_of::<CloneArgs>()) };
    match Errno::result(r)? {
        0 => Ok(Forked::Child(RestoreChild(()))),
        child => Ok(Forked::Parent(child as Pid)),
    }
}

/// Opens a pidfd for `pid`.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = Errno::result(r)?;
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Duplicates fd `target_fd` of the process behind `pidfd` into our fd table: the very
/// same open file description, with close-on-exec set.
pub fn pidfd_getfd(pidfd: &OwnedFd, target_fd: i32) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd takes plain integers.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    let fd = Errno::result(r)?;
    // SAFETY: the kernel just gave us this fd and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: Pid, sig: i32) -> Result<()> {
    // SAFETY: kill takes plain integers.
    Errno::result(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// exit() with a code.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

/// Waits for child `pid` to terminate (ignoring stops) and reaps it.
pub fn wait_exit(pid: Pid) -> Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to our status integer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == -1 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if libc::WIFEXITED(status) {
            return Ok(ExitStatus::Code(libc::WEXITSTATUS(status)));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(ExitStatus::Signal(libc::WTERMSIG(status)));
        }
    }
}

/// Reaps any exited child without blocking; returns its pid.
pub fn reap_any_nohang() -> Option<Pid> {
    let mut status = 0;
    // SAFETY: waitpid writes only to our status integer.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
    (r > 0).then_some(r)
}

/// A prctl with integer arguments.
pub fn prctl(option: i32, a2: u64, a3: u64, a4: u64, a5: u64) -> Result<i32> {
    // SAFETY: callers pass only prctl options whose arguments are integers, not pointers.
    let r = unsafe { libc::prctl(option, a2, a3, a4, a5) };
    Errno::result(r.into()).map(|v| v as i32)
}

/// The I/O priority of thread `tid` (`ioprio_get(IOPRIO_WHO_PROCESS, tid)`).
pub fn ioprio(tid: Pid) -> Result<i32> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    // SAFETY: ioprio_get takes two integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_get,
            IOPRIO_WHO_PROCESS,
            libc::c_long::from(tid),
        )
    };
    Errno::result(r).map(|v| v as i32)
}

/// Marks us as a child subreaper: orphans below us are reparented to us.
pub fn set_child_subreaper() -> Result<()> {
    prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0).map(drop)
}

/// Asks for `sig` when our parent dies.
pub fn set_parent_death_signal(sig: i32) -> Result<()> {
    prctl(libc::PR_SET_PDEATHSIG, sig as u64, 0, 0, 0).map(drop)
}

/// Makes us a session leader.
pub fn setsid() -> Result<Pid> {
    // SAFETY: setsid has no arguments.
    Errno::result(unsafe { libc::setsid() }.into()).map(|v| v as Pid)
}

/// Moves `pid` into process group `pgid`.
pub fn setpgid(pid: Pid, pgid: Pid) -> Result<()> {
    // SAFETY: plain integers.
    Errno::result(unsafe { libc::setpgid(pid, pgid) }.into()).map(drop)
}

/// Our pid.
pub fn getpid() -> Pid {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getpid() }
}

/// The session of `pid` (0 for ourselves).
pub fn getsid(pid: Pid) -> Result<Pid> {
    // SAFETY: plain integer.
    Errno::result(unsafe { libc::getsid(pid) }.into()).map(|v| v as Pid)
}

/// The process group of `pid` (0 for ourselves).
pub fn getpgid(pid: Pid) -> Result<Pid> {
    // SAFETY: plain integer.
    Errno::result(unsafe { libc::getpgid(pid) }.into()).map(|v| v as Pid)
}

/// Sets our umask, returning the old one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: plain integer, cannot fail.
    unsafe { libc::umask(mask) }
}

/// `pidfd_open(pid, flags)` (PIDFD_NONBLOCK, PIDFD_THREAD).
pub fn pidfd_open_flags(pid: Pid, flags: u32) -> Result<OwnedFd> {
    // SAFETY: integer arguments.
    let fd = Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) })? as i32;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A pidfd of a process that has exited with wait status `status` and been reaped: a
/// child made for the purpose (`clone3` with `CLONE_PIDFD`) that ends so at once.
pub fn dead_pidfd(status: i32) -> Result<OwnedFd> {
    let mut pidfd: i32 = -1;
    let args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64,
        pidfd: (&raw mut pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM gives the child a copy of our memory; the child
    // only makes system calls and ends (end_with_status never returns).
    let r = unsafe { libc::syscall(libc::SYS_clone3, &raw const args, size_of::<CloneArgs>()) };
    let child = Errno::result(r)? as Pid;
    if child == 0 {
        end_with_status(status);
    }
    // SAFETY: the kernel stored a new pidfd in `pidfd`.
    let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    wait_exit(child)?;
    Ok(fd)
}

/// Ends the calling process so that its parent sees wait status `status`: an exit code,
/// or death by the same signal (without a core dump).
pub fn end_with_status(status: i32) -> ! {
    let sig = status & 0x7f;
    if sig == 0 {
        exit_now((status >> 8) & 0xff);
    }
    let _ = prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    let _ = crate::signal::set_default(sig);
    let _ = crate::signal::set_mask(!(1u64 << (sig - 1)));
    let _ = kill(getpid(), sig);
    exit_now(128 + sig)
}

/// How a process a pidfd refers to ended (`PIDFD_GET_INFO` with `PIDFD_INFO_EXIT`, Linux
/// 6.15+): its wait status, or `None` if it has not ended or the kernel cannot tell.
pub fn pidfd_exit_status(pidfd: BorrowedFd<'_>) -> Option<i32> {
    // struct pidfd_info, first version (64 bytes): mask, cgroupid, 11 ids, exit_code.
    const PIDFD_INFO_EXIT: u64 = 1 << 3;
    const PIDFD_GET_INFO: libc::c_ulong = 0xc040_ff0b; // _IOWR(0xFF, 11, 64 bytes)
    let mut info = [0u64; 8];
    info[0] = PIDFD_INFO_EXIT;
    // SAFETY: the ioctl reads and writes the 64-byte structure it is given.
    let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, info.as_mut_ptr()) };
    if r != 0 || info[0] & PIDFD_INFO_EXIT == 0 {
        return None;
    }
    // exit_code is the last 32-bit field.
    Some((info[7] >> 32) as u32 as i32)
}

/// Compares kernel objects of two processes (`kcmp`): 0 if the same.
pub fn kcmp(pid1: Pid, pid2: Pid, kind: i32, idx1: u64, idx2: u64) -> Result<i32> {
    // SAFETY: kcmp with these kinds takes integers only.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, kind, idx1, idx2) };
    Errno::result(r).map(|v| v as i32)
}

/// Whether fd `fd` of `pid` is the file registered as target `tfd` of the epoll at fd
/// `epfd` of the same process (`kcmp(KCMP_EPOLL_TFD)`): `Ok(0)` if so.
pub fn kcmp_epoll_target(pid: Pid, fd: i32, epfd: i32, tfd: i32) -> Result<i32> {
    const KCMP_EPOLL_TFD: i32 = 7;
    // struct kcmp_epoll_slot { __u32 efd, tfd, toff; }
    let slot: [u32; 3] = [epfd as u32, tfd as u32, 0];
    // SAFETY: KCMP_EPOLL_TFD reads one kcmp_epoll_slot through the last argument.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_EPOLL_TFD,
            fd as u64,
            slot.as_ptr(),
        )
    };
    Errno::result(r).map(|v| v as i32)
}

/// Current `CLOCK_MONOTONIC` time in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes only to `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel's boot-time uptime in nanoseconds (CLOCK_BOOTTIME), for inventory's
/// dump_uptime.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes only to `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The current time of `clock` (seconds, nanoseconds).
pub fn clock_now(clock: i32) -> Result<[i64; 2]> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes only to `ts`.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    Errno::result(r.into())?;
    Ok([ts.tv_sec, ts.tv_nsec])
}

/// Exits the calling process at once, without running destructors or atexit handlers
/// (for forked children that must not unwind into the parent's state).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// `arch_prctl(ARCH_GET_XCOMP_PERM)` of the caller: the permitted XSAVE features.
pub fn xcomp_permissions() -> Result<u64> {
    let mut perm = 0u64;
    // SAFETY: writes one u64 to `perm`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            abi::ARCH_GET_XCOMP_PERM,
            &raw mut perm,
        )
    };
    Errno::result(r).map(|_| perm)
}

/// The robust futex list of thread `tid`: head address and length (`get_robust_list`).
pub fn robust_list(tid: Pid) -> Result<(u64, u32)> {
    let mut head = 0u64;
    let mut len = 0usize;
    // SAFETY: the kernel writes one pointer-sized value to each of our two locals.
    let r = unsafe { libc::syscall(libc::SYS_get_robust_list, tid, &raw mut head, &raw mut len) };
    Errno::result(r).map(|_| (head, len as u32))
}

/// Raises our soft RLIMIT_NOFILE to the hard limit (allowed without privileges), so the
/// restored fd numbers fit. Returns the new soft limit.
pub fn raise_nofile_limit() -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`; setrlimit reads it.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    Errno::result(r.into())?;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    Errno::result(r.into()).map(|_| lim.rlim_cur)
}

/// Sets the calling process's name (PR_SET_NAME; at most 15 bytes are kept).
pub fn set_name(name: &str) -> Result<()> {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from `buf`.
    let r = unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr()) };
    Errno::result(r.into()).map(drop)
}

/// Spawns `cmd` with our fd `fd` available as `target_fd` in the child (dup2 between fork
/// and exec). Used to hand a readiness pipe to a workload.
pub fn spawn_with_fd(
    cmd: &mut std::process::Command,
    fd: BorrowedFd<'_>,
    target_fd: i32,
) -> std::io::Result<std::process::Child> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    // Runs in the forked child before exec: only async-signal-safe calls.
    let place = move || -> std::io::Result<()> {
        let r = if raw == target_fd {
            // SAFETY: fcntl on an fd number; no memory is involved.
            unsafe { libc::fcntl(raw, libc::F_SETFD, 0) }
        } else {
            // SAFETY: dup2 on fd numbers; no memory is involved.
            unsafe { libc::dup2(raw, target_fd) }
        };
        if r == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: the closure only calls dup2/fcntl, which are async-signal-safe, and touches
    // no state of the parent, as pre_exec requires.
    unsafe { cmd.pre_exec(place) };
    cmd.spawn()
}

/// Waits up to `timeout` for `fd` to become readable (or hung up). Returns whether it did.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: poll reads and writes the one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        match Errno::result(r.into()) {
            Ok(n) => return Ok(n > 0),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Marks every fd above `min` close-on-exec, so children we spawn inherit only what we
/// give them (environments may leak stray descriptors into us).
pub fn cloexec_all_above(min: i32) -> Result<()> {
    let fds = crate::proc::fds(getpid()).map_err(|_| Errno(libc::EIO))?;
    for fd in fds.into_iter().filter(|fd| *fd > min) {
        // Ignore fds that vanished (the one read_dir used).
        let _ = crate::fs::set_cloexec(fd, true);
    }
    Ok(())
}

/// Waits up to `timeout` until every writer of the pipe behind `fd` has closed it (read
/// returns end of file); data still arriving is discarded. Returns whether it happened.
pub fn wait_closed(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !wait_readable(fd, left).unwrap_or(false) {
            return false;
        }
        // SAFETY: reads into our own buffer from an fd we borrow.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return true,
            n if n > 0 => continue,
            _ if Errno::last().0 == libc::EINTR => continue,
            _ => return false,
        }
    }
}

/// Waits until child `pid` has exited, leaving it a zombie (`WNOWAIT`).
pub fn wait_exited_nowait(pid: Pid) -> Result<()> {
    loop {
        // SAFETY: an all-zero siginfo is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        match Errno::result(r.into()) {
            Ok(_) => return Ok(()),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Waits for any child to terminate and reaps it; `None` when there are no children.
pub fn wait_any() -> Result<Option<Pid>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to our status integer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if r > 0 {
            return Ok(Some(r));
        }
        match Errno::last() {
            Errno(libc::EINTR) => continue,
            Errno(libc::ECHILD) => return Ok(None),
            e => return Err(e),
        }
    }
}

/// Waits for any child to terminate and reaps it: its pid and how it ended; `None` when
/// there are no children.
pub fn wait_any_status() -> Result<Option<(Pid, ExitStatus)>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to our status integer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if r > 0 {
            if libc::WIFEXITED(status) {
                return Ok(Some((r, ExitStatus::Code(libc::WEXITSTATUS(status)))));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(Some((r, ExitStatus::Signal(libc::WTERMSIG(status)))));
            }
            continue;
        }
        match Errno::last() {
            Errno(libc::EINTR) => continue,
            Errno(libc::ECHILD) => return Ok(None),
            e => return Err(e),
        }
    }
}

/// Reaps every child that has already terminated, without blocking; returns how many.
pub fn reap_terminated() -> Result<usize> {
    let mut reaped = 0;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to our status integer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::WNOHANG) };
        if r > 0 {
            reaped += 1;
            continue;
        }
        match (r, Errno::last()) {
            (0, _) | (_, Errno(libc::ECHILD)) => return Ok(reaped),
            (_, Errno(libc::EINTR)) => continue,
            (_, e) => return Err(e),
        }
    }
}
