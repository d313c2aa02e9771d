//! IPv4 and IPv6 sockets, made again by stasis before any process is forked: created,
//! given their BPF filter and options (those of [`inet::OPTIONS`] in their order, then
//! CRIU's buffer sizes and timeouts), bound, made to listen or connected (datagram
//! sockets), joined to their multicast groups; then their queued datagrams are queued
//! again by handing the local stack packets with the original source address through a
//! raw socket, right after the socket is made, so no other socket of the tree exists yet
//! to take them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use stasis_images::pb;
use stasis_sys::{Pid, inet, net};

use super::OpenCtx;
use crate::error::{RestoreError, Result, SysContext, invalid};

const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;
/// `SOCK_SNDBUF_LOCK` / `SOCK_RCVBUF_LOCK`: the size was set by the program.
const SNDBUF_LOCK: u32 = 1;
const RCVBUF_LOCK: u32 = 2;

/// The address CRIU's words and port describe.
fn addr(family: u32, words: &[u32], port: u32) -> Option<SocketAddr> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match (family as i32, bytes.len()) {
        (libc::AF_INET, 4) => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        (libc::AF_INET6, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// The description of inet socket `e`.
pub(crate) fn open(cx: &OpenCtx<'_>, e: &pb::InetSkEntry) -> Result<OwnedFd> {
    let pid = cx.pid;
    let what = format!("inet socket:[{}]", e.ino);
    let bad = |reason: String| invalid("files.img", format!("{what}: {reason}"));
    let family = e.family as i32;
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(bad(format!("family {family}")));
    }
    let local = addr(e.family, &e.src_addr, e.src_port)
        .ok_or_else(|| bad("a malformed local address".into()))?;
    let peer = addr(e.family, &e.dst_addr, e.dst_port)
        .ok_or_else(|| bad("a malformed remote address".into()))?;
    let (kind, proto) = (e.r#type as i32, e.proto as i32);
    match (kind, e.state) {
        (libc::SOCK_STREAM, TCP_LISTEN | TCP_CLOSE) => {}
        (libc::SOCK_DGRAM | libc::SOCK_RAW, TCP_ESTABLISHED | TCP_CLOSE) => {}
        (_, state) => {
            return Err(RestoreError::Unsupported {
                pid,
                resource: what,
                reason: format!("inet sockets of type {kind} in state {state} are not supported"),
            });
        }
    }
    let sock = inet::socket(family, kind, proto).ctx(pid, || format!("create {what}"))?;
    let fd = sock.as_fd();
    set_options(pid, fd, e, &what)?;
    if local.port() != 0 || !local.ip().is_unspecified() {
        // The port of a dead listener may still have connections in TIME_WAIT: a TCP
        // socket binds with SO_REUSEADDR, set back afterwards (as CRIU does).
        let tcp = kind == libc::SOCK_STREAM;
        let reuse = net::get_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)
            .ctx(pid, || format!("{what}: SO_REUSEADDR"))?;
        if tcp && reuse == 0 {
            net::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                .ctx(pid, || format!("{what}: SO_REUSEADDR"))?;
        }
        inet::bind(fd, &local).ctx(pid, || {
            let why = if tcp && reuse == 0 {
                " (a busy address here: another socket's, or connections in TIME_WAIT, \
                 which a socket without SO_REUSEADDR cannot bind over)"
            } else {
                ""
            };
            format!("bind {what} to {local}{why}")
        })?;
        if tcp && reuse == 0 {
            net::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 0)
                .ctx(pid, || format!("{what}: SO_REUSEADDR"))?;
        }
    }
    match e.state {
        TCP_LISTEN => {
            net::listen(fd, e.backlog as i32).ctx(pid, || format!("listen on {what}"))?;
        }
        TCP_ESTABLISHED => {
            inet::connect(fd, &peer).ctx(pid, || format!("connect {what} to {peer}"))?;
        }
        _ => {}
    }
    for m in &e.stasis_mcast {
        let (Some(group), Some(sources)) = (
            ip_from(&m.group),
            m.sources
                .iter()
                .map(|s| ip_from(s))
                .collect::<Option<Vec<_>>>(),
        ) else {
            return Err(bad("a malformed multicast membership".into()));
        };
        let ifindex =
            inet::if_index(&m.ifname).ctx(pid, || format!("{what}: interface {}", m.ifname))?;
        let mem = inet::Membership {
            ifindex,
            group,
            fmode: m.fmode,
            sources,
        };
        inet::join(fd, &mem).ctx(pid, || format!("{what}: join {group} on {}", m.ifname))?;
    }
    if let Some(queue) = cx.images.file_data.sk_queues.get(&e.id) {
        // Multicast datagrams loop back through the interface the group was joined on.
        let ifindex = e
            .stasis_mcast
            .iter()
            .find(|m| ip_from(&m.group) == Some(local.ip()))
            .and_then(|m| inet::if_index(&m.ifname).ok());
        refill(pid, e, local, ifindex, queue, &what)?;
    }
    let how = match e.shutdown.unwrap_or(0) {
        1 => Some(libc::SHUT_RD),
        2 => Some(libc::SHUT_WR),
        3 => Some(libc::SHUT_RDWR),
        _ => None,
    };
    if let Some(how) = how {
        net::shutdown(fd, how).ctx(pid, || format!("shut down {what}"))?;
    }
    cx.finish(
        sock,
        e.flags,
        libc::O_NONBLOCK | libc::O_ASYNC,
        e.fown.as_ref(),
        &what,
    )
}

/// Gives a socket the options the dump saw, in the order that makes them stick.
fn set_options(pid: Pid, fd: BorrowedFd<'_>, e: &pb::InetSkEntry, what: &str) -> Result<()> {
    let Some(o) = &e.opts else { return Ok(()) };
    if !o.so_filter.is_empty() {
        inet::attach_filter(fd, &o.so_filter).ctx(pid, || format!("{what}: SO_ATTACH_FILTER"))?;
    }
    let set = |level: i32, name: i32, v: i32| {
        net::set_int_opt(fd, level, name, v)
            .ctx(pid, || format!("{what}: setsockopt({level}, {name}, {v})"))
    };
    // CRIU's fields, where they say something a fresh socket does not (an image of
    // CRIU's has nothing else); stasis's list below repeats them in the right order.
    let on = |b: Option<bool>| b == Some(true);
    for (flag, name) in [
        (o.reuseaddr, libc::SO_REUSEADDR),
        (o.so_reuseport, libc::SO_REUSEPORT),
        (o.so_keepalive, libc::SO_KEEPALIVE),
        (o.so_broadcast, libc::SO_BROADCAST),
        (o.so_passcred, libc::SO_PASSCRED),
        (o.so_dontroute, libc::SO_DONTROUTE),
    ] {
        if on(flag) {
            set(libc::SOL_SOCKET, name, 1)?;
        }
    }
    if let Some(dev) = o.so_bound_dev.as_deref().filter(|d| !d.is_empty()) {
        inet::set_opt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_bytes())
            .ctx(pid, || format!("{what}: SO_BINDTODEVICE {dev}"))?;
    }
    if e.v6only == Some(true) {
        set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    if e.ip_opts.as_ref().and_then(|i| i.freebind) == Some(true) {
        let level = if e.family as i32 == libc::AF_INET {
            (libc::IPPROTO_IP, libc::IP_FREEBIND)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)
        };
        set(level.0, level.1, 1)?;
    }
    for s in &e.stasis_opts {
        inet::set_opt_bytes(fd, s.level, s.name, &s.value).ctx(pid, || {
            format!("{what}: setsockopt({}, {})", s.level, s.name)
        })?;
    }
    let lock = o.so_buf_lock.unwrap_or(SNDBUF_LOCK | RCVBUF_LOCK);
    if lock & SNDBUF_LOCK != 0 {
        set(
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (o.so_sndbuf / 2) as i32,
        )?;
    }
    if lock & RCVBUF_LOCK != 0 {
        set(
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (o.so_rcvbuf / 2) as i32,
        )?;
    }
    for (name, t) in [
        (libc::SO_SNDTIMEO, (o.so_snd_tmo_sec, o.so_snd_tmo_usec)),
        (libc::SO_RCVTIMEO, (o.so_rcv_tmo_sec, o.so_rcv_tmo_usec)),
    ] {
        if t != (0, 0) {
            net::set_timeval_opt(fd, name, t).ctx(pid, || format!("{what}: timeout {name}"))?;
        }
    }
    Ok(())
}

/// Queues the saved datagrams on the socket again, each from its original source.
fn refill(
    pid: Pid,
    e: &pb::InetSkEntry,
    local: SocketAddr,
    ifindex: Option<u32>,
    queue: &[(pb::SkPacketEntry, Vec<u8>)],
    what: &str,
) -> Result<()> {
    let proto = e.proto as i32;
    if e.r#type as i32 != libc::SOCK_DGRAM
        || !(proto == libc::IPPROTO_UDP || proto == libc::IPPROTO_UDPLITE)
    {
        return Err(invalid(
            "sk-queues.img",
            format!("{what}: queued data for a socket that is not UDP"),
        ));
    }
    for (m, data) in queue {
        let from = m
            .stasis_from
            .as_deref()
            .and_then(|s| s.parse::<SocketAddr>().ok())
            .ok_or_else(|| {
                invalid(
                    "sk-queues.img",
                    format!("{what}: a datagram without a valid source address"),
                )
            })?;
        let packet = udp_packet(proto, from, local, data)
            .ok_or_else(|| invalid("sk-queues.img", format!("{what}: datagram too large")))?;
        let dst = packet_dst(from, local);
        inet::inject_packet(&packet, dst, ifindex).ctx(pid, || {
            format!("{what}: queue a datagram from {from} again")
        })?;
    }
    Ok(())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it maps (a dual-stack socket's IPv4
/// peers are shown so, but arrived as IPv4).
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where a datagram from `from` to a socket bound at `local` is addressed: the bound
/// address, or loopback for a wildcard-bound socket.
fn packet_dst(from: SocketAddr, local: SocketAddr) -> IpAddr {
    let src = unmapped(from.ip());
    let bound = unmapped(local.ip());
    if !bound.is_unspecified() && bound.is_ipv4() == src.is_ipv4() {
        return bound;
    }
    if src.is_ipv4() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    }
}

/// The ones' complement sum of `data` folded to 16 bits, starting from `sum`.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// A complete IP packet carrying one UDP (or UDP-lite, full checksum coverage) datagram
/// from `from` to the socket at `local`.
fn udp_packet(proto: i32, from: SocketAddr, local: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
    let src = unmapped(from.ip());
    let dst = packet_dst(from, local);
    let udp_len = u16::try_from(8 + data.len()).ok()?;
    let mut udp = Vec::with_capacity(usize::from(udp_len));
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&local.port().to_be_bytes());
    // UDP-lite puts its checksum coverage here; 0 covers the whole datagram.
    let len_field = if proto == libc::IPPROTO_UDPLITE {
        0
    } else {
        udp_len
    };
    udp.extend_from_slice(&len_field.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    let mut pseudo = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto as u8]);
            pseudo.extend_from_slice(&udp_len.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto as u8]);
        }
        _ => return None,
    }
    let mut sum = !(sum16(sum16(0, &pseudo), &udp) as u16);
    if sum == 0 {
        sum = 0xffff; // 0 means "no checksum" for UDP
    }
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let mut packet = Vec::with_capacity(40 + udp.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + udp.len()).ok()?;
            packet.extend_from_slice(&[0x45, 0]);
            packet.extend_from_slice(&total.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0, 0, 64, proto as u8, 0, 0]);
            packet.extend_from_slice(&s.octets());
            packet.extend_from_slice(&d.octets());
            let csum = !(sum16(0, &packet) as u16);
            packet[10..12].copy_from_slice(&csum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            packet.extend_from_slice(&[0x60, 0, 0, 0]);
            packet.extend_from_slice(&udp_len.to_be_bytes());
            packet.extend_from_slice(&[proto as u8, 64]);
            packet.extend_from_slice(&s.octets());
            packet.extend_from_slice(&d.octets());
        }
        _ => return None,
    }
    packet.extend_from_slice(&udp);
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_checksum_verifies() {
        let from: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        let to: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let p = udp_packet(libc::IPPROTO_UDP, from, to, b"hello").unwrap();
        assert_eq!(p.len(), 20 + 8 + 5);
        // The IPv4 header and the UDP datagram with its pseudo header each sum to 0xffff.
        assert_eq!(sum16(0, &p[..20]), 0xffff);
        let mut pseudo = vec![127, 0, 0, 2, 127, 0, 0, 1, 0, 17, 0, 13];
        pseudo.extend_from_slice(&p[20..]);
        assert_eq!(sum16(0, &pseudo), 0xffff);
    }

    #[test]
    fn mapped_sources_go_as_ipv4() {
        let from: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        let to: SocketAddr = "[::]:5000".parse().unwrap();
        assert_eq!(packet_dst(from, to), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let p = udp_packet(libc::IPPROTO_UDP, from, to, b"x").unwrap();
        assert_eq!(p[0], 0x45);
    }
}
