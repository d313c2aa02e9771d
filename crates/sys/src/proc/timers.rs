//! `/proc/PID/timers`: the POSIX timers of a process (ids, signal, notification, clock).

use std::path::PathBuf;

use super::{ProcError, ProcResult, path, read_text};
use crate::Pid;

/// One POSIX timer as `/proc/PID/timers` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PosixTimer {
    /// Timer id (timer_create's result).
    pub id: i32,
    /// Signal number sent on expiry.
    pub signo: i32,
    /// The sigev_value sent along.
    pub sival: u64,
    /// sigev_notify: SIGEV_SIGNAL (0), SIGEV_NONE (1), SIGEV_THREAD (2), plus
    /// SIGEV_THREAD_ID (4) when a thread is the target.
    pub notify: i32,
    /// The target pid or tid.
    pub target: Pid,
    /// The clock.
    pub clock: i32,
}

/// SIGEV_THREAD_ID.
pub const SIGEV_THREAD_ID: i32 = 4;

/// Parses `/proc/PID/timers`.
pub fn parse_timers(text: &str, file: PathBuf) -> ProcResult<Vec<PosixTimer>> {
    let bad = |detail: String| ProcError::Format {
        path: file.clone(),
        detail,
    };
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key == "ID" {
            out.push(PosixTimer {
                id: value.parse().map_err(|_| bad(format!("ID {value:?}")))?,
                ..Default::default()
            });
            continue;
        }
        let t = out
            .last_mut()
            .ok_or_else(|| bad(format!("{key} before any ID")))?;
        match key {
            "signal" => {
                let (sig, val) = value
                    .split_once('/')
                    .ok_or_else(|| bad(format!("signal {value:?}")))?;
                t.signo = sig.parse().map_err(|_| bad(format!("signal {value:?}")))?;
                t.sival =
                    u64::from_str_radix(val, 16).map_err(|_| bad(format!("signal {value:?}")))?;
            }
            "notify" => {
                let (kind, target) = value
                    .split_once('/')
                    .ok_or_else(|| bad(format!("notify {value:?}")))?;
                let base = match kind {
                    "signal" => 0,
                    "none" => 1,
                    "thread" => 2,
                    _ => return Err(bad(format!("notify {value:?}"))),
                };
                let (who, id) = target
                    .split_once('.')
                    .ok_or_else(|| bad(format!("notify {value:?}")))?;
                t.notify = base | if who == "tid" { SIGEV_THREAD_ID } else { 0 };
                t.target = id.parse().map_err(|_| bad(format!("notify {value:?}")))?;
            }
            "ClockID" => {
                t.clock = value
                    .parse()
                    .map_err(|_| bad(format!("ClockID {value:?}")))?
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Reads `/proc/PID/timers`.
pub fn read_timers(pid: Pid) -> ProcResult<Vec<PosixTimer>> {
    let p = path(pid, "timers");
    parse_timers(&read_text(p.clone())?, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notification_kind() {
        let text = "ID: 8\nsignal: 0/0000000000000000\nnotify: none/pid.31252\nClockID: 1\n\
                    ID: 7\nsignal: 14/00000000deadbeef\nnotify: signal/tid.31253\nClockID: 2\n\
                    ID: 42\nsignal: 10/0000000000000001\nnotify: signal/pid.31252\nClockID: 0\n";
        let t = parse_timers(text, "x".into()).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].id, t[0].notify, t[0].clock, t[0].target),
            (8, 1, 1, 31252)
        );
        assert_eq!(
            (t[1].signo, t[1].sival, t[1].notify),
            (14, 0xdeadbeef, SIGEV_THREAD_ID)
        );
        assert_eq!(
            (t[2].id, t[2].signo, t[2].notify, t[2].clock),
            (42, 10, 0, 0)
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_timers("signal: 1/0\n", "x".into()).is_err());
        assert!(parse_timers("ID: 1\nnotify: bogus/pid.1\n", "x".into()).is_err());
    }
}
