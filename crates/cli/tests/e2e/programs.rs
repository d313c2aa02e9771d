//! Unmodified system programs must go on working after a restore.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Scratch, dump, restore, setup, start_command, start_program, stasis};

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

#[test]
fn cat_blocked_reading_its_terminal_as_a_shell_job() {
    let _serial = setup();
    let scratch = Scratch::new("cat_terminal");
    // An unmodified `cat` whose stdin is a terminal (a pty we hold the master of), in our
    // session: a shell job blocked in read(2) on its terminal.
    let (master, slave, tty) = stasis_sys::fs::open_pty().expect("openpty");
    let out_path = scratch.join("cat.out");
    let mut cmd = Command::new("cat");
    cmd.stdin(Stdio::from(slave))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null());
    let mut run = start_command(&scratch, cmd);
    let pid = run.pid;
    wait_until("cat to block in read", || blocked_syscall(pid) == Some(0));
    let images = scratch.join("images");
    dump(pid, &images, &["--shell-job"]);
    run.reap_killed();
    restore(&images, &["--shell-job"]);
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
    assert_eq!(stdin, tty, "the terminal was not reopened");
    wait_until("restored cat to block in read", || {
        blocked_syscall(pid) == Some(0)
    });
    // What we type on the terminal reaches the restored cat, which writes it out.
    // (The master stays open until cat has the line: closing it hangs the terminal up.)
    let mut master = std::fs::File::from(master);
    std::io::Write::write_all(&mut master, b"after restore\n").unwrap();
    wait_until("cat to copy the line", || {
        std::fs::read_to_string(&out_path).is_ok_and(|s| s.contains("after restore"))
    });
    stasis_sys::process::kill(pid, libc::SIGKILL).unwrap();
    run.wait_exit();
}
