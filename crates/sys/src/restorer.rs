//! The hand-over from a forked restore child to the restorer blob.

use crate::process::RestoreChild;
use crate::{Errno, Result};

unsafe extern "C" {
    // glibc (2.35+) exports where it registered the thread's rseq area.
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// The rseq signature glibc registers with on x86 (RSEQ_SIG).
const RSEQ_SIG: u32 = 0x5305_3053;
const RSEQ_FLAG_UNREGISTER: u32 = 1;

/// Unregisters the calling thread's rseq area (registered by glibc at thread start).
///
/// The restorer unmaps all of our memory; a registered rseq area in it would make the
/// kernel fault on the next return to user space.
pub fn unregister_own_rseq() -> Result<()> {
    // SAFETY: reading two plain integers that glibc initialises before main.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return Ok(());
    }
    let tp: u64;
    // SAFETY: on x86_64 glibc, %fs:0 holds the thread pointer (the TCB's self pointer).
    unsafe { core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly)) };
    let area = tp.wrapping_add_signed(offset as i64);
    // glibc registers 32 bytes even where it advertises a smaller feature size.
    let mut last = Errno(libc::EINVAL);
    for len in [32u32, size] {
        // SAFETY: unregistering takes the address we registered with; no memory is
        // touched beyond the kernel reading our own rseq area.
        let r = unsafe { libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) };
        match Errno::result(r) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Disables the calling thread's alternate signal stack (Rust's runtime installs one),
/// so that the image's altstack can be installed by `rt_sigreturn` whatever the stack
/// pointer.
pub fn disable_sigaltstack() -> Result<()> {
    let ss = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: sigaltstack reads our stack_t; no old value is requested.
    let r = unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    Errno::result(r.into()).map(drop)
}

impl crate::mem::Reservation {
    /// Switches to `stack_top` and jumps to the restorer blob's `entry` with `header` as
    /// its argument; returns only if the addresses do not lie in this reservation.
    ///
    /// This is safe to offer because of the [`RestoreChild`] token: the calling process is
    /// a restore child that never runs Rust code again after the jump (the blob replaces
    /// its whole address space and ends in the restored program), so nothing the blob
    /// does can break an invariant of Rust code that would still run.
    pub fn jump(&self, _child: RestoreChild, entry: u64, header: u64, stack_top: u64) -> Errno {
        let inside = |a: u64| a >= self.start() && a < self.end();
        if !inside(entry)
            || !inside(header)
            || !inside(stack_top - 16)
            || !stack_top.is_multiple_of(16)
        {
            return Errno(libc::EINVAL);
        }
        // SAFETY: see above: the target code and stack are in our reservation and no Rust
        // code of this process runs after the jump.
        unsafe {
            core::arch::asm!(
                "mov rsp, {stack}",
                "jmp {entry}",
                stack = in(reg) stack_top,
                entry = in(reg) entry,
                in("rdi") header,
                options(noreturn),
            )
        }
    }
}
