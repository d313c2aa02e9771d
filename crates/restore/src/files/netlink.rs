//! Netlink sockets, made again by stasis before any process is forked: created with their
//! protocol and type, bound to their port id (the same number, whoever picked it; a port
//! id taken by another socket of this network namespace is an error), made members of
//! every group, connected to their peer. Once every netlink socket exists
//! ([`Netlinks::finish`]), the messages queued on them are sent again by their senders
//! (sockets of the tree, bound to the senders' port ids already), then the options are
//! set (after the refill, so the buffer sizes and filters are the saved ones whatever the
//! refill needed). The generic option setter is shared with packet sockets.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use stasis_images::pb;
use stasis_sys::netlink::{self as nl, NlAddr};
use stasis_sys::{Pid, inet, net};

use super::OpenCtx;
use crate::error::{RestoreError, Result, SysContext, invalid};

/// `SOCK_SNDBUF_LOCK` / `SOCK_RCVBUF_LOCK`: the size was set by the program.
const SNDBUF_LOCK: u32 = 1;
const RCVBUF_LOCK: u32 = 2;

/// Gives a socket of any family CRIU's generic options and the `SOL_SOCKET` ones of
/// `stasis_opts`: filter first, then the options in their order, buffer sizes (the FORCE
/// forms, past the sysctl caps) and which of them the program had set, timeouts.
pub(crate) fn set_generic(
    pid: Pid,
    fd: BorrowedFd<'_>,
    o: Option<&pb::SkOptsEntry>,
    stasis_opts: &[pb::StasisSockoptEntry],
    what: &str,
) -> Result<()> {
    let Some(o) = o else { return Ok(()) };
    if !o.so_filter.is_empty() {
        inet::attach_filter(fd, &o.so_filter).ctx(pid, || format!("{what}: SO_ATTACH_FILTER"))?;
    }
    let set = |name: i32, v: i32| {
        net::set_int_opt(fd, libc::SOL_SOCKET, name, v).ctx(pid, || {
            format!("{what}: setsockopt(SOL_SOCKET, {name}, {v})")
        })
    };
    // CRIU's fields where they say more than a fresh socket (a CRIU image has nothing
    // else); stasis's list repeats them.
    for (flag, name) in [
        (o.so_passcred, libc::SO_PASSCRED),
        (o.so_passsec, libc::SO_PASSSEC),
    ] {
        if flag == Some(true) {
            set(name, 1)?;
        }
    }
    for (v, name) in [
        (o.so_priority, libc::SO_PRIORITY),
        (o.so_mark, libc::SO_MARK),
    ] {
        if let Some(v) = v.filter(|v| *v != 0) {
            set(name, v as i32)?;
        }
    }
    for s in stasis_opts.iter().filter(|s| s.level == libc::SOL_SOCKET) {
        inet::set_opt_bytes(fd, s.level, s.name, &s.value).ctx(pid, || {
            format!("{what}: setsockopt(SOL_SOCKET, {})", s.name)
        })?;
    }
    // The exact sizes (whatever was set to make room meanwhile), then which of them the
    // program had set: sizes the kernel tunes itself stay its to tune.
    set(libc::SO_SNDBUFFORCE, (o.so_sndbuf / 2) as i32)?;
    set(libc::SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32)?;
    let lock = o.so_buf_lock.unwrap_or(SNDBUF_LOCK | RCVBUF_LOCK);
    set(libc::SO_BUF_LOCK, lock as i32)?;
    super::inet::set_timeouts(pid, fd, o, what)?;
    Ok(())
}

/// The netlink sockets made so far, with a copy of each.
#[derive(Debug, Default)]
pub(crate) struct Netlinks {
    made: Vec<(Pid, pb::NetlinkSkEntry, OwnedFd)>,
}

impl Netlinks {
    /// The description of netlink socket `e`.
    pub fn open(&mut self, cx: &OpenCtx<'_>, e: &pb::NetlinkSkEntry) -> Result<OwnedFd> {
        let pid = cx.pid;
        let what = format!("netlink socket:[{}]", e.ino);
        let bad = |reason: String| invalid("files.img", format!("{what}: {reason}"));
        let kind = e.stasis_type.map_or(libc::SOCK_RAW, |t| t as i32);
        if kind != libc::SOCK_RAW && kind != libc::SOCK_DGRAM {
            return Err(bad(format!("socket type {kind}")));
        }
        if e.dst_group > 32 {
            return Err(bad(format!("peer group {}", e.dst_group)));
        }
        let sock = inet::socket(libc::AF_NETLINK, kind, e.protocol as i32).ctx(pid, || {
            format!("create {what} (netlink protocol {})", e.protocol)
        })?;
        let fd = sock.as_fd();
        if e.portid != 0 {
            match nl::bind(
                fd,
                NlAddr {
                    pid: e.portid,
                    groups: 0,
                },
            ) {
                Err(stasis_sys::Errno(libc::EADDRINUSE)) => {
                    return Err(RestoreError::Unsupported {
                        pid,
                        resource: what,
                        reason: format!(
                            "its port id {} is taken by another socket of netlink protocol {} \
                             in this network namespace",
                            e.portid, e.protocol
                        ),
                    });
                }
                other => other.ctx(pid, || format!("bind {what} to port id {}", e.portid))?,
            }
        }
        for g in nl::bitmap_groups(&e.groups) {
            net::set_int_opt(fd, nl::SOL_NETLINK, nl::NETLINK_ADD_MEMBERSHIP, g as i32)
                .ctx(pid, || format!("{what}: join group {g}"))?;
        }
        if e.state == 1 {
            let peer = NlAddr {
                pid: e.dst_portid,
                groups: if e.dst_group > 0 {
                    1 << (e.dst_group - 1)
                } else {
                    0
                },
            };
            nl::connect(fd, peer).ctx(pid, || {
                format!(
                    "connect {what} to port id {} group {}",
                    e.dst_portid, e.dst_group
                )
            })?;
        }
        let keep = sock
            .try_clone()
            .map_err(|err| RestoreError::Other(format!("process {pid}: dup {what}: {err}")))?;
        self.made.push((pid, e.clone(), keep));
        cx.finish(
            sock,
            e.flags,
            libc::O_NONBLOCK | libc::O_ASYNC,
            e.fown.as_ref(),
            &what,
        )
    }

    /// Refills the queues (each message from its sender), then sets every socket's
    /// options.
    pub fn finish(&mut self, images: &crate::image::Images) -> Result<()> {
        for (pid, e, sock) in &self.made {
            let Some(queue) = images.file_data.sk_queues.get(&e.id) else {
                continue;
            };
            let pid = *pid;
            let what = || format!("put back the messages queued on netlink socket:[{}]", e.ino);
            if e.portid == 0 {
                return Err(invalid(
                    "sk-queues.img",
                    format!(
                        "messages for netlink socket:[{}], which has no port id",
                        e.ino
                    ),
                ));
            }
            // Room for all; the saved size is set with the options below.
            net::set_int_opt(
                sock.as_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                1 << 30,
            )
            .ctx(pid, what)?;
            for (m, data) in queue {
                let from = m.stasis_from.as_deref().and_then(|s| s.parse::<u32>().ok());
                let sender = from.and_then(|from| {
                    self.made
                        .iter()
                        .find(|(_, s, _)| s.protocol == e.protocol && s.portid == from)
                });
                let Some((_, _, sender)) = sender else {
                    return Err(invalid(
                        "sk-queues.img",
                        format!(
                            "a message for netlink socket:[{}] from port id {:?}, which no \
                             socket of the tree has",
                            e.ino, m.stasis_from
                        ),
                    ));
                };
                let creds = m.stasis_ucred.as_ref().map(|u| (u.pid, u.uid, u.gid));
                // Credentials naming a process that does not exist (yet) are refused: the
                // message goes without them (the receiver sees stasis's).
                let sent = match nl::send_to(sender.as_fd(), e.portid, data, creds) {
                    Err(stasis_sys::Errno(libc::ESRCH)) if creds.is_some() => {
                        nl::send_to(sender.as_fd(), e.portid, data, None)
                    }
                    other => other,
                };
                sent.ctx(pid, what)?;
            }
        }
        for (pid, e, sock) in &self.made {
            let what = format!("netlink socket:[{}]", e.ino);
            for s in e.stasis_opts.iter().filter(|s| s.level == nl::SOL_NETLINK) {
                inet::set_opt_bytes(sock.as_fd(), s.level, s.name, &s.value).ctx(*pid, || {
                    format!("{what}: setsockopt(SOL_NETLINK, {})", s.name)
                })?;
            }
            set_generic(*pid, sock.as_fd(), e.opts.as_ref(), &e.stasis_opts, &what)?;
        }
        self.made.clear();
        Ok(())
    }
}
