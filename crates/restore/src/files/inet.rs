//! IPv4 and IPv6 sockets, made again by stasis before any process is forked: created,
//! given their BPF filter and options (those of [`inet::OPTIONS`] in their order, then
//! CRIU's buffer sizes and timeouts), bound, made to listen or connected (datagram
//! sockets), joined to their multicast groups; then their queued datagrams are queued
//! again by handing the local stack packets with the original source address through a
//! raw socket, right after the socket is made, so no other socket of the tree exists yet
//! to take them.
//!
//! A TCP connection (`--tcp-established` at dump) is rebuilt in repair mode (`TCP_REPAIR`,
//! the kernel's interface for exactly this): bound and "connected" without a packet,
//! sequence numbers, negotiated options, timestamp clock, window, and both queues put
//! back (the part of the send queue never sent goes as ordinary data); a FIN received or
//! sent is replayed (ours by `shutdown`, the peer's as a packet handed to the stack).
//! Repair mode is left for every connection at once, once the whole tree is ready
//! ([`TcpRepaired::release`]), after the network lock of the dump is lifted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::inet::{
    TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
    TCP_LAST_ACK, TCP_LISTEN, is_tcp_connection as is_connection,
};
use stasis_sys::{Pid, inet, net};

use super::OpenCtx;
use crate::error::{RestoreError, Result, SysContext, invalid};

const TCPI_OPT_TIMESTAMPS: u32 = 1;
const TCPI_OPT_SACK: u32 = 2;
const TCPI_OPT_WSCALE: u32 = 4;
/// TCP option kinds for `TCP_REPAIR_OPTIONS`.
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;

/// A TCP connection's saved state and its two queues.
pub type TcpStream = (pb::TcpStreamEntry, Vec<u8>, Vec<u8>);

/// Reads the `tcp-stream-INO.img` of every TCP connection among `files` (a dump with
/// `--tcp-close` wrote none).
pub fn load_streams(
    dir: &ImageDir,
    files: &HashMap<u32, pb::FileEntry>,
) -> Result<HashMap<u32, TcpStream>> {
    let mut out = HashMap::new();
    for e in files.values().filter_map(|f| f.isk.as_ref()) {
        if e.r#type as i32 != libc::SOCK_STREAM || !is_connection(e.state) {
            continue;
        }
        let Some(mut r) = dir.open_optional(ImageKind::TcpStream, u64::from(e.ino))? else {
            continue;
        };
        let s: pb::TcpStreamEntry = r.expect()?;
        let inq = r.read_payload(u64::from(s.inq_len))?;
        let outq = r.read_payload(u64::from(s.outq_len))?;
        if s.unsq_len.unwrap_or(0) > s.outq_len {
            return Err(invalid(
                ImageKind::TcpStream.file_name(u64::from(e.ino)),
                "more unsent bytes than bytes in the send queue",
            ));
        }
        out.insert(e.ino, (s, inq, outq));
    }
    Ok(out)
}

/// What restoring one socket leaves for the next ones and for the end of the restore.
#[derive(Debug, Default)]
pub(crate) struct InetState {
    /// The TCP connections left in repair mode.
    pub tcp: Vec<TcpRepaired>,
    /// How many members each `SO_REUSEPORT` group of UDP sockets has so far, by family,
    /// protocol, bound address and device (what makes sockets one group).
    reuseport: HashMap<(i32, i32, SocketAddr, String), u32>,
}

/// A connection left in repair mode until the whole tree is ready.
#[derive(Debug)]
pub struct TcpRepaired {
    pid: Pid,
    fd: OwnedFd,
    reuseaddr: bool,
    what: String,
}

impl TcpRepaired {
    /// Leaves repair mode (the kernel sends a window probe, which the peer answers with
    /// where it is) and gives back `SO_REUSEADDR`, which leaving repair mode resets.
    pub fn release(&self) -> Result<()> {
        net::set_int_opt(
            self.fd.as_fd(),
            libc::IPPROTO_TCP,
            inet::TCP_REPAIR,
            inet::TCP_REPAIR_OFF,
        )
        .ctx(self.pid, || format!("{}: leave TCP repair mode", self.what))?;
        net::set_int_opt(
            self.fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            i32::from(self.reuseaddr),
        )
        .ctx(self.pid, || format!("{}: SO_REUSEADDR", self.what))
    }
}
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
pub(crate) fn open(
    cx: &OpenCtx<'_>,
    e: &pb::InetSkEntry,
    state: &mut InetState,
) -> Result<OwnedFd> {
    let pid = cx.pid;
    let what = format!("inet socket:[{}]", e.ino);
    let bad = |reason: String| invalid("files.img", format!("{what}: {reason}"));
    let finish = |sock: OwnedFd| {
        cx.finish(
            sock,
            e.flags,
            libc::O_NONBLOCK | libc::O_ASYNC,
            e.fown.as_ref(),
            &what,
        )
    };
    let family = e.family as i32;
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(bad(format!("family {family}")));
    }
    let local = addr(e.family, &e.src_addr, e.src_port)
        .ok_or_else(|| bad("a malformed local address".into()))?;
    let peer = addr(e.family, &e.dst_addr, e.dst_port)
        .ok_or_else(|| bad("a malformed remote address".into()))?;
    let (kind, proto) = (e.r#type as i32, e.proto as i32);
    if kind == libc::SOCK_STREAM
        && cx.images.tcp_close
        && !matches!(e.state, TCP_LISTEN | TCP_CLOSE)
    {
        // --tcp-close: a connection comes back as a socket that is not connected (what
        // the program finds is a connection the network ended: ENOTCONN, EPIPE).
        let sock = inet::socket(family, kind, proto).ctx(pid, || format!("create {what}"))?;
        set_options(pid, sock.as_fd(), e, &what)?;
        return finish(sock);
    }
    let stream = if kind == libc::SOCK_STREAM && is_connection(e.state) {
        Some(cx.images.file_data.tcp_streams.get(&e.ino).ok_or_else(|| {
            invalid(
                ImageKind::TcpStream.file_name(u64::from(e.ino)),
                format!("{what}: the connection's state is missing"),
            )
        })?)
    } else {
        None
    };
    match (kind, e.state) {
        (libc::SOCK_STREAM, TCP_LISTEN | TCP_CLOSE) => {}
        (libc::SOCK_STREAM, _) if stream.is_some() => {}
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
    if let Some(stream) = stream {
        repair(pid, fd, e, local, peer, stream, &what)?;
        let keep = sock
            .try_clone()
            .map_err(|err| RestoreError::Other(format!("process {pid}: dup {what}: {err}")))?;
        state.tcp.push(TcpRepaired {
            pid,
            fd: keep,
            reuseaddr: e.opts.as_ref().and_then(|o| o.reuseaddr) == Some(true),
            what: what.clone(),
        });
        return finish(sock);
    }
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
    // This socket's place in its SO_REUSEPORT group, if it joined one with others.
    let group_index = (kind == libc::SOCK_DGRAM
        && e.opts.as_ref().and_then(|o| o.so_reuseport) == Some(true))
    .then(|| {
        let dev = e
            .opts
            .as_ref()
            .and_then(|o| o.so_bound_dev.clone())
            .unwrap_or_default();
        let n = state
            .reuseport
            .entry((family, proto, local, dev))
            .or_insert(0);
        *n += 1;
        *n - 1
    })
    .filter(|&i| i > 0);
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
        // The group would hand each datagram to a member of its choosing: steered to
        // this one while it is refilled.
        if let Some(index) = group_index {
            inet::steer_reuseport(fd, index)
                .ctx(pid, || format!("{what}: steer its SO_REUSEPORT group"))?;
        }
        let refilled = refill(pid, e, local, ifindex, queue, &what);
        if group_index.is_some() {
            inet::unsteer_reuseport(fd).ctx(pid, || format!("{what}: SO_DETACH_REUSEPORT_BPF"))?;
        }
        refilled?;
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
    finish(sock)
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
    set_timeouts(pid, fd, o, what)?;
    Ok(())
}

/// Gives any socket the send and receive timeouts (`SO_SNDTIMEO`, `SO_RCVTIMEO`) its
/// options entry has, those that are not the default of none.
pub(crate) fn set_timeouts(
    pid: Pid,
    fd: BorrowedFd<'_>,
    o: &pb::SkOptsEntry,
    what: &str,
) -> Result<()> {
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

/// Rebuilds a TCP connection in repair mode (left in it; see [`TcpRepaired`]).
fn repair(
    pid: Pid,
    fd: BorrowedFd<'_>,
    e: &pb::InetSkEntry,
    local: SocketAddr,
    peer: SocketAddr,
    (st, inq, outq): &TcpStream,
    what: &str,
) -> Result<()> {
    let state = e.state;
    let bit = |states: &[u32]| states.contains(&state);
    // Which FINs the connection has seen: ours queued first (we closed first), the
    // peer's received, ours queued after it (we closed second), and which were acked.
    let sndq_first_fin = bit(&[TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSING]);
    let sndq_second_fin = bit(&[TCP_LAST_ACK, TCP_CLOSE]);
    let sndq_fin_acked = bit(&[TCP_FIN_WAIT2, TCP_CLOSE]);
    let rcvq_fin = bit(&[TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSE, TCP_CLOSING]);
    let rcvq_fin_acked = bit(&[TCP_CLOSE]);
    let set = |level: i32, name: i32, v: i32, label: &str| {
        net::set_int_opt(fd, level, name, v).ctx(pid, || format!("{what}: {label}"))
    };
    let tcp = |name: i32, v: i32, label: &str| set(libc::IPPROTO_TCP, name, v, label);
    tcp(
        inet::TCP_REPAIR,
        inet::TCP_REPAIR_ON,
        "enter TCP repair mode",
    )?;
    // Room for the queues whatever the buffer sizes; the saved ones are set again after.
    set(
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        1 << 30,
        "SO_SNDBUFFORCE",
    )?;
    set(
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        1 << 30,
        "SO_RCVBUFFORCE",
    )?;
    // Repair mode binds over anything (the dead original's port included).
    inet::bind(fd, &local).ctx(pid, || format!("bind {what} to {local}"))?;
    let mut inq_seq = st.inq_seq;
    let mut outq_seq = st.outq_seq;
    if rcvq_fin {
        inq_seq = inq_seq.wrapping_sub(1);
    }
    if sndq_first_fin || sndq_second_fin {
        outq_seq = outq_seq.wrapping_sub(1);
    }
    let queue_seq = |queue: i32, seq: u32, label: &str| -> Result<()> {
        tcp(inet::TCP_REPAIR_QUEUE, queue, label)?;
        tcp(inet::TCP_QUEUE_SEQ, seq as i32, label)
    };
    queue_seq(
        inet::TCP_RECV_QUEUE,
        inq_seq.wrapping_sub(st.inq_len),
        "receive sequence number",
    )?;
    queue_seq(
        inet::TCP_SEND_QUEUE,
        outq_seq.wrapping_sub(st.outq_len),
        "send sequence number",
    )?;
    let window = match (
        st.snd_wl1,
        st.snd_wnd,
        st.max_window,
        st.rcv_wnd,
        st.rcv_wup,
    ) {
        (Some(a), Some(b), Some(c), Some(d), Some(e)) => Some([a, b, c, d, e]),
        _ => None,
    };
    let set_window = |w: [u32; 5]| {
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_ne_bytes()).collect();
        inet::set_opt_bytes(fd, libc::IPPROTO_TCP, inet::TCP_REPAIR_WINDOW, &bytes)
    };
    // The connect computes the segment size once, from the path MTU and the MSS clamp
    // (a user MSS stands in for it), less the timestamp option if the host uses them; the
    // clamp negotiated is given after. TCP_MAXSEG takes at most 32767.
    let ts_len = if tcp_timestamps_on() { 12 } else { 0 };
    let want = st.stasis_snd_mss.map_or(st.mss_clamp, |m| m + ts_len);
    let _ = net::set_int_opt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_MAXSEG,
        want.clamp(88, 32767) as i32,
    );
    inet::connect(fd, &peer).ctx(pid, || format!("connect {what} to {peer} (repair mode)"))?;
    tcp(libc::TCP_MAXSEG, 0, "clear TCP_MAXSEG")?;
    let mut opts: Vec<(u32, u32)> = Vec::new();
    if st.opt_mask & TCPI_OPT_SACK != 0 {
        opts.push((TCPOPT_SACK_PERM, 0));
    }
    if st.opt_mask & TCPI_OPT_WSCALE != 0 {
        let rcv = st.rcv_wscale.unwrap_or(0);
        opts.push((TCPOPT_WINDOW, st.snd_wscale + (rcv << 16)));
    }
    if st.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push((TCPOPT_TIMESTAMP, 0));
    }
    opts.push((TCPOPT_MAXSEG, st.mss_clamp));
    let bytes: Vec<u8> = opts
        .iter()
        .flat_map(|(c, v)| c.to_ne_bytes().into_iter().chain(v.to_ne_bytes()))
        .collect();
    inet::set_opt_bytes(fd, libc::IPPROTO_TCP, inet::TCP_REPAIR_OPTIONS, &bytes)
        .ctx(pid, || format!("{what}: TCP_REPAIR_OPTIONS"))?;
    if st.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        tcp(
            inet::TCP_TIMESTAMP,
            st.timestamp.unwrap_or(0) as i32,
            "TCP_TIMESTAMP",
        )?;
    }
    // The queues: received bytes, then the sent-but-unacknowledged part of the send
    // queue in repair mode; the part never sent as ordinary data, out of repair mode.
    tcp(
        inet::TCP_REPAIR_QUEUE,
        inet::TCP_RECV_QUEUE,
        "select the receive queue",
    )?;
    send_all(pid, fd, inq, what, "receive")?;
    let unsent = st.unsq_len.unwrap_or(0) as usize;
    let sent = outq.len().saturating_sub(unsent);
    tcp(
        inet::TCP_REPAIR_QUEUE,
        inet::TCP_SEND_QUEUE,
        "select the send queue",
    )?;
    send_all(pid, fd, &outq[..sent], what, "send")?;
    if unsent > 0 {
        tcp(
            inet::TCP_REPAIR,
            inet::TCP_REPAIR_OFF_NO_WP,
            "leave repair mode",
        )?;
        send_all(pid, fd, &outq[sent..], what, "unsent")?;
        tcp(
            inet::TCP_REPAIR,
            inet::TCP_REPAIR_ON,
            "enter TCP repair mode",
        )?;
    }
    if let Some([snd_wl1, snd_wnd, max_window, mut rcv_wnd, mut rcv_wup]) = window {
        if rcvq_fin {
            // The peer's FIN is replayed below and takes one sequence number.
            rcv_wup = rcv_wup.wrapping_sub(1);
            rcv_wnd = rcv_wnd.wrapping_add(1);
        }
        set_window([snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup])
            .ctx(pid, || format!("{what}: TCP_REPAIR_WINDOW"))?;
    }
    let fin_in_send_queue = |acked: bool| -> Result<()> {
        // Selecting the send queue makes the FIN count as sent already.
        if acked {
            tcp(
                inet::TCP_REPAIR_QUEUE,
                inet::TCP_SEND_QUEUE,
                "select the send queue",
            )?;
        }
        net::shutdown(fd, libc::SHUT_WR).ctx(pid, || format!("{what}: queue our FIN"))?;
        if acked {
            tcp(
                inet::TCP_REPAIR_QUEUE,
                inet::TCP_NO_QUEUE,
                "deselect the queues",
            )?;
        }
        Ok(())
    };
    let segment = |seq: u32, ack: u32, flags: u8| -> Result<()> {
        let window = st.rcv_wnd.unwrap_or(65535).min(65535) as u16;
        let packet = tcp_packet(peer, local, seq, ack, flags, window)
            .ok_or_else(|| invalid("files.img", format!("{what}: mixed address families")))?;
        inet::inject_packet(&packet, unmapped(local.ip()), None)
            .ctx(pid, || format!("{what}: replay the peer's segment"))
    };
    if sndq_first_fin {
        fin_in_send_queue(sndq_fin_acked)?;
    }
    if rcvq_fin {
        segment(inq_seq, outq_seq.wrapping_sub(st.outq_len), TH_ACK | TH_FIN)?;
    }
    if sndq_second_fin {
        fin_in_send_queue(sndq_fin_acked)?;
    }
    if rcvq_fin_acked {
        inq_seq = inq_seq.wrapping_add(1);
    }
    if sndq_fin_acked {
        outq_seq = outq_seq.wrapping_add(1);
        segment(inq_seq, outq_seq.wrapping_sub(st.outq_len), TH_ACK)?;
    }
    if let Some(o) = &e.opts {
        set(
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (o.so_sndbuf / 2) as i32,
            "SO_SNDBUFFORCE",
        )?;
        set(
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (o.so_rcvbuf / 2) as i32,
            "SO_RCVBUFFORCE",
        )?;
        // Sizes the kernel was tuning itself stay its to tune (FORCE locked them).
        let lock = o.so_buf_lock.unwrap_or(SNDBUF_LOCK | RCVBUF_LOCK);
        set(
            libc::SOL_SOCKET,
            libc::SO_BUF_LOCK,
            lock as i32,
            "SO_BUF_LOCK",
        )?;
    }
    Ok(())
}

const TH_FIN: u8 = 0x01;
const TH_ACK: u8 = 0x10;

/// Sends all of `data` into the selected queue of a socket in repair mode, in chunks the
/// kernel can allocate (a receive queue chunk becomes one linear buffer).
fn send_all(pid: Pid, fd: BorrowedFd<'_>, data: &[u8], what: &str, queue: &str) -> Result<()> {
    let mut off = 0;
    let mut chunk = data.len().max(1);
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        match inet::send(fd, &data[off..end]) {
            Ok(n) if n > 0 => off += n,
            Err(stasis_sys::Errno(libc::ENOMEM | libc::EAGAIN)) | Ok(_) if chunk > 1024 => {
                chunk /= 2;
            }
            Ok(_) => {
                return Err(RestoreError::Other(format!(
                    "process {pid}: {what}: the {queue} queue took nothing more after {off} \
                     of {} bytes",
                    data.len()
                )));
            }
            Err(errno) => {
                return Err(RestoreError::Sys {
                    pid,
                    what: format!(
                        "{what}: restore the {queue} queue ({off} of {} bytes)",
                        data.len()
                    ),
                    errno,
                });
            }
        }
    }
    Ok(())
}

/// Whether this host puts timestamps in TCP segments (`net.ipv4.tcp_timestamps`).
fn tcp_timestamps_on() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_timestamps").map_or(true, |v| v.trim() != "0")
}

/// A TCP segment without data from `from` to `to`, in an IP packet.
fn tcp_packet(
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> Option<Vec<u8>> {
    let (src, dst) = (unmapped(from.ip()), unmapped(to.ip()));
    let mut seg = Vec::with_capacity(20);
    seg.extend_from_slice(&from.port().to_be_bytes());
    seg.extend_from_slice(&to.port().to_be_bytes());
    seg.extend_from_slice(&seq.to_be_bytes());
    seg.extend_from_slice(&ack.to_be_bytes());
    seg.extend_from_slice(&[5 << 4, flags]);
    seg.extend_from_slice(&window.to_be_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0]);
    ip_packet(libc::IPPROTO_TCP, src, dst, seg, 16)
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
    ip_packet(proto, unmapped(from.ip()), packet_dst(from, local), udp, 6)
}

/// An IP packet from `src` to `dst` carrying `payload` of protocol `proto`, whose
/// transport checksum (over the pseudo header and the payload) goes at `csum_at`.
/// The TTL (hop limit) of a packet handed to the stack: 0 for multicast, which the
/// kernel loops back to the host's sockets before it drops the copy that would leave
/// through the interface (a queued datagram must not go out to the network again).
fn ttl(dst: IpAddr) -> u8 {
    if dst.is_multicast() { 0 } else { 64 }
}

fn ip_packet(
    proto: i32,
    src: IpAddr,
    dst: IpAddr,
    mut payload: Vec<u8>,
    csum_at: usize,
) -> Option<Vec<u8>> {
    let len = u16::try_from(payload.len()).ok()?;
    let mut pseudo = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto as u8]);
            pseudo.extend_from_slice(&len.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto as u8]);
        }
        _ => return None,
    }
    let mut sum = !(sum16(sum16(0, &pseudo), &payload) as u16);
    if sum == 0 && proto != libc::IPPROTO_TCP {
        sum = 0xffff; // 0 means "no checksum" for UDP
    }
    payload[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut packet = Vec::with_capacity(40 + payload.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + payload.len()).ok()?;
            packet.extend_from_slice(&[0x45, 0]);
            packet.extend_from_slice(&total.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0, 0, ttl(dst), proto as u8, 0, 0]);
            packet.extend_from_slice(&s.octets());
            packet.extend_from_slice(&d.octets());
            let csum = !(sum16(0, &packet) as u16);
            packet[10..12].copy_from_slice(&csum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            packet.extend_from_slice(&[0x60, 0, 0, 0]);
            packet.extend_from_slice(&len.to_be_bytes());
            packet.extend_from_slice(&[proto as u8, ttl(dst)]);
            packet.extend_from_slice(&s.octets());
            packet.extend_from_slice(&d.octets());
        }
        _ => return None,
    }
    packet.extend_from_slice(&payload);
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
