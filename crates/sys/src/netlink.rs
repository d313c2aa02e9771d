//! Netlink sockets as a checkpoint sees them: what `sock_diag` (`NETLINK_DIAG`) says of
//! them, their own and their peer's address (`sockaddr_nl`), their group memberships
//! (`NETLINK_LIST_MEMBERSHIPS`), and messages received with their sender and sent again.
//! Also the generic `sock_diag` dump request the packet socket module shares.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::{Errno, Result};

/// `SOL_NETLINK`.
pub const SOL_NETLINK: i32 = 270;
/// `NETLINK_LIST_MEMBERSHIPS`: every group the socket is a member of, as a bitmap.
pub const NETLINK_LIST_MEMBERSHIPS: i32 = 9;
/// `NETLINK_ADD_MEMBERSHIP`.
pub const NETLINK_ADD_MEMBERSHIP: i32 = 1;
/// `NDIAG_FLAG_CB_RUNNING`: a dump is in progress (the kernel produces the next part
/// of its answer as the socket is read).
pub const FLAG_CB_RUNNING: u32 = 0x1;

/// The `SOL_NETLINK` options a process can set, all integers.
pub const OPTIONS: &[(i32, &str)] = &[
    (3, "NETLINK_PKTINFO"),
    (4, "NETLINK_BROADCAST_ERROR"),
    (5, "NETLINK_NO_ENOBUFS"),
    (8, "NETLINK_LISTEN_ALL_NSID"),
    (10, "NETLINK_CAP_ACK"),
    (11, "NETLINK_EXT_ACK"),
    (12, "NETLINK_GET_STRICT_CHK"),
];

/// A netlink socket as `sock_diag` describes it. Only sockets with a port id or a group
/// membership are listed (the kernel walks its port table and its group lists).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetlinkDiag {
    /// `NETLINK_ROUTE`, `NETLINK_USERSOCK`, ...
    pub protocol: u8,
    /// 0 unconnected, 1 connected.
    pub state: u8,
    /// Bound port id (0: none).
    pub portid: u32,
    /// The connected peer's port id.
    pub dst_portid: u32,
    /// The connected peer's group number (0: none).
    pub dst_group: u32,
    /// Socket inode.
    pub ino: u32,
    /// Bytes of the receive queue (`SK_MEMINFO_RMEM_ALLOC`).
    pub rmem: u32,
    /// `NDIAG_FLAG_*` bits.
    pub flags: u32,
}

/// Every netlink socket of our network namespace that `sock_diag` lists, by inode.
pub fn netlink_sockets() -> Result<HashMap<u32, NetlinkDiag>> {
    const NDIAG_PROTO_ALL: u8 = 255;
    const NDIAG_SHOW_MEMINFO: u32 = 1;
    const NDIAG_SHOW_FLAGS: u32 = 8;
    const NETLINK_DIAG_MEMINFO: u16 = 0;
    const NETLINK_DIAG_FLAGS: u16 = 4;
    // netlink_diag_req: family, protocol, pad, ino, show, cookie.
    let mut body = vec![libc::AF_NETLINK as u8, NDIAG_PROTO_ALL, 0, 0];
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&(NDIAG_SHOW_MEMINFO | NDIAG_SHOW_FLAGS).to_ne_bytes());
    body.extend_from_slice(&[0u8; 8]);
    let mut out = HashMap::new();
    // netlink_diag_msg: family, type, protocol, state, portid, dst_portid, dst_group,
    // ino, cookie (28 bytes).
    for m in crate::net::diag_dump(&body)? {
        if m.len() < 28 {
            continue;
        }
        let mut d = NetlinkDiag {
            protocol: m[2],
            state: m[3],
            portid: crate::net::u32_at(&m, 4),
            dst_portid: crate::net::u32_at(&m, 8),
            dst_group: crate::net::u32_at(&m, 12),
            ino: crate::net::u32_at(&m, 16),
            ..Default::default()
        };
        for (ty, data) in crate::net::attributes(&m, 28) {
            match ty {
                NETLINK_DIAG_MEMINFO => d.rmem = crate::net::u32_at(data, 0),
                NETLINK_DIAG_FLAGS => d.flags = crate::net::u32_at(data, 0),
                _ => {}
            }
        }
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// A netlink address: port id and the bitmap of groups 1..=32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NlAddr {
    /// Port id (`nl_pid`).
    pub pid: u32,
    /// Groups 1..=32 as bits 0..=31 (`nl_groups`).
    pub groups: u32,
}

fn sockaddr_nl(a: NlAddr) -> libc::sockaddr_nl {
    // SAFETY: an all-zero sockaddr_nl is valid.
    let mut s: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    s.nl_family = libc::AF_NETLINK as u16;
    s.nl_pid = a.pid;
    s.nl_groups = a.groups;
    s
}

fn name_of(fd: BorrowedFd<'_>, peer: bool) -> Result<NlAddr> {
    // SAFETY: an all-zero sockaddr_nl is valid to be overwritten.
    let mut s: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    let r = if peer {
        // SAFETY: getpeername writes at most `len` bytes into `s`.
        unsafe { libc::getpeername(fd.as_raw_fd(), (&raw mut s).cast(), &mut len) }
    } else {
        // SAFETY: getsockname writes at most `len` bytes into `s`.
        unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut s).cast(), &mut len) }
    };
    Errno::result(r.into())?;
    Ok(NlAddr {
        pid: s.nl_pid,
        groups: s.nl_groups,
    })
}

/// The socket's own address (`getsockname`): port id 0 if it is not bound.
pub fn local(fd: BorrowedFd<'_>) -> Result<NlAddr> {
    name_of(fd, false)
}

/// The connected peer (`getpeername`; zero if none).
pub fn peer(fd: BorrowedFd<'_>) -> Result<NlAddr> {
    name_of(fd, true)
}

/// `bind` to `a`.
pub fn bind(fd: BorrowedFd<'_>, a: NlAddr) -> Result<()> {
    let s = sockaddr_nl(a);
    // SAFETY: bind reads one sockaddr_nl.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const s).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// `connect` to `a`.
pub fn connect(fd: BorrowedFd<'_>, a: NlAddr) -> Result<()> {
    let s = sockaddr_nl(a);
    // SAFETY: connect reads one sockaddr_nl.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const s).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// Every group the socket is a member of (numbers from 1), from
/// `NETLINK_LIST_MEMBERSHIPS`, beyond the 32 of `nl_groups` too.
pub fn memberships(fd: BorrowedFd<'_>) -> Result<Vec<u32>> {
    let mut words = vec![0u32; 1024];
    let mut len = (words.len() * 4) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `words`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_NETLINK,
            NETLINK_LIST_MEMBERSHIPS,
            words.as_mut_ptr().cast(),
            &mut len,
        )
    };
    Errno::result(r.into())?;
    // The kernel reports the length it needed, which may exceed what it copied.
    let n = (len as usize / 4).min(words.len());
    Ok(bitmap_groups(&words[..n]))
}

/// The group numbers (from 1) of a membership bitmap of 32-bit words.
pub fn bitmap_groups(words: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        for bit in 0..32 {
            if w & (1 << bit) != 0 {
                out.push(i as u32 * 32 + bit + 1);
            }
        }
    }
    out
}

/// A message taken from a netlink socket's receive queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NlMessage {
    /// Its bytes.
    pub data: Vec<u8>,
    /// The sender's port id (0: the kernel).
    pub from: u32,
    /// The group it was sent to, as a `nl_groups` bit (0: sent to this socket alone).
    pub group_mask: u32,
    /// The sender's credentials (pid, uid, gid), if the socket has `SO_PASSCRED` on.
    pub creds: Option<(i32, u32, u32)>,
}

/// Takes the next message from the receive queue, without waiting (`MSG_PEEK`: only
/// looks at it). `None` when the queue is empty.
pub fn recv(fd: BorrowedFd<'_>, peek: bool) -> Result<Option<NlMessage>> {
    // First its size, without taking it.
    let mut probe = [0u8; 1];
    // SAFETY: recv writes at most one byte.
    let r = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            probe.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    let size = match Errno::result(r as libc::c_long) {
        Ok(n) => n as usize,
        Err(Errno(libc::EAGAIN)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = vec![0u8; size.max(1)];
    let mut ctl = [0u64; 32];
    // SAFETY: an all-zero sockaddr_nl is valid to be overwritten.
    let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below live across the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&ctl);
    let mut flags = libc::MSG_DONTWAIT;
    if peek {
        flags |= libc::MSG_PEEK;
    }
    // SAFETY: recvmsg writes into the buffers msg describes.
    let r = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    let n = Errno::result(r as libc::c_long)? as usize;
    data.truncate(n);
    let mut out = NlMessage {
        data,
        from: from.nl_pid,
        group_mask: from.nl_groups,
        creds: None,
    };
    for (level, ty, data) in crate::net::control_messages(&msg) {
        if level == libc::SOL_SOCKET && ty == libc::SCM_CREDENTIALS && data.len() >= 12 {
            out.creds = Some((
                crate::net::u32_at(&data, 0) as i32,
                crate::net::u32_at(&data, 4),
                crate::net::u32_at(&data, 8),
            ));
        }
    }
    Ok(Some(out))
}

/// Sends `data` to port id `to`, with credentials if given, without waiting.
pub fn send_to(
    fd: BorrowedFd<'_>,
    to: u32,
    data: &[u8],
    creds: Option<(i32, u32, u32)>,
) -> Result<()> {
    let dest = sockaddr_nl(NlAddr { pid: to, groups: 0 });
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    let mut ctl = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the pointers set below live across the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw const dest).cast_mut().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(c) = creds {
        crate::net::put_control_messages(
            &mut msg,
            &mut ctl,
            &[(libc::SCM_CREDENTIALS, crate::net::ucred_bytes(c))],
        )?;
    }
    // SAFETY: sendmsg reads the buffers msg describes.
    let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
    let n = Errno::result(r as libc::c_long)? as usize;
    if n != data.len() {
        return Err(Errno(libc::EMSGSIZE));
    }
    Ok(())
}

/// Whether an error is pending on the socket (an overrun's `ENOBUFS`), seen with `poll`,
/// which, unlike `SO_ERROR` or a read, does not clear it.
pub fn error_pending(fd: BorrowedFd<'_>) -> Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: poll reads and writes one pollfd.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    Errno::result(r.into())?;
    Ok(p.revents & libc::POLLERR != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    fn usersock() -> OwnedFd {
        crate::inet::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_USERSOCK).unwrap()
    }

    #[test]
    fn groups_of_a_bitmap() {
        assert_eq!(bitmap_groups(&[0x111, 1]), vec![1, 5, 9, 33]);
        assert!(bitmap_groups(&[0, 0]).is_empty());
    }

    #[test]
    fn messages_keep_their_sender() {
        let (a, b) = (usersock(), usersock());
        bind(a.as_fd(), NlAddr::default()).unwrap();
        bind(b.as_fd(), NlAddr::default()).unwrap();
        let (pa, pb) = (local(a.as_fd()).unwrap().pid, local(b.as_fd()).unwrap().pid);
        assert!(pa != 0 && pb != 0 && pa != pb);
        assert_eq!(recv(b.as_fd(), true).unwrap(), None);
        send_to(a.as_fd(), pb, b"one", None).unwrap();
        send_to(a.as_fd(), pb, b"second", None).unwrap();
        let peeked = recv(b.as_fd(), true).unwrap().unwrap();
        assert_eq!((peeked.data.as_slice(), peeked.from), (&b"one"[..], pa));
        for want in [&b"one"[..], b"second"] {
            let m = recv(b.as_fd(), false).unwrap().unwrap();
            assert_eq!((m.data.as_slice(), m.from, m.group_mask), (want, pa, 0));
        }
        assert_eq!(recv(b.as_fd(), false).unwrap(), None);
        assert!(!error_pending(b.as_fd()).unwrap());
        let d = netlink_sockets().unwrap();
        let ino = crate::fs::fstat(b.as_fd()).unwrap().st_ino as u32;
        assert_eq!(d.get(&ino).map(|d| d.portid), Some(pb));
    }
}
