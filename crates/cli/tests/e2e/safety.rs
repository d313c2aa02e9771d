//! Safety: failed dumps leave the process unharmed, failed restores leave nothing behind,
//! bad images give clear errors; plus --leave-running, busy pids and shell jobs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Scratch, Start, dump, read_lossy, restore, setup, start, stasis, stasis_bin};

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn tracer_pid(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

#[test]
fn leave_running_keeps_the_process_and_the_images_restore_later() {
    let _serial = setup();
    let scratch = Scratch::new("leave_running");
    let mut run = start(&scratch, Start::new("counter"));
    let images = scratch.join("images");
    dump(run.pid, &images, &["--leave-running"]);
    assert!(alive(run.pid), "--leave-running killed the process");
    assert_eq!(
        tracer_pid(run.pid),
        0,
        "the process is still traced after the dump"
    );
    // The original is unharmed...
    run.assert_pass();
    // ...and once it is gone, the images restore.
    restore(&images, &[]);
    run.assert_pass();
}

#[test]
fn failed_dump_leaves_the_process_unharmed() {
    let _serial = setup();
    let scratch = Scratch::new("failed_dump");
    let mut run = start(&scratch, Start::new("unsupported_fd"));
    let images = scratch.join("images");
    let out = stasis(&[
        "dump",
        "-t",
        &run.pid.to_string(),
        "-D",
        images.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "dump of an unsupported fd succeeded");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "error is not one line: {err}"
    );
    assert!(
        err.contains(&format!("process {}", run.pid)) && err.contains("io_uring"),
        "unclear error: {err}"
    );
    assert!(alive(run.pid));
    assert_eq!(tracer_pid(run.pid), 0);
    run.assert_pass();
}

#[test]
fn restore_onto_a_busy_pid_fails_cleanly() {
    let _serial = setup();
    let scratch = Scratch::new("pid_busy");
    let mut run = start(&scratch, Start::new("counter"));
    let images = scratch.join("images");
    dump(run.pid, &images, &["-R"]);
    let out = stasis(&["restore", "-D", images.to_str().unwrap(), "-d"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {} is already in use", run.pid)),
        "unclear error: {err}"
    );
    run.assert_pass();
}

#[test]
fn shell_job_needs_the_option_and_restores_with_it() {
    let _serial = setup();
    let scratch = Scratch::new("shell_job");
    let mut run = start(
        &scratch,
        Start {
            no_setsid: true,
            ..Start::new("counter")
        },
    );
    let images = scratch.join("images");
    let out = stasis(&[
        "dump",
        "-t",
        &run.pid.to_string(),
        "-D",
        images.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shell-job"));
    assert!(alive(run.pid));
    dump(run.pid, &images, &["-j"]);
    run.reap_killed();
    let out = stasis(&["restore", "-D", images.to_str().unwrap(), "-d"]);
    assert!(
        !out.status.success(),
        "a shell job restored without --shell-job"
    );
    assert!(!alive(run.pid), "a failed restore left a process behind");
    restore(&images, &["-j"]);
    run.assert_pass();
}

#[test]
fn restore_without_detach_waits_and_returns_the_exit_status() {
    let _serial = setup();
    let scratch = Scratch::new("restore_wait");
    let mut run = start(&scratch, Start::new("counter"));
    let images = scratch.join("images");
    dump(run.pid, &images, &[]);
    run.reap_killed();
    let pidfile = scratch.join("restored.pid");
    let mut restorer = Command::new(stasis_bin())
        .args([
            "restore",
            "-D",
            images.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // The pidfile is written once the process runs on its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(p) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no pidfile");
        assert!(
            restorer.try_wait().unwrap().is_none(),
            "restore exited early"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(pid, run.pid);
    stasis_sys::process::kill(pid, libc::SIGTERM).unwrap();
    let status = restorer.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "restore did not pass on the fixture's exit status"
    );
    assert!(
        read_lossy(&run.verdict).starts_with("PASS"),
        "{}",
        read_lossy(&run.log)
    );
}

/// Copies an image directory (no subdirectories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn bad_images_give_clear_errors_and_leave_nothing_behind() {
    let _serial = setup();
    let scratch = Scratch::new("bad_images");
    let mut run = start(&scratch, Start::new("counter"));
    let pid = run.pid;
    let good = scratch.join("good");
    dump(pid, &good, &[]);
    run.reap_killed();
    let core = format!("core-{pid}.img");
    let mm = format!("mm-{pid}.img");
    let pagemap = format!("pagemap-{pid}.img");
    type Corrupt = fn(&Path, &str, &str, &str);
    let cases: [(&str, Corrupt); 7] = [
        ("truncated core", |d, core, _, _| {
            truncate_half(&d.join(core))
        }),
        ("truncated mm", |d, _, mm, _| truncate_half(&d.join(mm))),
        ("garbage in mm", |d, _, mm, _| scribble(&d.join(mm))),
        ("garbage in core", |d, core, _, _| scribble(&d.join(core))),
        ("missing pages", |d, _, _, _| {
            std::fs::remove_file(d.join("pages-1.img")).unwrap()
        }),
        ("truncated pages", |d, _, _, _| {
            truncate_half(&d.join("pages-1.img"))
        }),
        ("garbage pagemap", |d, _, _, pm| scribble(&d.join(pm))),
    ];
    for (i, (what, corrupt)) in cases.iter().enumerate() {
        let dir = scratch.join(&format!("bad{i}"));
        copy_dir(&good, &dir);
        corrupt(&dir, &core, &mm, &pagemap);
        let out = stasis(&["restore", "-D", dir.to_str().unwrap(), "-d"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: exit {:?}, stderr {err}",
            out.status
        );
        assert!(!err.contains("panicked"), "{what}: panic: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
        assert!(
            !alive(pid),
            "{what}: a failed restore left process {pid} behind"
        );
    }
    // The intact images still restore.
    restore(&good, &[]);
    run.assert_pass();
}

fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

/// Overwrites the middle of a file with a deterministic byte pattern.
fn scribble(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    for (i, b) in bytes
        .iter_mut()
        .enumerate()
        .skip(8)
        .take(n.saturating_sub(16))
    {
        *b ^= (i as u8).wrapping_mul(37) | 1;
    }
    std::fs::write(path, bytes).unwrap();
}
