//! Per-task state: registers, FPU, signals, credentials, limits, scheduling — everything
//! in `core-TID.img`, plus the mm fields that need a look from inside the task.
//!
//! Sources: ptrace register sets and signal queries, `/proc/PID/{stat,status,limits,...}`,
//! and system calls injected into the stopped task for what only the task itself can ask
//! the kernel (signal actions, sigaltstack, itimers, brk, prctl values).

use stasis_images::consts::{SIGACTION_COUNT, task_state};
use stasis_images::pb;
use stasis_sys::abi::{self, Itimerspec, Itimerval, KernelSigaction, StackT, UserRegs};
use stasis_sys::ptrace::{self, Injector, RemoteArea};
use stasis_sys::{Pid, cpu, proc};

use crate::error::{DumpError, ProcContext, Result, SysContext};
use crate::freeze::FrozenThread;

/// What injected system calls told us about a process (its leader thread).
#[derive(Debug, Default)]
pub struct ProcessInside {
    /// Signal actions 1..=64.
    pub sigactions: Vec<KernelSigaction>,
    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub itimers: [Itimerval; 3],
    /// The current program break.
    pub brk: u64,
    /// PR_GET_DUMPABLE.
    pub dumpable: i32,
    /// PR_GET_THP_DISABLE.
    pub thp_disabled: bool,
    /// PR_GET_CHILD_SUBREAPER.
    pub child_subreaper: bool,
    /// ARCH_GET_XCOMP_PERM.
    pub xcomp_perm: u64,
    /// membarrier registrations (MEMBARRIER_CMD_GET_REGISTRATIONS), as REGISTER_* bits.
    pub membarrier: u32,
    /// POSIX timers with their remaining time and interval, and overrun count.
    pub posix_timers: Vec<(proc::PosixTimer, Itimerspec, u32)>,
    /// Overruns of the timers whose own signal is pending, by timer id.
    pub pending_overruns: std::collections::HashMap<i32, u32>,
}

/// What injected system calls told us about one thread.
#[derive(Debug, Default)]
pub struct ThreadInside {
    /// The alternate signal stack.
    pub altstack: StackT,
    /// The clear_child_tid address (set_tid_address).
    pub tid_address: u64,
    /// PR_GET_PDEATHSIG.
    pub pdeath_sig: i32,
    /// PR_GET_SECUREBITS.
    pub securebits: u32,
    /// PR_GET_TIMERSLACK (per thread; /proc shows only the leader's).
    pub timerslack_ns: u64,
}

/// Builds one batch of injected calls and lays out where their outputs go.
struct Batch<'a> {
    area: &'a RemoteArea,
    calls: Vec<(u64, [u64; 6])>,
    names: Vec<String>,
    used: u64,
    /// Input bytes to write into the data half before the run: (offset, bytes).
    inputs: Vec<(u64, Vec<u8>)>,
}

impl<'a> Batch<'a> {
    fn new(area: &'a RemoteArea) -> Self {
        Batch {
            area,
            calls: Vec::new(),
            names: Vec::new(),
            used: 0,
            inputs: Vec::new(),
        }
    }

    /// Places input bytes for a call; returns their address in the tracee.
    fn input(&mut self, bytes: &[u8]) -> u64 {
        let at = self.out(bytes.len() as u64);
        self.inputs.push((at, bytes.to_vec()));
        self.area.data(at)
    }

    /// Room for `len` bytes of output; its offset in the data half.
    fn out(&mut self, len: u64) -> u64 {
        let at = self.used.next_multiple_of(8);
        self.used = at + len;
        at
    }

    /// Adds a call; returns its index.
    fn call(&mut self, nr: u64, args: [u64; 6], name: impl Into<String>) -> usize {
        self.calls.push((nr, args));
        self.names.push(name.into());
        self.calls.len() - 1
    }

    /// Adds a call writing a `T` at a fresh output slot (argument `out_arg`); returns the
    /// call's index and the slot's offset.
    fn call_out<T>(
        &mut self,
        nr: u64,
        mut args: [u64; 6],
        out_arg: usize,
        name: &str,
    ) -> (usize, u64) {
        let at = self.out(size_of::<T>() as u64);
        args[out_arg] = self.area.data(at);
        (self.call(nr, args, name), at)
    }
}

/// The results of a batch: each call's return value, and the output bytes.
struct Outputs {
    results: Vec<u64>,
    names: Vec<String>,
    data: Vec<u8>,
}

impl Outputs {
    /// The result of call `i`, an error if the call failed.
    fn result(&self, pid: Pid, tid: Pid, i: usize) -> Result<u64> {
        stasis_sys::Errno::from_kernel_return(self.results[i]).ctx(pid, || {
            format!("{} (injected into thread {tid})", self.names[i])
        })
    }

    /// The `T` an output slot holds.
    fn value<T: stasis_sys::mem::Pod>(&self, at: u64) -> T {
        stasis_sys::mem::from_bytes(&self.data[at as usize..])
            .expect("slot inside the data read back")
    }
}

fn run(inj: &mut Injector<'_>, pid: Pid, tid: Pid, batch: Batch<'_>) -> Result<Outputs> {
    if batch.used > batch.area.data_len() {
        return Err(DumpError::Invalid(format!(
            "process {pid}: too many injected calls for one batch"
        )));
    }
    for (at, bytes) in &batch.inputs {
        stasis_sys::mem::write_process(pid, batch.area.data(*at), bytes).ctx(pid, || {
            format!("write injected calls' inputs of thread {tid}")
        })?;
    }
    let results = inj
        .run_batch(batch.area, &batch.calls)
        .ctx(pid, || format!("run injected calls in thread {tid}"))?;
    let mut data = vec![0u8; batch.used as usize];
    let n = stasis_sys::mem::read_process(pid, batch.area.data(0), &mut data).ctx(pid, || {
        format!("read injected calls' results of thread {tid}")
    })?;
    data.truncate(n);
    if n as u64 != batch.used {
        return Err(DumpError::Invalid(format!(
            "process {pid}: short read of injected results"
        )));
    }
    Ok(Outputs {
        results,
        names: batch.names,
        data,
    })
}

/// Maps the area injected calls work in (one per process, shared by its threads), with a
/// call injected into `t`.
pub fn map_area(t: &FrozenThread, syscall_ip: u64) -> Result<RemoteArea> {
    let mut inj = Injector::new(&t.tracee, t.regs, syscall_ip);
    let area = inj
        .map_area(64 << 10)
        .ctx(t.pid, || "map an area for injected calls".into())?;
    inj.finish().ctx(t.pid, || "restore registers".into())?;
    Ok(area)
}

/// Unmaps the area (through thread `t`).
pub fn unmap_area(t: &FrozenThread, syscall_ip: u64, area: RemoteArea) -> Result<()> {
    let mut inj = Injector::new(&t.tracee, t.regs, syscall_ip);
    inj.unmap_area(area)
        .ctx(t.pid, || "unmap the area of injected calls".into())?;
    inj.finish().ctx(t.pid, || "restore registers".into())
}

/// Asks the stopped thread (and, for the leader, its process) what only it can know, in
/// one batch of injected calls run from `area`. `syscall_ip` is where single injected
/// calls run (`freeze::syscall_ip`, found once per process).
pub fn look_inside(
    t: &FrozenThread,
    leader: bool,
    syscall_ip: u64,
    area: &RemoteArea,
) -> Result<(Option<ProcessInside>, ThreadInside)> {
    let pid = t.pid;
    let tid = t.tracee.tid();
    let mut b = Batch::new(area);
    let prctl = |option: i32| [option as u64, 0, 0, 0, 0, 0];
    let (_, altstack_at) = b.call_out::<StackT>(abi::nr::SIGALTSTACK, [0; 6], 1, "sigaltstack");
    let (_, tid_addr_at) = b.call_out::<u64>(
        abi::nr::PRCTL,
        prctl(abi::PR_GET_TID_ADDRESS),
        1,
        "prctl(PR_GET_TID_ADDRESS)",
    );
    let (_, pdeath_at) = b.call_out::<i32>(
        abi::nr::PRCTL,
        prctl(libc::PR_GET_PDEATHSIG),
        1,
        "prctl(PR_GET_PDEATHSIG)",
    );
    let securebits_i = b.call(
        abi::nr::PRCTL,
        prctl(libc::PR_GET_SECUREBITS),
        "prctl(PR_GET_SECUREBITS)",
    );
    let slack_i = b.call(
        abi::nr::PRCTL,
        prctl(libc::PR_GET_TIMERSLACK),
        "prctl(PR_GET_TIMERSLACK)",
    );

    // Process-wide questions, asked through the leader.
    let mut sigaction_at = Vec::new();
    let mut itimer_at = Vec::new();
    let mut timers = Vec::new();
    let mut process_calls = None;
    if leader {
        for sig in 1..=64u64 {
            let (i, at) = b.call_out::<KernelSigaction>(
                abi::nr::RT_SIGACTION,
                [sig, 0, 0, 8, 0, 0],
                2,
                "rt_sigaction",
            );
            sigaction_at.push((i, at));
        }
        for which in 0..3u64 {
            itimer_at.push(b.call_out::<Itimerval>(
                abi::nr::GETITIMER,
                [which, 0, 0, 0, 0, 0],
                1,
                "getitimer",
            ));
        }
        let brk = b.call(abi::nr::BRK, [0; 6], "brk");
        let dumpable = b.call(
            abi::nr::PRCTL,
            prctl(libc::PR_GET_DUMPABLE),
            "prctl(PR_GET_DUMPABLE)",
        );
        let thp = b.call(
            abi::nr::PRCTL,
            prctl(abi::PR_GET_THP_DISABLE),
            "prctl(PR_GET_THP_DISABLE)",
        );
        let subreaper = b.call_out::<i32>(
            abi::nr::PRCTL,
            prctl(abi::PR_GET_CHILD_SUBREAPER),
            1,
            "prctl(PR_GET_CHILD_SUBREAPER)",
        );
        let xcomp = b.call_out::<u64>(
            abi::nr::ARCH_PRCTL,
            [abi::ARCH_GET_XCOMP_PERM, 0, 0, 0, 0, 0],
            1,
            "arch_prctl(ARCH_GET_XCOMP_PERM)",
        );
        const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;
        let membarrier = b.call(
            abi::nr::MEMBARRIER,
            [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0, 0, 0, 0],
            "membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)",
        );
        for timer in proc::read_timers(pid).pctx(pid)? {
            let id = timer.id as u64;
            let get = b.call_out::<Itimerspec>(
                abi::nr::TIMER_GETTIME,
                [id, 0, 0, 0, 0, 0],
                1,
                &format!("timer_gettime({id})"),
            );
            let overrun = b.call(
                abi::nr::TIMER_GETOVERRUN,
                [id, 0, 0, 0, 0, 0],
                format!("timer_getoverrun({id})"),
            );
            timers.push((timer, get, overrun));
        }
        process_calls = Some((brk, dumpable, thp, subreaper, xcomp, membarrier));
    }
    let mut inj = Injector::new(&t.tracee, t.regs, syscall_ip);
    let out = run(&mut inj, pid, tid, b)?;
    inj.finish()
        .ctx(pid, || format!("restore registers of thread {tid}"))?;

    for i in [0, 1, 2] {
        out.result(pid, tid, i)?;
    }
    let thread = ThreadInside {
        altstack: out.value(altstack_at),
        tid_address: out.value(tid_addr_at),
        pdeath_sig: out.value(pdeath_at),
        securebits: out.result(pid, tid, securebits_i)? as u32,
        timerslack_ns: out.result(pid, tid, slack_i)?,
    };
    let Some((brk, dumpable, thp, subreaper, xcomp, membarrier)) = process_calls else {
        return Ok((None, thread));
    };
    let mut sigactions = Vec::with_capacity(64);
    for (i, at) in sigaction_at {
        out.result(pid, tid, i)?;
        sigactions.push(out.value::<KernelSigaction>(at));
    }
    let mut itimers = [Itimerval::default(); 3];
    for (slot, (i, at)) in itimers.iter_mut().zip(itimer_at) {
        out.result(pid, tid, i)?;
        *slot = out.value(at);
    }
    out.result(pid, tid, subreaper.0)?;
    out.result(pid, tid, xcomp.0)?;
    let mut posix_timers = Vec::with_capacity(timers.len());
    for (timer, (get_i, get_at), overrun_i) in timers {
        out.result(pid, tid, get_i)?;
        let overrun = out.result(pid, tid, overrun_i)? as u32;
        posix_timers.push((timer, out.value::<Itimerspec>(get_at), overrun));
    }
    let process = ProcessInside {
        posix_timers,
        pending_overruns: std::collections::HashMap::new(),
        membarrier: out.result(pid, tid, membarrier)? as u32,
        sigactions,
        itimers,
        brk: out.result(pid, tid, brk)?,
        dumpable: out.result(pid, tid, dumpable)? as i32,
        thp_disabled: out.result(pid, tid, thp)? != 0,
        child_subreaper: out.value::<i32>(subreaper.1) != 0,
        xcomp_perm: out.value(xcomp.1),
    };
    Ok((Some(process), thread))
}

/// `si_code` of a POSIX timer's signal.
const SI_TIMER: i32 = -2;

/// The signal number, code and (for a timer's signal) timer id and overrun of a siginfo.
fn siginfo_timer(info: &[u8; 128]) -> (i32, i32, i32, i32) {
    let int = |at: usize| i32::from_le_bytes([info[at], info[at + 1], info[at + 2], info[at + 3]]);
    // struct siginfo: signo, errno, code, padding, then the _timer fields tid, overrun.
    (int(0), int(8), int(16), int(20))
}

/// Clocks whose current value a thread of the process can read for any of its timers
/// (CPU clocks of one thread or of another process cannot be).
fn clock_readable_inside(clock: i32) -> bool {
    matches!(clock, 0 | 1 | 2 | 4 | 5 | 6 | 7 | 8 | 9 | 11)
}

/// The overruns of POSIX timers whose own signal is pending, by timer id.
///
/// While its signal waits (blocked, say), an interval timer keeps expiring; the kernel
/// counts the missed periods only when the signal is finally delivered, and no interface
/// shows the count before that. So each such signal is accepted by an injected
/// `rt_sigtimedwait` in the thread it waits for, which yields the overrun `N` (and makes
/// the kernel rearm the timer), and the timer is then set, absolutely, to its next expiry
/// less `N + 1` periods: that lies in the past, so it fires again at once, queues its own
/// signal again, and counts the same overrun on delivery as if nothing had happened. The
/// restore arms it the same way. (What the process can still notice: `timer_getoverrun`
/// answers `N` instead of the previous delivery's count until the signal is delivered,
/// and the signal now comes after other queued instances of the same signal.)
pub fn capture_timer_overruns(
    threads: &[&FrozenThread],
    syscall_ip: u64,
    area: &RemoteArea,
) -> Result<std::collections::HashMap<i32, u32>> {
    let mut found = std::collections::HashMap::new();
    let Some(leader) = threads.first() else {
        return Ok(found);
    };
    let pid = leader.pid;
    for timer in proc::read_timers(pid).pctx(pid)? {
        const SIGEV_NONE: i32 = 1;
        if timer.notify & 3 == SIGEV_NONE || !clock_readable_inside(timer.clock) {
            continue;
        }
        // Where the signal waits: the target thread's own queue, or the process's queue
        // (reached from the leader, if its own queue holds no instance of the signal,
        // which would be accepted first).
        let thread_directed = timer.notify & proc::SIGEV_THREAD_ID != 0;
        let Some(t) = threads
            .iter()
            .find(|t| t.tracee.tid() == if thread_directed { timer.target } else { pid })
        else {
            continue;
        };
        let first_of = |shared: bool| -> Result<Option<(i32, i32)>> {
            let queue = t.tracee.pending_siginfo(shared).ctx(pid, || {
                format!("read pending signals of {}", t.tracee.tid())
            })?;
            Ok(queue
                .iter()
                .map(siginfo_timer)
                .find(|(signo, ..)| *signo == timer.signo)
                .map(|(_, code, id, _)| (code, id)))
        };
        let own = first_of(false)?;
        let first = if thread_directed {
            own
        } else if own.is_some() {
            continue;
        } else {
            first_of(true)?
        };
        if first != Some((SI_TIMER, timer.id)) {
            continue;
        }
        let overrun = rearm_in_the_past(t, syscall_ip, area, &timer)?;
        found.insert(timer.id, overrun);
    }
    Ok(found)
}

/// Accepts the pending signal of `timer` in thread `t` and sets the timer back as
/// described at [`capture_timer_overruns`]; returns the overrun.
fn rearm_in_the_past(
    t: &FrozenThread,
    syscall_ip: u64,
    area: &RemoteArea,
    timer: &proc::PosixTimer,
) -> Result<u32> {
    let pid = t.pid;
    let tid = t.tracee.tid();
    let id = timer.id as u64;
    let mut b = Batch::new(area);
    let set = b.input(&(1u64 << (timer.signo - 1)).to_le_bytes());
    let zero = b.input(&[0u8; 16]);
    let (wait_i, info_at) = b.call_out::<[u8; 128]>(
        abi::nr::RT_SIGTIMEDWAIT,
        [set, 0, zero, 8, 0, 0],
        1,
        "rt_sigtimedwait",
    );
    let (get_i, spec_at) = b.call_out::<Itimerspec>(
        abi::nr::TIMER_GETTIME,
        [id, 0, 0, 0, 0, 0],
        1,
        &format!("timer_gettime({id})"),
    );
    let (now_i, now_at) = b.call_out::<[i64; 2]>(
        abi::nr::CLOCK_GETTIME,
        [timer.clock as u64, 0, 0, 0, 0, 0],
        1,
        "clock_gettime",
    );
    let mut inj = Injector::new(&t.tracee, t.regs, syscall_ip);
    let out = run(&mut inj, pid, tid, b)?;
    let accepted = out.result(pid, tid, wait_i);
    let info: [u8; 128] = out.value(info_at);
    let (_, code, timer_id, overrun) = siginfo_timer(&info);
    let times = out
        .result(pid, tid, get_i)
        .and_then(|_| out.result(pid, tid, now_i));
    let spec: Itimerspec = out.value(spec_at);
    let now: [i64; 2] = out.value(now_at);
    if accepted.is_err() || code != SI_TIMER || timer_id != timer.id || times.is_err() {
        // Cannot happen while the tree is frozen (the queue was just read); if it does,
        // give a signal back rather than lose it, and fail the dump.
        if accepted.is_ok() {
            let mut b = Batch::new(area);
            let info_addr = b.input(&info);
            b.call(
                abi::nr::RT_TGSIGQUEUEINFO,
                [pid as u64, tid as u64, timer.signo as u64, info_addr, 0, 0],
                "rt_tgsigqueueinfo",
            );
            run(&mut inj, pid, tid, b)?;
        }
        inj.finish()
            .ctx(pid, || format!("restore registers of thread {tid}"))?;
        accepted?;
        times?;
        return Err(DumpError::Invalid(format!(
            "process {pid}: timer {}: its pending signal changed while frozen",
            timer.id
        )));
    }
    let overrun = overrun.max(0) as u32;
    let value = spec.past_expiry(now, overrun);
    let mut b = Batch::new(area);
    let new = b.input(stasis_sys::mem::bytes_of(&Itimerspec {
        interval_sec: spec.interval_sec,
        interval_nsec: spec.interval_nsec,
        value_sec: value[0],
        value_nsec: value[1],
    }));
    const TIMER_ABSTIME: u64 = 1;
    let set_i = b.call(
        abi::nr::TIMER_SETTIME,
        [id, TIMER_ABSTIME, new, 0, 0, 0],
        format!("timer_settime({id}, TIMER_ABSTIME)"),
    );
    let out = run(&mut inj, pid, tid, b)?;
    inj.finish()
        .ctx(pid, || format!("restore registers of thread {tid}"))?;
    out.result(pid, tid, set_i)?;
    Ok(overrun)
}

/// The image's general registers, rewound so an interrupted system call restarts.
pub fn gpregs(regs: &UserRegs) -> pb::UserX86RegsEntry {
    let mut r = *regs;
    ptrace::rewind_interrupted_syscall(&mut r);
    pb::UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.bp,
        bx: r.bx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.ax,
        cx: r.cx,
        dx: r.dx,
        si: r.si,
        di: r.di,
        orig_ax: r.orig_ax,
        ip: r.ip,
        cs: r.cs,
        flags: r.flags,
        sp: r.sp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(pb::UserX86RegsMode::Native as i32),
    }
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// The XSAVE component `feature` of `xsave`, if the CPU has it and it fits.
fn component(xsave: &[u8], feature: u32) -> Option<&[u8]> {
    if cpu::xcr0() & (1 << feature) == 0 {
        return None;
    }
    let (offset, size) = cpu::xfeature_offset(feature);
    xsave.get(offset as usize..(offset + size) as usize)
}

/// The FPU state in CRIU's decomposed form, with the complete area kept alongside.
pub fn fpregs(xsave: &[u8]) -> pb::UserX86FpregsEntry {
    let field16 = |off: usize| u32::from(u16::from_le_bytes([xsave[off], xsave[off + 1]]));
    let field32 = |off: usize| u32::from_le_bytes(xsave[off..off + 4].try_into().unwrap_or([0; 4]));
    let field64 = |off: usize| u64::from_le_bytes(xsave[off..off + 8].try_into().unwrap_or([0; 8]));
    if xsave.len() < 576 {
        // Not an XSAVE area (cannot happen on CPUs with AVX); keep what we have.
        return pb::UserX86FpregsEntry {
            stasis_xsave: Some(xsave.to_vec()),
            ..Default::default()
        };
    }
    let xstate_bv = field64(512);
    let xsave_entry = pb::UserX86XsaveEntry {
        xstate_bv,
        ymmh_space: component(xsave, 2).map(u32s).unwrap_or_default(),
        bndreg_state: component(xsave, 3).map(u64s).unwrap_or_default(),
        bndcsr_state: component(xsave, 4).map(u64s).unwrap_or_default(),
        opmask_reg: component(xsave, 5).map(u64s).unwrap_or_default(),
        zmm_upper: component(xsave, 6).map(u64s).unwrap_or_default(),
        hi16_zmm: component(xsave, 7).map(u64s).unwrap_or_default(),
        pkru: component(xsave, 9).map(u32s).unwrap_or_default(),
        cet: None,
    };
    pb::UserX86FpregsEntry {
        cwd: field16(0),
        swd: field16(2),
        twd: field16(4),
        fop: field16(6),
        rip: field64(8),
        rdp: field64(16),
        mxcsr: field32(24),
        mxcsr_mask: field32(28),
        st_space: u32s(&xsave[32..160]),
        xmm_space: u32s(&xsave[160..416]),
        padding: u32s(&xsave[416..512]),
        xsave: Some(xsave_entry),
        stasis_xsave: Some(xsave.to_vec()),
    }
}

fn sigaction_entries(acts: &[KernelSigaction]) -> Vec<pb::SaEntry> {
    let entries: Vec<pb::SaEntry> = acts
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let sig = *i as i32 + 1;
            sig != libc::SIGKILL && sig != libc::SIGSTOP
        })
        .map(|(_, a)| pb::SaEntry {
            sigaction: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
            compat_sigaction: None,
            mask_extended: None,
        })
        .collect();
    debug_assert_eq!(entries.len(), SIGACTION_COUNT);
    entries
}

fn itimer(v: &Itimerval) -> pb::ItimerEntry {
    pb::ItimerEntry {
        isec: v.interval_sec as u64,
        iusec: v.interval_usec as u64,
        vsec: v.value_sec as u64,
        vusec: v.value_usec as u64,
    }
}

fn signal_queue(infos: Vec<abi::RawSiginfo>) -> Option<pb::SignalQueueEntry> {
    if infos.is_empty() {
        return None;
    }
    Some(pb::SignalQueueEntry {
        signals: infos
            .into_iter()
            .map(|i| pb::SiginfoEntry {
                siginfo: i.to_vec(),
            })
            .collect(),
    })
}

fn caps(v: u64) -> Vec<u32> {
    vec![v as u32, (v >> 32) as u32]
}

fn read_proc_number<T: std::str::FromStr>(pid: Pid, name: &str) -> Result<T> {
    let path = proc::path(pid, name);
    let text = proc::read_text(path.clone()).pctx(pid)?;
    text.trim().parse().map_err(|_| DumpError::Proc {
        pid,
        source: proc::ProcError::Format {
            path,
            detail: format!("not a number: {:?}", text.trim()),
        },
    })
}

/// Builds `core-TID.img` for thread `t`. `process` is set for the leader.
pub fn core_entry(
    t: &FrozenThread,
    process: Option<&ProcessInside>,
    thread: &ThreadInside,
    seccomp: &mut SeccompTable,
) -> Result<pb::CoreEntry> {
    let pid = t.pid;
    let tid = t.tracee.tid();
    let task_dir = format!("task/{tid}");
    let stat = proc::parse_stat(
        &proc::read_text(proc::path(pid, &format!("{task_dir}/stat"))).pctx(pid)?,
        proc::path(pid, &format!("{task_dir}/stat")),
    )
    .pctx(pid)?;
    let status = proc::parse_status(
        &proc::read_text(proc::path(pid, &format!("{task_dir}/status"))).pctx(pid)?,
        proc::path(pid, &format!("{task_dir}/status")),
    )
    .pctx(pid)?;
    let seccomp_filter = match status.seccomp {
        0 | 1 => None,
        2 => {
            let chain = t
                .tracee
                .seccomp_filters()
                .ctx(pid, || format!("read seccomp filters of {tid}"))?;
            seccomp.add_chain(chain)
        }
        mode => {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("thread {tid} seccomp mode {mode}"),
                reason: "unknown seccomp mode".into(),
            });
        }
    };
    let xsave = t
        .tracee
        .xstate()
        .ctx(pid, || format!("read XSAVE state of thread {tid}"))?;
    let rseq = t
        .tracee
        .rseq_configuration()
        .ctx(pid, || format!("read rseq of thread {tid}"))?;
    let pending = t
        .tracee
        .pending_siginfo(false)
        .ctx(pid, || format!("read signals of {tid}"))?;
    let (futex_rla, futex_rla_len) = stasis_sys::process::robust_list(tid)
        .ctx(pid, || format!("get_robust_list of thread {tid}"))?;

    let creds = pb::CredsEntry {
        uid: status.uid[0],
        euid: status.uid[1],
        suid: status.uid[2],
        fsuid: status.uid[3],
        gid: status.gid[0],
        egid: status.gid[1],
        sgid: status.gid[2],
        fsgid: status.gid[3],
        cap_inh: caps(status.cap_inh),
        cap_prm: caps(status.cap_prm),
        cap_eff: caps(status.cap_eff),
        cap_bnd: caps(status.cap_bnd),
        cap_amb: caps(status.cap_amb),
        secbits: thread.securebits,
        groups: status.groups.clone(),
        no_new_privs: Some(u32::from(status.no_new_privs)),
        ..Default::default()
    };
    let thread_core = pb::ThreadCoreEntry {
        futex_rla,
        futex_rla_len,
        sched_nice: Some(stat.nice as i32),
        sched_policy: Some(stat.policy),
        sched_prio: Some(stat.rt_priority),
        blk_sigset: Some(t.sigmask),
        sas: Some(pb::ThreadSasEntry {
            ss_sp: thread.altstack.ss_sp,
            ss_size: thread.altstack.ss_size,
            ss_flags: thread.altstack.ss_flags as u32,
        }),
        pdeath_sig: Some(thread.pdeath_sig as u32),
        signals_p: signal_queue(pending),
        creds: Some(creds),
        seccomp_mode: Some(status.seccomp as i32),
        seccomp_filter,
        comm: Some(stat.comm.clone()),
        rseq_entry: (rseq.rseq_abi_pointer != 0).then_some(pb::RseqEntry {
            rseq_abi_pointer: rseq.rseq_abi_pointer,
            rseq_abi_size: rseq.rseq_abi_size,
            signature: rseq.signature,
            rseq_cs_pointer: None,
        }),
        stasis_timerslack_ns: Some(thread.timerslack_ns),
        stasis_ioprio: stasis_sys::process::ioprio(tid)
            .ctx(pid, || format!("read the I/O priority of {tid}"))?
            .try_into()
            .ok()
            .filter(|p| *p != 0),
        ..Default::default()
    };

    let tc = match process {
        Some(p) => {
            let shared = t
                .tracee
                .pending_siginfo(true)
                .ctx(pid, || "read process signals".to_owned())?;
            let limits = proc::read_limits(pid).pctx(pid)?;
            let personality = u32::from_str_radix(
                proc::read_text(proc::path(pid, "personality"))
                    .pctx(pid)?
                    .trim(),
                16,
            )
            .unwrap_or(0);
            Some(pb::TaskCoreEntry {
                task_state: task_state::ALIVE,
                exit_code: 0,
                personality,
                flags: stat.flags,
                blk_sigset: t.sigmask,
                comm: stat.comm.clone(),
                timers: Some(pb::TaskTimersEntry {
                    real: Some(itimer(&p.itimers[0])),
                    virt: Some(itimer(&p.itimers[1])),
                    prof: Some(itimer(&p.itimers[2])),
                    posix: p
                        .posix_timers
                        .iter()
                        .map(|t| posix_timer(t, p.pending_overruns.get(&t.0.id).copied()))
                        .collect(),
                }),
                rlimits: Some(pb::TaskRlimitsEntry {
                    rlimits: limits
                        .iter()
                        .map(|l| pb::RlimitEntry {
                            cur: l.cur,
                            max: l.max,
                        })
                        .collect(),
                }),
                signals_s: signal_queue(shared),
                loginuid: read_proc_number::<u32>(pid, "loginuid").ok(),
                oom_score_adj: Some(read_proc_number::<i32>(pid, "oom_score_adj")?),
                sigactions: sigaction_entries(&p.sigactions),
                child_subreaper: Some(p.child_subreaper),
                membarrier_registration_mask: (p.membarrier != 0).then_some(p.membarrier),
                stasis_xcomp_perm: Some(p.xcomp_perm),
                ..Default::default()
            })
        }
        None => None,
    };

    Ok(pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            clear_tid_addr: thread.tid_address,
            gpregs: Some(gpregs(&t.regs)),
            fpregs: Some(fpregs(&xsave)),
            tls: Vec::new(),
        }),
        tc,
        ids: None,
        thread_core: Some(thread_core),
    })
}

/// Every seccomp filter of the dump (`seccomp.img`): a flat list in which each filter
/// points at the one installed before it, so threads that share filters share entries.
#[derive(Debug, Default)]
pub struct SeccompTable {
    /// The filters.
    pub filters: Vec<pb::SeccompFilter>,
}

impl SeccompTable {
    /// Adds a thread's chain (oldest first, as ptrace numbers them: the kernel counts
    /// `PTRACE_SECCOMP_GET_FILTER` indexes from the first filter installed); returns the
    /// index of its newest filter.
    pub fn add_chain(&mut self, chain: Vec<(Vec<u8>, u64)>) -> Option<u32> {
        let mut prev: Option<u32> = None;
        for (filter, flags) in chain {
            let entry = pb::SeccompFilter {
                filter,
                prev,
                flags: (flags != 0).then_some(flags as u32),
            };
            let index = match self.filters.iter().position(|f| *f == entry) {
                Some(i) => i,
                None => {
                    self.filters.push(entry);
                    self.filters.len() - 1
                }
            };
            prev = Some(index as u32);
        }
        prev
    }
}

fn posix_timer(
    (t, spec, overrun): &(proc::PosixTimer, Itimerspec, u32),
    pending_overrun: Option<u32>,
) -> pb::PosixTimerEntry {
    pb::PosixTimerEntry {
        it_id: t.id as u32,
        clock_id: t.clock as u32,
        si_signo: t.signo as u32,
        it_sigev_notify: t.notify as u32,
        sival_ptr: t.sival,
        overrun: *overrun,
        isec: spec.interval_sec as u64,
        insec: spec.interval_nsec as u64,
        vsec: spec.value_sec as u64,
        vnsec: spec.value_nsec as u64,
        notify_thread_id: (t.notify & proc::SIGEV_THREAD_ID != 0).then_some(t.target),
        stasis_pending_overrun: pending_overrun,
    }
}
