//! The built-in workload of `stasis demo` and `stasis bench`: a process that holds memory
//! with a known pattern and keeps working, and checks itself after a restore.
//!
//! `stasis workload --mib N --ready-fd FD --report FILE` fills N MiB of anonymous memory
//! with a pseudo-random stream, writes one byte to FD when ready, then counts ticks (one
//! line per tick appended to FILE.ticks). On SIGTERM it regenerates the stream, compares
//! every word, checks its counters and writes `PASS ...` or `FAIL ...` to FILE.
//! `--threads N` adds threads counting on their own, `--children N` forked children that
//! share the memory copy-on-write and check it too, `--connections N` TCP connections
//! over loopback (both ends in the process) with bytes in flight both ways, which must
//! arrive after the restore, followed by new ones.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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

/// The pause of a busy counter: mostly running.
const BUSY: Duration = Duration::from_millis(1);

/// What the workload looks like.
#[derive(Debug)]
pub struct Shape<'a> {
    /// Anonymous memory filled with the stream.
    pub mib: u64,
    /// Where to write the readiness byte.
    pub ready_fd: Option<i32>,
    /// Where the verdict goes.
    pub report: &'a std::path::Path,
    /// Interval of the tick lines.
    pub tick_ms: u64,
    /// Forked children: each shares the memory copy-on-write and checks it at the end.
    pub children: usize,
    /// Extra threads, each with counters of its own.
    pub threads: usize,
    /// TCP connections over loopback, both ends ours, with bytes in flight both ways.
    pub connections: usize,
}

/// Bytes each end of a connection has in flight towards the other at the checkpoint.
const IN_FLIGHT: usize = 3000;

/// Byte `at` of what connection `conn` carries in direction `dir` (0: client to server).
fn pattern(conn: usize, dir: usize, at: usize) -> u8 {
    (conn.wrapping_mul(131) ^ at.wrapping_mul(7) ^ dir.wrapping_mul(0x55)) as u8
}

/// `n` connections to a listener of ours on 127.0.0.1, each end having written
/// [`IN_FLIGHT`] bytes the other has not read.
fn connect_pairs(n: usize) -> Result<Vec<(TcpStream, TcpStream)>, String> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = TcpStream::connect(addr).map_err(|e| format!("connect {i}: {e}"))?;
        let (mut server, _) = listener.accept().map_err(|e| format!("accept {i}: {e}"))?;
        for (dir, end) in [&mut client, &mut server].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..IN_FLIGHT).map(|at| pattern(i, dir, at)).collect();
            end.write_all(&bytes)
                .map_err(|e| format!("connection {i}: {e}"))?;
            end.set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
        }
        pairs.push((client, server));
    }
    Ok(pairs)
}

/// Every byte in flight arrives, in order, then new bytes each way.
fn check_pairs(pairs: &[(TcpStream, TcpStream)]) -> Result<(), String> {
    for (i, (client, server)) in pairs.iter().enumerate() {
        for (dir, (mut from, mut to)) in
            [(client, server), (server, client)].into_iter().enumerate()
        {
            let fresh: Vec<u8> = (IN_FLIGHT..IN_FLIGHT + 100)
                .map(|at| pattern(i, dir, at))
                .collect();
            from.write_all(&fresh)
                .map_err(|e| format!("connection {i}: write after the restore: {e}"))?;
            let mut got = vec![0; IN_FLIGHT + 100];
            to.read_exact(&mut got)
                .map_err(|e| format!("connection {i}, direction {dir}: read: {e}"))?;
            if let Some(at) = (0..got.len()).find(|&at| got[at] != pattern(i, dir, at)) {
                return Err(format!(
                    "connection {i}, direction {dir}: byte {at} differs"
                ));
            }
        }
    }
    Ok(())
}

/// Two counters kept in lockstep until SIGTERM, pausing `pause` every 1024 steps: a
/// restore that loses or mixes state breaks them. Returns an error text if they disagree.
fn count_until_term(pause: Duration, mut tick: impl FnMut()) -> Result<u64, String> {
    let (mut a, mut b) = (0u64, 0u64);
    while !TERM.load(Ordering::SeqCst) {
        a += 1;
        b += 3;
        tick();
        if a % 1024 == 0 {
            std::thread::sleep(pause);
        }
    }
    if b == 3 * a {
        Ok(a)
    } else {
        Err(format!("counters disagree: a={a} b={b}"))
    }
}

fn check_memory(memory: &[u64]) -> Result<(), String> {
    let mut s = Stream(SEED);
    match memory.iter().position(|w| *w != s.next()) {
        Some(i) => Err(format!("memory differs at offset {:#x}", i * 8)),
        None => Ok(()),
    }
}

/// Runs the workload; returns the process exit code.
pub fn run(shape: &Shape<'_>) -> u8 {
    let Shape {
        mib,
        ready_fd,
        report,
        tick_ms,
        children,
        threads,
        connections,
    } = *shape;
    if let Err(e) = stasis_sys::signal::set_handler(libc::SIGTERM, on_term) {
        eprintln!("workload: cannot handle SIGTERM: {e}");
        return 2;
    }
    let ready = ready_fd.and_then(stasis_sys::fs::adopt_inherited);
    let words = (mib << 20) as usize / 8;
    let mut memory: Vec<u64> = Vec::with_capacity(words);
    let mut s = Stream(SEED);
    memory.extend((0..words).map(|_| s.next()));
    // Children first (a fork needs a single thread): they share the memory copy-on-write,
    // count on their own, and on SIGTERM check both and exit 0 or 1.
    let mut kids = Vec::with_capacity(children);
    for _ in 0..children {
        match stasis_sys::process::fork_single_threaded() {
            Ok(None) => {
                // Readiness is the parent's to report.
                drop(ready);
                let ok = count_until_term(BUSY, || {}).and_then(|_| check_memory(&memory));
                stasis_sys::process::exit_now(i32::from(ok.is_err()));
            }
            Ok(Some(pid)) => kids.push(pid),
            Err(e) => {
                eprintln!("workload: fork: {e}");
                return 2;
            }
        }
    }
    // The extra threads are mostly asleep, as in a server's pool: a thousand threads
    // all spinning on a few cores would starve everything else, stasis included.
    let workers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(|| count_until_term(Duration::from_millis(20), || {})))
        .collect();
    let conns = match connect_pairs(connections) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("workload: {e}");
            return 2;
        }
    };
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
    if let Some(fd) = ready {
        let _ = std::fs::File::from(fd).write_all(b"R");
    }
    let mut tick = 0u64;
    let mut last = Instant::now();
    let counted = count_until_term(BUSY, || {
        if last.elapsed() >= Duration::from_millis(tick_ms) {
            tick += 1;
            let _ = writeln!(ticks, "tick {tick}");
            last = Instant::now();
        }
    });
    let mut problems = Vec::new();
    let iterations = counted.unwrap_or_else(|e| {
        problems.push(e);
        0
    });
    if let Err(e) = check_memory(&memory) {
        problems.push(e);
    }
    for (i, w) in workers.into_iter().enumerate() {
        match w.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems.push(format!("thread {i}: {e}")),
            Err(_) => problems.push(format!("thread {i} panicked")),
        }
    }
    if let Err(e) = check_pairs(&conns) {
        problems.push(e);
    }
    for pid in kids {
        let _ = stasis_sys::process::kill(pid, libc::SIGTERM);
        match stasis_sys::process::wait_exit(pid) {
            Ok(stasis_sys::process::ExitStatus::Code(0)) => {}
            Ok(other) => problems.push(format!("child {pid} ended with {other:?}")),
            Err(e) => problems.push(format!("child {pid}: wait: {e}")),
        }
    }
    let verdict = match problems.first() {
        Some(p) => format!("FAIL {p}"),
        None => format!(
            "PASS {mib} MiB verified, {iterations} iterations, {threads} more threads, \
             {children} children, {connections} connections"
        ),
    };
    if std::fs::write(report, format!("{verdict}\n")).is_err() {
        return 2;
    }
    if verdict.starts_with("PASS") { 0 } else { 1 }
}
