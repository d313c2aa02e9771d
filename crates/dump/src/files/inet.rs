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

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use stasis_images::pb;
use stasis_sys::inet::{self, InetDiag};
use stasis_sys::net;

use super::{Fd, FileTable};
use crate::error::{Result, SysContext};

const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

/// The values of [`inet::OPTIONS`] for one socket (`None`: not an option it has).
type OptionValues = Vec<Option<Vec<u8>>>;

/// State shared by the inet sockets of one dump.
#[derive(Debug, Default)]
pub(crate) struct InetSockets {
    /// `sock_diag` by (family, protocol), read once each.
    diag: HashMap<(i32, i32), HashMap<u32, InetDiag>>,
    /// Fresh sockets' values of [`inet::OPTIONS`], by (family, type, protocol).
    fresh: HashMap<(i32, i32, i32), OptionValues>,
    /// Multicast groups joined on the host's interfaces: (interface name, index, group).
    groups: Option<Vec<(String, u32, IpAddr)>>,
    /// Queued datagrams: entry and bytes.
    pub queues: Vec<(pb::SkPacketEntry, Vec<u8>)>,
}

fn int_opt(f: &Fd, level: i32, name: i32) -> Result<i32> {
    net::get_int_opt(f.file.as_fd(), level, name).ctx(f.pid, || {
        format!("fd {}: getsockopt({level}, {name})", f.fd)
    })
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

/// CRIU's socket options entry.
fn sk_opts(f: &Fd) -> Result<pb::SkOptsEntry> {
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
pub(crate) fn dump_socket(table: &mut FileTable, f: &Fd, family: i32) -> Result<u32> {
    let fd = f.file.as_fd();
    let own_ns = stasis_sys::fs::stat("/proc/self/ns/net".as_ref())
        .ctx(f.pid, || "stat of our network namespace".into())?
        .st_ino;
    if inet::socket_netns(fd).ctx(f.pid, || format!("fd {}: SIOCGSKNS", f.fd))? != own_ns {
        return Err(f.unsupported(
            "it belongs to another network namespace than stasis's; run stasis in the \
             tree's network namespace (ip netns exec, nsenter --net)",
        ));
    }
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
        let known = match table.inet.diag.entry((family, diag_proto)) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(inet::inet_sockets(family, diag_proto).ctx(f.pid, || {
                    format!("sock_diag of inet sockets ({family}, {diag_proto})")
                })?)
            }
        };
        known.get(&ino).cloned()
    };
    let mut backlog = 0;
    match state {
        TCP_LISTEN => {
            let Some(d) = &diag else {
                return Err(f.unsupported("a listening socket sock_diag does not know"));
            };
            if d.rqueue > 0 {
                return Err(f.unsupported(format!(
                    "{} connections wait in its accept queue; in-flight connections are not \
                     supported",
                    d.rqueue
                )));
            }
            backlog = d.wqueue;
        }
        TCP_CLOSE => {}
        TCP_ESTABLISHED if kind != libc::SOCK_STREAM => {}
        _ => {
            return Err(f.unsupported(format!(
                "TCP connections (state {state}) are not supported yet"
            )));
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
    let opts = sk_opts(f)?;
    // The table options that differ from a fresh socket's.
    let fresh = match table.inet.fresh.get(&(family, kind, proto)) {
        Some(v) => v.clone(),
        None => {
            let s = inet::socket(family, kind, proto).ctx(f.pid, || {
                format!("a fresh socket ({family}, {kind}, {proto})")
            })?;
            let v = table_values(s.as_fd(), family, kind, proto);
            table.inet.fresh.insert((family, kind, proto), v.clone());
            v
        }
    };
    let ours = table_values(fd, family, kind, proto);
    let stasis_opts = inet::OPTIONS
        .iter()
        .zip(ours.into_iter().zip(fresh))
        .filter_map(|(o, (v, fresh))| {
            let v = v?;
            (Some(&v) != fresh.as_ref()).then_some(pb::StasisSockoptEntry {
                level: o.level,
                name: o.name,
                value: v,
            })
        })
        .collect();
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
            opts: Some(opts),
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
    if kind == libc::SOCK_DGRAM && !ping {
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
