//! IPv4 and IPv6 sockets: what `sock_diag` (`INET_DIAG`) says of them, addresses, options
//! as raw bytes, queued datagrams peeked at with their source, multicast memberships, and
//! packets handed to the local stack through a raw socket (to queue datagrams again with
//! their original source).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::net::u32_at;
use crate::{Errno, Result};

/// An inet socket as `sock_diag` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InetDiag {
    /// TCP state (UDP: established when connected, close otherwise).
    pub state: u8,
    /// Local address.
    pub src: SocketAddr,
    /// Remote address.
    pub dst: SocketAddr,
    /// Receive queue (a listener: connections waiting to be accepted).
    pub rqueue: u32,
    /// Send queue (a listener: its backlog).
    pub wqueue: u32,
    /// `SHUT_RD` (1) / `SHUT_WR` (2) bits.
    pub shutdown: u8,
    /// Socket inode.
    pub ino: u32,
}

fn addr_of(family: u8, port: [u8; 2], words: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes(port);
    if i32::from(family) == libc::AF_INET6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&words[..16]);
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, 0))
    } else {
        let a = [words[0], words[1], words[2], words[3]];
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
    }
}

/// Every socket of `family` and `protocol` (TCP, UDP, UDP-lite) in our network namespace,
/// by inode. Sockets that are in no hash table (TCP sockets neither bound-and-listening
/// nor connected) are not listed.
pub fn inet_sockets(family: i32, protocol: i32) -> Result<HashMap<u32, InetDiag>> {
    const INET_DIAG_SHUTDOWN: u16 = 8;
    // inet_diag_req_v2: family, protocol, extensions, pad, states, sockid (48: any).
    let mut body = vec![family as u8, protocol as u8, 0, 0];
    body.extend_from_slice(&u32::MAX.to_ne_bytes());
    body.extend_from_slice(&[0u8; 48]);
    let mut out = HashMap::new();
    // A protocol the kernel has no diag module for lists nothing.
    for m in crate::net::diag_dump(&body)? {
        // inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue,
        // wqueue, uid, inode (72 bytes in all).
        if m.len() < 72 {
            continue;
        }
        let fam = m[0];
        let mut d = InetDiag {
            state: m[1],
            src: addr_of(fam, [m[4], m[5]], &m[8..24]),
            dst: addr_of(fam, [m[6], m[7]], &m[24..40]),
            rqueue: u32_at(&m, 56),
            wqueue: u32_at(&m, 60),
            shutdown: 0,
            ino: u32_at(&m, 68),
        };
        for (ty, data) in crate::net::attributes(&m, 72) {
            if ty == INET_DIAG_SHUTDOWN && !data.is_empty() {
                d.shutdown = data[0];
            }
        }
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// A `sockaddr_storage` holding `a`, and its length.
fn sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in>(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in6>(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address in `ss` (`None` for another family).
fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(&raw const *ss).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(&raw const *ss).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The socket's own address (`getsockname`).
pub fn local_addr(fd: BorrowedFd<'_>) -> Result<Option<SocketAddr>> {
    // SAFETY: an all-zero sockaddr_storage is valid to be overwritten.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `ss`.
    let r = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut ss).cast(), &mut len) };
    Errno::result(r.into())?;
    Ok(from_sockaddr(&ss))
}

/// The peer's address (`getpeername`), `None` if not connected.
pub fn peer_addr(fd: BorrowedFd<'_>) -> Result<Option<SocketAddr>> {
    // SAFETY: an all-zero sockaddr_storage is valid to be overwritten.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes into `ss`.
    let r = unsafe { libc::getpeername(fd.as_raw_fd(), (&raw mut ss).cast(), &mut len) };
    match Errno::result(r.into()) {
        Ok(_) => Ok(from_sockaddr(&ss)),
        Err(Errno(libc::ENOTCONN)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A new socket.
pub fn socket(family: i32, kind: i32, protocol: i32) -> Result<OwnedFd> {
    // SAFETY: integer arguments.
    let r = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, protocol) };
    let fd = Errno::result(r.into())? as i32;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `bind` to an inet address.
pub fn bind(fd: BorrowedFd<'_>, a: &SocketAddr) -> Result<()> {
    let (ss, len) = sockaddr(a);
    // SAFETY: bind reads `len` bytes of `ss`.
    let r = unsafe { libc::bind(fd.as_raw_fd(), (&raw const ss).cast(), len) };
    Errno::result(r.into()).map(drop)
}

/// `connect` to an inet address (datagram sockets: sets the default peer).
pub fn connect(fd: BorrowedFd<'_>, a: &SocketAddr) -> Result<()> {
    let (ss, len) = sockaddr(a);
    // SAFETY: connect reads `len` bytes of `ss`.
    let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const ss).cast(), len) };
    Errno::result(r.into()).map(drop)
}

/// A socket option as bytes, at most `max` of them.
pub fn get_opt_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, max: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; max];
    let mut len = max as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let r =
        unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, v.as_mut_ptr().cast(), &mut len) };
    Errno::result(r.into())?;
    v.truncate(len as usize);
    Ok(v)
}

/// Sets a socket option from bytes.
pub fn set_opt_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, v: &[u8]) -> Result<()> {
    // SAFETY: setsockopt reads v.len() bytes.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            v.as_ptr().cast(),
            v.len() as libc::socklen_t,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// The classic BPF program attached with `SO_ATTACH_FILTER`, one `sock_filter` (code,
/// jt, jf, k) per word, as CRIU stores it. Empty if none.
pub fn get_filter(fd: BorrowedFd<'_>) -> Result<Vec<u64>> {
    let mut n: libc::socklen_t = 0;
    // SAFETY: with a length of 0 the kernel only reports the program's length.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut n,
        )
    };
    Errno::result(r.into())?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut prog = vec![0u64; n as usize];
    // SAFETY: the length is in instructions of 8 bytes, and `prog` has `n` of them.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            prog.as_mut_ptr().cast(),
            &mut n,
        )
    };
    Errno::result(r.into())?;
    prog.truncate(n as usize);
    Ok(prog)
}

/// Attaches a classic BPF program (as [`get_filter`] gives it).
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[u64]) -> Result<()> {
    set_bpf(fd, libc::SO_ATTACH_FILTER, prog)
}

/// Makes the `SO_REUSEPORT` group `fd` belongs to hand every datagram to its member
/// number `index` (members are numbered in the order they joined), until
/// [`unsteer_reuseport`]: a classic BPF program that returns the index.
pub fn steer_reuseport(fd: BorrowedFd<'_>, index: u32) -> Result<()> {
    // BPF_RET | BPF_K (0x06): return the constant k.
    set_bpf(
        fd,
        libc::SO_ATTACH_REUSEPORT_CBPF,
        &[0x06 | (u64::from(index) << 32)],
    )
}

/// Takes the group's program of [`steer_reuseport`] away again.
pub fn unsteer_reuseport(fd: BorrowedFd<'_>) -> Result<()> {
    crate::net::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_DETACH_REUSEPORT_BPF, 0)
}

fn set_bpf(fd: BorrowedFd<'_>, opt: libc::c_int, prog: &[u64]) -> Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut().cast(),
    };
    // SAFETY: setsockopt reads the sock_fprog, which points at `prog` (alive across the
    // call; the kernel copies the program).
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw const fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// A datagram peeked at: its bytes (a raw socket's include the IP header) and where it
/// came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeekedDgram {
    /// The bytes.
    pub data: Vec<u8>,
    /// The source address.
    pub from: Option<SocketAddr>,
}

/// Peeks at the next datagram at the socket's peek offset (`SO_PEEK_OFF` must be set, so
/// the next call sees the one after), without waiting. `None` when the queue is done.
pub fn peek_dgram(fd: BorrowedFd<'_>) -> Result<Option<PeekedDgram>> {
    let mut data = vec![0u8; 65536];
    // SAFETY: an all-zero sockaddr_storage is valid to be overwritten.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below live across the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut ss).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    // SAFETY: recvmsg writes into the buffers msg describes.
    let r = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    let n = match Errno::result(r as libc::c_long) {
        Ok(n) => n as usize,
        Err(Errno(libc::EAGAIN)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if n > data.len() {
        return Err(Errno(libc::EMSGSIZE));
    }
    data.truncate(n);
    let from = (msg.msg_namelen > 0).then(|| from_sockaddr(&ss)).flatten();
    Ok(Some(PeekedDgram { data, from }))
}

/// Hands a complete IP packet (header included) to the local stack, as if it had arrived
/// for `dst`: a raw `IPPROTO_RAW` socket of our own sends it (the kernel fills in the
/// IPv4 header checksum and length), and local delivery queues it on the socket it is
/// addressed to.
/// A multicast `dst` goes out on interface `ifindex` and loops back to the local members.
pub fn inject_packet(packet: &[u8], dst: IpAddr, ifindex: Option<u32>) -> Result<()> {
    let family = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let sock = socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    // Through our own network lock, if one is in place.
    crate::net::set_int_opt(
        sock.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_MARK,
        LOCK_BYPASS_MARK as i32,
    )?;
    if let (true, Some(index)) = (dst.is_multicast(), ifindex) {
        if dst.is_ipv4() {
            let req = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: index as i32,
            };
            // SAFETY: setsockopt reads one ip_mreqn.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&raw const req).cast::<u8>(),
                    size_of::<libc::ip_mreqn>(),
                )
            };
            set_opt_bytes(sock.as_fd(), libc::IPPROTO_IP, libc::IP_MULTICAST_IF, bytes)?;
        } else {
            crate::net::set_int_opt(
                sock.as_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_MULTICAST_IF,
                index as i32,
            )?;
        }
    }
    let (ss, len) = sockaddr(&SocketAddr::new(dst, 0));
    // SAFETY: sendto reads packet.len() bytes and `len` bytes of `ss`.
    let r = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            libc::MSG_DONTWAIT,
            (&raw const ss).cast(),
            len,
        )
    };
    let n = Errno::result(r as libc::c_long)? as usize;
    if n != packet.len() {
        return Err(Errno(libc::EMSGSIZE));
    }
    Ok(())
}

/// One multicast membership of a socket: group, interface, source filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// Interface index.
    pub ifindex: u32,
    /// Group address.
    pub group: IpAddr,
    /// `MCAST_INCLUDE` (1) or `MCAST_EXCLUDE` (0).
    pub fmode: u32,
    /// The sources included or excluded.
    pub sources: Vec<IpAddr>,
}

/// `struct group_filter` with room for 64 sources.
#[repr(C)]
struct GroupFilter {
    interface: u32,
    group: libc::sockaddr_storage,
    fmode: u32,
    numsrc: u32,
    slist: [libc::sockaddr_storage; 64],
}

/// The socket's membership of `group` on interface `ifindex`, if it is a member
/// (`MCAST_MSFILTER`, which answers `EADDRNOTAVAIL` for a group it has not joined).
pub fn membership(fd: BorrowedFd<'_>, ifindex: u32, group: IpAddr) -> Result<Option<Membership>> {
    let level = if group.is_ipv4() {
        libc::SOL_IP
    } else {
        libc::SOL_IPV6
    };
    // SAFETY: an all-zero group_filter is valid.
    let mut gf: GroupFilter = unsafe { std::mem::zeroed() };
    gf.interface = ifindex;
    gf.group = sockaddr(&SocketAddr::new(group, 0)).0;
    gf.numsrc = 64;
    let mut len = size_of::<GroupFilter>() as libc::socklen_t;
    // SAFETY: getsockopt reads the request and writes at most `len` bytes into `gf`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            libc::MCAST_MSFILTER,
            (&raw mut gf).cast(),
            &mut len,
        )
    };
    match Errno::result(r.into()) {
        Ok(_) => {}
        Err(Errno(libc::EADDRNOTAVAIL | libc::EINVAL | libc::ENODEV)) => return Ok(None),
        Err(e) => return Err(e),
    }
    if gf.numsrc > 64 {
        return Err(Errno(libc::E2BIG));
    }
    let sources = gf.slist[..gf.numsrc as usize]
        .iter()
        .filter_map(from_sockaddr)
        .map(|a| a.ip())
        .collect();
    Ok(Some(Membership {
        ifindex,
        group,
        fmode: gf.fmode,
        sources,
    }))
}

#[repr(C)]
struct GroupReq {
    interface: u32,
    group: libc::sockaddr_storage,
}

#[repr(C)]
struct GroupSourceReq {
    interface: u32,
    group: libc::sockaddr_storage,
    source: libc::sockaddr_storage,
}

/// Joins a multicast group again with its source filter (`MCAST_JOIN_GROUP` and
/// `MCAST_BLOCK_SOURCE`, or `MCAST_JOIN_SOURCE_GROUP` per included source).
pub fn join(fd: BorrowedFd<'_>, m: &Membership) -> Result<()> {
    let level = if m.group.is_ipv4() {
        libc::SOL_IP
    } else {
        libc::SOL_IPV6
    };
    let group = sockaddr(&SocketAddr::new(m.group, 0)).0;
    let set = |name: i32, p: *const libc::c_void, len: usize| {
        // SAFETY: `p` points at a request of `len` bytes that lives across the call.
        let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, p, len as libc::socklen_t) };
        Errno::result(r.into()).map(drop)
    };
    if m.fmode == 0 {
        let req = GroupReq {
            interface: m.ifindex,
            group,
        };
        set(
            libc::MCAST_JOIN_GROUP,
            (&raw const req).cast(),
            size_of::<GroupReq>(),
        )?;
    }
    for s in &m.sources {
        let req = GroupSourceReq {
            interface: m.ifindex,
            group,
            source: sockaddr(&SocketAddr::new(*s, 0)).0,
        };
        let name = if m.fmode == 0 {
            libc::MCAST_BLOCK_SOURCE
        } else {
            libc::MCAST_JOIN_SOURCE_GROUP
        };
        set(name, (&raw const req).cast(), size_of::<GroupSourceReq>())?;
    }
    Ok(())
}

/// The network namespace inode of a socket (`SIOCGSKNS`).
pub fn socket_netns(fd: BorrowedFd<'_>) -> Result<u64> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSKNS) };
    let ns = Errno::result(r.into())? as i32;
    // SAFETY: the kernel just gave us this fd.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    let st = crate::fs::fstat(ns.as_fd())?;
    Ok(st.st_ino)
}

/// TCP states (the kernel's `tcp_states.h`), as `TCP_INFO` and `sock_diag` show them.
pub const TCP_ESTABLISHED: u32 = 1;
#[allow(missing_docs)]
pub const TCP_SYN_SENT: u32 = 2;
#[allow(missing_docs)]
pub const TCP_FIN_WAIT1: u32 = 4;
#[allow(missing_docs)]
pub const TCP_FIN_WAIT2: u32 = 5;
#[allow(missing_docs)]
pub const TCP_CLOSE: u32 = 7;
#[allow(missing_docs)]
pub const TCP_CLOSE_WAIT: u32 = 8;
#[allow(missing_docs)]
pub const TCP_LAST_ACK: u32 = 9;
#[allow(missing_docs)]
pub const TCP_LISTEN: u32 = 10;
#[allow(missing_docs)]
pub const TCP_CLOSING: u32 = 11;

/// Whether a TCP state is one of a connection: saved (and restored) through repair mode.
pub fn is_tcp_connection(state: u32) -> bool {
    matches!(
        state,
        TCP_ESTABLISHED
            | TCP_FIN_WAIT1
            | TCP_FIN_WAIT2
            | TCP_CLOSE_WAIT
            | TCP_LAST_ACK
            | TCP_CLOSING
    )
}

/// `TCP_REPAIR` values.
pub const TCP_REPAIR_ON: i32 = 1;
/// Leaves repair mode and sends a window probe (the peer answers with where it is).
pub const TCP_REPAIR_OFF: i32 = 0;
/// Leaves repair mode without a window probe.
pub const TCP_REPAIR_OFF_NO_WP: i32 = -1;
/// Repair queues (`TCP_REPAIR_QUEUE`).
pub const TCP_RECV_QUEUE: i32 = 1;
/// The send queue.
pub const TCP_SEND_QUEUE: i32 = 2;
/// Neither queue.
pub const TCP_NO_QUEUE: i32 = 0;
/// TCP socket options of repair mode (`linux/tcp.h`).
pub const TCP_REPAIR: i32 = 19;
/// Which queue `TCP_QUEUE_SEQ` and send/recv act on.
pub const TCP_REPAIR_QUEUE: i32 = 20;
/// The sequence number of the selected queue.
pub const TCP_QUEUE_SEQ: i32 = 21;
/// Options negotiated at connection setup (`struct tcp_repair_opt` list).
pub const TCP_REPAIR_OPTIONS: i32 = 22;
/// The timestamp clock of the connection.
pub const TCP_TIMESTAMP: i32 = 24;
/// Window state (`struct tcp_repair_window`).
pub const TCP_REPAIR_WINDOW: i32 = 29;
/// Packets of ours the network lock lets through (CRIU's `SOCCR_MARK`).
pub const LOCK_BYPASS_MARK: u32 = 0xC114;

/// Bytes of the send queue not sent yet (`SIOCOUTQNSD`).
pub fn unsent_bytes(fd: BorrowedFd<'_>) -> Result<u32> {
    const SIOCOUTQNSD: libc::c_ulong = 0x894B;
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCOUTQNSD, &mut n) };
    Errno::result(r.into()).map(|_| n as u32)
}

/// Reads up to `max` bytes without consuming them and without waiting (`MSG_PEEK`; in TCP
/// repair mode, from the queue selected with `TCP_REPAIR_QUEUE`).
pub fn recv_peek(fd: BorrowedFd<'_>, max: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    // SAFETY: recv writes at most buf.len() bytes.
    let r = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let n = Errno::result(r as libc::c_long)? as usize;
    buf.truncate(n);
    Ok(buf)
}

/// `send` without waiting; returns how much was taken.
pub fn send(fd: BorrowedFd<'_>, data: &[u8]) -> Result<usize> {
    // SAFETY: send reads data.len() bytes.
    let r = unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    Errno::result(r as libc::c_long).map(|n| n as usize)
}

/// The index of network interface `name`.
pub fn if_index(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| Errno(libc::EINVAL))?;
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 { Err(Errno::last()) } else { Ok(i) }
}

/// Which sockets an option of [`OPTIONS`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every inet socket.
    All,
    /// IPv4 sockets.
    V4,
    /// IPv6 sockets.
    V6,
    /// IPv4 sockets that can send multicast (not TCP: an accepted TCP socket shows the
    /// SYN's TTL as its multicast TTL, and refuses to have one set).
    V4Mcast,
    /// IPv6 sockets that can send multicast.
    V6Mcast,
    /// TCP.
    Tcp,
    /// UDP (not UDP-lite).
    Udp,
    /// UDP-lite.
    UdpLite,
    /// Raw sockets.
    Raw,
    /// Raw IPv4 ICMP sockets.
    RawIcmp,
    /// Raw ICMPv6 sockets.
    RawIcmp6,
}

impl Scope {
    /// Whether a socket of `family`, `kind`, `protocol` has the option.
    pub fn applies(self, family: i32, kind: i32, protocol: i32) -> bool {
        match self {
            Scope::All => true,
            Scope::V4 => family == libc::AF_INET,
            Scope::V6 => family == libc::AF_INET6,
            Scope::V4Mcast => family == libc::AF_INET && kind != libc::SOCK_STREAM,
            Scope::V6Mcast => family == libc::AF_INET6 && kind != libc::SOCK_STREAM,
            Scope::Tcp => kind == libc::SOCK_STREAM,
            Scope::Udp => kind == libc::SOCK_DGRAM && protocol == libc::IPPROTO_UDP,
            Scope::UdpLite => kind == libc::SOCK_DGRAM && protocol == libc::IPPROTO_UDPLITE,
            Scope::Raw => kind == libc::SOCK_RAW,
            Scope::RawIcmp => kind == libc::SOCK_RAW && protocol == libc::IPPROTO_ICMP,
            Scope::RawIcmp6 => kind == libc::SOCK_RAW && protocol == libc::IPPROTO_ICMPV6,
        }
    }
}

/// A socket option saved as the kernel reports it and set again as is.
#[derive(Clone, Copy, Debug)]
pub struct SockOpt {
    /// `SOL_*` level.
    pub level: i32,
    /// Option name.
    pub name: i32,
    /// Bytes `getsockopt` is asked for (an int: 4).
    pub size: usize,
    /// The sockets that have it.
    pub scope: Scope,
}

const fn opt(level: i32, name: i32, size: usize, scope: Scope) -> SockOpt {
    SockOpt {
        level,
        name,
        size,
        scope,
    }
}

const SOL_UDPLITE: i32 = 136;
const SOL_ICMPV6: i32 = 58;

/// The options of inet sockets that are saved when they differ from a fresh socket's, in
/// the order they are set again: all before `bind` (`IPV6_V6ONLY`, `SO_REUSEPORT`,
/// `IP_FREEBIND` and `SO_BINDTODEVICE` only work there), `IP_TOS` before `SO_PRIORITY`
/// (it sets the priority too), `SO_RCVLOWAT` before the buffer sizes (it can grow the
/// receive buffer), `SO_LOCK_FILTER` after the BPF filter. Buffer sizes, timeouts, the
/// filter and multicast memberships are handled apart; read-only and per-connection
/// values are not here.
pub const OPTIONS: &[SockOpt] = &[
    opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_REUSEPORT, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_BROADCAST, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_OOBINLINE, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_DONTROUTE, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_NO_CHECK, 4, Scope::Udp),
    opt(libc::SOL_SOCKET, libc::SO_PASSCRED, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_PASSSEC, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_TIMESTAMP, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_TIMESTAMPING, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_MARK, 4, Scope::All),
    opt(
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        libc::IFNAMSIZ,
        Scope::All,
    ),
    opt(libc::SOL_SOCKET, libc::SO_LINGER, 8, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_BUSY_POLL, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_INCOMING_CPU, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_ZEROCOPY, 4, Scope::All),
    opt(libc::SOL_SOCKET, libc::SO_RCVLOWAT, 4, Scope::All),
    // After the filter, which is attached first.
    opt(libc::SOL_SOCKET, libc::SO_LOCK_FILTER, 4, Scope::All),
    opt(libc::IPPROTO_IP, libc::IP_TOS, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_TTL, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_HDRINCL, 4, Scope::Raw),
    opt(libc::IPPROTO_IP, libc::IP_RECVOPTS, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_RETOPTS, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_PKTINFO, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_RECVTTL, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_RECVTOS, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_RECVERR, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_FREEBIND, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_PASSSEC, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_TRANSPARENT, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_RECVORIGDSTADDR, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_MINTTL, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_NODEFRAG, 4, Scope::Raw),
    opt(libc::IPPROTO_IP, libc::IP_CHECKSUM, 4, Scope::V4),
    opt(
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        4,
        Scope::V4,
    ),
    opt(libc::IPPROTO_IP, libc::IP_RECVFRAGSIZE, 4, Scope::V4),
    opt(libc::IPPROTO_IP, libc::IP_MULTICAST_IF, 4, Scope::V4Mcast),
    opt(libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, 4, Scope::V4Mcast),
    opt(libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, 4, Scope::V4Mcast),
    opt(libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, 4, Scope::V4Mcast),
    opt(libc::SOL_SOCKET, libc::SO_PRIORITY, 4, Scope::All),
    opt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 4, Scope::V6),
    opt(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        4,
        Scope::V6Mcast,
    ),
    opt(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_HOPS,
        4,
        Scope::V6Mcast,
    ),
    opt(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_LOOP,
        4,
        Scope::V6Mcast,
    ),
    opt(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_ALL,
        4,
        Scope::V6Mcast,
    ),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVRTHDR, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVHOPOPTS, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVDSTOPTS, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_TCLASS, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_AUTOFLOWLABEL, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVPATHMTU, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_TRANSPARENT, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_RECVORIGDSTADDR, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, 4, Scope::V6),
    opt(libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, 4, Scope::Raw),
    opt(libc::IPPROTO_TCP, libc::TCP_NODELAY, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_MAXSEG, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_CORK, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_SYNCNT, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_LINGER2, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_CONGESTION, 16, Scope::Tcp),
    opt(
        libc::IPPROTO_TCP,
        libc::TCP_THIN_LINEAR_TIMEOUTS,
        4,
        Scope::Tcp,
    ),
    opt(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_FASTOPEN, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT, 4, Scope::Tcp),
    opt(
        libc::IPPROTO_TCP,
        libc::TCP_FASTOPEN_NO_COOKIE,
        4,
        Scope::Tcp,
    ),
    opt(libc::IPPROTO_TCP, libc::TCP_INQ, 4, Scope::Tcp),
    opt(libc::IPPROTO_TCP, 37, 4, Scope::Tcp), // TCP_TX_DELAY
    opt(libc::IPPROTO_UDP, libc::UDP_CORK, 4, Scope::Udp),
    opt(libc::IPPROTO_UDP, libc::UDP_SEGMENT, 4, Scope::Udp),
    opt(libc::IPPROTO_UDP, libc::UDP_GRO, 4, Scope::Udp),
    opt(libc::IPPROTO_UDP, 101, 4, Scope::Udp), // UDP_NO_CHECK6_TX
    opt(libc::IPPROTO_UDP, 102, 4, Scope::Udp), // UDP_NO_CHECK6_RX
    opt(SOL_UDPLITE, 10, 4, Scope::UdpLite),    // UDPLITE_SEND_CSCOV
    opt(SOL_UDPLITE, 11, 4, Scope::UdpLite),    // UDPLITE_RECV_CSCOV
    opt(libc::SOL_RAW, 1, 4, Scope::RawIcmp),   // ICMP_FILTER
    opt(SOL_ICMPV6, 1, 32, Scope::RawIcmp6),    // ICMPV6_FILTER
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for a in [
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
            "[::1]:53".parse().unwrap(),
            "[::ffff:127.0.0.1]:9".parse().unwrap(),
        ] {
            assert_eq!(from_sockaddr(&sockaddr(&a).0), Some(a));
        }
    }

    #[test]
    fn udp_datagram_peeked_with_its_source() {
        let lo = "127.0.0.1:0".parse().unwrap();
        let rx = socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        let tx = socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap();
        let (rxf, txf) = (rx.as_fd(), tx.as_fd());
        bind(rxf, &lo).unwrap();
        bind(txf, &lo).unwrap();
        connect(txf, &local_addr(rxf).unwrap().unwrap()).unwrap();
        for m in [&b"hello"[..], b"", b"world!"] {
            // SAFETY: send reads m.len() bytes.
            let r = unsafe { libc::send(tx.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
            assert_eq!(r, m.len() as isize);
        }
        crate::net::set_int_opt(rxf, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0).unwrap();
        // An empty datagram moves the offset by nothing: it is seen once, then the next.
        for m in [&b"hello"[..], b"", b"world!"] {
            let p = peek_dgram(rxf).unwrap().unwrap();
            assert_eq!(p.data, m);
            assert_eq!(p.from, local_addr(txf).unwrap());
        }
        assert_eq!(peek_dgram(rxf).unwrap(), None);
    }
}
