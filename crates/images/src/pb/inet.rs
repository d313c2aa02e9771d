//! Inet socket messages (CRIU's `sk-inet.proto`, `tcp-stream.proto`).

use super::*;

/// Options of raw sockets.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpOptsRawEntry {
    /// `IP_HDRINCL`.
    #[prost(bool, optional, tag = "1")]
    pub hdrincl: Option<bool>,
    /// `IP_NODEFRAG`.
    #[prost(bool, optional, tag = "2")]
    pub nodefrag: Option<bool>,
    /// `IPV6_CHECKSUM` on.
    #[prost(bool, optional, tag = "3")]
    pub checksum: Option<bool>,
    /// `ICMP_FILTER` / `ICMPV6_FILTER` words.
    #[prost(uint32, repeated, packed = "false", tag = "4")]
    pub icmpv_filter: Vec<u32>,
}

/// IP-level options.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpOptsEntry {
    /// `IP_FREEBIND` / `IPV6_FREEBIND`.
    #[prost(bool, optional, tag = "1")]
    pub freebind: Option<bool>,
    /// Raw socket options.
    #[prost(message, optional, tag = "4")]
    pub raw: Option<IpOptsRawEntry>,
    /// `IP_PKTINFO`.
    #[prost(bool, optional, tag = "5")]
    pub pktinfo: Option<bool>,
    /// `IP_TOS` / `IPV6_TCLASS`.
    #[prost(uint32, optional, tag = "6")]
    pub tos: Option<u32>,
    /// `IP_TTL` / `IPV6_UNICAST_HOPS`.
    #[prost(uint32, optional, tag = "7")]
    pub ttl: Option<u32>,
}

/// TCP-level options.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TcpOptsEntry {
    /// `TCP_CORK`.
    #[prost(bool, optional, tag = "1")]
    pub cork: Option<bool>,
    /// `TCP_NODELAY`.
    #[prost(bool, optional, tag = "2")]
    pub nodelay: Option<bool>,
    /// `TCP_KEEPCNT`.
    #[prost(uint32, optional, tag = "3")]
    pub keepcnt: Option<u32>,
    /// `TCP_KEEPIDLE`.
    #[prost(uint32, optional, tag = "4")]
    pub keepidle: Option<u32>,
    /// `TCP_KEEPINTVL`.
    #[prost(uint32, optional, tag = "5")]
    pub keepintvl: Option<u32>,
}

/// A socket option as the kernel gives it (stasis extension): every option of the
/// socket's kind that differs from a fresh socket's, in the order they are set again.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StasisSockoptEntry {
    /// `SOL_*` level.
    #[prost(int32, required, tag = "1")]
    pub level: i32,
    /// Option name.
    #[prost(int32, required, tag = "2")]
    pub name: i32,
    /// Value bytes (an int's native bytes, or the option's structure).
    #[prost(bytes = "vec", required, tag = "3")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes")]
    pub value: Vec<u8>,
}

/// A multicast membership (stasis extension).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StasisMcastEntry {
    /// Interface name (indexes differ between hosts).
    #[prost(string, required, tag = "1")]
    pub ifname: String,
    /// Group address (4 or 16 bytes).
    #[prost(bytes = "vec", required, tag = "2")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes")]
    pub group: Vec<u8>,
    /// `MCAST_INCLUDE` (1) or `MCAST_EXCLUDE` (0).
    #[prost(uint32, required, tag = "3")]
    pub fmode: u32,
    /// Sources included or excluded (4 or 16 bytes each).
    #[prost(bytes = "vec", repeated, tag = "4")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes_list")]
    pub sources: Vec<Vec<u8>>,
}

/// An IPv4 or IPv6 socket.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct InetSkEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Socket inode.
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    /// `AF_INET` or `AF_INET6`.
    #[prost(uint32, required, tag = "3")]
    pub family: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_RAW`.
    #[prost(uint32, required, tag = "4")]
    pub r#type: u32,
    /// Protocol.
    #[prost(uint32, required, tag = "5")]
    pub proto: u32,
    /// TCP state (datagram sockets: established when connected, else close).
    #[prost(uint32, required, tag = "6")]
    pub state: u32,
    /// Local port.
    #[prost(uint32, required, tag = "7")]
    pub src_port: u32,
    /// Remote port.
    #[prost(uint32, required, tag = "8")]
    pub dst_port: u32,
    /// Open flags of the file.
    #[prost(uint32, required, tag = "9")]
    pub flags: u32,
    /// Listen backlog.
    #[prost(uint32, required, tag = "10")]
    pub backlog: u32,
    /// Local address: 1 (IPv4) or 4 (IPv6) words, network byte order in memory.
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub src_addr: Vec<u32>,
    /// Remote address, likewise.
    #[prost(uint32, repeated, packed = "false", tag = "12")]
    pub dst_addr: Vec<u32>,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "13")]
    pub fown: Option<FownEntry>,
    /// Socket options (required).
    #[prost(message, optional, tag = "14")]
    pub opts: Option<SkOptsEntry>,
    /// `IPV6_V6ONLY`.
    #[prost(bool, optional, tag = "15")]
    pub v6only: Option<bool>,
    /// IP-level options.
    #[prost(message, optional, tag = "16")]
    pub ip_opts: Option<IpOptsEntry>,
    /// Interface an IPv6 link-local address is scoped to.
    #[prost(string, optional, tag = "17")]
    pub ifname: Option<String>,
    /// Network namespace id.
    #[prost(uint32, optional, tag = "18")]
    pub ns_id: Option<u32>,
    /// Shut down directions.
    #[prost(enumeration = "SkShutdown", optional, tag = "19")]
    pub shutdown: Option<i32>,
    /// TCP-level options.
    #[prost(message, optional, tag = "20")]
    pub tcp_opts: Option<TcpOptsEntry>,
    /// stasis: every option that differs from a fresh socket's, in setting order.
    #[prost(message, repeated, tag = "1000")]
    pub stasis_opts: Vec<StasisSockoptEntry>,
    /// stasis: multicast memberships.
    #[prost(message, repeated, tag = "1001")]
    pub stasis_mcast: Vec<StasisMcastEntry>,
}

/// A TCP connection's state for `TCP_REPAIR` (`tcp-stream-INO.img`); the receive queue's
/// bytes and then the send queue's follow it.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TcpStreamEntry {
    /// Bytes received, not read yet.
    #[prost(uint32, required, tag = "1")]
    pub inq_len: u32,
    /// `rcv_nxt`: the sequence number after the receive queue.
    #[prost(uint32, required, tag = "2")]
    pub inq_seq: u32,
    /// Bytes in the send queue, sent or not.
    #[prost(uint32, required, tag = "3")]
    pub outq_len: u32,
    /// `write_seq`: the sequence number after the send queue.
    #[prost(uint32, required, tag = "4")]
    pub outq_seq: u32,
    /// `TCPI_OPT_*` bits negotiated.
    #[prost(uint32, required, tag = "5")]
    pub opt_mask: u32,
    /// Send window scale.
    #[prost(uint32, required, tag = "6")]
    pub snd_wscale: u32,
    /// MSS clamp.
    #[prost(uint32, required, tag = "7")]
    pub mss_clamp: u32,
    /// Receive window scale.
    #[prost(uint32, optional, tag = "8")]
    pub rcv_wscale: Option<u32>,
    /// The connection's timestamp clock.
    #[prost(uint32, optional, tag = "9")]
    pub timestamp: Option<u32>,
    /// Deprecated: `TCP_CORK` (in `tcp_opts` now).
    #[prost(bool, optional, tag = "10")]
    pub cork: Option<bool>,
    /// Deprecated: `TCP_NODELAY`.
    #[prost(bool, optional, tag = "11")]
    pub nodelay: Option<bool>,
    /// Bytes of the send queue never sent.
    #[prost(uint32, optional, tag = "12")]
    pub unsq_len: Option<u32>,
    /// `snd_wl1`.
    #[prost(uint32, optional, tag = "13")]
    pub snd_wl1: Option<u32>,
    /// `snd_wnd`.
    #[prost(uint32, optional, tag = "14")]
    pub snd_wnd: Option<u32>,
    /// `max_window`.
    #[prost(uint32, optional, tag = "15")]
    pub max_window: Option<u32>,
    /// `rcv_wnd`.
    #[prost(uint32, optional, tag = "16")]
    pub rcv_wnd: Option<u32>,
    /// `rcv_wup`.
    #[prost(uint32, optional, tag = "17")]
    pub rcv_wup: Option<u32>,
    /// stasis: the segment size in use (`tcpi_snd_mss`), which the kernel computed once,
    /// at connection setup.
    #[prost(uint32, optional, tag = "1000")]
    pub stasis_snd_mss: Option<u32>,
}
