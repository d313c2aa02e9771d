//! `stasis demo`: checkpoint and restore the built-in workload, and show the proof.
//!
//! Also home of the helpers `stasis bench` shares: starting the workload with a
//! readiness pipe, and running stasis itself as a subprocess, timed.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stasis_sys::process;

/// A workload process we started.
pub struct Workload {
    pub pid: i32,
    pub report: PathBuf,
    child: Option<std::process::Child>,
}

/// Starts `stasis workload` with `mib` MiB in a new session, logging into `dir`, and waits
/// (with a deadline) until it is ready.
/// `extra` are further workload options (`--threads N`, `--children N`).
pub fn start_workload(
    dir: &Path,
    mib: u64,
    tick_ms: u64,
    extra: &[&str],
) -> Result<Workload, String> {
    // The restored workload is a child of `stasis restore`, which exits: as a subreaper we
    // inherit it and can wait for it.
    process::set_child_subreaper().map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find our own binary: {e}"))?;
    let report = dir.join("workload.report");
    let _ = std::fs::remove_file(&report);
    let _ = std::fs::remove_file(report.with_extension("ticks"));
    let (ready_r, ready_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let mut cmd = Command::new("setsid");
    cmd.arg(exe)
        .args([
            "workload",
            "--mib",
            &mib.to_string(),
            "--ready-fd",
            "3",
            "--tick-ms",
        ])
        .arg(tick_ms.to_string())
        .arg("--report")
        .arg(&report)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    process::cloexec_all_above(2).map_err(|e| format!("fd cleanup: {e}"))?;
    let child = process::spawn_with_fd(&mut cmd, ready_w.as_fd(), 3)
        .map_err(|e| format!("start the workload: {e}"))?;
    drop(ready_w);
    let ready = process::wait_readable(ready_r.as_fd(), Duration::from_secs(120))
        .map_err(|e| format!("wait for the workload: {e}"))?;
    let mut byte = [0u8; 1];
    if !ready || std::io::Read::read(&mut &ready_r, &mut byte).unwrap_or(0) != 1 {
        return Err("the workload never became ready".into());
    }
    // Ready means the byte and the close: until the workload has closed its end, that
    // pipe is still in its fd table.
    if !process::wait_closed(ready_r.as_fd(), Duration::from_secs(30)) {
        return Err("the workload did not close its readiness pipe".into());
    }
    Ok(Workload {
        pid: child.id() as i32,
        report,
        child: Some(child),
    })
}

impl Workload {
    /// Reaps the original process after a dump killed it.
    pub fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // Its children died with it and came to us, the subreaper: free their pids.
        let _ = process::reap_terminated();
    }

    /// Ticks counted so far.
    pub fn ticks(&self) -> u64 {
        std::fs::read_to_string(self.report.with_extension("ticks"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .last()
                    .and_then(|l| l.strip_prefix("tick ")?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Asks the (restored) workload to verify itself; returns its report.
    pub fn verify(&mut self) -> Result<String, String> {
        process::kill(self.pid, libc::SIGTERM).map_err(|e| format!("signal {}: {e}", self.pid))?;
        match self.child.take() {
            Some(mut c) => {
                let _ = c.wait();
            }
            None => {
                process::wait_exit(self.pid).map_err(|e| format!("wait {}: {e}", self.pid))?;
            }
        }
        std::fs::read_to_string(&self.report)
            .map(|s| s.trim().to_owned())
            .map_err(|e| {
                format!(
                    "no report from the workload ({}): {e}",
                    self.report.display()
                )
            })
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // Never leave the workload behind on an error path.
        if process::kill(self.pid, 0).is_ok() && std::fs::metadata(&self.report).is_err() {
            let _ = process::kill(self.pid, libc::SIGKILL);
            if let Some(mut c) = self.child.take() {
                let _ = c.wait();
            } else {
                let _ = process::wait_exit(self.pid);
            }
        }
    }
}

/// Runs our own binary with `args`, returning the wall time; fails with its stderr.
pub fn stasis_timed(args: &[&str]) -> Result<Duration, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "stasis {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(took)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The demo: start, checkpoint, kill, restore, watch it go on, verify.
pub fn run(dir: Option<&Path>) -> Result<(), String> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("stasis-demo"));
    let images = dir.join("images");
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mib = 256;
    println!("stasis demo: checkpoint and restore a running process");
    println!();
    let mut w = start_workload(&dir, mib, 50, &[])?;
    println!(
        "1. started the workload, pid {}: {mib} MiB of pseudo-random memory, counting ticks",
        w.pid
    );
    let before = wait_for("a few ticks", || (w.ticks() >= 3).then(|| w.ticks()))?;
    println!("   it has counted {before} ticks");
    let pid = w.pid.to_string();
    let images_s = images.to_str().ok_or("image path is not UTF-8")?;
    let t = stasis_timed(&["dump", "-t", &pid, "-D", images_s, "-o", "dump.log", "-v4"])?;
    w.reap();
    let at_dump = w.ticks();
    println!(
        "2. `stasis dump -t {pid} -D {images_s}`: {:.1} ms, {:.1} MiB of images; the process is gone",
        t.as_secs_f64() * 1e3,
        dir_size(&images) as f64 / f64::from(1u32 << 20)
    );
    println!("   (it had counted {at_dump} ticks when it was frozen)");
    let t = stasis_timed(&["restore", "-D", images_s, "-d", "-o", "restore.log", "-v4"])?;
    println!(
        "3. `stasis restore -D {images_s} -d`: {:.1} ms; pid {pid} runs again",
        t.as_secs_f64() * 1e3
    );
    let after = wait_for("the restored process to count on", || {
        let n = w.ticks();
        (n >= at_dump + 3).then_some(n)
    })?;
    println!("   it goes on counting where it stopped: tick {at_dump} -> {after}");
    let report = w.verify()?;
    println!("4. on SIGTERM it checked every word of its memory and its registers: {report}");
    println!();
    println!("Images are in {images_s}; `stasis show {images_s}` describes them.");
    if report.starts_with("PASS") {
        Ok(())
    } else {
        Err(format!("the workload failed: {report}"))
    }
}
