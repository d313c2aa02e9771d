//! The tracer's side of the hand-over: from the blob's trap to a detached, running
//! process with no trace of stasis in its address space.

use std::collections::HashMap;

use stasis_images::consts::task_state;
use stasis_restorer::abi::{self as blob_abi, Header, Op};
use stasis_sys::abi::{self, nr};
use stasis_sys::ptrace::{self, Injector, Stop, Tracee};
use stasis_sys::{Pid, mem};

use crate::child::Ready;
use crate::error::{RestoreError, Result, SysContext};
use crate::image::Images;
use crate::layout::BOOTSTRAP_RESERVE;

fn unexpected(pid: Pid, stage: &str, stop: Stop) -> RestoreError {
    let what = match stop {
        Stop::Exited(code) => format!("exited with status {code}"),
        Stop::Killed(sig) => format!("was killed by signal {sig}"),
        Stop::Signal(sig) => format!("got signal {sig}"),
        other => format!("stopped unexpectedly ({other:?})"),
    };
    RestoreError::Child {
        pid,
        message: format!("{stage}: the restored process {what}"),
    }
}

/// Reads the blob's header and, if an op failed, says which.
fn check_program(pid: Pid, ready: &Ready) -> Result<()> {
    let mut hb = [0u8; Header::SIZE];
    let n = mem::read_process(pid, ready.header, &mut hb)
        .ctx(pid, || "read the restorer status".into())?;
    if n != hb.len() {
        return Err(RestoreError::Child {
            pid,
            message: "restorer status unreadable".into(),
        });
    }
    let header = Header::from_bytes(&hb);
    match header.status {
        blob_abi::STATUS_DONE => Ok(()),
        blob_abi::STATUS_FAILED => {
            let index = header.failed_op;
            let mut ob = [0u8; Op::SIZE];
            let op_addr = ready.header + header.ops_offset + index * Op::SIZE as u64;
            let desc = if index < header.op_count
                && mem::read_process(pid, op_addr, &mut ob) == Ok(Op::SIZE)
            {
                let op = Op::from_bytes(&ob);
                let mut d = vec![0u8; op.desc_len.min(4096) as usize];
                let _ = mem::read_process(pid, ready.header + u64::from(op.desc_offset), &mut d);
                format!(
                    "{} (syscall {} {:x?})",
                    String::from_utf8_lossy(&d),
                    op.nr,
                    op.args
                )
            } else {
                format!("step {index}")
            };
            let result = match stasis_sys::Errno::from_kernel_return(header.failed_result) {
                Err(e) => e.to_string(),
                Ok(v) => format!("unexpected result {v:#x}"),
            };
            Err(RestoreError::Child {
                pid,
                message: format!("restorer failed at {desc}: {result}"),
            })
        }
        other => Err(RestoreError::Child {
            pid,
            message: format!("restorer trapped with status {other}"),
        }),
    }
}

/// Where a thread is on its way out of the restorer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Running its part of the program.
    Running,
    /// Past its trap, on the way into rt_sigreturn.
    Entering,
    /// In rt_sigreturn, on the way out.
    Exiting,
    /// Stopped at the exit of rt_sigreturn with its own registers: done.
    Held,
}

/// One traced thread.
#[derive(Debug)]
struct Thread {
    tracee: Tracee,
    pid: Pid,
    phase: Phase,
}

/// Every process stasis is attached to at the end of a restore, and their threads.
#[derive(Debug, Default)]
pub struct Attached {
    processes: Vec<(Pid, Ready)>,
    threads: HashMap<Pid, Thread>,
}

impl Attached {
    /// Attaches to a prepared process. New threads are attached as the blob creates them
    /// (PTRACE_O_TRACECLONE); if stasis dies, every traced task dies (EXITKILL).
    pub fn attach(&mut self, pid: Pid, ready: Ready) -> Result<()> {
        // SUSPEND_SECCOMP: the restorer installs seccomp filters before its last ops, and
        // our final injected munmap must not be judged by them either.
        let options = abi::PTRACE_O_EXITKILL
            | abi::PTRACE_O_TRACESYSGOOD
            | abi::PTRACE_O_TRACECLONE
            | abi::PTRACE_O_SUSPEND_SECCOMP;
        let tracee =
            Tracee::seize(pid, options).ctx(pid, || "attach to the restore process".into())?;
        self.processes.push((pid, ready));
        self.threads.insert(
            pid,
            Thread {
                tracee,
                pid,
                phase: Phase::Running,
            },
        );
        Ok(())
    }

    fn ready_of(&self, pid: Pid) -> Option<&Ready> {
        self.processes
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, r)| r)
    }

    /// Runs every thread to the exit of its rt_sigreturn, removes the bootstrap region
    /// of every process, steps threads that were inside a system call back into it, and
    /// detaches (stopping again the processes the image had stopped).
    /// `before_detach` runs with every thread back in its own registers and still held.
    pub fn finish(
        mut self,
        images: &Images,
        before_detach: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let expected: usize = images
            .processes
            .iter()
            .map(|p| p.pstree.threads.len())
            .sum();
        loop {
            let held = self
                .threads
                .values()
                .filter(|t| t.phase == Phase::Held)
                .count();
            if held == expected {
                break;
            }
            let (tid, stop) = ptrace::wait_any()
                .map_err(|e| RestoreError::Other(format!("wait for restored tasks: {e}")))?;
            self.step(tid, stop)?;
        }
        // Every thread of every process is back in its own registers and stopped.
        let mut in_syscall = Vec::new();
        for (pid, ready) in &self.processes {
            let leader = &self.threads[pid].tracee;
            let regs = leader
                .regs()
                .ctx(*pid, || "read restored registers".into())?;
            let mut inj = Injector::new(leader, regs, ready.syscall_insn);
            if ready.close_from != 0 {
                // The pipes to stasis, left open in an fd table shared by several processes.
                inj.syscall(
                    nr::CLOSE_RANGE,
                    [ready.close_from, u64::from(u32::MAX), 0, 0, 0, 0],
                )
                .ctx(*pid, || "close stasis's fds".into())?;
            }
            // Last: the syscall instruction we inject with is in the bootstrap region.
            inj.syscall(nr::MUNMAP, [ready.bootstrap, BOOTSTRAP_RESERVE, 0, 0, 0, 0])
                .ctx(*pid, || "unmap the restorer".into())?;
            inj.finish().ctx(*pid, || "restore registers".into())?;
        }
        for t in self.threads.values() {
            if step_into_syscall(&t.tracee)? {
                in_syscall.push(t.tracee.tid());
            }
        }
        before_detach()?;
        // The image names threads by their pids inside the tree's pid namespace; we know
        // them by host pids (the same, unless the tree has a namespace of its own).
        let host_of: HashMap<Pid, Pid> = self
            .threads
            .keys()
            .map(|host| (crate::pidns::inner_pid(*host), *host))
            .collect();
        for p in &images.processes {
            let stop = p
                .tc()
                .stop_signo
                .filter(|_| p.tc().task_state == task_state::STOPPED);
            for (i, tid) in p.pstree.threads.iter().enumerate() {
                let host = host_of.get(&(*tid as Pid)).copied().unwrap_or(*tid as Pid);
                let t = self.threads.remove(&host).ok_or_else(|| {
                    RestoreError::Other(format!("process {}: thread {tid} was never seen", p.pid()))
                })?;
                // A process the image had stopped gets its stop signal on one thread.
                let sig = if i == 0 { stop.unwrap_or(0) as i32 } else { 0 };
                t.tracee
                    .detach(sig)
                    .ctx(t.pid, || format!("detach thread {tid}"))?;
            }
        }
        wait_asleep(&in_syscall);
        Ok(())
    }

    /// Handles one stop of a traced task.
    fn step(&mut self, tid: Pid, stop: Stop) -> Result<()> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.threads.entry(tid) {
            // A thread the blob just created: attached automatically, stopped once.
            let pid = stasis_sys::proc::read_status(tid)
                .map(|s| s.tgid)
                .unwrap_or(tid);
            let tracee = Tracee::from_attached(tid);
            return match stop {
                Stop::Event(_) => {
                    tracee.cont(0).ctx(pid, || format!("start thread {tid}"))?;
                    slot.insert(Thread {
                        tracee,
                        pid,
                        phase: Phase::Running,
                    });
                    Ok(())
                }
                other => Err(unexpected(pid, "new thread", other)),
            };
        }
        let t = self.threads.get_mut(&tid).expect("checked above");
        let pid = t.pid;
        match (t.phase, stop) {
            // The creator of a thread reports the clone; let it go on.
            (_, Stop::OtherEvent(_, _)) => {
                t.tracee.cont(0).ctx(pid, || "resume after clone".into())
            }
            (Phase::Running, Stop::Signal(libc::SIGTRAP)) => {
                let ready = *self
                    .ready_of(pid)
                    .ok_or_else(|| RestoreError::Other(format!("process {pid} is not attached")))?;
                check_program(pid, &ready)?;
                let t = self.threads.get_mut(&tid).expect("checked above");
                t.phase = Phase::Entering;
                t.tracee
                    .resume_to_syscall(0)
                    .ctx(pid, || "resume to rt_sigreturn".into())
            }
            (Phase::Entering, Stop::Syscall) => {
                t.phase = Phase::Exiting;
                t.tracee
                    .resume_to_syscall(0)
                    .ctx(pid, || "run rt_sigreturn".into())
            }
            (Phase::Exiting, Stop::Syscall) => {
                t.phase = Phase::Held;
                Ok(())
            }
            (_, Stop::Signal(libc::SIGSEGV)) if t.phase != Phase::Running => {
                Err(RestoreError::Child {
                    pid,
                    message: format!(
                        "the kernel rejected the restored registers of thread {tid} (rt_sigreturn)"
                    ),
                })
            }
            (phase, other) => Err(unexpected(pid, &format!("thread {tid} ({phase:?})"), other)),
        }
    }
}

/// A thread that resumes at a `syscall` instruction (a rewound call) is stepped into that
/// call before it is let go: a signal sent right after the restore must interrupt the
/// call, as it would have before the checkpoint, not run its handler just before it.
fn step_into_syscall(tracee: &Tracee) -> Result<bool> {
    let tid = tracee.tid();
    let regs = tracee.regs().ctx(tid, || "read registers".into())?;
    let mut insn = [0u8; 2];
    if mem::read_process(tid, regs.ip, &mut insn) != Ok(2) || insn != [0x0f, 0x05] {
        return Ok(false);
    }
    tracee
        .resume_to_syscall(0)
        .ctx(tid, || "step into the interrupted syscall".into())?;
    match tracee.wait().ctx(tid, || "wait for syscall entry".into())? {
        Stop::Syscall => Ok(true),
        other => Err(unexpected(tid, "syscall entry", other)),
    }
}

/// Waits (briefly, with one deadline for all) until the tasks restored inside a system
/// call sleep in it again. A call that completes at once (its timeout passed meanwhile)
/// never sleeps, and busy threads may keep a sleeper off the CPU; the deadline covers
/// both.
pub fn wait_asleep(tids: &[Pid]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    let mut spins = 0u32;
    let mut waiting = tids.to_vec();
    while std::time::Instant::now() < deadline {
        // Checked per thread: with many busy threads each read may wait long for the CPU.
        waiting.retain(|tid| {
            std::time::Instant::now() < deadline
                && stasis_sys::proc::read_stat(*tid).is_ok_and(|st| st.state == b'R')
        });
        if waiting.is_empty() {
            return;
        }
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }
}
