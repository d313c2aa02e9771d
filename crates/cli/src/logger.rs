//! Logging in CRIU's style: `(SS.uuuuuu) message`, to the `-o` file or stderr, filtered
//! by `-v` (0 nothing but the final error, 1 errors, 2 warnings, 3 info, 4 debug).

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

struct Logger {
    start: Instant,
    out: Mutex<Box<dyn Write + Send>>,
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let t = self.start.elapsed();
        let prefix = match record.level() {
            log::Level::Error => "Error: ",
            log::Level::Warn => "Warn: ",
            _ => "",
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(
                out,
                "({:02}.{:06}) {prefix}{}",
                t.as_secs(),
                t.subsec_micros(),
                record.args()
            );
        }
    }

    fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

/// The log filter for a CRIU verbosity level.
pub fn level_for(verbosity: u8) -> log::LevelFilter {
    match verbosity {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// Installs the logger, writing to `file` if given (created/truncated), else stderr.
pub fn init(file: Option<File>, verbosity: u8) {
    let out: Box<dyn Write + Send> = match file {
        Some(f) => Box::new(std::io::LineWriter::new(f)),
        None => Box::new(std::io::stderr()),
    };
    let level = level_for(verbosity);
    let logger = Logger {
        start: Instant::now(),
        out: Mutex::new(out),
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}
