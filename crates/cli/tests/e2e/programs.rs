//! Unmodified system programs must go on working after a restore.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    Running, Scratch, descendants, dump, read_lossy, restore, setup, start_command, start_program,
    stasis,
};

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

/// Kills a restored program's whole process group (it leads its own session) at once, so
/// nothing it forks in between escapes, and reaps everything: the group members were
/// reparented to us, the subreaper, as their parents died.
fn kill_group_and_reap(run: &mut Running) {
    stasis_sys::process::kill(-run.pid, libc::SIGKILL).expect("kill the process group");
    run.wait_exit();
    while stasis_sys::process::wait_any()
        .expect("reap the killed group")
        .is_some()
    {}
}

/// Numbers in a file the program rewrites (rename over, so never half-written).
fn read_numbers(path: &Path) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace().map(|w| w.parse().ok()).collect()
}

#[test]
fn python_threads_keep_working() {
    let _serial = setup();
    let scratch = Scratch::new("python_threads");
    let out_file = scratch.join("counts");
    // Eight worker threads, each counting on its own (blocking in sleep, the GIL and
    // futexes in between); the main thread publishes the counts.
    let script = format!(
        r#"
import os, threading, time
out = {out:?}
counts = [0] * 8
def work(i):
    while True:
        counts[i] += 1
        time.sleep(0.001)
for i in range(8):
    threading.Thread(target=work, args=(i,), daemon=True).start()
while True:
    with open(out + ".tmp", "w") as f:
        f.write(" ".join(map(str, counts)))
    os.rename(out + ".tmp", out)
    time.sleep(0.005)
"#,
        out = out_file.to_str().unwrap()
    );
    let mut run = start_program(&scratch, "python3", &["-c", &script], true);
    let pid = run.pid;
    wait_until("every python thread to count", || {
        read_numbers(&out_file).is_some_and(|c| c.len() == 8 && c.iter().all(|&n| n > 5))
    });
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    let images = scratch.join("images");
    dump(pid, &images, &[]);
    run.reap_killed();
    let at_dump = read_numbers(&out_file).expect("counts at the dump");
    restore(&images, &[]);
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count(),
        threads,
        "thread count changed across the restore"
    );
    // Every thread goes on counting, not just the main one.
    wait_until("every restored python thread to count on", || {
        read_numbers(&out_file)
            .is_some_and(|c| c.len() == 8 && c.iter().zip(&at_dump).all(|(n, d)| *n > d + 20))
    });
    kill_group_and_reap(&mut run);
}

const JAVA_POOL: &str = r#"
import java.io.FileOutputStream;
import java.io.File;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

public class Pool {
    public static void main(String[] args) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(16);
        AtomicLong done = new AtomicLong();
        File out = new File(args[0]), tmp = new File(args[0] + ".tmp");
        while (true) {
            for (int i = 0; i < 64; i++) {
                pool.submit(() -> {
                    long s = 0;
                    for (int k = 0; k < 10000; k++) s += k;
                    if (s != 49995000L) throw new AssertionError("bad sum " + s);
                    done.incrementAndGet();
                });
            }
            try (FileOutputStream f = new FileOutputStream(tmp)) {
                f.write(Long.toString(done.get()).getBytes());
            }
            tmp.renameTo(out);
            Thread.sleep(5);
        }
    }
}
"#;

#[test]
fn java_thread_pool_keeps_working() {
    let _serial = setup();
    let scratch = Scratch::new("java_pool");
    std::fs::write(scratch.join("Pool.java"), JAVA_POOL).unwrap();
    let javac = Command::new("javac")
        .arg(scratch.join("Pool.java"))
        .output()
        .expect("run javac (Debian's default-jdk-headless)");
    assert!(
        javac.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let out_file = scratch.join("done");
    let mut run = start_program(
        &scratch,
        "java",
        &[
            "-cp",
            scratch.path.to_str().unwrap(),
            "Pool",
            out_file.to_str().unwrap(),
        ],
        true,
    );
    let pid = run.pid;
    // A JVM has a few dozen threads: the pool's, GC, JIT compilers, signal dispatcher...
    wait_until("the pool to run tasks", || {
        read_numbers(&out_file).is_some_and(|c| c.first().is_some_and(|&n| n > 1000))
    });
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert!(threads > 16, "only {threads} JVM threads");
    let images = scratch.join("images");
    dump(pid, &images, &[]);
    run.reap_killed();
    let at_dump = read_numbers(&out_file).expect("count at the dump")[0];
    restore(&images, &[]);
    assert_eq!(
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count(),
        threads,
        "thread count changed across the restore"
    );
    wait_until("the restored pool to run tasks", || {
        read_numbers(&out_file).is_some_and(|c| c.first().is_some_and(|&n| n > at_dump + 5000))
    });
    kill_group_and_reap(&mut run);
}

#[test]
fn bash_with_children_keeps_working() {
    let _serial = setup();
    let scratch = Scratch::new("bash_children");
    let out_file = scratch.join("count");
    // A shell with a background subshell that keeps forking (`sleep`), a long-running
    // child, and the shell itself waiting for both.
    let script = format!(
        "n=0; (while :; do n=$((n+1)); echo $n > {out}.tmp; mv {out}.tmp {out}; sleep 0.01; done) & sleep 1000 & wait",
        out = out_file.to_str().unwrap()
    );
    let mut run = start_program(&scratch, "bash", &["-c", &script], true);
    let pid = run.pid;
    wait_until("the shell's loop to count", || {
        read_numbers(&out_file).is_some_and(|c| c.first().is_some_and(|&n| n > 5))
    });
    let images = scratch.join("images");
    dump(pid, &images, &[]);
    run.reap_killed();
    let at_dump = read_numbers(&out_file).map_or(0, |c| c[0]);
    restore(&images, &[]);
    assert!(
        descendants(pid).len() >= 2,
        "the shell's children were not restored"
    );
    wait_until("the restored loop to count on", || {
        read_numbers(&out_file).is_some_and(|c| c.first().is_some_and(|&n| n > at_dump + 20))
    });
    kill_group_and_reap(&mut run);
}

/// Kills a restored tree whose members may have left the root's session or process group
/// (`script` gives its child a session of its own): every descendant, then the root's
/// group, and reaps everything.
fn kill_tree_and_reap(run: &mut Running) {
    for pid in descendants(run.pid) {
        let _ = stasis_sys::process::kill(pid, libc::SIGKILL);
    }
    kill_group_and_reap(run);
}

/// The complete lines of a text file (a last line without its newline is left out), with
/// a terminal's `\r` before the newline removed.
fn complete_lines(path: &Path) -> Vec<String> {
    let text = read_lossy(path);
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect();
    lines.pop(); // after the last newline: empty, or a line still being written
    lines
}

/// The numbers of lines "PREFIX N" (every complete line must be one), which must be
/// 1, 2, 3, ...: nothing lost, nothing repeated.
fn consecutive_numbers(path: &Path, prefix: &str) -> Vec<u64> {
    let lines = complete_lines(path);
    let mut numbers = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let n = line
            .strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok());
        let want = i as u64 + 1;
        assert!(
            n == Some(want),
            "line {} of {} is {line:?}, expected \"{prefix}{want}\" (lines {:?})",
            i + 1,
            path.display(),
            &lines[i.saturating_sub(3)..(i + 3).min(lines.len())]
        );
        numbers.push(want);
    }
    numbers
}

/// Appends lines "line FROM" .. "line TO" to `path`, as a log writer would.
fn append_lines(path: &Path, from: u64, to: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the file tail follows");
    let text: String = (from..=to).map(|i| format!("line {i}\n")).collect();
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("append lines");
}

#[test]
fn tail_follows_a_growing_file() {
    let _serial = setup();
    let scratch = Scratch::new("tail_follow");
    let input = scratch.join("input");
    append_lines(&input, 1, 5);
    // tail -f (inotify: a watch on the file) writes what it reads to its stdout, the
    // program log, which the harness opened for appending.
    let mut run = start_program(&scratch, "tail", &["-f", input.to_str().unwrap()], true);
    let pid = run.pid;
    let out = run.log.clone();
    wait_until("tail to print the existing lines and wait for more", || {
        complete_lines(&out).len() >= 5
            && matches!(blocked_syscall(pid), Some(0 | 7 | 23 | 270 | 271))
    });
    assert_eq!(consecutive_numbers(&out, "line ").len(), 5);
    let images = scratch.join("images");
    dump(pid, &images, &[]);
    run.reap_killed();
    restore(&images, &[]);
    // Lines appended after the restore reach the restored tail, once each.
    append_lines(&input, 6, 10);
    wait_until("the restored tail to print the new lines", || {
        complete_lines(&out).len() >= 10
    });
    append_lines(&input, 11, 12);
    wait_until("the restored tail to print more lines", || {
        complete_lines(&out).len() >= 12
    });
    assert_eq!(consecutive_numbers(&out, "line ").len(), 12);
    stasis_sys::process::kill(pid, libc::SIGKILL).unwrap();
    run.wait_exit();
}

/// Bytes waiting in the pipe that is fd 0 of some process of the tree, if there is one.
fn pipe_backlog(root: i32) -> Option<u32> {
    for pid in descendants(root) {
        let fd0 = format!("/proc/{pid}/fd/0");
        let is_pipe =
            std::fs::read_link(&fd0).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"));
        if !is_pipe {
            continue;
        }
        // A new open of the pipe (not a read: nothing is consumed).
        let f = std::os::unix::fs::OpenOptionsExt::custom_flags(
            std::fs::OpenOptions::new().read(true),
            libc::O_NONBLOCK,
        )
        .open(&fd0)
        .ok()?;
        return stasis_sys::fds::bytes_readable(std::os::fd::AsFd::as_fd(&f)).ok();
    }
    None
}

#[test]
fn shell_pipeline_keeps_the_data_in_its_pipe() {
    let _serial = setup();
    let scratch = Scratch::new("shell_pipeline");
    let out = scratch.join("out");
    // A producer (one number every 50 ms) piped into a slower consumer (one every 100 ms
    // or more): the pipe between the two subshells always holds a growing backlog, which
    // the restore must bring back exactly (a lost or repeated number shows in OUT).
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done | while read n; do echo \"got $n\" >> {out}; sleep 0.1; done",
        out = out.to_str().unwrap()
    );
    let mut run = start_program(&scratch, "bash", &["-c", &script], true);
    let pid = run.pid;
    wait_until("numbers to queue up in the pipe", || {
        complete_lines(&out).len() > 5 && pipe_backlog(pid).is_some_and(|n| n >= 10)
    });
    let images = scratch.join("images");
    dump(pid, &images, &[]);
    run.reap_killed();
    let at_dump = consecutive_numbers(&out, "got ").len();
    restore(&images, &[]);
    assert!(
        descendants(pid).len() >= 2,
        "the pipeline's processes were not restored"
    );
    wait_until("the restored pipeline to go on counting", || {
        complete_lines(&out).len() > at_dump + 30
    });
    assert!(consecutive_numbers(&out, "got ").len() > at_dump + 30);
    kill_tree_and_reap(&mut run);
}

#[test]
fn script_keeps_its_pty_session() {
    let _serial = setup();
    let scratch = Scratch::new("script_pty");
    // script(1) in a session of its own: a pty pair whose slave is the controlling
    // terminal of the shell it runs (in another session); what the shell writes comes
    // through the master to script's stdout, the program log (typescript: /dev/null).
    let mut run = start_program(
        &scratch,
        "script",
        &[
            "-qfc",
            "bash -c 'i=0; while :; do i=$((i+1)); echo line $i; sleep 0.05; done'",
            "/dev/null",
        ],
        true,
    );
    let pid = run.pid;
    let out = run.log.clone();
    wait_until("the shell under script to print lines", || {
        complete_lines(&out).len() > 5
    });
    let images = scratch.join("images");
    dump(pid, &images, &[]);
    run.reap_killed();
    let at_dump = consecutive_numbers(&out, "line ").len();
    restore(&images, &[]);
    wait_until(
        "the restored shell to go on printing through the pty",
        || complete_lines(&out).len() > at_dump + 20,
    );
    // Whatever was in the terminal's buffers at the dump comes out too.
    assert!(consecutive_numbers(&out, "line ").len() > at_dump + 20);
    kill_tree_and_reap(&mut run);
}
