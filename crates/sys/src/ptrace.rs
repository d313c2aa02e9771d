//! ptrace: seizing threads, reading and writing their state, injecting system calls.
//!
//! The kernel only honours ptrace requests from the thread that attached, so a [`Tracee`]
//! must stay on the thread that created it (it is `!Send`).

use std::marker::PhantomData;

use crate::abi::{self, KernelSigaction, RawSiginfo, RseqConfiguration, UserRegs};
use crate::{Errno, Pid, Result, mem};

/// How a waited-for tracee changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The thread exited with a status.
    Exited(i32),
    /// The thread was killed by a signal.
    Killed(i32),
    /// A `PTRACE_INTERRUPT` or group stop (`PTRACE_EVENT_STOP`); the signal is SIGTRAP for
    /// an interrupt, or the stopping signal for a group stop.
    Event(i32),
    /// Entry or exit of a system call (`PTRACE_O_TRACESYSGOOD`).
    Syscall,
    /// A signal is about to be delivered.
    Signal(i32),
    /// Another ptrace event (clone, exec, ...), with its number.
    OtherEvent(i32, i32),
}

/// Decodes a `waitpid` status.
pub fn decode_status(status: i32) -> Stop {
    if libc::WIFEXITED(status) {
        Stop::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Stop::Killed(libc::WTERMSIG(status))
    } else {
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        if event == abi::PTRACE_EVENT_STOP {
            Stop::Event(sig)
        } else if event != 0 {
            Stop::OtherEvent(event, sig)
        } else if sig == (libc::SIGTRAP | 0x80) {
            Stop::Syscall
        } else {
            Stop::Signal(sig)
        }
    }
}

/// Waits for a state change of thread `tid` (any child or tracee: `__WALL`).
pub fn wait_tid(tid: Pid) -> Result<Stop> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only to the status integer we own.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r == tid {
            return Ok(decode_status(status));
        }
        let e = Errno::last();
        if r == -1 && e.0 == libc::EINTR {
            continue;
        }
        return Err(e);
    }
}

fn ptrace_raw(request: u32, tid: Pid, addr: u64, data: u64) -> Result<libc::c_long> {
    // SAFETY: every caller passes addr/data that are either plain integers or pointers to
    // memory it owns and sized for the request (checked at each call site below).
    let r = unsafe {
        libc::ptrace(
            request as _,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    Errno::result(r)
}

/// A thread we are attached to with `PTRACE_SEIZE`.
///
/// Dropping a `Tracee` does not detach: the owner decides whether the thread is detached,
/// left stopped or killed (see [`Tracee::detach`]).
#[derive(Debug)]
pub struct Tracee {
    tid: Pid,
    // ptrace requests are only valid from the attaching thread.
    _not_send: PhantomData<*const ()>,
}

impl Tracee {
    /// Attaches to `tid` without stopping it. `options` are `PTRACE_O_*` flags.
    pub fn seize(tid: Pid, options: u64) -> Result<Tracee> {
        ptrace_raw(abi::PTRACE_SEIZE, tid, 0, options)?;
        Ok(Tracee {
            tid,
            _not_send: PhantomData,
        })
    }

    /// Wraps a thread that is already traced by the calling thread.
    pub fn from_attached(tid: Pid) -> Tracee {
        Tracee {
            tid,
            _not_send: PhantomData,
        }
    }

    /// The thread id.
    pub fn tid(&self) -> Pid {
        self.tid
    }

    /// Asks the thread to stop (`PTRACE_INTERRUPT`); wait for the stop with [`Tracee::wait`].
    pub fn interrupt(&self) -> Result<()> {
        ptrace_raw(abi::PTRACE_INTERRUPT, self.tid, 0, 0).map(drop)
    }

    /// Waits for the thread's next state change.
    pub fn wait(&self) -> Result<Stop> {
        wait_tid(self.tid)
    }

    /// Interrupts the thread and waits until it is in a ptrace stop.
    ///
    /// A signal may be dequeued for delivery before the interrupt lands; such a
    /// signal-delivery stop is resumed without the signal, and its siginfo is returned so
    /// the caller can queue it again (nothing is lost).
    pub fn interrupt_and_wait(&self) -> Result<(Stop, Vec<RawSiginfo>)> {
        match self.interrupt_and_wait_unless(|| None::<std::convert::Infallible>)? {
            Ok(stopped) => Ok(stopped),
            Err(never) => match never {},
        }
    }

    /// [`Tracee::interrupt_and_wait`] for a thread that may never stop: while it has not,
    /// `stuck` is asked whether to give up (a `Some` ends the wait with its value; the
    /// interrupt stays pending, and the thread traps whenever it leaves the kernel).
    pub fn interrupt_and_wait_unless<T>(
        &self,
        stuck: impl FnMut() -> Option<T>,
    ) -> Result<std::result::Result<(Stop, Vec<RawSiginfo>), T>> {
        self.interrupt()?;
        self.wait_interrupted_unless(stuck)
    }

    /// The waiting half of [`Tracee::interrupt_and_wait_unless`], for a thread already
    /// interrupted (so that many threads can be interrupted first and stop in parallel).
    pub fn wait_interrupted_unless<T>(
        &self,
        mut stuck: impl FnMut() -> Option<T>,
    ) -> Result<std::result::Result<(Stop, Vec<RawSiginfo>), T>> {
        let mut dequeued = Vec::new();
        loop {
            match self.wait_unless(&mut stuck)? {
                Err(gave_up) => return Ok(Err(gave_up)),
                Ok(Stop::Signal(_)) => {
                    dequeued.push(self.siginfo()?);
                    self.cont(0)?;
                }
                Ok(other) => return Ok(Ok((other, dequeued))),
            }
        }
    }

    /// Waits for the next state change without blocking for good: after a short spin,
    /// `stuck` is asked about once a millisecond, and a `Some` from it ends the wait.
    fn wait_unless<T>(
        &self,
        stuck: &mut impl FnMut() -> Option<T>,
    ) -> Result<std::result::Result<Stop, T>> {
        let mut polls = 0u32;
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only to the status integer we own.
            let r = unsafe { libc::waitpid(self.tid, &mut status, libc::__WALL | libc::WNOHANG) };
            if r == self.tid {
                return Ok(Ok(decode_status(status)));
            }
            if r == -1 {
                let e = Errno::last();
                if e.0 == libc::EINTR {
                    continue;
                }
                return Err(e);
            }
            // Stopping takes a wakeup and a trip through the scheduler: usually microseconds.
            polls += 1;
            if polls <= 200 {
                std::thread::yield_now();
                continue;
            }
            if let Some(gave_up) = stuck() {
                return Ok(Err(gave_up));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Resumes a thread from the group-stop (job control) report that seizing a stopped
    /// thread makes; the interrupt requested by [`Tracee::interrupt_and_wait`] is still
    /// pending, so it traps again at once, and a resume from that trap runs injected
    /// code (a resume from the first would only take the pending trap). Returns the stop
    /// as `interrupt_and_wait` does.
    pub fn leave_group_stop(&self) -> Result<(Stop, Vec<RawSiginfo>)> {
        self.cont(0)?;
        self.wait_past_signals()
    }

    fn wait_past_signals(&self) -> Result<(Stop, Vec<RawSiginfo>)> {
        let mut dequeued = Vec::new();
        loop {
            match self.wait()? {
                Stop::Signal(_) => {
                    dequeued.push(self.siginfo()?);
                    self.cont(0)?;
                }
                other => return Ok((other, dequeued)),
            }
        }
    }

    /// The siginfo of the signal that caused the current signal-delivery stop.
    pub fn siginfo(&self) -> Result<RawSiginfo> {
        let mut info = [0u8; 128];
        ptrace_raw(
            libc::PTRACE_GETSIGINFO,
            self.tid,
            0,
            info.as_mut_ptr() as u64,
        )?;
        Ok(info)
    }

    /// Sets the blocked signal mask. This also cancels a pending restore of the mask saved
    /// by `sigsuspend`, which is right when the call is restarted from the beginning.
    pub fn set_sigmask(&self, mask: u64) -> Result<()> {
        let mut copy = mask;
        ptrace_raw(abi::PTRACE_SETSIGMASK, self.tid, 8, (&raw mut copy) as u64).map(drop)
    }

    /// Resumes the thread, delivering `sig` (0 for none).
    pub fn cont(&self, sig: i32) -> Result<()> {
        ptrace_raw(libc::PTRACE_CONT, self.tid, 0, sig as u64).map(drop)
    }

    /// Resumes until the next system call entry or exit.
    pub fn resume_to_syscall(&self, sig: i32) -> Result<()> {
        ptrace_raw(libc::PTRACE_SYSCALL, self.tid, 0, sig as u64).map(drop)
    }

    /// Detaches, letting the thread run on, delivering `sig` (0 for none).
    pub fn detach(self, sig: i32) -> Result<()> {
        ptrace_raw(libc::PTRACE_DETACH, self.tid, 0, sig as u64).map(drop)
    }

    /// The general registers.
    pub fn regs(&self) -> Result<UserRegs> {
        let mut regs = UserRegs::default();
        let mut iov = libc::iovec {
            iov_base: (&raw mut regs).cast(),
            iov_len: size_of::<UserRegs>(),
        };
        ptrace_raw(
            abi::PTRACE_GETREGSET,
            self.tid,
            u64::from(abi::NT_PRSTATUS),
            (&raw mut iov) as u64,
        )?;
        Ok(regs)
    }

    /// Sets the general registers.
    pub fn set_regs(&self, regs: &UserRegs) -> Result<()> {
        let mut copy = *regs;
        let mut iov = libc::iovec {
            iov_base: (&raw mut copy).cast(),
            iov_len: size_of::<UserRegs>(),
        };
        ptrace_raw(
            abi::PTRACE_SETREGSET,
            self.tid,
            u64::from(abi::NT_PRSTATUS),
            (&raw mut iov) as u64,
        )
        .map(drop)
    }

    /// The complete XSAVE area in standard (non-compacted) format.
    pub fn xstate(&self) -> Result<Vec<u8>> {
        // Large enough for every component including AMX tile data (8 KiB).
        let mut buf = vec![0u8; 16 << 10];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        ptrace_raw(
            abi::PTRACE_GETREGSET,
            self.tid,
            u64::from(abi::NT_X86_XSTATE),
            (&raw mut iov) as u64,
        )?;
        buf.truncate(iov.iov_len);
        Ok(buf)
    }

    /// Sets the XSAVE area.
    pub fn set_xstate(&self, xstate: &[u8]) -> Result<()> {
        let mut copy = xstate.to_vec();
        let mut iov = libc::iovec {
            iov_base: copy.as_mut_ptr().cast(),
            iov_len: copy.len(),
        };
        ptrace_raw(
            abi::PTRACE_SETREGSET,
            self.tid,
            u64::from(abi::NT_X86_XSTATE),
            (&raw mut iov) as u64,
        )
        .map(drop)
    }

    /// The blocked signal mask (the mask to restore if the thread is in `sigsuspend`).
    pub fn sigmask(&self) -> Result<u64> {
        let mut mask = 0u64;
        ptrace_raw(abi::PTRACE_GETSIGMASK, self.tid, 8, (&raw mut mask) as u64)?;
        Ok(mask)
    }

    /// Pending signals with their siginfo: the thread's own queue, or the process-wide
    /// queue if `shared`. Reading does not dequeue them.
    pub fn pending_siginfo(&self, shared: bool) -> Result<Vec<RawSiginfo>> {
        let mut out = Vec::new();
        let mut batch = vec![[0u8; 128]; 32];
        loop {
            let mut args = abi::PeeksiginfoArgs {
                off: out.len() as u64,
                flags: if shared {
                    abi::PTRACE_PEEKSIGINFO_SHARED
                } else {
                    0
                },
                nr: batch.len() as i32,
            };
            let n = ptrace_raw(
                abi::PTRACE_PEEKSIGINFO,
                self.tid,
                (&raw mut args) as u64,
                batch.as_mut_ptr() as u64,
            )?;
            let n = n as usize;
            out.extend_from_slice(&batch[..n]);
            if n < batch.len() {
                return Ok(out);
            }
        }
    }

    /// The thread's rseq registration (all zero if none).
    pub fn rseq_configuration(&self) -> Result<RseqConfiguration> {
        let mut conf = RseqConfiguration::default();
        ptrace_raw(
            abi::PTRACE_GET_RSEQ_CONFIGURATION,
            self.tid,
            size_of::<RseqConfiguration>() as u64,
            (&raw mut conf) as u64,
        )?;
        Ok(conf)
    }

    /// The thread's seccomp filters, oldest first (index 0 is the first installed):
    /// program bytes and the `SECCOMP_FILTER_FLAG_*` flags it was installed with.
    pub fn seccomp_filters(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::new();
        for index in 0u64.. {
            // With a null buffer the request returns the number of instructions.
            let count = match ptrace_raw(abi::PTRACE_SECCOMP_GET_FILTER, self.tid, index, 0) {
                Ok(n) => n as usize,
                Err(Errno(libc::ENOENT)) => break,
                Err(e) => return Err(e),
            };
            let mut prog = vec![0u8; count * 8];
            ptrace_raw(
                abi::PTRACE_SECCOMP_GET_FILTER,
                self.tid,
                index,
                prog.as_mut_ptr() as u64,
            )?;
            // struct seccomp_metadata { filter_off, flags }.
            let mut meta = [index, 0u64];
            ptrace_raw(
                abi::PTRACE_SECCOMP_GET_METADATA,
                self.tid,
                16,
                meta.as_mut_ptr() as u64,
            )?;
            out.push((prog, meta[1]));
        }
        Ok(out)
    }

    /// Reads a word of the thread's memory (works on read-only mappings too).
    pub fn peek(&self, addr: u64) -> Result<u64> {
        // PTRACE_PEEKDATA returns the word; errors are only distinguishable through errno.
        // SAFETY: __errno_location returns this thread's errno slot, always valid.
        let errno = unsafe { libc::__errno_location() };
        // SAFETY: clearing errno is a plain write to that thread-local slot.
        unsafe { *errno = 0 };
        // SAFETY: PEEKDATA takes no pointers of ours.
        let r = unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, self.tid, addr, 0u64) };
        if r == -1 {
            let e = Errno::last();
            if e.0 != 0 {
                return Err(e);
            }
        }
        Ok(r as u64)
    }

    /// Writes a word of the thread's memory (also into read-only text, copy-on-write).
    pub fn poke(&self, addr: u64, word: u64) -> Result<()> {
        ptrace_raw(libc::PTRACE_POKEDATA, self.tid, addr, word).map(drop)
    }
}

/// Adjusts registers of a thread stopped inside a system call so that the call restarts
/// when the registers are loaded again into a fresh thread (as after a restore), the way
/// the kernel would restart it if no signal handler ran.
///
/// `-ERESTART_RESTARTBLOCK` calls (nanosleep, poll with a timeout, futex waits) restart
/// through a kernel-internal block that does not survive a checkpoint: they are restarted
/// from scratch with their original arguments instead (the call then waits its whole
/// timeout again, which is a legal outcome for every such call).
pub fn rewind_interrupted_syscall(regs: &mut UserRegs) -> bool {
    if (regs.orig_ax as i64) < 0 {
        return false;
    }
    match -(regs.ax as i64) {
        abi::ERESTARTSYS
        | abi::ERESTARTNOINTR
        | abi::ERESTARTNOHAND
        | abi::ERESTART_RESTARTBLOCK => {
            regs.ax = regs.orig_ax;
            regs.ip -= 2;
            regs.orig_ax = u64::MAX;
            true
        }
        _ => false,
    }
}

/// Runs system calls inside a stopped tracee, always putting its registers back.
///
/// The tracee must be in a ptrace stop (after [`Tracee::interrupt_and_wait`]). Each call
/// points the instruction pointer at a `syscall` instruction already present in the
/// tracee (found in its vDSO), sets the argument registers, and runs the tracee from the
/// syscall-entry stop to the syscall-exit stop. [`Injector::finish`] (or drop) restores
/// the original registers, so a system call the tracee was sleeping in restarts exactly as
/// the kernel would have restarted it once the tracee is detached.
#[derive(Debug)]
pub struct Injector<'t> {
    tracee: &'t Tracee,
    saved: UserRegs,
    syscall_ip: u64,
    moved: bool,
    scratch: Option<(u64, u64)>,
    finished: bool,
}

impl<'t> Injector<'t> {
    /// Prepares injection into `tracee`, whose current registers are `saved`, using the
    /// `syscall` instruction at `syscall_ip`.
    pub fn new(tracee: &'t Tracee, saved: UserRegs, syscall_ip: u64) -> Self {
        Injector {
            tracee,
            saved,
            syscall_ip,
            moved: false,
            scratch: None,
            finished: false,
        }
    }

    /// Executes system call `nr` with `args` in the tracee and returns its raw result
    /// (negative errno values are returned as errors).
    pub fn syscall(&mut self, nr: u64, args: [u64; 6]) -> Result<u64> {
        let mut regs = self.saved;
        regs.ip = self.syscall_ip;
        regs.ax = nr;
        // No syscall is in progress as far as the kernel's restart logic is concerned.
        regs.orig_ax = u64::MAX;
        regs.di = args[0];
        regs.si = args[1];
        regs.dx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        self.tracee.set_regs(&regs)?;
        self.moved = true;
        for _ in 0..2 {
            self.tracee.resume_to_syscall(0)?;
            match self.tracee.wait()? {
                Stop::Syscall => {}
                // Exits mean the tracee died under us (e.g. SIGKILL from elsewhere).
                Stop::Exited(_) | Stop::Killed(_) => return Err(Errno(libc::ESRCH)),
                // Anything else is unexpected; report a generic failure.
                _ => return Err(Errno(libc::EIO)),
            }
        }
        let ret = self.tracee.regs()?.ax;
        Errno::from_kernel_return(ret)
    }

    /// Maps an area of `len` bytes (page multiple) in the tracee for [`Injector::run_batch`]:
    /// its first half is data for the calls' arguments and results, the second half code.
    /// The caller unmaps it with [`Injector::unmap_area`] (from any thread of the process).
    pub fn map_area(&mut self, len: u64) -> Result<RemoteArea> {
        let len = len.next_multiple_of(abi::PAGE_SIZE * 2);
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let addr = self.syscall(abi::nr::MMAP, [0, len, prot, flags, u64::MAX, 0])?;
        Ok(RemoteArea { addr, len })
    }

    /// Unmaps an area made by [`Injector::map_area`].
    pub fn unmap_area(&mut self, area: RemoteArea) -> Result<()> {
        self.syscall(abi::nr::MUNMAP, [area.addr, area.len, 0, 0, 0, 0])
            .map(drop)
    }

    /// Runs `calls` back to back in the tracee, in one resume: straight-line code placed
    /// in the area's code half loads each call's registers, makes the call and stores the
    /// result, and ends in `int3`. One stop instead of two per call. Returns the raw
    /// results (negative errno values included) in order.
    pub fn run_batch(&mut self, area: &RemoteArea, calls: &[(u64, [u64; 6])]) -> Result<Vec<u64>> {
        let results = area.addr + area.len - 8 * calls.len() as u64;
        let code_at = area.addr + area.len / 2;
        let code = batch_code(calls, results);
        if code_at + code.len() as u64 > results {
            return Err(Errno(libc::E2BIG));
        }
        mem::write_process(self.tracee.tid(), code_at, &code)?;
        let mut regs = self.saved;
        regs.ip = code_at;
        regs.orig_ax = u64::MAX;
        self.tracee.set_regs(&regs)?;
        self.moved = true;
        self.tracee.cont(0)?;
        match self.tracee.wait()? {
            Stop::Signal(libc::SIGTRAP) => {}
            Stop::Exited(_) | Stop::Killed(_) => return Err(Errno(libc::ESRCH)),
            _ => return Err(Errno(libc::EIO)),
        }
        let mut raw = vec![0u8; calls.len() * 8];
        if mem::read_process(self.tracee.tid(), results, &mut raw)? != raw.len() {
            return Err(Errno(libc::EFAULT));
        }
        Ok(raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// A page-aligned scratch area of at least `len` bytes in the tracee, mapped on first
    /// use and unmapped by [`Injector::finish`].
    pub fn scratch(&mut self, len: u64) -> Result<u64> {
        if let Some((addr, have)) = self.scratch
            && have >= len
        {
            return Ok(addr);
        }
        self.release_scratch()?;
        let len = len.div_ceil(abi::PAGE_SIZE) * abi::PAGE_SIZE;
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let addr = self.syscall(abi::nr::MMAP, [0, len, prot, flags, u64::MAX, 0])?;
        self.scratch = Some((addr, len));
        Ok(addr)
    }

    fn release_scratch(&mut self) -> Result<()> {
        if let Some((addr, len)) = self.scratch.take() {
            self.syscall(abi::nr::MUNMAP, [addr, len, 0, 0, 0, 0])?;
        }
        Ok(())
    }

    /// Runs a system call that writes a `T` into scratch memory (its argument `out_arg` is
    /// replaced by the scratch address) and returns the result and the value written.
    pub fn syscall_out<T: mem::Pod>(
        &mut self,
        nr: u64,
        mut args: [u64; 6],
        out_arg: usize,
    ) -> Result<(u64, T)> {
        let addr = self.scratch(size_of::<T>() as u64)?;
        args[out_arg] = addr;
        let ret = self.syscall(nr, args)?;
        let value = mem::read_remote::<T>(self.tracee.tid(), addr)?;
        Ok((ret, value))
    }

    /// Runs a system call that reads `input` from the tracee's memory: the bytes are put
    /// into scratch memory and argument `in_arg` points at them.
    pub fn syscall_in(
        &mut self,
        nr: u64,
        mut args: [u64; 6],
        in_arg: usize,
        input: &[u8],
    ) -> Result<u64> {
        let addr = self.scratch(input.len() as u64)?;
        mem::write_process(self.tracee.tid(), addr, input)?;
        args[in_arg] = addr;
        self.syscall(nr, args)
    }

    /// Queues `info` again on the thread (rt_tgsigqueueinfo from inside the tracee, so the
    /// kernel accepts any si_code), e.g. a signal we took out of its delivery path.
    pub fn requeue_signal(&mut self, tgid: Pid, info: &RawSiginfo) -> Result<()> {
        let signo = i32::from_le_bytes([info[0], info[1], info[2], info[3]]);
        let tid = self.tracee.tid();
        self.syscall_in(
            abi::nr::RT_TGSIGQUEUEINFO,
            [tgid as u64, tid as u64, signo as u64, 0, 0, 0],
            3,
            info,
        )
        .map(drop)
    }

    /// Reads every signal action of the tracee's process (signals 1..=64).
    pub fn sigactions(&mut self) -> Result<Vec<KernelSigaction>> {
        let mut out = Vec::with_capacity(64);
        for sig in 1..=64u64 {
            let (_, act) = self.syscall_out::<KernelSigaction>(
                abi::nr::RT_SIGACTION,
                [sig, 0, 0, 8, 0, 0],
                2,
            )?;
            out.push(act);
        }
        Ok(out)
    }

    /// Unmaps the scratch area and restores the tracee's registers.
    pub fn finish(mut self) -> Result<()> {
        self.finished = true;
        self.put_back()
    }

    fn put_back(&mut self) -> Result<()> {
        if !self.moved {
            return Ok(());
        }
        let scratch = self.release_scratch();
        // The tracee sits at a syscall-exit stop, past the kernel's restart logic. That is
        // still fine for registers saying "interrupted with -ERESTART*": detaching kicks
        // the tracee through signal handling (ptrace_signal_wake_up in __ptrace_unlink),
        // where the restart logic reads them, as the inject test shows.
        self.tracee.set_regs(&self.saved)?;
        self.moved = false;
        scratch
    }
}

impl Drop for Injector<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort on error paths: the caller is already failing.
            let _ = self.put_back();
        }
    }
}

/// Finds a `syscall` instruction (0f 05) in the vDSO of process `pid`, for [`Injector`].
/// The vDSO is the only code every process has that we need not modify to inject.
pub fn find_syscall_in_vdso(pid: Pid) -> Result<Option<u64>> {
    let vmas = crate::proc::read_smaps(pid).map_err(|_| Errno(libc::ESRCH))?;
    let Some(vdso) = vmas.iter().find(|v| v.path == crate::proc::VmaPath::Vdso) else {
        return Ok(None);
    };
    let mut text = vec![0u8; vdso.len() as usize];
    let n = mem::read_process(pid, vdso.start, &mut text)?;
    Ok(text[..n]
        .windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|off| vdso.start + off as u64))
}

/// Waits for a state change of any child or tracee: its tid and what happened.
pub fn wait_any() -> Result<(Pid, Stop)> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only to the status integer we own.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if r > 0 {
            return Ok((r, decode_status(status)));
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// Memory mapped in a tracee for injected code and the data it works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteArea {
    /// First address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

impl RemoteArea {
    /// The address of byte `offset` of the data half.
    pub fn data(&self, offset: u64) -> u64 {
        self.addr + offset
    }

    /// Bytes available in the data half.
    pub fn data_len(&self) -> u64 {
        self.len / 2
    }
}

/// x86-64 code for a batch of system calls: per call, `movabs` into rax, rdi, rsi, rdx,
/// r10, r8, r9, `syscall`, and `movabs [results + 8i], rax`; then `int3`.
fn batch_code(calls: &[(u64, [u64; 6])], results: u64) -> Vec<u8> {
    // (REX prefix, opcode) of `mov r64, imm64` for rax, rdi, rsi, rdx, r10, r8, r9.
    const LOADS: [(u8, u8); 7] = [
        (0x48, 0xb8),
        (0x48, 0xbf),
        (0x48, 0xbe),
        (0x48, 0xba),
        (0x49, 0xba),
        (0x49, 0xb8),
        (0x49, 0xb9),
    ];
    let mut code = Vec::with_capacity(calls.len() * 82 + 1);
    for (i, (nr, args)) in calls.iter().enumerate() {
        let values = [*nr, args[0], args[1], args[2], args[3], args[4], args[5]];
        for ((rex, op), v) in LOADS.iter().zip(values) {
            code.extend_from_slice(&[*rex, *op]);
            code.extend_from_slice(&v.to_le_bytes());
        }
        code.extend_from_slice(&[0x0f, 0x05]);
        code.extend_from_slice(&[0x48, 0xa3]);
        code.extend_from_slice(&(results + 8 * i as u64).to_le_bytes());
    }
    code.push(0xcc);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_code_layout() {
        let code = batch_code(&[(39, [1, 2, 3, 4, 5, 6])], 0x1000);
        assert_eq!(code.len(), 83);
        assert_eq!(&code[..10], &[0x48, 0xb8, 39, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&code[60..62], &[0x49, 0xb9], "r9 last");
        assert_eq!(&code[70..72], &[0x0f, 0x05]);
        assert_eq!(&code[72..74], &[0x48, 0xa3]);
        assert_eq!(code[82], 0xcc);
    }
}
