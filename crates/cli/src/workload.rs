//! The built-in workload of `stasis demo` and `stasis bench`: a process that holds memory
//! with a known pattern and keeps working, and checks itself after a restore.
//!
//! `stasis workload --mib N --ready-fd FD --report FILE` fills N MiB of anonymous memory
//! with a pseudo-random stream, writes one byte to FD when ready, then counts ticks (one
//! line per tick appended to FILE.ticks). On SIGTERM it regenerates the stream, compares
//! every word, checks its counters and writes `PASS ...` or `FAIL ...` to FILE.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

/// xorshift64*: a fast deterministic stream the verifier can regenerate.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const SEED: u64 = 0x5354_4153_4953_2121;

/// Runs the workload; returns the process exit code.
pub fn run(mib: u64, ready_fd: Option<i32>, report: &std::path::Path, tick_ms: u64) -> u8 {
    if let Err(e) = stasis_sys::signal::set_handler(libc::SIGTERM, on_term) {
        eprintln!("workload: cannot handle SIGTERM: {e}");
        return 2;
    }
    let words = (mib << 20) as usize / 8;
    let mut memory: Vec<u64> = Vec::with_capacity(words);
    let mut s = Stream(SEED);
    memory.extend((0..words).map(|_| s.next()));
    let ticks_path = report.with_extension("ticks");
    let mut ticks = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ticks_path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("workload: {}: {e}", ticks_path.display());
            return 2;
        }
    };
    if let Some(fd) = ready_fd {
        stasis_sys::fs::write_and_close(fd, b"R");
    }
    // Two counters kept in lockstep: a restore that loses or mixes state breaks them.
    let (mut a, mut b) = (0u64, 0u64);
    let mut tick = 0u64;
    let mut last = Instant::now();
    while !TERM.load(Ordering::SeqCst) {
        a += 1;
        b += 3;
        if last.elapsed() >= Duration::from_millis(tick_ms) {
            tick += 1;
            let _ = writeln!(ticks, "tick {tick}");
            last = Instant::now();
        }
        if a % 1024 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut s = Stream(SEED);
    let bad = memory.iter().position(|w| *w != s.next());
    let verdict = match bad {
        _ if b != 3 * a => format!("FAIL counters disagree: a={a} b={b}"),
        Some(i) => format!("FAIL memory differs at offset {:#x}", i * 8),
        None => format!("PASS {mib} MiB verified, {a} iterations"),
    };
    if std::fs::write(report, format!("{verdict}\n")).is_err() {
        return 2;
    }
    if verdict.starts_with("PASS") { 0 } else { 1 }
}
