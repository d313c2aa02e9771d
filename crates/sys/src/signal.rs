//! Signal masks and actions of the calling thread.

use crate::{Errno, Result};

/// Blocks every signal in the calling thread and returns the previous mask.
pub fn block_all() -> Result<u64> {
    set_mask(!0u64)
}

/// Sets the calling thread's blocked mask (bit n-1 = signal n), returning the old mask.
pub fn set_mask(mask: u64) -> Result<u64> {
    let mut old = 0u64;
    // SAFETY: rt_sigprocmask reads 8 bytes from `mask` and writes 8 bytes to `old`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const mask,
            &raw mut old,
            8,
        )
    };
    Errno::result(r).map(|_| old)
}

/// Resets `sig` to its default action.
pub fn set_default(sig: i32) -> Result<()> {
    // SAFETY: SIG_DFL involves no handler code of ours.
    let r = unsafe { libc::signal(sig, libc::SIG_DFL) };
    if r == libc::SIG_ERR {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Installs `handler` for `sig` (no SA_RESTART: blocking calls return EINTR).
pub fn set_handler(sig: i32, handler: extern "C" fn(libc::c_int)) -> Result<()> {
    // SAFETY: an all-zero sigaction is a valid starting value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler as usize;
    // SAFETY: sigaction reads our struct; the handler is a plain extern "C" function that
    // the caller keeps async-signal-safe.
    let r = unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) };
    Errno::result(r.into()).map(drop)
}

/// Takes every pending instance of `sig` off the calling thread's and process's queues
/// (the signal must be blocked), without running a handler.
pub fn drain_pending(sig: i32) -> Result<()> {
    let set = 1u64 << (sig - 1);
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: rt_sigtimedwait reads our set and timeout; no siginfo is requested.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &raw const set,
                std::ptr::null_mut::<libc::siginfo_t>(),
                &raw const zero,
                8,
            )
        };
        match Errno::result(r) {
            Ok(_) => continue,
            Err(Errno(libc::EAGAIN)) => return Ok(()),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
}
