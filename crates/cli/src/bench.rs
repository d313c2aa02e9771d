//! `stasis bench`: dump and restore speed for a large and a trivial process, next to the
//! machine's own memcpy and page-cache write bandwidth measured in the same run.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::demo::{start_workload, stasis_timed};

const GIB: f64 = (1u64 << 30) as f64;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// memcpy bandwidth over 1 GiB buffers (best of 3), bytes per second.
fn memcpy_bandwidth() -> f64 {
    let len = 1usize << 30;
    let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let mut dst = vec![0u8; len];
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        best = best.min(t.elapsed());
        std::hint::black_box(&dst);
    }
    len as f64 / best.as_secs_f64()
}

/// Page-cache write bandwidth: 1 GiB written into a fresh file in `dir` with 8 MiB
/// writes, no fsync (what a dump does). Median of 3, bytes per second.
fn page_cache_bandwidth(dir: &Path) -> Result<f64, String> {
    let len = 1usize << 30;
    let chunk = vec![0x5au8; 8 << 20];
    let path = dir.join("bench-write.tmp");
    let mut times = Vec::new();
    for _ in 0..3 {
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let t = Instant::now();
        for _ in 0..len / chunk.len() {
            f.write_all(&chunk)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        times.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    Ok(len as f64 / median(times).as_secs_f64())
}

/// Dumps and restores a workload of `mib` MiB `runs` times into one images directory (as
/// periodic checkpoints do), with workload options `extra` and stasis options `options`;
/// returns every (dump, restore) time, first run first.
fn cycle(
    dir: &Path,
    mib: u64,
    runs: usize,
    extra: &[&str],
    options: &[&str],
) -> Result<Vec<(Duration, Duration)>, String> {
    let images = dir.join(format!("images-{mib}-{}", extra.join("-")));
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir_all(&images).map_err(|e| e.to_string())?;
    let images_s = images.to_str().ok_or("image path is not UTF-8")?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut w = start_workload(dir, mib, 1000, extra)?;
        let pid = w.pid.to_string();
        let mut dump_args = vec!["dump", "-t", &pid, "-D", images_s];
        dump_args.extend_from_slice(options);
        let dump = stasis_timed(&dump_args)?;
        w.reap();
        let mut restore_args = vec!["restore", "-D", images_s, "-d"];
        restore_args.extend_from_slice(options);
        let restore = stasis_timed(&restore_args)?;
        let report = w.verify()?;
        if !report.starts_with("PASS") {
            return Err(format!("restored workload failed its check: {report}"));
        }
        times.push((dump, restore));
    }
    Ok(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the benchmark and prints a table.
pub fn run(dir: Option<&Path>, mib: u64, runs: usize) -> Result<(), String> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("stasis-bench"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!(
        "stasis bench: {mib} MiB and trivial processes, {runs} runs each (medians), in {}",
        dir.display()
    );
    let memcpy = memcpy_bandwidth();
    let cache = page_cache_bandwidth(&dir)?;
    println!(
        "machine: memcpy {:.2} GiB/s, page-cache writes {:.2} GiB/s",
        memcpy / GIB,
        cache / GIB
    );
    let times = cycle(&dir, mib, runs, &[], &[])?;
    let bytes = (mib << 20) as f64;
    let (first_dump, first_restore) = times[0];
    let dump = median(times.iter().map(|t| t.0).collect());
    let restore = median(times.iter().map(|t| t.1).collect());
    println!(
        "{mib} MiB process: dump {:7.1} ms ({:.2} GiB/s), restore {:7.1} ms ({:.2} GiB/s)",
        ms(dump),
        bytes / GIB / dump.as_secs_f64(),
        ms(restore),
        bytes / GIB / restore.as_secs_f64()
    );
    println!(
        "   first run (fresh images directory): dump {:.1} ms, restore {:.1} ms",
        ms(first_dump),
        ms(first_restore)
    );
    let tcp: &[&str] = &["--tcp-established"];
    let shapes: [(&str, u64, &[&str], &[&str]); 4] = [
        ("trivial process:", 0, &[], &[]),
        ("1000 threads:", 0, &["--threads", "999"], &[]),
        (
            "100 processes, 64 MiB shared:",
            64,
            &["--children", "99"],
            &[],
        ),
        (
            "256 TCP connections (both ends):",
            0,
            &["--connections", "256"],
            tcp,
        ),
    ];
    for (what, mib, extra, options) in shapes {
        let times = cycle(&dir, mib, runs.max(5), extra, options)?;
        let dump = median(times.iter().map(|t| t.0).collect());
        let restore = median(times.iter().map(|t| t.1).collect());
        println!(
            "{what:<33} dump {:7.1} ms, restore {:7.1} ms",
            ms(dump),
            ms(restore)
        );
    }
    println!(
        "(times are wall clock of the stasis command, process start included; every restore was verified)"
    );
    Ok(())
}
