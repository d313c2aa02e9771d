//! `/proc/PID/stat`: scheduling and mm fields in one line.

use std::path::PathBuf;

use super::{ProcError, ProcResult, path, read_text};
use crate::Pid;

/// The fields of `/proc/PID/stat` that stasis uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Process id.
    pub pid: Pid,
    /// Command name (up to 15 bytes, may contain spaces and parentheses).
    pub comm: String,
    /// State letter (R, S, D, T, t, Z, X, ...).
    pub state: u8,
    /// Parent pid.
    pub ppid: Pid,
    /// Process group id.
    pub pgrp: Pid,
    /// Session id.
    pub session: Pid,
    /// Controlling terminal device number.
    pub tty_nr: u32,
    /// Foreground process group of the controlling terminal.
    pub tpgid: Pid,
    /// Kernel task flags (PF_*).
    pub flags: u32,
    /// Nice value.
    pub nice: i64,
    /// Number of threads.
    pub num_threads: u64,
    /// Real-time priority.
    pub rt_priority: u32,
    /// Scheduling policy.
    pub policy: u32,
    /// Start of the text segment.
    pub start_code: u64,
    /// End of the text segment.
    pub end_code: u64,
    /// Start (bottom) of the main stack.
    pub start_stack: u64,
    /// Signal sent to the parent when the process dies.
    pub exit_signal: i32,
    /// Start of the data segment.
    pub start_data: u64,
    /// End of the data segment.
    pub end_data: u64,
    /// Start of the brk heap.
    pub start_brk: u64,
    /// Start of the argument strings.
    pub arg_start: u64,
    /// End of the argument strings.
    pub arg_end: u64,
    /// Start of the environment strings.
    pub env_start: u64,
    /// End of the environment strings.
    pub env_end: u64,
    /// Exit code (for zombies).
    pub exit_code: i32,
}

/// Parses the text of `/proc/PID/stat`.
pub fn parse_stat(text: &str, file: PathBuf) -> ProcResult<Stat> {
    let bad = |detail: &str| ProcError::Format {
        path: file.clone(),
        detail: detail.to_owned(),
    };
    // comm is in parentheses and may itself contain ") ", so split at the last ')'.
    let open = text.find('(').ok_or_else(|| bad("no '('"))?;
    let close = text.rfind(')').ok_or_else(|| bad("no ')'"))?;
    if close < open {
        return Err(bad("')' before '('"));
    }
    let pid = text[..open].trim().parse().map_err(|_| bad("bad pid"))?;
    let comm = text[open + 1..close].to_owned();
    // Field 3 (state) is the first word after the comm.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    if fields.len() < 50 {
        return Err(bad("too few fields"));
    }
    let field = |n: usize| -> &str { fields[n - 3] };
    let num = |n: usize| -> ProcResult<i64> {
        field(n)
            .parse::<i64>()
            .map_err(|_| bad(&format!("field {n} {:?}", field(n))))
    };
    let unum = |n: usize| -> ProcResult<u64> {
        field(n)
            .parse::<u64>()
            .map_err(|_| bad(&format!("field {n} {:?}", field(n))))
    };
    Ok(Stat {
        pid,
        comm,
        state: field(3).as_bytes().first().copied().unwrap_or(b'?'),
        ppid: num(4)? as Pid,
        pgrp: num(5)? as Pid,
        session: num(6)? as Pid,
        tty_nr: num(7)? as u32,
        tpgid: num(8)? as Pid,
        flags: unum(9)? as u32,
        nice: num(19)?,
        num_threads: unum(20)?,
        start_code: unum(26)?,
        end_code: unum(27)?,
        start_stack: unum(28)?,
        exit_signal: num(38)? as i32,
        rt_priority: unum(40)? as u32,
        policy: unum(41)? as u32,
        start_data: unum(45)?,
        end_data: unum(46)?,
        start_brk: unum(47)?,
        arg_start: unum(48)?,
        arg_end: unum(49)?,
        env_start: unum(50)?,
        env_end: unum(51)?,
        exit_code: num(52)? as i32,
    })
}

/// Reads `/proc/PID/stat`.
pub fn read_stat(pid: Pid) -> ProcResult<Stat> {
    let p = path(pid, "stat");
    parse_stat(&read_text(p.clone())?, p)
}

/// What a thread that is not stopping is doing in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Suspended in `vfork()` (or a clone with `CLONE_VFORK`) until its child execs or
    /// exits: the wait ignores everything but SIGKILL, ptrace stops included.
    Vfork,
    /// In uninterruptible sleep in the named kernel function.
    Uninterruptible(String),
    /// Anything else (running, or a sleep that will notice a stop request).
    Other,
}

/// What thread `tid` of process `pid` is blocked in, from `/proc/PID/task/TID/{stat,
/// syscall,wchan}`.
pub fn blocked_in(pid: Pid, tid: Pid) -> Blocked {
    let task = |name: &str| path(pid, &format!("task/{tid}/{name}"));
    let state = read_text(task("stat"))
        .ok()
        .and_then(|t| {
            t.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .and_then(|rest| rest.bytes().next());
    if state != Some(b'D') {
        return Blocked::Other;
    }
    // "NR arg0 ... arg5 sp pc" while in a system call.
    let syscall = read_text(task("syscall")).unwrap_or_default();
    let mut words = syscall.split_whitespace();
    let nr = words.next().and_then(|w| w.parse::<i64>().ok());
    let flags = words
        .next()
        .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    let vfork = match nr {
        Some(58) => true,                                  // vfork
        Some(56) => flags & libc::CLONE_VFORK as u64 != 0, // clone
        Some(435) => true, // clone3 sleeps in D state only for CLONE_VFORK
        _ => false,
    };
    if vfork {
        return Blocked::Vfork;
    }
    let wchan = read_text(task("wchan")).unwrap_or_default();
    Blocked::Uninterruptible(if wchan.is_empty() || wchan == "0" {
        "an unknown function".into()
    } else {
        wchan
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_with_parens_and_spaces() {
        let text = "4242 (a) b (c) S 1 4242 4242 34816 4242 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    123 4096 100 18446744073709551615 94000 95000 140000 0 0 0 0 4096 0 0 0 0 17 \
                    1 0 0 0 0 0 96000 97000 98000 140001 140002 140003 140004 0\n";
        let s = parse_stat(text, "x".into()).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "a) b (c");
        assert_eq!(s.state, b'S');
        assert_eq!((s.ppid, s.pgrp, s.session), (1, 4242, 4242));
        assert_eq!(
            (s.start_code, s.end_code, s.start_stack),
            (94000, 95000, 140000)
        );
        assert_eq!(
            (s.start_data, s.end_data, s.start_brk),
            (96000, 97000, 98000)
        );
        assert_eq!(
            (s.arg_start, s.arg_end, s.env_start, s.env_end),
            (140001, 140002, 140003, 140004)
        );
        assert_eq!(s.exit_signal, 17);
    }

    #[test]
    fn truncated_is_an_error() {
        assert!(parse_stat("1 (x) S 1 1", "x".into()).is_err());
        assert!(parse_stat("garbage", "x".into()).is_err());
    }

    #[test]
    fn own_stat() {
        let s = read_stat(std::process::id() as Pid).unwrap();
        assert_eq!(s.pid, std::process::id() as Pid);
        assert!(s.start_brk > 0);
    }
}
