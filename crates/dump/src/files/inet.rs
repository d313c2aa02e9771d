//! IPv4 and IPv6 sockets: TCP listening and unconnected, UDP and UDP-lite (bound,
//! connected, with the datagrams queued on them), raw and ping sockets.
//!
//! What a socket is comes from `getsockname`/`getpeername`/`TCP_INFO` on our copy of it
//! (TCP sockets that neither listen nor are connected are in no table `sock_diag` walks);
//! listeners' backlog and pending connections and the shutdown state from `sock_diag`.
//! Options: CRIU's fields, plus every option of [`inet::OPTIONS`] whose value differs from
//! a fresh socket's of the same kind (made here, in the same network namespace), plus the
//! BPF filter and the multicast memberships (found by asking the socket about each group
//! the host's interfaces have joined). Queued UDP datagrams are peeked at with
//! `SO_PEEK_OFF` (the process's offset put back) with their source address.
//!
//! TCP connections (with `--tcp-established`, as CRIU): the connection is locked first
//! (no packet in or out, see [`stasis_sys::netlock`]), then put in repair mode (`TCP_REPAIR`), which
//! shows its sequence numbers, negotiated options, window and both queues (sent and
//! unsent bytes alike) without changing anything; `tcp-stream-INO.img` gets them. The
//! connection stays in repair mode so the kill closes it without a packet; a tree that
//! goes on running (or a failed dump) gets its connections back out of repair mode and
//! unlocked.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::inet::{
    self, InetDiag, TCP_CLOSE, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
    TCP_LAST_ACK, TCP_LISTEN, TCP_SYN_SENT, is_tcp_connection as is_connection,
};
use stasis_sys::netlock::NetLock;
use stasis_sys::{Pid, net, proc};

use super::{Fd, FileOptions, FileTable};
use crate::error::{DumpError, Result, SysContext};

/// A TCP connection in repair mode: whose, which fd, our copy, its `SO_REUSEADDR`
/// (leaving repair mode resets it).
#[derive(Debug)]
struct Repaired {
    pid: Pid,
    fd: i32,
    sock: std::os::fd::OwnedFd,
    reuseaddr: bool,
}

/// The values of [`inet::OPTIONS`] for one socket (`None`: not an option it has).
type OptionValues = Vec<Option<Vec<u8>>>;

/// State shared by the inet sockets of one dump.
#[derive(Debug, Default)]
pub(crate) struct InetSockets {
    /// `sock_diag` by (family, protocol), read once each.
    diag: HashMap<(i32, i32), HashMap<u32, InetDiag>>,
    /// Fresh sockets' values of [`inet::OPTIONS`], by (family, type, protocol).
    fresh: FreshOptions,
    /// Multicast groups joined on the host's interfaces: (interface name, index, group).
    groups: Option<Vec<(String, u32, IpAddr)>>,
    /// Queued datagrams: entry and bytes.
    pub queues: Vec<(pb::SkPacketEntry, Vec<u8>)>,
    /// The network lock of the connections saved.
    lock: Option<NetLock>,
    /// Connections in repair mode.
    repaired: Vec<Repaired>,
    /// Connection states: socket inode, entry, receive and send queue bytes.
    streams: Vec<(u32, pb::TcpStreamEntry, Vec<u8>, Vec<u8>)>,
}

impl InetSockets {
    /// `sock_diag`'s view of the inet sockets of one family and protocol, read once.
    fn diag_of(&mut self, pid: Pid, family: i32, proto: i32) -> Result<&HashMap<u32, InetDiag>> {
        Ok(match self.diag.entry((family, proto)) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(inet::inet_sockets(family, proto).ctx(pid, || {
                    format!("sock_diag of inet sockets ({family}, {proto})")
                })?)
            }
        })
    }

    /// Locks every TCP connection the fds of `pids` hold, in one step (one `nft` run
    /// per connection, as each is met, would keep a tree with many frozen for long).
    pub fn lock_connections(&mut self, pids: &[Pid], opts: FileOptions) -> Result<()> {
        let mut inodes = HashSet::new();
        for &pid in pids {
            let Ok(list) = proc::fds(pid) else { continue };
            for fd in list {
                let Ok(link) = std::fs::read_link(proc::path(pid, &format!("fd/{fd}"))) else {
                    continue;
                };
                if let Some(ino) = link
                    .to_str()
                    .and_then(|l| l.strip_prefix("socket:["))
                    .and_then(|l| l.strip_suffix(']'))
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    inodes.insert(ino);
                }
            }
        }
        if inodes.is_empty() {
            return Ok(());
        }
        let root = opts.root;
        let mut pairs = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            let diag = self.diag_of(root, family, libc::IPPROTO_TCP)?;
            pairs.extend(
                diag.values()
                    .filter(|d| inodes.contains(&d.ino) && is_connection(u32::from(d.state)))
                    .map(|d| (d.src, d.dst)),
            );
        }
        if pairs.is_empty() {
            return Ok(());
        }
        let n = pairs.len();
        self.lock
            .get_or_insert_with(|| NetLock::new(opts.network_lock, root))
            .lock_all(&pairs)
            .map_err(|e| DumpError::Unsupported {
                pid: root,
                resource: format!("{n} TCP connections of the tree"),
                reason: format!("cannot lock them: {e}"),
            })?;
        log::info!("network lock: the connections of {n} TCP sockets of the tree locked");
        Ok(())
    }

    /// Takes the connections out of repair mode and lifts the lock, for a tree that goes
    /// on running or a dump that failed. Errors are logged: there is nothing else to do.
    pub fn release_connections(&mut self) {
        // Out of repair mode first: what the kernel sends then waits behind the lock.
        self.release_repaired();
        if let Some(lock) = &mut self.lock
            && let Err(e) = lock.unlock()
        {
            log::error!("network unlock: {e}");
        }
    }

    fn release_repaired(&mut self) {
        for r in self.repaired.drain(..) {
            let fd = r.sock.as_fd();
            let off = net::set_int_opt(
                fd,
                libc::IPPROTO_TCP,
                inet::TCP_REPAIR,
                inet::TCP_REPAIR_OFF,
            )
            .and_then(|()| {
                net::set_int_opt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    i32::from(r.reuseaddr),
                )
            });
            if let Err(e) = off {
                log::error!("process {}: fd {}: leave TCP repair mode: {e}", r.pid, r.fd);
            }
        }
    }

    /// Writes `tcp-stream-INO.img` of every connection.
    pub fn write_streams(&self, dir: &ImageDir) -> Result<()> {
        for (ino, e, inq, outq) in &self.streams {
            let mut w = dir.create(ImageKind::TcpStream, u64::from(*ino))?;
            w.write(e)?;
            w.write_raw(inq)?;
            w.write_raw(outq)?;
            w.finish()?;
        }
        Ok(())
    }
}

/// Locks the connection at `f`, puts it in repair mode and reads its state.
fn dump_connection(
    table: &mut FileTable,
    f: &Fd,
    local: SocketAddr,
    peer: SocketAddr,
    state: u32,
    reuseaddr: bool,
    opts: FileOptions,
) -> Result<()> {
    let fd = f.file.as_fd();
    let what = |s: &str| format!("fd {}: {s}", f.fd);
    table
        .inet
        .lock
        .get_or_insert_with(|| NetLock::new(opts.network_lock, opts.root))
        .lock(local, peer)
        .map_err(|e| f.unsupported(format!("cannot lock the connection to {peer}: {e}")))?;
    let sock = f
        .file
        .try_clone()
        .map_err(|e| f.unsupported(format!("dup of the socket: {e}")))?;
    net::set_int_opt(fd, libc::IPPROTO_TCP, inet::TCP_REPAIR, inet::TCP_REPAIR_ON)
        .ctx(f.pid, || what("enter TCP repair mode"))?;
    table.inet.repaired.push(Repaired {
        pid: f.pid,
        fd: f.fd,
        sock,
        reuseaddr,
    });
    let info = inet::get_opt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 24)
        .ctx(f.pid, || what("TCP_INFO"))?;
    let (options, wscale) = (
        info.get(5).copied().unwrap_or(0),
        info.get(6).copied().unwrap_or(0),
    );
    let snd_mss = info
        .get(16..20)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let mut outq_len = stasis_sys::fds::bytes_unsent(fd).ctx(f.pid, || what("SIOCOUTQ"))?;
    let mut unsq_len = inet::unsent_bytes(fd).ctx(f.pid, || what("SIOCOUTQNSD"))?;
    let inq_len = stasis_sys::fds::bytes_readable(fd).ctx(f.pid, || what("SIOCINQ"))?;
    // A FIN we queued takes a sequence number but is no data.
    if matches!(
        state,
        TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSING | TCP_LAST_ACK
    ) {
        outq_len = outq_len.saturating_sub(1);
        unsq_len = unsq_len.saturating_sub(1);
    }
    let int = |name: i32, label: &str| {
        net::get_int_opt(fd, libc::IPPROTO_TCP, name).ctx(f.pid, || what(label))
    };
    let mss_clamp = int(libc::TCP_MAXSEG, "TCP_MAXSEG")? as u32;
    const TCPI_OPT_TIMESTAMPS: u8 = 1;
    const TCPI_OPT_WSCALE: u8 = 4;
    let timestamp = if options & TCPI_OPT_TIMESTAMPS != 0 {
        Some(int(inet::TCP_TIMESTAMP, "TCP_TIMESTAMP")? as u32)
    } else {
        None
    };
    let window = inet::get_opt_bytes(fd, libc::IPPROTO_TCP, inet::TCP_REPAIR_WINDOW, 20)
        .ctx(f.pid, || what("TCP_REPAIR_WINDOW"))?;
    if window.len() != 20 {
        return Err(f.unsupported("TCP_REPAIR_WINDOW gives a short answer"));
    }
    let w = |i: usize| u32::from_ne_bytes([window[i], window[i + 1], window[i + 2], window[i + 3]]);
    let queue = |q: i32, len: u32, label: &str| -> Result<(u32, Vec<u8>)> {
        net::set_int_opt(fd, libc::IPPROTO_TCP, inet::TCP_REPAIR_QUEUE, q)
            .ctx(f.pid, || what(label))?;
        let seq = net::get_int_opt(fd, libc::IPPROTO_TCP, inet::TCP_QUEUE_SEQ)
            .ctx(f.pid, || what(label))? as u32;
        // One byte more than expected: the queue must hold exactly `len`.
        let data = if len > 0 {
            inet::recv_peek(fd, len as usize + 1).ctx(f.pid, || what(label))?
        } else {
            Vec::new()
        };
        if data.len() != len as usize {
            return Err(f.unsupported(format!(
                "its {label} holds {} bytes, {len} expected",
                data.len()
            )));
        }
        Ok((seq, data))
    };
    let (inq_seq, inq) = queue(inet::TCP_RECV_QUEUE, inq_len, "receive queue")?;
    let (outq_seq, outq) = queue(inet::TCP_SEND_QUEUE, outq_len, "send queue")?;
    net::set_int_opt(
        fd,
        libc::IPPROTO_TCP,
        inet::TCP_REPAIR_QUEUE,
        inet::TCP_NO_QUEUE,
    )
    .ctx(f.pid, || what("deselect the repair queue"))?;
    let ws = u32::from(options & TCPI_OPT_WSCALE != 0);
    let entry = pb::TcpStreamEntry {
        inq_len,
        inq_seq,
        outq_len,
        outq_seq,
        opt_mask: u32::from(options),
        snd_wscale: u32::from(wscale & 0xf) * ws,
        mss_clamp,
        rcv_wscale: (ws != 0).then_some(u32::from(wscale >> 4)),
        timestamp,
        cork: None,
        nodelay: None,
        unsq_len: Some(unsq_len),
        snd_wl1: Some(w(0)),
        snd_wnd: Some(w(4)),
        max_window: Some(w(8)),
        rcv_wnd: Some(w(12)),
        rcv_wup: Some(w(16)),
        stasis_snd_mss: snd_mss,
    };
    table
        .inet
        .streams
        .push((f.st.st_ino as u32, entry, inq, outq));
    Ok(())
}

pub(crate) fn int_opt(f: &Fd, level: i32, name: i32) -> Result<i32> {
    net::get_int_opt(f.file.as_fd(), level, name).ctx(f.pid, || {
        format!("fd {}: getsockopt({level}, {name})", f.fd)
    })
}

/// Whether the socket at `f` is in stasis's network namespace (sockets of another
/// cannot be made again from here).
pub(crate) fn check_netns(f: &Fd) -> Result<()> {
    let own = stasis_sys::fs::stat("/proc/self/ns/net".as_ref())
        .ctx(f.pid, || "stat of our network namespace".into())?
        .st_ino;
    let ns = inet::socket_netns(f.file.as_fd()).ctx(f.pid, || format!("fd {}: SIOCGSKNS", f.fd))?;
    if ns != own {
        return Err(f.unsupported(
            "it belongs to another network namespace than stasis's; run stasis in the \
             tree's network namespace (ip netns exec, nsenter --net)",
        ));
    }
    Ok(())
}

/// Fresh sockets' values of [`inet::OPTIONS`] (as some `values` function reads them), by
/// (family, type, protocol).
pub(crate) type FreshOptions = HashMap<(i32, i32, i32), OptionValues>;

/// The options of [`inet::OPTIONS`] the socket at `f` has (read by `values`) that differ
/// from a fresh socket's of the same `key` (family, type, protocol), made here once per
/// key and kept in `fresh`; options `keep` refuses are left out.
pub(crate) fn differing_options(
    fresh: &mut FreshOptions,
    f: &Fd,
    key: (i32, i32, i32),
    values: impl Fn(BorrowedFd<'_>) -> OptionValues,
    keep: impl Fn(&inet::SockOpt) -> bool,
) -> Result<Vec<pb::StasisSockoptEntry>> {
    let base = match fresh.get(&key) {
        Some(v) => v.clone(),
        None => {
            let s = inet::socket(key.0, key.1, key.2)
                .ctx(f.pid, || format!("a fresh socket {key:?}"))?;
            let v = values(s.as_fd());
            fresh.insert(key, v.clone());
            v
        }
    };
    let ours = values(f.file.as_fd());
    Ok(inet::OPTIONS
        .iter()
        .zip(ours.into_iter().zip(base))
        .filter(|(o, _)| keep(o))
        .filter_map(|(o, (v, fresh))| {
            let v = v?;
            (Some(&v) != fresh.as_ref()).then_some(pb::StasisSockoptEntry {
                level: o.level,
                name: o.name,
                value: v,
            })
        })
        .collect())
}

/// Every option of [`inet::OPTIONS`] of the socket's kind, as `getsockopt` gives it
/// (`None`: the kernel refuses the option for this socket).
fn table_values(fd: BorrowedFd<'_>, family: i32, kind: i32, proto: i32) -> OptionValues {
    inet::OPTIONS
        .iter()
        .map(|o| {
            o.scope
                .applies(family, kind, proto)
                .then(|| inet::get_opt_bytes(fd, o.level, o.name, o.size).ok())
                .flatten()
        })
        .collect()
}

/// Address words as CRIU stores them: the address bytes, four at a time, in memory order.
fn addr_words(ip: IpAddr) -> Vec<u32> {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The multicast groups of every interface: `/proc/net/igmp` (a device line, then one
/// indented line per group, the address as the hex of its native-order word) and
/// `/proc/net/igmp6` (index, device, group in hex, ...).
fn host_groups() -> Vec<(String, u32, IpAddr)> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/igmp") {
        let mut dev: Option<(String, u32)> = None;
        for line in text.lines().skip(1) {
            if !line.starts_with(char::is_whitespace) {
                let mut w = line.split_whitespace();
                let idx = w.next().and_then(|i| i.parse().ok());
                dev = idx.zip(w.next()).map(|(i, d)| (d.to_string(), i));
            } else if let (Some((name, idx)), Some(hex)) = (&dev, line.split_whitespace().next())
                && let Ok(word) = u32::from_str_radix(hex, 16)
            {
                let group = Ipv4Addr::from(word.to_ne_bytes());
                out.push((name.clone(), *idx, IpAddr::V4(group)));
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/igmp6") {
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() >= 3
                && w[2].len() == 32
                && let (Ok(idx), Ok(v)) = (w[0].parse(), u128::from_str_radix(w[2], 16))
            {
                out.push((w[1].to_string(), idx, IpAddr::V6(Ipv6Addr::from(v))));
            }
        }
    }
    out
}

/// CRIU's socket options entry (every family's).
pub(crate) fn sk_opts(f: &Fd) -> Result<pb::SkOptsEntry> {
    let fd = f.file.as_fd();
    let tmo = |name| {
        net::get_timeval_opt(fd, name).ctx(f.pid, || format!("fd {}: getsockopt({name})", f.fd))
    };
    let (snd_sec, snd_usec) = tmo(libc::SO_SNDTIMEO)?;
    let (rcv_sec, rcv_usec) = tmo(libc::SO_RCVTIMEO)?;
    let i = |name| int_opt(f, libc::SOL_SOCKET, name);
    // Options a kernel may refuse for inet sockets (SO_PASSCRED on recent ones) are left
    // out rather than failing the dump.
    let o = |name| net::get_int_opt(fd, libc::SOL_SOCKET, name).ok();
    let b = |name| o(name).map(|v| v != 0);
    let linger = inet::get_opt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, 8)
        .ctx(f.pid, || format!("fd {}: SO_LINGER", f.fd))?;
    let (on, secs) = if linger.len() == 8 {
        (
            i32::from_ne_bytes([linger[0], linger[1], linger[2], linger[3]]),
            u32::from_ne_bytes([linger[4], linger[5], linger[6], linger[7]]),
        )
    } else {
        (0, 0)
    };
    let dev = inet::get_opt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, libc::IFNAMSIZ)
        .unwrap_or_default();
    let dev = String::from_utf8_lossy(&dev)
        .trim_end_matches('\0')
        .to_string();
    Ok(pb::SkOptsEntry {
        so_sndbuf: i(libc::SO_SNDBUF)? as u32,
        so_rcvbuf: i(libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        reuseaddr: b(libc::SO_REUSEADDR),
        so_priority: o(libc::SO_PRIORITY).map(|v| v as u32),
        so_rcvlowat: o(libc::SO_RCVLOWAT).map(|v| v as u32),
        so_mark: o(libc::SO_MARK).map(|v| v as u32),
        so_passcred: b(libc::SO_PASSCRED),
        so_passsec: b(libc::SO_PASSSEC),
        so_dontroute: b(libc::SO_DONTROUTE),
        so_no_check: b(libc::SO_NO_CHECK),
        so_bound_dev: (!dev.is_empty()).then_some(dev),
        so_filter: inet::get_filter(fd).ctx(f.pid, || format!("fd {}: SO_GET_FILTER", f.fd))?,
        so_reuseport: b(libc::SO_REUSEPORT),
        so_broadcast: b(libc::SO_BROADCAST),
        so_keepalive: b(libc::SO_KEEPALIVE),
        so_oobinline: o(libc::SO_OOBINLINE).map(|v| v as u32),
        so_linger: (on != 0).then_some(secs),
        so_buf_lock: net::get_int_opt(fd, libc::SOL_SOCKET, libc::SO_BUF_LOCK)
            .ok()
            .map(|v| v as u32),
        ..Default::default()
    })
}

/// The datagrams queued on a UDP socket, without consuming them.
fn queue(f: &Fd, id: u32) -> Result<Vec<(pb::SkPacketEntry, Vec<u8>)>> {
    let fd = f.file.as_fd();
    let what = |s: &str| format!("fd {}: {s}", f.fd);
    let saved = net::get_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .ctx(f.pid, || what("SO_PEEK_OFF"))?;
    net::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .ctx(f.pid, || what("set SO_PEEK_OFF"))?;
    let mut out = Vec::new();
    let peeked = (|| -> Result<()> {
        while let Some(d) = inet::peek_dgram(fd).ctx(f.pid, || what("peek at its queue"))? {
            out.push((
                pb::SkPacketEntry {
                    id_for: id,
                    length: d.data.len() as u32,
                    stasis_from: d.from.map(|a| a.to_string()),
                    ..Default::default()
                },
                d.data,
            ));
        }
        Ok(())
    })();
    net::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, saved)
        .ctx(f.pid, || what("put SO_PEEK_OFF back"))?;
    peeked.map(|()| out)
}

/// An IPv4 or IPv6 socket open at `f`; returns its file id.
pub(crate) fn dump_socket(
    table: &mut FileTable,
    f: &Fd,
    family: i32,
    opts: FileOptions,
) -> Result<u32> {
    let fd = f.file.as_fd();
    check_netns(f)?;
    let kind = int_opt(f, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let proto = int_opt(f, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    let ping =
        kind == libc::SOCK_DGRAM && (proto == libc::IPPROTO_ICMP || proto == libc::IPPROTO_ICMPV6);
    match (kind, proto) {
        (libc::SOCK_STREAM, libc::IPPROTO_TCP) | (libc::SOCK_RAW, _) => {}
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) => {}
        _ if ping => {}
        _ => {
            return Err(f.unsupported(format!(
                "inet sockets of type {kind} and protocol {proto} are not supported"
            )));
        }
    }
    let local = inet::local_addr(fd).ctx(f.pid, || format!("fd {}: getsockname", f.fd))?;
    let peer = inet::peer_addr(fd).ctx(f.pid, || format!("fd {}: getpeername", f.fd))?;
    let Some(local) = local else {
        return Err(f.unsupported("getsockname gives no inet address"));
    };
    let state = if kind == libc::SOCK_STREAM {
        let info = inet::get_opt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 8)
            .ctx(f.pid, || format!("fd {}: TCP_INFO", f.fd))?;
        u32::from(info.first().copied().unwrap_or(0))
    } else if peer.is_some() {
        TCP_ESTABLISHED
    } else {
        TCP_CLOSE
    };
    let ino = f.st.st_ino as u32;
    // Listeners and hashed datagram sockets are in sock_diag; the rest needs nothing it says.
    let diag_proto = if kind == libc::SOCK_STREAM {
        libc::IPPROTO_TCP
    } else {
        proto
    };
    let diag = if kind == libc::SOCK_RAW || ping {
        None
    } else {
        table
            .inet
            .diag_of(f.pid, family, diag_proto)?
            .get(&ino)
            .cloned()
    };
    let mut backlog = 0;
    let connection = kind == libc::SOCK_STREAM && is_connection(state);
    match state {
        TCP_LISTEN => {
            let Some(d) = &diag else {
                return Err(f.unsupported("a listening socket sock_diag does not know"));
            };
            if d.rqueue > 0 && !opts.skip_in_flight {
                return Err(f.unsupported(format!(
                    "{} connections wait in its accept queue; in-flight connections cannot \
                     be saved (--skip-in-flight leaves them behind)",
                    d.rqueue
                )));
            }
            if d.rqueue > 0 {
                log::warn!(
                    "process {}: fd {}: {} connections waiting to be accepted are left behind \
                     (--skip-in-flight)",
                    f.pid,
                    f.fd,
                    d.rqueue
                );
            }
            backlog = d.wqueue;
        }
        TCP_CLOSE => {}
        TCP_ESTABLISHED if kind != libc::SOCK_STREAM => {}
        _ if connection && !opts.tcp_established && !opts.tcp_close => {
            return Err(f.unsupported(format!(
                "a TCP connection with {} (state {state}); dump with --tcp-established to \
                 save it (or --tcp-close to restore it closed)",
                peer.map_or_else(|| "?".into(), |p| p.to_string())
            )));
        }
        _ if connection && peer.is_some() => {}
        // Restored closed, like every connection with --tcp-close.
        TCP_SYN_SENT if opts.tcp_close => {}
        TCP_SYN_SENT => {
            return Err(f.unsupported("a TCP connection being set up (SYN sent) cannot be saved"));
        }
        _ => {
            return Err(f.unsupported(format!("TCP sockets in state {state} are not supported")));
        }
    }
    if kind == libc::SOCK_DGRAM
        && proto == libc::IPPROTO_UDP
        && int_opt(f, libc::IPPROTO_UDP, libc::UDP_CORK)? != 0
        && inet_outq(fd) > 0
    {
        return Err(f.unsupported(
            "it is corked (UDP_CORK) with data waiting to be sent; that data cannot be read",
        ));
    }
    let sk = sk_opts(f)?;
    let reuseaddr = sk.reuseaddr == Some(true);
    // The table options that differ from a fresh socket's; a connection's segment size
    // and window clamp are its own, set by repair.
    let stasis_opts = differing_options(
        &mut table.inet.fresh,
        f,
        (family, kind, proto),
        |fd| table_values(fd, family, kind, proto),
        |o| {
            !(connection
                && o.level == libc::IPPROTO_TCP
                && (o.name == libc::TCP_MAXSEG || o.name == libc::TCP_WINDOW_CLAMP))
        },
    )?;
    let mut stasis_mcast = Vec::new();
    if kind != libc::SOCK_STREAM {
        let groups = table.inet.groups.get_or_insert_with(host_groups).clone();
        for (ifname, idx, group) in groups {
            if group.is_ipv4() != (family == libc::AF_INET) {
                continue;
            }
            let m = inet::membership(fd, idx, group)
                .ctx(f.pid, || format!("fd {}: MCAST_MSFILTER for {group}", f.fd))?;
            if let Some(m) = m {
                stasis_mcast.push(pb::StasisMcastEntry {
                    ifname,
                    group: ip_bytes(group),
                    fmode: m.fmode,
                    sources: m.sources.into_iter().map(ip_bytes).collect(),
                });
            }
        }
    }
    let get = |level, name| net::get_int_opt(fd, level, name).ok();
    let (tos_level, tos_name, ttl_name, freebind_name) = if family == libc::AF_INET {
        (
            libc::IPPROTO_IP,
            libc::IP_TOS,
            libc::IP_TTL,
            libc::IP_FREEBIND,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_TCLASS,
            libc::IPV6_UNICAST_HOPS,
            libc::IPV6_FREEBIND,
        )
    };
    let ip_opts = pb::IpOptsEntry {
        freebind: get(tos_level, freebind_name).map(|v| v != 0),
        raw: None,
        pktinfo: (family == libc::AF_INET)
            .then(|| get(libc::IPPROTO_IP, libc::IP_PKTINFO).map(|v| v != 0))
            .flatten(),
        tos: get(tos_level, tos_name).map(|v| v as u32),
        ttl: get(tos_level, ttl_name).map(|v| v as u32),
    };
    let tcp_opts = (kind == libc::SOCK_STREAM).then(|| pb::TcpOptsEntry {
        cork: get(libc::IPPROTO_TCP, libc::TCP_CORK).map(|v| v != 0),
        nodelay: get(libc::IPPROTO_TCP, libc::TCP_NODELAY).map(|v| v != 0),
        keepcnt: get(libc::IPPROTO_TCP, libc::TCP_KEEPCNT).map(|v| v as u32),
        keepidle: get(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE).map(|v| v as u32),
        keepintvl: get(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL).map(|v| v as u32),
    });
    let v6only = (family == libc::AF_INET6)
        .then(|| get(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).map(|v| v != 0))
        .flatten();
    let shutdown = diag.as_ref().map_or(0, |d| d.shutdown & 3);
    let dst = peer.unwrap_or(match local {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    });
    let (flags, fown) = (f.flags(), f.fown());
    let id = table.add(pb::FdTypes::Inetsk, |id, e| {
        e.isk = Some(pb::InetSkEntry {
            id,
            ino,
            family: family as u32,
            r#type: kind as u32,
            proto: proto as u32,
            state,
            src_port: u32::from(local.port()),
            dst_port: u32::from(dst.port()),
            flags,
            backlog,
            src_addr: addr_words(local.ip()),
            dst_addr: addr_words(dst.ip()),
            fown: Some(fown),
            opts: Some(sk),
            v6only,
            ip_opts: Some(ip_opts),
            ifname: None,
            ns_id: None,
            shutdown: Some(i32::from(shutdown)),
            tcp_opts,
            stasis_opts,
            stasis_mcast,
        });
    });
    if let (true, Some(peer), false) = (connection, peer, opts.tcp_close) {
        dump_connection(table, f, local, peer, state, reuseaddr, opts)?;
    } else if kind == libc::SOCK_DGRAM && !ping {
        let q = queue(f, id)?;
        table.inet.queues.extend(q);
    } else if kind != libc::SOCK_STREAM && inet_inq(fd) > 0 {
        // Raw and ping sockets cannot peek past their first packet (no SO_PEEK_OFF): the
        // packets queued on them are dropped, as a network may drop them.
        log::warn!(
            "process {}: fd {}: the packets queued on this raw or ping socket are dropped",
            f.pid,
            f.fd
        );
    }
    Ok(id)
}

/// Bytes waiting to be read (`SIOCINQ`), 0 if unknown.
fn inet_inq(fd: BorrowedFd<'_>) -> u32 {
    stasis_sys::fds::bytes_readable(fd).unwrap_or(0)
}

/// Bytes not yet sent (`SIOCOUTQ`), 0 if unknown.
fn inet_outq(fd: BorrowedFd<'_>) -> u32 {
    stasis_sys::fds::bytes_unsent(fd).unwrap_or(0)
}
