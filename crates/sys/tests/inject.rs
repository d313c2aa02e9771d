//! Syscall injection into a live process must leave it exactly as it was: a system call
//! it sleeps in keeps sleeping and still reacts to signals as before.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stasis_sys::abi;
use stasis_sys::ptrace::{self, Injector, Stop, Tracee};

/// The syscall number a task is blocked in, from /proc/PID/syscall ("running" if none).
fn blocked_syscall(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Waits (with a deadline, no sleeping) until `pid` is blocked in one of `nrs`.
fn wait_blocked_in(pid: i32, nrs: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(nr) = blocked_syscall(pid).filter(|nr| nrs.contains(nr)) {
            return nr;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never blocked in {nrs:?}"
        );
        std::thread::yield_now();
    }
}

fn spawn(cmd: &str, args: &[&str]) -> Child {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn inject_some(pid: i32) {
    let tracee = Tracee::seize(pid, abi::PTRACE_O_TRACESYSGOOD).expect("seize");
    let (stop, dequeued) = tracee.interrupt_and_wait().expect("interrupt");
    assert!(matches!(stop, Stop::Event(_)), "{stop:?}");
    assert!(dequeued.is_empty());
    let regs = tracee.regs().expect("regs");
    let ip = ptrace::find_syscall_in_vdso(pid)
        .expect("vdso")
        .expect("no syscall in vdso");
    let mut inj = Injector::new(&tracee, regs, ip);
    assert_eq!(inj.syscall(abi::nr::GETPID, [0; 6]).unwrap(), pid as u64);
    let acts = inj.sigactions().expect("sigactions");
    assert_eq!(acts.len(), 64);
    inj.finish().expect("finish");
    assert_eq!(tracee.regs().unwrap(), regs, "registers not put back");
    tracee.detach(0).expect("detach");
}

#[test]
fn sleeping_nanosleep_keeps_sleeping() {
    let mut child = spawn("sleep", &["1000"]);
    let pid = child.id() as i32;
    wait_blocked_in(pid, &[35, 230]);
    inject_some(pid);
    // nanosleep restarts through restart_syscall (219) with its restart block intact.
    wait_blocked_in(pid, &[35, 230, 219]);
    assert!(
        child.try_wait().unwrap().is_none(),
        "sleep exited after injection"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn interrupted_pause_still_returns_eintr_to_its_handler() {
    // pause() returns -ERESTARTNOHAND while stopped; after injection it must block again,
    // and a signal with a handler must still make it return (then python prints and exits).
    let mut child = spawn(
        "python3",
        &[
            "-c",
            "import signal,sys\nsignal.signal(signal.SIGUSR1, lambda *a: None)\nsignal.pause()\nprint('woke', flush=True)\nsys.exit(7)",
        ],
    );
    let pid = child.id() as i32;
    wait_blocked_in(pid, &[34]);
    inject_some(pid);
    wait_blocked_in(pid, &[34]);
    stasis_sys::process::kill(pid, libc::SIGUSR1).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
}

#[test]
fn a_batch_of_calls_runs_in_one_stop_and_leaves_the_process_as_it_was() {
    let mut child = spawn("sleep", &["1000"]);
    let pid = child.id() as i32;
    wait_blocked_in(pid, &[35, 230]);
    let tracee = Tracee::seize(pid, abi::PTRACE_O_TRACESYSGOOD).expect("seize");
    let (stop, _) = tracee.interrupt_and_wait().expect("interrupt");
    assert!(matches!(stop, Stop::Event(_)), "{stop:?}");
    let regs = tracee.regs().expect("regs");
    let ip = ptrace::find_syscall_in_vdso(pid)
        .expect("vdso")
        .expect("no syscall in vdso");
    let mut inj = Injector::new(&tracee, regs, ip);
    let area = inj.map_area(8192).expect("map area");
    // getpid, then sigaltstack writing into the area, then a failing call.
    let calls = [
        (abi::nr::GETPID, [0; 6]),
        (abi::nr::SIGALTSTACK, [0, area.data(0), 0, 0, 0, 0]),
        (abi::nr::CLOSE, [999_999, 0, 0, 0, 0, 0]),
    ];
    let results = inj.run_batch(&area, &calls).expect("batch");
    assert_eq!(results[0], pid as u64);
    assert_eq!(results[1], 0);
    assert_eq!(results[2] as i64, -i64::from(libc::EBADF));
    inj.unmap_area(area).expect("unmap area");
    inj.finish().expect("finish");
    assert_eq!(tracee.regs().unwrap(), regs, "registers not put back");
    tracee.detach(0).expect("detach");
    wait_blocked_in(pid, &[35, 230, 219]);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(
        !maps.contains(&format!("{:x}-", area.addr)),
        "the area is still mapped"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
