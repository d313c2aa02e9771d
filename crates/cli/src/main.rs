//! `stasis`: checkpoint/restore for Linux process trees, speaking CRIU's command line.

#![forbid(unsafe_code)]

mod args;
mod bench;
mod check;
mod demo;
mod logger;
mod show;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use args::Args;
use stasis_dump::DumpOptions;
use stasis_restore::{RestoreOptions, RestoreOutcome};
use stasis_sys::process::ExitStatus;

const USAGE: &str = "\
Usage:
  stasis dump    -t PID [-D DIR] [-o LOG] [-v[N]] [-R|--leave-running] [-j|--shell-job]
  stasis restore [-D DIR] [-o LOG] [-v[N]] [-d|--restore-detached] [-j|--shell-job] [--pidfile FILE]
                 [--new-pid-ns]
  stasis check
  stasis show [DIR|FILE] [--json]
  stasis demo [DIR]
  stasis bench [--mib N] [DIR]

Options (CRIU-compatible):
  -t, --tree PID           root of the process tree to dump
  -D, --images-dir DIR     directory of image files (default: current directory)
  -W, --work-dir DIR       directory for the log file (default: the images directory)
  -o, --log-file FILE      log to FILE, relative to the work directory
  -v[N], --verbosity[=N]   log level 0-4 (-v4: every step); -v, -vv raise it
  -R, --leave-running      keep the tree running after a dump
      --ghost-limit SIZE   save deleted files up to SIZE bytes (K/M/G; default 1M)
      --link-remap         reopen deleted files that have other links through a link
  -l, --file-locks         save and restore file locks
  -j, --shell-job          the tree was started from a shell (its session leader is outside)
  -d, --restore-detached   return once the restored tree runs on its own
      --pidfile FILE       write the restored root's pid to FILE
      --skip-file-validation  restore files whose size or mtime changed since the dump
      --skip-file-rwx-check   restore files whose permission bits changed
      --new-pid-ns         restore into a new pid namespace (the tree keeps its pids
                           inside it, whoever uses them outside); not in CRIU
  -h, --help               this help
  -V, --version            version
";

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stasis: {e}");
            eprintln!("Try 'stasis --help'.");
            return ExitCode::from(1);
        }
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("Version: {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(command) = args.command.clone() else {
        eprint!("{USAGE}");
        return ExitCode::from(1);
    };
    match run(&command, &args) {
        Ok(code) => code,
        Err(e) => {
            // The log file gets the error too; without one the log is stderr already.
            if args.log_file.is_some() {
                log::error!("{e}");
            }
            eprintln!("stasis {command}: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn images_dir(args: &Args) -> PathBuf {
    args.images_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Sets up logging: `-o` is relative to the work directory (the images directory unless
/// `-W` says otherwise), as in CRIU.
fn init_logging(args: &Args, create_dir: bool) -> Result<(), String> {
    let file = match &args.log_file {
        Some(name) if name.as_os_str() != "-" => {
            let base = args.work_dir.clone().unwrap_or_else(|| images_dir(args));
            if create_dir {
                std::fs::create_dir_all(&base)
                    .map_err(|e| format!("cannot create {}: {e}", base.display()))?;
            }
            let path = if name.is_absolute() {
                name.clone()
            } else {
                base.join(name)
            };
            Some(
                std::fs::File::create(&path)
                    .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?,
            )
        }
        _ => None,
    };
    logger::init(file, args.verbosity);
    for opt in &args.accepted {
        log::info!("option {opt} accepted (nothing to do for the state stasis supports)");
    }
    Ok(())
}

fn network_lock(args: &Args) -> Result<stasis_sys::netlock::Method, String> {
    args.network_lock
        .as_deref()
        .map_or(Ok(Default::default()), str::parse)
}

fn run(command: &str, args: &Args) -> Result<ExitCode, String> {
    match command {
        "dump" => {
            init_logging(args, true)?;
            let pid = args.tree.ok_or("dump needs the root pid: -t PID")?;
            if args.leave_stopped {
                return Err("--leave-stopped is not supported yet".into());
            }
            let opts = DumpOptions {
                pid,
                dir: images_dir(args),
                leave_running: args.leave_running,
                shell_job: args.shell_job,
                // CRIU's default: 1 MiB.
                ghost_limit: args.ghost_limit.unwrap_or(1 << 20),
                link_remap: args.link_remap,
                file_locks: args.file_locks,
                tcp_established: args.tcp_established,
                skip_in_flight: args.skip_in_flight,
                tcp_close: args.tcp_close,
                network_lock: network_lock(args)?,
                ext_unix_sk: args.ext_unix_sk,
            };
            let stats = stasis_dump::dump(&opts).map_err(|e| e.to_string())?;
            log::info!(
                "dump of {pid} done: frozen {} us, {} pages written",
                stats.frozen_us,
                stats.pages_written
            );
            Ok(ExitCode::SUCCESS)
        }
        "restore" => {
            init_logging(args, false)?;
            let opts = RestoreOptions {
                dir: images_dir(args),
                detached: args.restore_detached,
                shell_job: args.shell_job,
                pidfile: args.pidfile.clone(),
                new_pid_ns: args.new_pid_ns,
                validate_files: !args.skip_file_validation,
                check_file_rwx: !args.skip_file_rwx_check,
                tcp_close: args.tcp_close,
                network_lock: network_lock(args)?,
            };
            match stasis_restore::restore(&opts).map_err(|e| e.to_string())? {
                RestoreOutcome::Detached(pid) => {
                    log::info!("restored process {pid} runs detached");
                    Ok(ExitCode::SUCCESS)
                }
                RestoreOutcome::Exited(pid, status) => {
                    log::info!("restored process {pid} ended: {status:?}");
                    Ok(match status {
                        ExitStatus::Code(c) => ExitCode::from(c as u8),
                        ExitStatus::Signal(s) => ExitCode::from(128u8.wrapping_add(s as u8)),
                    })
                }
            }
        }
        "check" => {
            logger::init(None, args.verbosity);
            Ok(check::run())
        }
        "show" => {
            let target = args
                .positional
                .first()
                .map(PathBuf::from)
                .unwrap_or_else(|| images_dir(args));
            show::run(Path::new(&target), args.json).map(|()| ExitCode::SUCCESS)
        }
        "demo" => {
            logger::init(None, args.verbosity);
            demo::run(args.positional.first().map(Path::new)).map(|()| ExitCode::SUCCESS)
        }
        "bench" => {
            logger::init(None, args.verbosity);
            let mib = args.mib.unwrap_or(1024);
            let runs = args.runs.unwrap_or(3).max(1);
            bench::run(args.positional.first().map(Path::new), mib, runs)
                .map(|()| ExitCode::SUCCESS)
        }
        // The built-in workload of demo and bench (not a CRIU command).
        "workload" => {
            let report = args.report.clone().ok_or("workload needs --report FILE")?;
            let code = workload::run(&workload::Shape {
                mib: args.mib.unwrap_or(64),
                ready_fd: args.ready_fd,
                report: &report,
                tick_ms: args.tick_ms.unwrap_or(100),
                children: args.children.unwrap_or(0),
                threads: args.threads.unwrap_or(0),
                connections: args.connections.unwrap_or(0),
            });
            Ok(ExitCode::from(code))
        }
        other => Err(format!("unknown command '{other}' (try --help)")),
    }
}
