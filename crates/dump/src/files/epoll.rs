//! epoll instances: every registered target with its event mask and data, from the
//! `tfd:` lines of `/proc/PID/fdinfo/N`.
//!
//! The kernel keys a registration by (file, fd number). The number may have been closed or
//! reused since (the file lives on through a dup or another fd): `kcmp(KCMP_EPOLL_TFD)`
//! tells whether the file registered under a number is the one at that number now, and
//! which other fd of the process holds it otherwise (`stasis_target_fd`).

use stasis_images::pb;
use stasis_sys::{Pid, process};

use super::{Fd, FileTable};
use crate::error::{DumpError, Result};

/// An epoll instance whose targets are resolved once the process's fd table is known.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The epoll's file id.
    id: u32,
    /// Its fd number in the process.
    epfd: i32,
    /// The targets as fdinfo lists them.
    targets: Vec<pb::EventpollTfdEntry>,
}

/// Parses one `tfd: N events: X data: Y pos:P ino:I sdev:D` line (the last three are
/// missing on old kernels).
fn parse_target(line: &str, id: u32) -> Option<pb::EventpollTfdEntry> {
    let fields = super::fdinfo_fields(line);
    let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    Some(pb::EventpollTfdEntry {
        id,
        tfd: get("tfd")?.parse().ok()?,
        events: u32::from_str_radix(get("events")?, 16).ok()?,
        data: u64::from_str_radix(get("data")?, 16).ok()?,
        dev: get("sdev").and_then(|v| u32::from_str_radix(v, 16).ok()),
        inode: get("ino").and_then(|v| u64::from_str_radix(v, 16).ok()),
        pos: get("pos").and_then(|v| v.parse().ok()),
        stasis_target_fd: None,
    })
}

/// An epoll fd; its targets are filled in by [`resolve_targets`].
pub(crate) fn dump(table: &mut FileTable, f: &Fd) -> Result<(u32, Pending)> {
    let (flags, fown) = (f.flags(), f.fown());
    let id = table.add(pb::FdTypes::Eventpoll, |id, e| {
        e.epfd = Some(pb::EventpollFileEntry {
            id,
            flags,
            fown: Some(fown),
            tfd: Vec::new(),
        });
    });
    let mut targets = Vec::new();
    for line in super::fdinfo_lines(f, "tfd") {
        let t = parse_target(&line, id)
            .ok_or_else(|| f.unsupported(format!("cannot parse the epoll target line {line:?}")))?;
        targets.push(t);
    }
    Ok((
        id,
        Pending {
            id,
            epfd: f.fd,
            targets,
        },
    ))
}

/// Finds where each target of `ep` is open in `pid` and stores the targets.
pub(crate) fn resolve_targets(
    table: &mut FileTable,
    pid: Pid,
    fds: &[pb::FdinfoEntry],
    ep: Pending,
) -> Result<()> {
    let mut targets = ep.targets;
    for t in &mut targets {
        let here =
            |fd: u32| process::kcmp_epoll_target(pid, fd as i32, ep.epfd, t.tfd as i32) == Ok(0);
        if fds.iter().any(|e| e.fd == t.tfd) && here(t.tfd) {
            continue;
        }
        let Some(other) = fds.iter().map(|e| e.fd).find(|fd| here(*fd)) else {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("epoll fd {}", ep.epfd),
                reason: format!(
                    "its target registered as fd {} is not open in the process any more",
                    t.tfd
                ),
            });
        };
        t.stasis_target_fd = Some(other);
    }
    if let Some(e) = table
        .entries
        .iter_mut()
        .find(|e| e.id == ep.id)
        .and_then(|e| e.epfd.as_mut())
    {
        e.tfd = targets;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_lines() {
        let t = parse_target(
            "tfd:        5 events:       19 data:                7  pos:0 ino:3fe sdev:f",
            3,
        )
        .unwrap();
        assert_eq!((t.tfd, t.events, t.data), (5, 0x19, 7));
        assert_eq!((t.pos, t.inode, t.dev), (Some(0), Some(0x3fe), Some(0xf)));
        let old = parse_target("tfd: 9 events: 1 data: ffffffffffffffff", 3).unwrap();
        assert_eq!((old.tfd, old.data, old.inode), (9, u64::MAX, None));
        assert!(parse_target("tfd: x events: 1 data: 0", 3).is_none());
    }
}
