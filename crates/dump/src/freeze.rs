//! Freezing a process tree with ptrace, and letting it go again untouched.

use stasis_sys::abi::{self, RawSiginfo, UserRegs};
use stasis_sys::proc::{self, Blocked};
use stasis_sys::ptrace::{self, Injector, Stop, Tracee};
use stasis_sys::{Errno, Pid};

use crate::error::{DumpError, ProcContext, Result, SysContext};

/// One seized, stopped thread.
#[derive(Debug)]
pub struct FrozenThread {
    /// The thread.
    pub tracee: Tracee,
    /// Its thread-group (process) id.
    pub pid: Pid,
    /// The signal mask it had (for `sigsuspend`, the mask it will get back).
    pub sigmask: u64,
    /// Registers at the stop, as the kernel left them (not rewound).
    pub regs: UserRegs,
    /// The signal that had stopped the thread (SIGSTOP, SIGTSTP, ...) if it was in a group
    /// stop (job control) when we seized it.
    pub group_stop: Option<i32>,
}

/// Signals dequeued for delivery just before our interrupt landed were dropped by
/// resuming that stop; queue them again at once so they are neither lost nor duplicated.
fn requeue(tracee: &Tracee, pid: Pid, regs: UserRegs, infos: &[RawSiginfo]) -> Result<()> {
    let tid = tracee.tid();
    let ip = syscall_ip(pid)?;
    let mut inj = Injector::new(tracee, regs, ip);
    for info in infos {
        inj.requeue_signal(pid, info)
            .ctx(pid, || format!("queue a signal again on {tid}"))?;
    }
    inj.finish()
        .ctx(pid, || format!("restore registers of {tid}"))
}

/// Where injected system calls run: a `syscall` instruction of the process's vDSO.
pub fn syscall_ip(pid: Pid) -> Result<u64> {
    ptrace::find_syscall_in_vdso(pid)
        .ctx(pid, || "read the vDSO".to_owned())?
        .ok_or_else(|| DumpError::Unsupported {
            pid,
            resource: "vDSO".into(),
            reason: "the process has no vDSO to run injected system calls from".into(),
        })
}

/// A frozen set of threads. Dropping it resumes every thread exactly as it was (signal
/// mask restored, detached), so every error path of a dump leaves the tree running.
#[derive(Debug, Default)]
pub struct Frozen {
    /// The threads, in seize order (process leaders first within a process).
    pub threads: Vec<FrozenThread>,
}

/// How long a thread in uninterruptible sleep (disk or network I/O) may take to stop.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Attaches to thread `tid` of process `pid` and asks it to stop.
fn seize_thread(pid: Pid, tid: Pid) -> Result<Tracee> {
    // SUSPEND_SECCOMP: injected syscalls must not be judged by the task's own filters.
    let options = abi::PTRACE_O_TRACESYSGOOD | abi::PTRACE_O_SUSPEND_SECCOMP;
    let tracee = Tracee::seize(tid, options).map_err(|errno| match errno.0 {
        libc::EPERM => DumpError::Sys {
            pid,
            what: format!("seize thread {tid} (is it already traced, e.g. by a debugger?)"),
            errno,
        },
        _ => DumpError::Sys {
            pid,
            what: format!("seize thread {tid}"),
            errno,
        },
    })?;
    tracee
        .interrupt()
        .ctx(pid, || format!("interrupt thread {tid}"))?;
    Ok(tracee)
}

/// Waits until a seized and interrupted thread stops, and takes its state.
fn freeze_thread(pid: Pid, tid: Pid, tracee: Tracee) -> Result<FrozenThread> {
    // A thread in some kernel waits never stops: say why instead of hanging.
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    let stopped = tracee
        .wait_interrupted_unless(|| match proc::blocked_in(pid, tid) {
            Blocked::Vfork => Some(
                "it is suspended in vfork() until its child execs or exits (the child runs \
                 on its memory); a vfork in progress cannot be checkpointed"
                    .to_owned(),
            ),
            Blocked::Uninterruptible(wchan) if std::time::Instant::now() > deadline => {
                Some(format!(
                    "it did not stop within {} s: it is in uninterruptible sleep in {wchan}",
                    STOP_TIMEOUT.as_secs()
                ))
            }
            _ => None,
        })
        .ctx(pid, || format!("stop thread {tid}"))?;
    let (mut stop, mut dequeued) = stopped.map_err(|reason| DumpError::Unsupported {
        pid,
        resource: format!("thread {tid}"),
        reason,
    })?;
    // A PTRACE_INTERRUPT stop reports SIGTRAP; a job-control stop its own signal. A
    // thread that was already stopped reports the group stop first (seizing it moves it
    // from stopped to traced) while our interrupt is still pending: resumed once, it
    // traps again at once into a stop where injected code can run (reporting the stop
    // signal again, as its group is still stopped). The stop is put back on resume.
    let mut group_stop = None;
    if let Stop::Event(sig) = stop
        && sig != libc::SIGTRAP
    {
        group_stop = Some(sig);
        let (next, more) = tracee
            .leave_group_stop()
            .ctx(pid, || format!("stop thread {tid} (job-control stopped)"))?;
        stop = next;
        dequeued.extend(more);
    }
    match stop {
        Stop::Event(_) => {}
        Stop::Exited(_) | Stop::Killed(_) => {
            return Err(DumpError::Invalid(format!(
                "process {pid}: thread {tid} exited while being frozen"
            )));
        }
        other => {
            return Err(DumpError::Sys {
                pid,
                what: format!("stop thread {tid}: unexpected {other:?}"),
                errno: Errno(libc::EIO),
            });
        }
    };
    let sigmask = tracee
        .sigmask()
        .ctx(pid, || format!("read signal mask of {tid}"))?;
    let regs = tracee
        .regs()
        .ctx(pid, || format!("read registers of {tid}"))?;
    // Block everything while we inject system calls: a signal arriving now would be
    // dequeued into a signal-delivery stop that we would have to drop.
    tracee
        .set_sigmask(!0)
        .ctx(pid, || format!("block signals of {tid}"))?;
    if !dequeued.is_empty() {
        requeue(&tracee, pid, regs, &dequeued)?;
    }
    Ok(FrozenThread {
        tracee,
        pid,
        sigmask,
        regs,
        group_stop,
    })
}

impl Frozen {
    /// Freezes every thread of process `pid`, rescanning until no new thread appears.
    ///
    /// All new threads are interrupted before any is waited for: they stop in parallel,
    /// and busy threads still to stop do not compete for the CPU with ones that wait.
    pub fn freeze_process(&mut self, pid: Pid) -> Result<()> {
        loop {
            let known: std::collections::HashSet<Pid> =
                self.threads.iter().map(|t| t.tracee.tid()).collect();
            let tids: Vec<Pid> = proc::threads(pid)
                .pctx(pid)?
                .into_iter()
                .filter(|t| !known.contains(t))
                .collect();
            if tids.is_empty() {
                return Ok(());
            }
            let mut seized = Vec::with_capacity(tids.len());
            let mut failed = None;
            for tid in tids {
                match seize_thread(pid, tid) {
                    Ok(t) => seized.push((tid, t)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            // Every seized thread is collected even after a failure, so that dropping
            // `self` resumes it.
            for (tid, tracee) in seized {
                match freeze_thread(pid, tid, tracee) {
                    Ok(thread) => self.threads.push(thread),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }

    /// The frozen threads of process `pid`, leader first.
    pub fn threads_of(&self, pid: Pid) -> impl Iterator<Item = &FrozenThread> {
        let mut v: Vec<&FrozenThread> = self.threads.iter().filter(|t| t.pid == pid).collect();
        v.sort_by_key(|t| (t.tracee.tid() != pid, t.tracee.tid()));
        v.into_iter()
    }

    /// Resumes every thread as it was and detaches.
    pub fn resume(mut self) -> Result<()> {
        resume_all(std::mem::take(&mut self.threads))
    }

    /// Kills every process of the tree (SIGKILL while still traced, so nothing runs in
    /// between) and waits until the kernel reports each thread gone.
    pub fn kill(mut self) -> Result<()> {
        let mut threads = std::mem::take(&mut self.threads);
        let mut pids: Vec<Pid> = threads.iter().map(|t| t.pid).collect();
        pids.dedup();
        // A group leader's death is reported only after its other threads have been
        // reaped, so those are waited for first.
        threads.sort_by_key(|t| t.tracee.tid() == t.pid);
        for pid in &pids {
            stasis_sys::process::kill(*pid, libc::SIGKILL)
                .ctx(*pid, || "kill after dump".to_owned())?;
        }
        for t in threads {
            // The tracer is told of each traced thread's death; consume that report.
            loop {
                match t.tracee.wait() {
                    Ok(Stop::Exited(_) | Stop::Killed(_)) | Err(_) => break,
                    Ok(_) => {
                        let _ = t.tracee.cont(0);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Resumes threads as they were: signal mask back, detached. A process that was stopped
/// by job control is stopped again (its stop signal is delivered on one thread's detach).
fn resume_all(threads: Vec<FrozenThread>) -> Result<()> {
    let mut first_error = None;
    let mut restopped: Vec<Pid> = Vec::new();
    for t in threads {
        let stop = t.group_stop.filter(|_| !restopped.contains(&t.pid));
        if stop.is_some() {
            restopped.push(t.pid);
        }
        let pid = t.pid;
        if let Err(e) = resume_thread(t, stop.unwrap_or(0)) {
            log::error!("could not resume process {pid}: {e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn resume_thread(t: FrozenThread, sig: i32) -> Result<()> {
    let tid = t.tracee.tid();
    t.tracee
        .set_sigmask(t.sigmask)
        .ctx(t.pid, || format!("restore signal mask of {tid}"))?;
    t.tracee
        .detach(sig)
        .ctx(t.pid, || format!("detach thread {tid}"))
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Errors are logged inside; the dump is failing already.
        let _ = resume_all(std::mem::take(&mut self.threads));
    }
}
