//! CRIU-compatible command line parsing.
//!
//! CRIU parses with `getopt_long`: options and the command may come in any order, short
//! options cluster (`-Rj`), take attached or separate values (`-t1`, `-t 1`), `-v` takes an
//! optional attached level (`-v4`, `-vvv`), long options take `--opt=value` or
//! `--opt value`, boolean long options have `--no-` forms, and unambiguous prefixes of
//! long options are accepted. This parser does the same for the options stasis knows;
//! anything else is an error naming the option.

use std::path::PathBuf;

/// CRIU's default log level (warnings).
pub const DEFAULT_VERBOSITY: u8 = 2;

/// Everything the command line can say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The command (dump, restore, check, show, ...).
    pub command: Option<String>,
    /// Non-option arguments after the command.
    pub positional: Vec<String>,
    /// `-t/--tree PID`.
    pub tree: Option<i32>,
    /// `-D/--images-dir DIR`.
    pub images_dir: Option<PathBuf>,
    /// `-W/--work-dir DIR`.
    pub work_dir: Option<PathBuf>,
    /// `-o/--log-file FILE`.
    pub log_file: Option<PathBuf>,
    /// `-v[N]` log level, 0..=4 (more is 4).
    pub verbosity: u8,
    /// `-R/--leave-running`.
    pub leave_running: bool,
    /// `-s/--leave-stopped`.
    pub leave_stopped: bool,
    /// `-j/--shell-job`.
    pub shell_job: bool,
    /// `-d/--restore-detached` (also `--daemon`).
    pub restore_detached: bool,
    /// `--pidfile FILE`.
    pub pidfile: Option<PathBuf>,
    /// `--new-pid-ns` (restore; not in CRIU): restore into a new pid namespace.
    pub new_pid_ns: bool,
    /// `--link-remap` (dump): deleted files with other links are reopened through a link.
    pub link_remap: bool,
    /// `--ghost-limit SIZE` (dump): the largest deleted file whose contents are saved.
    pub ghost_limit: Option<u64>,
    /// `--file-locks` (dump): save and restore file locks.
    pub file_locks: bool,
    /// `--skip-file-validation` (restore; not in CRIU): files whose size or mtime changed
    /// since the dump are restored anyway.
    pub skip_file_validation: bool,
    /// `--skip-file-rwx-check` (restore): permission bits of files may differ.
    pub skip_file_rwx_check: bool,
    /// `--json` (show).
    pub json: bool,
    /// `-h/--help`.
    pub help: bool,
    /// `-V/--version`.
    pub version: bool,
    /// `--mib N` (bench, workload): memory size.
    pub mib: Option<u64>,
    /// `--runs N` (bench).
    pub runs: Option<usize>,
    /// `--ready-fd FD` (workload): where to signal readiness.
    pub ready_fd: Option<i32>,
    /// `--tick-ms N` (workload).
    pub tick_ms: Option<u64>,
    /// `--report FILE` (workload).
    pub report: Option<PathBuf>,
    /// `--children N` (workload): forked children sharing its memory.
    pub children: Option<usize>,
    /// `--threads N` (workload): extra threads.
    pub threads: Option<usize>,
    /// `--connections N` (workload): TCP connections over loopback.
    pub connections: Option<usize>,
    /// `--tcp-established`: save TCP connections.
    pub tcp_established: bool,
    /// `--skip-in-flight`: leave connections waiting to be accepted behind.
    pub skip_in_flight: bool,
    /// `--tcp-close`: TCP connections are restored closed.
    pub tcp_close: bool,
    /// `--network-lock METHOD`.
    pub network_lock: Option<String>,
    /// `--ext-unix-sk` (`-x`): datagram unix sockets connected to named sockets outside
    /// the tree are allowed (connected again by name at restore).
    pub ext_unix_sk: bool,
    /// Options accepted for compatibility that change nothing for the state stasis
    /// supports today (e.g. `--tcp-established` for a tree without TCP connections).
    pub accepted: Vec<String>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            command: None,
            positional: Vec::new(),
            tree: None,
            images_dir: None,
            work_dir: None,
            log_file: None,
            verbosity: DEFAULT_VERBOSITY,
            leave_running: false,
            leave_stopped: false,
            shell_job: false,
            restore_detached: false,
            pidfile: None,
            new_pid_ns: false,
            link_remap: false,
            ghost_limit: None,
            file_locks: false,
            skip_file_validation: false,
            skip_file_rwx_check: false,
            json: false,
            help: false,
            version: false,
            mib: None,
            runs: None,
            ready_fd: None,
            tick_ms: None,
            report: None,
            children: None,
            threads: None,
            connections: None,
            tcp_established: false,
            skip_in_flight: false,
            tcp_close: false,
            network_lock: None,
            ext_unix_sk: false,
            accepted: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HasArg {
    No,
    Required,
    Optional,
}

#[derive(Clone, Copy, Debug)]
enum Key {
    Tree,
    ImagesDir,
    WorkDir,
    LogFile,
    Verbosity,
    LeaveRunning,
    LeaveStopped,
    ShellJob(bool),
    Detached(bool),
    Pidfile,
    Json,
    Help,
    Version,
    Mib,
    Runs,
    ReadyFd,
    TickMs,
    NewPidNs,
    LinkRemap(bool),
    GhostLimit,
    FileLocks(bool),
    SkipFileValidation,
    SkipFileRwxCheck,
    Children,
    Threads,
    Connections,
    Report,
    TcpEstablished(bool),
    SkipInFlight,
    TcpClose,
    NetworkLock,
    ExtUnixSk,
    /// Compatibility flag with no effect yet.
    Accepted,
}

struct Spec {
    long: &'static str,
    short: Option<char>,
    has_arg: HasArg,
    key: Key,
}

const fn spec(long: &'static str, short: Option<char>, has_arg: HasArg, key: Key) -> Spec {
    Spec {
        long,
        short,
        has_arg,
        key,
    }
}

const SPECS: &[Spec] = &[
    spec("tree", Some('t'), HasArg::Required, Key::Tree),
    spec("images-dir", Some('D'), HasArg::Required, Key::ImagesDir),
    spec("work-dir", Some('W'), HasArg::Required, Key::WorkDir),
    spec("log-file", Some('o'), HasArg::Required, Key::LogFile),
    spec("verbosity", Some('v'), HasArg::Optional, Key::Verbosity),
    spec("leave-running", Some('R'), HasArg::No, Key::LeaveRunning),
    spec("leave-stopped", Some('s'), HasArg::No, Key::LeaveStopped),
    spec("shell-job", Some('j'), HasArg::No, Key::ShellJob(true)),
    spec("no-shell-job", None, HasArg::No, Key::ShellJob(false)),
    spec(
        "restore-detached",
        Some('d'),
        HasArg::No,
        Key::Detached(true),
    ),
    spec(
        "no-restore-detached",
        None,
        HasArg::No,
        Key::Detached(false),
    ),
    spec("daemon", None, HasArg::No, Key::Detached(true)),
    spec("no-daemon", None, HasArg::No, Key::Detached(false)),
    spec("pidfile", None, HasArg::Required, Key::Pidfile),
    spec("new-pid-ns", None, HasArg::No, Key::NewPidNs),
    spec("link-remap", None, HasArg::No, Key::LinkRemap(true)),
    spec("no-link-remap", None, HasArg::No, Key::LinkRemap(false)),
    spec("ghost-limit", None, HasArg::Required, Key::GhostLimit),
    spec("file-locks", Some('l'), HasArg::No, Key::FileLocks(true)),
    spec("no-file-locks", None, HasArg::No, Key::FileLocks(false)),
    spec(
        "skip-file-validation",
        None,
        HasArg::No,
        Key::SkipFileValidation,
    ),
    spec(
        "skip-file-rwx-check",
        None,
        HasArg::No,
        Key::SkipFileRwxCheck,
    ),
    spec("json", None, HasArg::No, Key::Json),
    spec("help", Some('h'), HasArg::No, Key::Help),
    spec("version", Some('V'), HasArg::No, Key::Version),
    // stasis's own commands (bench, the built-in workload).
    spec("mib", None, HasArg::Required, Key::Mib),
    spec("runs", None, HasArg::Required, Key::Runs),
    spec("ready-fd", None, HasArg::Required, Key::ReadyFd),
    spec("tick-ms", None, HasArg::Required, Key::TickMs),
    spec("report", None, HasArg::Required, Key::Report),
    spec("children", None, HasArg::Required, Key::Children),
    spec("threads", None, HasArg::Required, Key::Threads),
    spec("connections", None, HasArg::Required, Key::Connections),
    // Accepted for compatibility with scripts written for CRIU. They allow kinds of state
    // (or tune behaviour) that stasis either handles without being asked or rejects with
    // a clear error when it meets them.
    spec(
        "tcp-established",
        None,
        HasArg::No,
        Key::TcpEstablished(true),
    ),
    spec(
        "no-tcp-established",
        None,
        HasArg::No,
        Key::TcpEstablished(false),
    ),
    spec("skip-in-flight", None, HasArg::No, Key::SkipInFlight),
    spec("network-lock", None, HasArg::Required, Key::NetworkLock),
    spec("ext-unix-sk", Some('x'), HasArg::Optional, Key::ExtUnixSk),
    spec("evasive-devices", None, HasArg::No, Key::Accepted),
    spec("manage-cgroups", None, HasArg::Optional, Key::Accepted),
    spec("display-stats", None, HasArg::No, Key::Accepted),
    spec("log-pid", None, HasArg::No, Key::Accepted),
    spec("tcp-close", None, HasArg::No, Key::TcpClose),
];

fn find_long(name: &str) -> Result<&'static Spec, String> {
    if let Some(s) = SPECS.iter().find(|s| s.long == name) {
        return Ok(s);
    }
    // getopt_long accepts any unambiguous prefix.
    let matches: Vec<&Spec> = SPECS.iter().filter(|s| s.long.starts_with(name)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("unknown option '--{name}'")),
        many => Err(format!(
            "option '--{name}' is ambiguous; possibilities: {}",
            many.iter()
                .map(|s| format!("'--{}'", s.long))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    }
}

fn number<T: std::str::FromStr>(v: String, shown: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("option '{shown}': bad number {v:?}"))
}

/// A size as CRIU reads one: a number with an optional K, M or G suffix.
fn size(v: String, shown: &str) -> Result<u64, String> {
    let (digits, shift) = match v.as_bytes().last() {
        Some(b'K' | b'k') => (&v[..v.len() - 1], 10),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 20),
        Some(b'G' | b'g') => (&v[..v.len() - 1], 30),
        _ => (v.as_str(), 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("option '{shown}': bad size {v:?}"))
}

fn apply(args: &mut Args, spec: &Spec, value: Option<String>, shown: &str) -> Result<(), String> {
    let need =
        |v: Option<String>| v.ok_or_else(|| format!("option '{shown}' requires an argument"));
    match spec.key {
        Key::Tree => {
            let v = need(value)?;
            let pid: i32 = v
                .parse()
                .map_err(|_| format!("option '{shown}': bad pid {v:?}"))?;
            if pid <= 0 {
                return Err(format!("option '{shown}': bad pid {v:?}"));
            }
            args.tree = Some(pid);
        }
        Key::ImagesDir => args.images_dir = Some(need(value)?.into()),
        Key::WorkDir => args.work_dir = Some(need(value)?.into()),
        Key::LogFile => args.log_file = Some(need(value)?.into()),
        Key::Verbosity => match value {
            None => args.verbosity = args.verbosity.saturating_add(1),
            // -vvv arrives as -v with the argument "vv".
            Some(v) if !v.is_empty() && v.bytes().all(|b| b == b'v') => {
                args.verbosity = args.verbosity.saturating_add(v.len() as u8 + 1);
            }
            Some(v) => {
                args.verbosity = v
                    .parse()
                    .map_err(|_| format!("option '{shown}': bad level {v:?}"))?;
            }
        },
        Key::LeaveRunning => args.leave_running = true,
        Key::LeaveStopped => args.leave_stopped = true,
        Key::ShellJob(b) => args.shell_job = b,
        Key::Detached(b) => args.restore_detached = b,
        Key::Pidfile => args.pidfile = Some(need(value)?.into()),
        Key::NewPidNs => args.new_pid_ns = true,
        Key::LinkRemap(b) => args.link_remap = b,
        Key::GhostLimit => args.ghost_limit = Some(size(need(value)?, shown)?),
        Key::FileLocks(b) => args.file_locks = b,
        Key::SkipFileValidation => args.skip_file_validation = true,
        Key::SkipFileRwxCheck => args.skip_file_rwx_check = true,
        Key::Json => args.json = true,
        Key::Help => args.help = true,
        Key::Version => args.version = true,
        Key::Mib => args.mib = Some(number(need(value)?, shown)?),
        Key::Runs => args.runs = Some(number(need(value)?, shown)?),
        Key::ReadyFd => args.ready_fd = Some(number(need(value)?, shown)?),
        Key::TickMs => args.tick_ms = Some(number(need(value)?, shown)?),
        Key::Report => args.report = Some(need(value)?.into()),
        Key::Children => args.children = Some(number(need(value)?, shown)?),
        Key::Threads => args.threads = Some(number(need(value)?, shown)?),
        Key::Connections => args.connections = Some(number(need(value)?, shown)?),
        Key::TcpEstablished(b) => args.tcp_established = b,
        Key::SkipInFlight => args.skip_in_flight = true,
        Key::TcpClose => args.tcp_close = true,
        Key::NetworkLock => args.network_lock = Some(need(value)?),
        Key::ExtUnixSk => {
            // CRIU's optional value names sockets by inode; stasis allows every one.
            if let Some(v) = value {
                log::debug!("--ext-unix-sk={v}: every external datagram peer is allowed");
            }
            args.ext_unix_sk = true;
        }
        Key::Accepted => args.accepted.push(format!("--{}", spec.long)),
    }
    Ok(())
}

/// Parses `argv` (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = argv.into_iter().peekable();
    let mut only_positional = false;
    while let Some(arg) = it.next() {
        if only_positional || arg == "-" || !arg.starts_with('-') {
            if args.command.is_none() {
                args.command = Some(arg);
            } else {
                args.positional.push(arg);
            }
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let spec = find_long(name)?;
            let shown = format!("--{}", spec.long);
            let value = match spec.has_arg {
                HasArg::No => {
                    if inline.is_some() {
                        return Err(format!("option '{shown}' doesn't allow an argument"));
                    }
                    None
                }
                HasArg::Optional => inline,
                HasArg::Required => match inline {
                    Some(v) => Some(v),
                    None => Some(
                        it.next()
                            .ok_or_else(|| format!("option '{shown}' requires an argument"))?,
                    ),
                },
            };
            apply(&mut args, spec, value, &shown)?;
            continue;
        }
        // A cluster of short options.
        let chars: Vec<char> = arg[1..].chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let spec = SPECS
                .iter()
                .find(|s| s.short == Some(c))
                .ok_or_else(|| format!("invalid option -- '{c}'"))?;
            let shown = format!("-{c}");
            let rest: String = chars[i + 1..].iter().collect();
            match spec.has_arg {
                HasArg::No => {
                    apply(&mut args, spec, None, &shown)?;
                    i += 1;
                }
                HasArg::Optional => {
                    apply(&mut args, spec, (!rest.is_empty()).then_some(rest), &shown)?;
                    break;
                }
                HasArg::Required => {
                    let value = if rest.is_empty() {
                        it.next()
                            .ok_or_else(|| format!("option requires an argument -- '{c}'"))?
                    } else {
                        rest
                    };
                    apply(&mut args, spec, Some(value), &shown)?;
                    break;
                }
            }
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn criu_style_dump() {
        let a = p("dump -t 1234 -D /tmp/img -o dump.log -v4 -R -j").unwrap();
        assert_eq!(a.command.as_deref(), Some("dump"));
        assert_eq!(a.tree, Some(1234));
        assert_eq!(a.images_dir, Some("/tmp/img".into()));
        assert_eq!(a.log_file, Some("dump.log".into()));
        assert_eq!(a.verbosity, 4);
        assert!(a.leave_running && a.shell_job);
    }

    #[test]
    fn options_before_command_and_long_forms() {
        let a = p("--images-dir=/x --tree=7 restore --restore-detached --pidfile /p").unwrap();
        assert_eq!(a.command.as_deref(), Some("restore"));
        assert_eq!(a.tree, Some(7));
        assert_eq!(a.images_dir, Some("/x".into()));
        assert!(a.restore_detached);
        assert_eq!(a.pidfile, Some("/p".into()));
    }

    #[test]
    fn clustered_and_attached_short_options() {
        let a = p("restore -dj -D/img -vvv").unwrap();
        assert!(a.restore_detached && a.shell_job);
        assert_eq!(a.images_dir, Some("/img".into()));
        assert_eq!(a.verbosity, DEFAULT_VERBOSITY + 3);
        let a = p("dump -Rt42").unwrap();
        assert!(a.leave_running);
        assert_eq!(a.tree, Some(42));
        let a = p("dump -v").unwrap();
        assert_eq!(a.verbosity, DEFAULT_VERBOSITY + 1);
        let a = p("dump -v0").unwrap();
        assert_eq!(a.verbosity, 0);
        let a = p("dump --verbosity=3").unwrap();
        assert_eq!(a.verbosity, 3);
    }

    #[test]
    fn prefixes_and_negations() {
        let a = p("dump --leave-r --shell-job --no-shell-job").unwrap();
        assert!(a.leave_running);
        assert!(!a.shell_job);
        assert!(p("dump --leave").unwrap_err().contains("ambiguous"));
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(
            p("dump --frobnicate").unwrap_err(),
            "unknown option '--frobnicate'"
        );
        assert_eq!(p("dump -q").unwrap_err(), "invalid option -- 'q'");
        assert!(p("dump -t").unwrap_err().contains("requires an argument"));
        assert!(p("dump -t abc").unwrap_err().contains("bad pid"));
        assert!(
            p("dump --leave-running=1")
                .unwrap_err()
                .contains("doesn't allow")
        );
    }

    #[test]
    fn compatibility_flags_are_recorded() {
        let a = p("dump --tcp-established -x --evasive-devices").unwrap();
        assert_eq!(a.accepted, ["--evasive-devices"]);
        assert!(a.tcp_established && a.ext_unix_sk);
        assert!(!p("dump -t 1").unwrap().ext_unix_sk);
    }

    #[test]
    fn network_options() {
        let a = p("dump --tcp-established --skip-in-flight --network-lock=skip").unwrap();
        assert!(a.tcp_established && a.skip_in_flight);
        assert_eq!(a.network_lock.as_deref(), Some("skip"));
        let r = p("restore --tcp-established --no-tcp-established").unwrap();
        assert!(!r.tcp_established && !r.tcp_close);
        assert!(p("restore --tcp-close").unwrap().tcp_close);
        assert!(
            p("dump --network-lock")
                .unwrap_err()
                .contains("requires an argument")
        );
    }

    #[test]
    fn file_options() {
        let a = p("dump --file-locks --ghost-limit 2M --link-remap").unwrap();
        assert!(a.file_locks && a.link_remap);
        assert_eq!(a.ghost_limit, Some(2 << 20));
        assert_eq!(
            p("dump --ghost-limit=4096").unwrap().ghost_limit,
            Some(4096)
        );
        assert!(p("dump --ghost-limit 1X").unwrap_err().contains("bad size"));
        let r = p("restore -l --skip-file-validation --skip-file-rwx-check").unwrap();
        assert!(r.file_locks && r.skip_file_validation && r.skip_file_rwx_check);
    }

    #[test]
    fn positional_after_command() {
        let a = p("show /tmp/img --json").unwrap();
        assert_eq!(a.positional, vec!["/tmp/img".to_owned()]);
        assert!(a.json);
    }
}
