//! The end-to-end harness: builds fixtures, runs them, drives `stasis` through its CRIU
//! command line, and reads verdicts.
//!
//! Every test runs in its own process under nextest, as a child subreaper (restored
//! processes are reparented to us when `stasis restore -d` exits), serially (one
//! test group of one thread, see .config/nextest.toml). Synchronisation is by readiness
//! pipe and by waiting for processes to exit; every wait has a deadline.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use stasis_sys::process::{self, ExitStatus};

/// The stasis binary under test.
pub fn stasis_bin() -> &'static str {
    env!("CARGO_BIN_EXE_stasis")
}

fn repo_root() -> PathBuf {
    // Canonical, as the kernel shows paths (in /proc/PID/fd links, for instance).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// One-time setup of the test process; the returned guard serialises tests that share a
/// process (plain `cargo test` runs them on threads; nextest runs one per process).
pub fn setup() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        assert!(
            stasis_sys::probe::has_capability(21),
            "end-to-end tests need root (CAP_SYS_ADMIN for ptrace, clone3 set_tid, PR_SET_MM_MAP)"
        );
        process::set_child_subreaper().expect("PR_SET_CHILD_SUBREAPER");
        // Stray inherited fds (the CI runner's, a terminal's) must not leak into fixtures.
        process::cloexec_all_above(2).expect("mark fds close-on-exec");
    });
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A scratch directory for one test, removed when dropped unless the test failed.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let base = std::env::var_os("STASIS_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/e2e"));
        let path = base.join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Compiles fixture `name` (fixtures/NAME.c) once per source change.
pub fn build_fixture(name: &str) -> PathBuf {
    let root = repo_root();
    let src = root.join(format!("fixtures/{name}.c"));
    let header = root.join("fixtures/fixture.h");
    let out_dir = root.join("target/fixtures");
    std::fs::create_dir_all(&out_dir).expect("fixture dir");
    let out = out_dir.join(name);
    let newest_src = [&src, &header]
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .expect("fixture source exists");
    let fresh = std::fs::metadata(&out)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= newest_src);
    if !fresh {
        let tmp = out_dir.join(format!("{name}.tmp{}", std::process::id()));
        let status = Command::new("gcc")
            .args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-I"])
            .arg(root.join("fixtures"))
            .arg(&src)
            .arg("-o")
            .arg(&tmp)
            .status()
            .expect("run gcc");
        assert!(status.success(), "compiling fixture {name} failed");
        std::fs::rename(&tmp, &out).expect("install fixture");
    }
    out
}

/// A new, empty log file for a program under test, opened for appending: a process that
/// only appends to a file (as logs are) may go on writing it after a `--leave-running`
/// dump, and its images still restore (the file is not checked for a changed size).
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .and_then(|_| std::fs::OpenOptions::new().append(true).open(path))
        .expect("log file")
}

/// A fixture (or any program) running under test.
pub struct Running {
    pub pid: i32,
    pub verdict: PathBuf,
    pub log: PathBuf,
    child: Option<std::process::Child>,
}

/// How to start a fixture.
pub struct Start<'a> {
    pub fixture: &'a str,
    pub args: &'a [&'a str],
    /// Keep the fixture in our session (for --shell-job tests).
    pub no_setsid: bool,
    /// Append the test's scratch directory as the last argument (fixtures that create
    /// files take it).
    pub dir_arg: bool,
    /// Run inside this network namespace (`ip netns exec`, which execs: same pid).
    pub netns: Option<&'a str>,
}

impl<'a> Start<'a> {
    pub fn new(fixture: &'a str) -> Self {
        Start {
            fixture,
            args: &[],
            no_setsid: false,
            dir_arg: false,
            netns: None,
        }
    }

    /// A fixture that takes the test's scratch directory as its last argument.
    pub fn in_dir(fixture: &'a str) -> Self {
        Start {
            dir_arg: true,
            ..Start::new(fixture)
        }
    }
}

/// Starts a fixture and waits (with a deadline) for its readiness byte.
pub fn start(scratch: &Scratch, how: Start<'_>) -> Running {
    let bin = build_fixture(how.fixture);
    let verdict = scratch.join("verdict");
    let log = scratch.join(&format!("{}.log", how.fixture));
    let _ = std::fs::remove_file(&verdict);
    let (ready_r, ready_w) = std::io::pipe().expect("pipe");
    let log_file = log_file(&log);
    let mut cmd = match how.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.arg(&verdict).args(how.args);
    if how.dir_arg {
        cmd.arg(&scratch.path);
    }
    cmd.env("STASIS_READY_FD", "3")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("dup log"))
        .stderr(log_file);
    if how.no_setsid {
        cmd.env("STASIS_NO_SETSID", "1");
    }
    let child = process::spawn_with_fd(&mut cmd, ready_w.as_fd(), 3).expect("spawn fixture");
    drop(ready_w);
    let pid = child.id() as i32;
    let ready = process::wait_readable(ready_r.as_fd(), Duration::from_secs(60)).expect("poll");
    let mut byte = [0u8; 1];
    let got = ready && std::io::Read::read(&mut &ready_r, &mut byte).unwrap_or(0) == 1;
    assert!(
        got,
        "fixture {} never became ready; log:\n{}",
        how.fixture,
        read_lossy(&log)
    );
    // The fixture closes the pipe right after the byte; until then it is in its fd table.
    assert!(
        process::wait_closed(ready_r.as_fd(), Duration::from_secs(30)),
        "fixture {} kept its readiness pipe open",
        how.fixture
    );
    Running {
        pid,
        verdict,
        log,
        child: Some(child),
    }
}

/// Starts an arbitrary program (an unmodified one) in a new session.
pub fn start_program(scratch: &Scratch, program: &str, args: &[&str], setsid: bool) -> Running {
    let log = scratch.join("program.log");
    let log_file = log_file(&log);
    let mut cmd = if setsid {
        let mut c = Command::new("setsid");
        c.arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("dup log"))
        .stderr(log_file);
    let child = cmd.spawn().expect("spawn program");
    Running {
        pid: child.id() as i32,
        verdict: scratch.join("verdict"),
        log,
        child: Some(child),
    }
}

/// Starts a prepared command (its stdio set by the caller).
pub fn start_command(scratch: &Scratch, mut cmd: Command) -> Running {
    let child = cmd.spawn().expect("spawn program");
    Running {
        pid: child.id() as i32,
        verdict: scratch.join("verdict"),
        log: scratch.join("program.log"),
        child: Some(child),
    }
}

pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Runs stasis with arguments; returns its output.
pub fn stasis(args: &[&str]) -> Output {
    Command::new(stasis_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stasis")
}

/// Runs stasis and asserts success, showing its stderr and log otherwise.
pub fn stasis_ok(args: &[&str], log: Option<&Path>) -> Output {
    let out = stasis(args);
    assert!(
        out.status.success(),
        "stasis {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log.map(read_lossy).unwrap_or_default()
    );
    out
}

impl Running {
    /// Reaps the original process after a dump killed it, so its pid is free again.
    pub fn reap_killed(&mut self) {
        let mut child = self.child.take().expect("original process handle");
        let status = child.wait().expect("wait for the dumped process");
        assert!(
            !status.success(),
            "the dumped process exited normally instead of being killed"
        );
        // Its descendants died with it (the dump waits for that) and were reparented to
        // us, the subreaper, as zombies: reap them too, so their pids are free.
        process::reap_terminated().expect("reap the dumped tree");
    }

    /// Sends SIGTERM and waits for the process (original or restored) to exit, returning
    /// its verdict.
    /// The verdict file is removed once read, so a later run must write its own.
    pub fn finish(&mut self) -> String {
        process::kill(self.pid, libc::SIGTERM).expect("send SIGTERM");
        self.wait_exit();
        let verdict = read_lossy(&self.verdict);
        let _ = std::fs::remove_file(&self.verdict);
        verdict
    }

    /// Waits for the process to exit (it is our child, or reparented to us).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(120);
        if let Some(mut child) = self.child.take() {
            let s = child.wait().expect("wait");
            return match s.code() {
                Some(c) => ExitStatus::Code(c),
                None => ExitStatus::Signal(
                    std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0),
                ),
            };
        }
        let status = process::wait_exit(self.pid).expect("wait for restored process");
        assert!(Instant::now() < deadline);
        status
    }

    /// The fixture must have written PASS.
    pub fn assert_pass(&mut self) {
        let verdict = self.finish();
        assert!(
            verdict.starts_with("PASS"),
            "verdict: {verdict:?}\nfixture log:\n{}",
            read_lossy(&self.log)
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a process behind, whatever failed.
        if std::thread::panicking() {
            for pid in descendants(self.pid) {
                let _ = process::kill(pid, libc::SIGKILL);
            }
            let _ = process::kill(self.pid, libc::SIGKILL);
            if let Some(mut c) = self.child.take() {
                let _ = c.wait();
            } else {
                let _ = process::wait_exit(self.pid);
            }
        }
    }
}

/// Every live descendant of `root` (by parent links in /proc), deepest last.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The parent is the second field after the parenthesised name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// What `crit decode` does to each file (load with pycriu, convert to JSON), for many
/// files in one interpreter: one `crit` process per file costs ~70 ms, which a dump with
/// a thousand thread cores turns into more than a minute.
const CRIT_DECODE_ALL: &str = r#"
import json, sys
import pycriu
bad = []
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            json.dumps(pycriu.images.load(f, False, False))
    except BaseException as e:
        bad.append("%s: %r" % (path, e))
print("\n".join(bad))
sys.exit(1 if bad else 0)
"#;

/// The interpreter `crit` runs with (its `#!` line), so its own pycriu is used.
fn crit_interpreter() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v crit"])
        .output()
        .expect("run sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "crit is missing: install Debian's criu package (apt-get install criu)"
    );
    let script = std::fs::read_to_string(&path).expect("read the crit script");
    script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(|l| l.trim().to_owned())
        .expect("crit starts with a #! line")
}

/// `crit decode` must accept every image file in `dir` (raw pages excepted): the crit
/// command itself decodes the inventory, and crit's library every file.
pub fn assert_crit_decodes(dir: &Path) {
    let mut images = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read image dir") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let is_image = name.ends_with(".img") || name.starts_with("stats-");
        if is_image && !name.starts_with("pages-") {
            images.push(path);
        }
    }
    assert!(
        images.len() >= 8,
        "only {} images in {}",
        images.len(),
        dir.display()
    );
    let out = Command::new("crit")
        .args(["decode", "-i"])
        .arg(dir.join("inventory.img"))
        .output()
        .expect("crit is missing: install Debian's criu package (apt-get install criu)");
    assert!(
        out.status.success(),
        "crit decode inventory.img failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let interpreter = crit_interpreter();
    let mut words = interpreter.split_whitespace();
    let out = Command::new(words.next().expect("interpreter"))
        .args(words)
        .args(["-c", CRIT_DECODE_ALL])
        .args(&images)
        .output()
        .expect("run crit's interpreter");
    assert!(
        out.status.success(),
        "crit decode failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Dumps `pid` into `dir` with extra options; asserts success and crit-decodability.
pub fn dump(pid: i32, dir: &Path, extra: &[&str]) {
    let pid_s = pid.to_string();
    let dir_s = dir.to_str().expect("utf-8 path");
    let mut args = vec!["dump", "-t", &pid_s, "-D", dir_s, "-v4", "-o", "dump.log"];
    args.extend_from_slice(extra);
    stasis_ok(&args, Some(&dir.join("dump.log")));
    assert_crit_decodes(dir);
}

/// A dump of `pid` with options `extra` that must be refused: exit status 1, a one-line
/// error naming the process and containing `needle`, and the tree left untraced.
pub fn dump_refused(pid: i32, dir: &Path, extra: &[&str], needle: &str) {
    let pid_s = pid.to_string();
    let mut args = vec![
        "dump",
        "-t",
        &pid_s,
        "-D",
        dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let out = stasis(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "dump did not fail: {err}");
    assert!(
        err.trim().lines().count() == 1
            && err.contains(&format!("process {pid}"))
            && err.contains(needle),
        "unclear error (wanted {needle:?}): {err}"
    );
    let tracer = status_field(pid, "TracerPid");
    assert!(
        tracer.as_deref() == Some("0"),
        "process {pid} is still traced after the refused dump (TracerPid {tracer:?})"
    );
}

/// Restores from `dir` detached; asserts success.
pub fn restore(dir: &Path, extra: &[&str]) {
    let dir_s = dir.to_str().expect("utf-8 path");
    let mut args = vec!["restore", "-D", dir_s, "-d", "-v4", "-o", "restore.log"];
    args.extend_from_slice(extra);
    stasis_ok(&args, Some(&dir.join("restore.log")));
}

/// Status field `name` of /proc/PID/status, if the process exists.
pub fn status_field(pid: i32, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// A dump with `--leave-running` must leave the whole tree running, untraced and
/// unharmed (the fixture still passes), and the images must restore once it is gone.
pub fn leave_running_then_restore(test: &str, how: Start<'_>) {
    leave_running_then(test, how, |images| restore(images, &[]));
}

/// [`leave_running_then_restore`] with the restore done by `restore_with`.
pub fn leave_running_then(test: &str, how: Start<'_>, restore_with: impl FnOnce(&Path)) {
    leave_running_then_with(test, how, &[], restore_with);
}

/// [`leave_running_then`] with extra dump options.
pub fn leave_running_then_with(
    test: &str,
    how: Start<'_>,
    dump_opts: &[&str],
    restore_with: impl FnOnce(&Path),
) {
    let _serial = setup();
    let scratch = Scratch::new(test);
    let mut run = start(&scratch, how);
    let images = scratch.join("images");
    let mut opts = vec!["--leave-running"];
    opts.extend_from_slice(dump_opts);
    dump(run.pid, &images, &opts);
    let mut tree = descendants(run.pid);
    tree.push(run.pid);
    for pid in tree {
        let tracer = status_field(pid, "TracerPid");
        assert!(
            tracer.is_none() || tracer.as_deref() == Some("0"),
            "process {pid} is still traced after the dump (TracerPid {tracer:?})"
        );
    }
    run.assert_pass();
    // The original tree's descendants come back to us when it ends.
    process::reap_terminated().expect("reap the original tree");
    restore_with(&images);
    run.assert_pass();
}

/// The full cycle for a self-verifying fixture: start, dump (kill), restore, verdict.
pub fn checkpoint_restore_fixture(test: &str, how: Start<'_>) {
    checkpoint_restore_fixture_with(test, how, &[], &[]);
}

/// [`checkpoint_restore_fixture`] with extra dump and restore options.
pub fn checkpoint_restore_fixture_with(
    test: &str,
    how: Start<'_>,
    dump_opts: &[&str],
    restore_opts: &[&str],
) {
    let _serial = setup();
    let scratch = Scratch::new(test);
    let mut run = start(&scratch, how);
    let images = scratch.join("images");
    dump(run.pid, &images, dump_opts);
    run.reap_killed();
    restore(&images, restore_opts);
    run.assert_pass();
}
