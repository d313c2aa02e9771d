//! The tracer's side of the hand-over: from the blob's trap to a detached, running
//! process with no trace of stasis in its address space.

use stasis_restorer::abi::{self, Header, Op};
use stasis_sys::abi::nr;
use stasis_sys::ptrace::{Injector, Stop, Tracee};
use stasis_sys::{Pid, mem};

use crate::child::Ready;
use crate::error::{RestoreError, Result, SysContext};
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
        abi::STATUS_DONE => Ok(()),
        abi::STATUS_FAILED => {
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

/// Takes the restored process from the blob's trap to running on its own. Returns
/// whether it was restored inside a system call.
pub fn finish(tracee: &Tracee, ready: &Ready) -> Result<bool> {
    let pid = tracee.tid();
    match tracee.wait().ctx(pid, || "wait for the restorer".into())? {
        Stop::Signal(libc::SIGTRAP) => {}
        other => return Err(unexpected(pid, "restorer", other)),
    }
    check_program(pid, ready)?;
    // Let it rt_sigreturn (dropping the SIGTRAP) and stop at the exit of that call.
    for stage in ["rt_sigreturn entry", "rt_sigreturn exit"] {
        tracee
            .resume_to_syscall(0)
            .ctx(pid, || format!("resume to {stage}"))?;
        match tracee.wait().ctx(pid, || format!("wait for {stage}"))? {
            Stop::Syscall => {}
            Stop::Signal(libc::SIGSEGV) => {
                return Err(RestoreError::Child {
                    pid,
                    message: "the kernel rejected the restored registers (rt_sigreturn)".into(),
                });
            }
            other => return Err(unexpected(pid, stage, other)),
        }
    }
    let regs = tracee
        .regs()
        .ctx(pid, || "read restored registers".into())?;
    // One injected munmap removes the bootstrap region, the last piece of stasis.
    let mut inj = Injector::new(tracee, regs, ready.syscall_insn);
    inj.syscall(nr::MUNMAP, [ready.bootstrap, BOOTSTRAP_RESERVE, 0, 0, 0, 0])
        .ctx(pid, || "unmap the restorer".into())?;
    inj.finish().ctx(pid, || "restore registers".into())?;
    // A thread that was inside a system call resumes at that syscall instruction: step
    // into it before letting go. The detach itself kicks it out of the call once (the
    // kernel then restarts it), so the caller also waits until it sleeps in the call
    // again: a signal sent right after the restore must interrupt the call, as it would
    // have before the checkpoint, not run its handler just before the call.
    let mut insn = [0u8; 2];
    if mem::read_process(pid, regs.ip, &mut insn) == Ok(2) && insn == [0x0f, 0x05] {
        tracee
            .resume_to_syscall(0)
            .ctx(pid, || "step into the interrupted syscall".into())?;
        match tracee.wait().ctx(pid, || "wait for syscall entry".into())? {
            Stop::Syscall => {}
            other => return Err(unexpected(pid, "syscall entry", other)),
        }
        return Ok(true);
    }
    Ok(false)
}

/// Waits (briefly, with a deadline) until a task restored inside a system call sleeps in
/// it again. A call that completes at once (its timeout passed meanwhile) never sleeps;
/// the deadline covers that.
pub fn wait_asleep(pid: Pid) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    let mut spins = 0u32;
    while std::time::Instant::now() < deadline {
        match stasis_sys::proc::read_stat(pid) {
            Ok(st) if st.state != b'R' => return,
            Ok(_) => {}
            Err(_) => return,
        }
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }
}
