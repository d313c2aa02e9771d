//! Unmodified system programs must go on working after a restore.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Scratch, dump, restore, setup, start_program, stasis};

/// The syscall a task is blocked in (from /proc/PID/syscall), if any.
fn blocked_syscall(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Waits with a deadline until `cond` holds, checking at a modest rate.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sleep_as_a_shell_job() {
    let _serial = setup();
    let scratch = Scratch::new("sleep_shell_job");
    // Not a session leader: like a job started from a shell.
    let mut run = start_program(&scratch, "sleep", &["1000"], false);
    let pid = run.pid;
    wait_until("sleep to block", || {
        matches!(blocked_syscall(pid), Some(35 | 230))
    });
    let images = scratch.join("images");
    let out = stasis(&[
        "dump",
        "-t",
        &pid.to_string(),
        "-D",
        images.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a non-session-leader dumped without --shell-job"
    );
    assert!(
        err.contains("--shell-job") && err.contains(&pid.to_string()),
        "unclear error: {err}"
    );
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the failed dump harmed the process"
    );
    dump(pid, &images, &["--shell-job"]);
    run.reap_killed();
    restore(&images, &["--shell-job"]);
    // Still sleeping in the kernel after the restore (nanosleep or its restart).
    wait_until("restored sleep to block", || {
        matches!(blocked_syscall(pid), Some(35 | 219 | 230))
    });
    stasis_sys::process::kill(pid, libc::SIGKILL).unwrap();
    run.wait_exit();
}

#[test]
fn python_loop_keeps_counting() {
    let _serial = setup();
    let scratch = Scratch::new("python_loop");
    let out_file = scratch.join("count");
    let script = format!(
        "import time\nn = 0\nwhile True:\n    n += 1\n    open({:?}, 'w').write(str(n))\n    time.sleep(0.005)\n",
        out_file.to_str().unwrap()
    );
    let mut run = start_program(&scratch, "python3", &["-c", &script], true);
    let pid = run.pid;
    let count = || {
        std::fs::read_to_string(&out_file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let mut before = 0;
    wait_until("python to start counting", || {
        before = count().unwrap_or(0);
        before > 5
    });
    let images = scratch.join("images");
    dump(pid, &images, &[]);
    run.reap_killed();
    // The dump may catch python between truncating and rewriting the file.
    let at_dump = count().unwrap_or(before).max(before);
    restore(&images, &[]);
    wait_until("python to count on after the restore", || {
        count().is_some_and(|n| n > at_dump + 20)
    });
    stasis_sys::process::kill(pid, libc::SIGKILL).unwrap();
    run.wait_exit();
}
