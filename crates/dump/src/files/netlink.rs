//! Netlink sockets: protocol, type, bound port id, group memberships (all of them, from
//! `NETLINK_LIST_MEMBERSHIPS`), connected peer, `SOL_NETLINK` options and the generic
//! socket options, from `getsockname`/`getpeername`/`getsockopt` on our copy of the
//! description and `sock_diag` (`NETLINK_DIAG`: receive queue size, a dump in progress).
//!
//! Queued messages: netlink has no `SO_PEEK_OFF`, so only the first message of a queue can
//! be looked at without taking it. A `NETLINK_USERSOCK` socket (which no kernel code sends
//! to: every message comes from another socket) has its queue taken once every fd of the
//! tree is dumped, and put back at once, in order, each message sent again by the socket
//! that sent it (our copy of it, or of a socket outside the tree found by its inode, or a
//! socket bound to the sender's port id for a sender gone since) with its credentials;
//! the images keep them, and every sender must be a socket of the tree. Messages queued
//! by the kernel (replies, events) cannot be sent again by anyone else: a socket of
//! another protocol with a non-empty queue is refused, as CRIU refuses it, as are a dump
//! in progress (the kernel's callback state) and a pending overrun error (`ENOBUFS`,
//! seen with `poll`, which does not clear it).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use stasis_images::pb;
use stasis_sys::netlink::{self as nl, NetlinkDiag, NlAddr};
use stasis_sys::{Pid, inet, net, process};

use super::inet::{FreshOptions, check_netns, differing_options, int_opt};
use super::{Fd, FileTable};
use crate::error::{DumpError, Result, SysContext};

/// A socket whose receive queue is taken and put back at the end of the dump.
#[derive(Debug)]
struct Pending {
    pid: Pid,
    fd: i32,
    id: u32,
    protocol: u32,
    portid: u32,
    sock: OwnedFd,
}

/// The netlink sockets of one dump.
#[derive(Debug, Default)]
pub(crate) struct NetlinkSockets {
    /// `sock_diag`'s view, read once.
    diag: Option<HashMap<u32, NetlinkDiag>>,
    /// Fresh sockets' generic options (packet sockets use it too).
    pub fresh: FreshOptions,
    /// Our copies of the tree's bound sockets, by (protocol, port id).
    by_port: HashMap<(u32, u32), OwnedFd>,
    /// Sockets with messages queued.
    pending: Vec<Pending>,
    /// The queued messages, once taken: entry and bytes.
    pub queues: Vec<(pb::SkPacketEntry, Vec<u8>)>,
}

/// The generic (`SOL_SOCKET`) options of [`inet::OPTIONS`] as `getsockopt` gives them.
fn generic_values(fd: BorrowedFd<'_>) -> Vec<Option<Vec<u8>>> {
    inet::OPTIONS
        .iter()
        .map(|o| {
            (o.level == libc::SOL_SOCKET)
                .then(|| inet::get_opt_bytes(fd, o.level, o.name, o.size).ok())
                .flatten()
        })
        .collect()
}

/// The generic options of the socket at `f` that differ from a fresh socket's of the same
/// (family, type, protocol), made here.
pub(crate) fn generic_options(
    fresh: &mut FreshOptions,
    f: &Fd,
    key: (i32, i32, i32),
) -> Result<Vec<pb::StasisSockoptEntry>> {
    differing_options(fresh, f, key, generic_values, |_| true)
}

/// The membership bitmap of `groups` as 32-bit words, without trailing empty words.
fn group_words(groups: &[u32]) -> Vec<u32> {
    let mut words = Vec::new();
    for g in groups.iter().filter(|g| **g > 0) {
        let (w, bit) = (((g - 1) / 32) as usize, (g - 1) % 32);
        if words.len() <= w {
            words.resize(w + 1, 0);
        }
        words[w] |= 1 << bit;
    }
    words
}

/// A netlink socket open at `f`; returns its file id.
pub(crate) fn dump_socket(table: &mut FileTable, f: &Fd) -> Result<u32> {
    check_netns(f)?;
    let fd = f.file.as_fd();
    let kind = int_opt(f, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let protocol = int_opt(f, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    let what = |s: &str| format!("fd {}: {s}", f.fd);
    let local = nl::local(fd).ctx(f.pid, || what("getsockname"))?;
    let peer = nl::peer(fd).ctx(f.pid, || what("getpeername"))?;
    let groups = nl::memberships(fd).ctx(f.pid, || what("NETLINK_LIST_MEMBERSHIPS"))?;
    if table.netlink.diag.is_none() {
        table.netlink.diag =
            Some(nl::netlink_sockets().ctx(f.pid, || "sock_diag of netlink sockets".into())?);
    }
    let ino = f.st.st_ino as u32;
    // Sockets without a port id or a group are in no table sock_diag walks: nothing can
    // have reached them.
    let diag = table
        .netlink
        .diag
        .as_ref()
        .and_then(|m| m.get(&ino))
        .cloned();
    if diag
        .as_ref()
        .is_some_and(|d| d.flags & nl::FLAG_CB_RUNNING != 0)
    {
        return Err(f.unsupported(
            "a netlink dump is in progress on it (the kernel holds the rest of the answer); \
             it cannot be saved",
        ));
    }
    if nl::error_pending(fd).ctx(f.pid, || what("poll"))? {
        return Err(f.unsupported(
            "an error (an overrun's ENOBUFS) is pending on it; it cannot be set again on a \
             new socket",
        ));
    }
    let queued = diag.as_ref().map_or(0, |d| d.rmem);
    if queued > 0 && protocol != libc::NETLINK_USERSOCK {
        return Err(f.unsupported(format!(
            "{queued} bytes of messages are queued on it (netlink protocol {protocol}); the \
             kernel's replies and events cannot be sent again by anyone else"
        )));
    }
    if queued > 0 && local.pid == 0 {
        return Err(f.unsupported(
            "messages that reached it through its groups alone are queued on it; they cannot \
             be sent to it alone again",
        ));
    }
    // A datagram socket is connected once it has a peer: a port id or a group.
    let connected = diag
        .as_ref()
        .map_or(peer != NlAddr::default(), |d| d.state == 1);
    let dst_group = if peer.groups == 0 {
        0
    } else {
        peer.groups.trailing_zeros() + 1
    };
    let mut stasis_opts = Vec::new();
    for &(name, _) in nl::OPTIONS {
        let v = int_opt(f, nl::SOL_NETLINK, name)?;
        if v != 0 {
            stasis_opts.push(pb::StasisSockoptEntry {
                level: nl::SOL_NETLINK,
                name,
                value: v.to_ne_bytes().to_vec(),
            });
        }
    }
    stasis_opts.extend(generic_options(
        &mut table.netlink.fresh,
        f,
        (libc::AF_NETLINK, kind, protocol),
    )?);
    let opts = super::inet::sk_opts(f)?;
    let (flags, fown) = (f.flags(), f.fown());
    let id = table.add(pb::FdTypes::Netlinksk, |id, e| {
        e.nlsk = Some(pb::NetlinkSkEntry {
            id,
            ino,
            protocol: protocol as u32,
            state: u32::from(connected),
            flags,
            portid: local.pid,
            groups: group_words(&groups),
            dst_portid: peer.pid,
            dst_group,
            fown: Some(fown),
            opts: Some(opts),
            ns_id: None,
            stasis_type: Some(kind as u32),
            stasis_opts,
        });
    });
    let copy = || {
        f.file
            .try_clone()
            .map_err(|e| f.unsupported(format!("dup of the socket: {e}")))
    };
    if local.pid != 0 {
        table
            .netlink
            .by_port
            .insert((protocol as u32, local.pid), copy()?);
    }
    if queued > 0 {
        table.netlink.pending.push(Pending {
            pid: f.pid,
            fd: f.fd,
            id,
            protocol: protocol as u32,
            portid: local.pid,
            sock: copy()?,
        });
    }
    Ok(id)
}

/// A socket outside the tree bound to (protocol, port id), found by its inode among the
/// fds of every process.
fn outside_socket(protocol: u32, portid: u32) -> Option<OwnedFd> {
    let diag = nl::netlink_sockets().ok()?;
    let ino = diag
        .values()
        .find(|d| u32::from(d.protocol) == protocol && d.portid == portid)?
        .ino;
    let link = format!("socket:[{ino}]");
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<Pid>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for e in fds.flatten() {
            let is_it = std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == link.as_str());
            let n = e.file_name().to_string_lossy().parse::<i32>();
            if let (true, Ok(n)) = (is_it, n) {
                let pidfd = process::pidfd_open(pid).ok()?;
                return process::pidfd_getfd(&pidfd, n).ok();
            }
        }
    }
    None
}

impl NetlinkSockets {
    /// Takes the messages queued on the tree's `NETLINK_USERSOCK` sockets, puts them back
    /// at once in the same order (each sent again by its sender), and keeps them for
    /// `sk-queues.img`. Then every sender must be a socket of the tree.
    pub fn take_queues(&mut self) -> Result<()> {
        for p in std::mem::take(&mut self.pending) {
            let fd = p.sock.as_fd();
            let what = |s: &str| format!("fd {}: {s}", p.fd);
            let sys = |s: &str| {
                let w = what(s);
                move |errno| DumpError::Sys {
                    pid: p.pid,
                    what: w,
                    errno,
                }
            };
            // The credentials each message carries show only with SO_PASSCRED on.
            let passcred = net::get_int_opt(fd, libc::SOL_SOCKET, libc::SO_PASSCRED)
                .map_err(sys("SO_PASSCRED"))?;
            net::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, 1)
                .map_err(sys("set SO_PASSCRED"))?;
            let mut taken = Vec::new();
            let took = (|| -> stasis_sys::Result<()> {
                while let Some(m) = nl::recv(fd, false)? {
                    taken.push(m);
                }
                Ok(())
            })();
            let put_back = self.put_back(fd, p.protocol, p.portid, &taken);
            net::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, passcred)
                .map_err(sys("put SO_PASSCRED back"))?;
            took.map_err(sys("take its queued messages"))?;
            put_back.map_err(|(from, errno)| DumpError::Sys {
                pid: p.pid,
                what: what(&format!(
                    "put back the messages taken from its queue (sender port id {from})"
                )),
                errno,
            })?;
            let resource = format!("fd {} (netlink socket, port id {})", p.fd, p.portid);
            for m in taken {
                if m.group_mask != 0 {
                    return Err(DumpError::Unsupported {
                        pid: p.pid,
                        resource,
                        reason: format!(
                            "a message multicast to groups {:#x} is queued on it; only \
                             messages sent to it alone can be saved",
                            m.group_mask
                        ),
                    });
                }
                if !self.by_port.contains_key(&(p.protocol, m.from)) {
                    return Err(DumpError::Unsupported {
                        pid: p.pid,
                        resource,
                        reason: format!(
                            "a message from port id {}, which no socket of the tree has, is \
                             queued on it",
                            m.from
                        ),
                    });
                }
                self.queues.push((
                    pb::SkPacketEntry {
                        id_for: p.id,
                        length: m.data.len() as u32,
                        scm: Vec::new(),
                        stasis_ucred: m.creds.map(|(pid, uid, gid)| pb::StasisUcredEntry {
                            pid,
                            uid,
                            gid,
                        }),
                        stasis_from: Some(m.from.to_string()),
                        ..Default::default()
                    },
                    m.data,
                ));
            }
        }
        Ok(())
    }

    /// Sends `taken` to `portid` again, each from its sender, with room in the receive
    /// buffer for all (the buffer size and its lock are put back after).
    fn put_back(
        &self,
        receiver: BorrowedFd<'_>,
        protocol: u32,
        portid: u32,
        taken: &[nl::NlMessage],
    ) -> std::result::Result<(), (u32, stasis_sys::Errno)> {
        if taken.is_empty() {
            return Ok(());
        }
        let get = |name| net::get_int_opt(receiver, libc::SOL_SOCKET, name).map_err(|e| (0, e));
        let (rcvbuf, lock) = (get(libc::SO_RCVBUF)?, get(libc::SO_BUF_LOCK)?);
        let set =
            |name, v| net::set_int_opt(receiver, libc::SOL_SOCKET, name, v).map_err(|e| (0, e));
        set(libc::SO_RCVBUFFORCE, 1 << 30)?;
        let mut outside: HashMap<u32, OwnedFd> = HashMap::new();
        let mut sent = Ok(());
        for m in taken {
            let from = m.from;
            let sender = match self.by_port.get(&(protocol, from)) {
                Some(s) => s.as_fd(),
                None => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = outside.entry(from) {
                        let s = match outside_socket(protocol, from) {
                            Some(s) => s,
                            None => {
                                // Gone since: a socket of ours takes its port id.
                                let s =
                                    inet::socket(libc::AF_NETLINK, libc::SOCK_RAW, protocol as i32)
                                        .map_err(|e| (from, e));
                                match s.and_then(|s| {
                                    nl::bind(
                                        s.as_fd(),
                                        NlAddr {
                                            pid: from,
                                            groups: 0,
                                        },
                                    )
                                    .map(|()| s)
                                    .map_err(|e| (from, e))
                                }) {
                                    Ok(s) => s,
                                    Err(e) => {
                                        sent = Err(e);
                                        break;
                                    }
                                }
                            }
                        };
                        slot.insert(s);
                    }
                    outside[&from].as_fd()
                }
            };
            if let Err(e) = nl::send_to(sender, portid, &m.data, m.creds) {
                sent = Err((from, e));
                break;
            }
        }
        set(libc::SO_RCVBUFFORCE, rcvbuf / 2)?;
        set(libc::SO_BUF_LOCK, lock)?;
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_words() {
        assert_eq!(group_words(&[1, 5, 9, 33]), vec![0x111, 1]);
        assert_eq!(group_words(&[]), Vec::<u32>::new());
        assert_eq!(group_words(&[64]), vec![0, 1 << 31]);
    }
}
