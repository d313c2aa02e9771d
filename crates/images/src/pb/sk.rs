//! Socket messages (CRIU's `sk-unix.proto`, `sk-opts.proto`, `sk-packet.proto`).

use super::proto_enum;
use super::*;

/// Owner and permissions of a socket's bound file.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FilePermsEntry {
    /// Mode.
    #[prost(uint32, required, tag = "1")]
    pub mode: u32,
    /// Owner uid.
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    /// Owner gid.
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
}

/// Options every socket has.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SkOptsEntry {
    /// `SO_SNDBUF` (as getsockopt reports it: twice what was set).
    #[prost(uint32, required, tag = "1")]
    pub so_sndbuf: u32,
    /// `SO_RCVBUF`.
    #[prost(uint32, required, tag = "2")]
    pub so_rcvbuf: u32,
    /// `SO_SNDTIMEO` seconds.
    #[prost(uint64, required, tag = "3")]
    pub so_snd_tmo_sec: u64,
    /// `SO_SNDTIMEO` microseconds.
    #[prost(uint64, required, tag = "4")]
    pub so_snd_tmo_usec: u64,
    /// `SO_RCVTIMEO` seconds.
    #[prost(uint64, required, tag = "5")]
    pub so_rcv_tmo_sec: u64,
    /// `SO_RCVTIMEO` microseconds.
    #[prost(uint64, required, tag = "6")]
    pub so_rcv_tmo_usec: u64,
    /// `SO_REUSEADDR`.
    #[prost(bool, optional, tag = "7")]
    pub reuseaddr: Option<bool>,
    /// `SO_PRIORITY`.
    #[prost(uint32, optional, tag = "8")]
    pub so_priority: Option<u32>,
    /// `SO_RCVLOWAT`.
    #[prost(uint32, optional, tag = "9")]
    pub so_rcvlowat: Option<u32>,
    /// `SO_MARK`.
    #[prost(uint32, optional, tag = "10")]
    pub so_mark: Option<u32>,
    /// `SO_PASSCRED`.
    #[prost(bool, optional, tag = "11")]
    pub so_passcred: Option<bool>,
    /// `SO_PASSSEC`.
    #[prost(bool, optional, tag = "12")]
    pub so_passsec: Option<bool>,
    /// `SO_DONTROUTE`.
    #[prost(bool, optional, tag = "13")]
    pub so_dontroute: Option<bool>,
    /// `SO_NO_CHECK`.
    #[prost(bool, optional, tag = "14")]
    pub so_no_check: Option<bool>,
    /// `SO_BINDTODEVICE`.
    #[prost(string, optional, tag = "15")]
    pub so_bound_dev: Option<String>,
    /// Attached classic BPF filter.
    #[prost(fixed64, repeated, packed = "false", tag = "16")]
    pub so_filter: Vec<u64>,
    /// `SO_REUSEPORT`.
    #[prost(bool, optional, tag = "17")]
    pub so_reuseport: Option<bool>,
    /// `SO_BROADCAST`.
    #[prost(bool, optional, tag = "18")]
    pub so_broadcast: Option<bool>,
    /// `SO_KEEPALIVE`.
    #[prost(bool, optional, tag = "19")]
    pub so_keepalive: Option<bool>,
    /// Deprecated (TCP options have their own entry).
    #[prost(uint32, optional, tag = "20")]
    pub tcp_keepcnt: Option<u32>,
    /// Deprecated.
    #[prost(uint32, optional, tag = "21")]
    pub tcp_keepidle: Option<u32>,
    /// Deprecated.
    #[prost(uint32, optional, tag = "22")]
    pub tcp_keepintvl: Option<u32>,
    /// `SO_OOBINLINE`.
    #[prost(uint32, optional, tag = "23")]
    pub so_oobinline: Option<u32>,
    /// `SO_LINGER` seconds (when enabled).
    #[prost(uint32, optional, tag = "24")]
    pub so_linger: Option<u32>,
    /// `SO_SNDBUF`/`SO_RCVBUF` were set explicitly (`SOCK_SNDBUF_LOCK` bits).
    #[prost(uint32, optional, tag = "25")]
    pub so_buf_lock: Option<u32>,
    /// stasis: `SO_PEEK_OFF` (-1: peeking at an offset is off).
    #[prost(int32, optional, tag = "1000")]
    pub stasis_peek_off: Option<i32>,
    /// stasis: `SO_PASSPIDFD`.
    #[prost(bool, optional, tag = "1001")]
    pub stasis_passpidfd: Option<bool>,
    /// stasis: `SO_LOCK_FILTER` (the filter in `so_filter` cannot be changed).
    #[prost(bool, optional, tag = "1002")]
    pub stasis_lock_filter: Option<bool>,
}

proto_enum! {
    /// Which directions of a socket were shut down.
    pub enum SkShutdown {
        /// Neither.
        None = 0 => "NONE",
        /// Reading.
        Read = 1 => "READ",
        /// Writing.
        Write = 2 => "WRITE",
        /// Both.
        Both = 3 => "BOTH",
    }
}

/// A unix socket.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UnixSkEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Socket inode; peers name each other by it.
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`.
    #[prost(uint32, required, tag = "3")]
    pub r#type: u32,
    /// TCP-like state (established 1, close 7, listen 10).
    #[prost(uint32, required, tag = "4")]
    pub state: u32,
    /// Open flags of the file.
    #[prost(uint32, required, tag = "5")]
    pub flags: u32,
    /// CRIU's unix socket flags (external, ...).
    #[prost(uint32, required, tag = "6")]
    pub uflags: u32,
    /// Listen backlog.
    #[prost(uint32, required, tag = "7")]
    pub backlog: u32,
    /// The peer's inode (0: none).
    #[prost(uint32, required, tag = "8")]
    pub peer: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "9")]
    pub fown: Option<FownEntry>,
    /// Options (required).
    #[prost(message, optional, tag = "10")]
    pub opts: Option<SkOptsEntry>,
    /// Bound name: a path, or an abstract name starting with a zero byte.
    #[prost(bytes = "vec", required, tag = "11")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes")]
    pub name: Vec<u8>,
    /// Shut down directions.
    #[prost(enumeration = "SkShutdown", optional, tag = "12")]
    pub shutdown: Option<i32>,
    /// Owner and mode of the bound file.
    #[prost(message, optional, tag = "13")]
    pub file_perms: Option<FilePermsEntry>,
    /// Directory a relative name is relative to.
    #[prost(string, optional, tag = "14")]
    pub name_dir: Option<String>,
    /// The bound file was deleted.
    #[prost(bool, optional, tag = "15")]
    pub deleted: Option<bool>,
    /// Network namespace id.
    #[prost(uint32, optional, tag = "16")]
    pub ns_id: Option<u32>,
    /// Mount the bound file is on.
    #[prost(sint32, optional, tag = "17", default = "-1")]
    pub mnt_id: Option<i32>,
    /// stasis: a listener's connections waiting to be accepted, oldest first, by the
    /// inode of each client (whose `peer` is the listener).
    #[prost(uint32, repeated, packed = "false", tag = "1000")]
    pub stasis_icons: Vec<u32>,
    /// stasis: the name is the listener's, which this socket got by being accepted (it
    /// does not own the name).
    #[prost(bool, optional, tag = "1001")]
    pub stasis_accepted: Option<bool>,
}

/// Ancillary data of a queued message.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ScmEntry {
    /// Kind (`SCM_RIGHTS`).
    #[prost(uint32, required, tag = "1")]
    pub r#type: u32,
    /// File ids of the fds passed.
    #[prost(uint32, repeated, packed = "false", tag = "2")]
    pub rights: Vec<u32>,
}

/// Credentials a queued message carries (`SCM_CREDENTIALS`; stasis extension).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StasisUcredEntry {
    /// Sender pid.
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
    /// Sender uid.
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    /// Sender gid.
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
}

/// A message queued on a socket (`sk-queues.img`); its bytes follow.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SkPacketEntry {
    /// Files id of the socket whose receive queue holds it.
    #[prost(uint32, required, tag = "1")]
    pub id_for: u32,
    /// Length in bytes.
    #[prost(uint32, required, tag = "2")]
    pub length: u32,
    /// Ancillary data.
    #[prost(message, repeated, tag = "4")]
    pub scm: Vec<ScmEntry>,
    /// stasis: the sender's credentials, for a receiver with `SO_PASSCRED`.
    #[prost(message, optional, tag = "1000")]
    pub stasis_ucred: Option<StasisUcredEntry>,
    /// stasis: the source address of a datagram queued on an inet socket (`ip:port`).
    #[prost(string, optional, tag = "1001")]
    pub stasis_from: Option<String>,
    /// stasis: the bytes were sent by socket `id_for` on a connection still waiting in
    /// a listener's accept queue: they wait on the other end, which has no file yet.
    #[prost(bool, optional, tag = "1002")]
    pub stasis_to_peer: Option<bool>,
    /// stasis: the name of the unix socket a datagram came from (`sun_path` bytes; empty
    /// or absent: an unnamed sender).
    #[prost(bytes = "vec", optional, tag = "1003")]
    #[serde(serialize_with = "crate::pb::serde_hex::opt_bytes")]
    pub stasis_unix_from: Option<Vec<u8>>,
    /// stasis: the inode of the unnamed socket that sent this datagram, when the dump
    /// could tell (the only unnamed datagram socket with bytes charged to it that could
    /// have sent it).
    #[prost(uint32, optional, tag = "1004")]
    pub stasis_sender: Option<u32>,
}

/// A netlink socket (CRIU's `netlink_sk_entry`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct NetlinkSkEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Socket inode.
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    /// `NETLINK_ROUTE`, `NETLINK_USERSOCK`, ...
    #[prost(uint32, required, tag = "3")]
    pub protocol: u32,
    /// 0 unconnected, 1 connected.
    #[prost(uint32, required, tag = "4")]
    pub state: u32,
    /// Open flags of the file.
    #[prost(uint32, required, tag = "6")]
    pub flags: u32,
    /// Bound port id (0: not bound).
    #[prost(uint32, required, tag = "7")]
    pub portid: u32,
    /// Group memberships: a bitmap of 32-bit words, group 1 the lowest bit of the first.
    #[prost(uint32, repeated, packed = "false", tag = "8")]
    pub groups: Vec<u32>,
    /// The connected peer's port id.
    #[prost(uint32, required, tag = "9")]
    pub dst_portid: u32,
    /// The connected peer's group number (0: none).
    #[prost(uint32, required, tag = "10")]
    pub dst_group: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "11")]
    pub fown: Option<FownEntry>,
    /// Socket options (required).
    #[prost(message, optional, tag = "12")]
    pub opts: Option<SkOptsEntry>,
    /// Network namespace id.
    #[prost(uint32, optional, tag = "13")]
    pub ns_id: Option<u32>,
    /// stasis: `SOCK_RAW` or `SOCK_DGRAM` (CRIU makes every netlink socket `SOCK_RAW`).
    #[prost(uint32, optional, tag = "1000")]
    pub stasis_type: Option<u32>,
    /// stasis: the `SOL_NETLINK` options that are on and the generic options that differ
    /// from a fresh socket's, in setting order.
    #[prost(message, repeated, tag = "1001")]
    pub stasis_opts: Vec<StasisSockoptEntry>,
}

/// A membership of a packet socket (CRIU's `packet_mclist`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PacketMclist {
    /// Interface index.
    #[prost(uint32, required, tag = "1")]
    pub index: u32,
    /// `PACKET_MR_MULTICAST` (0), `PROMISC` (1), `ALLMULTI` (2), `UNICAST` (3).
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    /// Hardware address (multicast and unicast kinds).
    #[prost(bytes = "vec", required, tag = "3")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes")]
    pub addr: Vec<u8>,
}

/// A packet socket's ring (CRIU's `packet_ring`: `tpacket_req3`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PacketRing {
    /// Bytes per block.
    #[prost(uint32, required, tag = "1")]
    pub block_size: u32,
    /// Blocks.
    #[prost(uint32, required, tag = "2")]
    pub block_nr: u32,
    /// Bytes per frame.
    #[prost(uint32, required, tag = "3")]
    pub frame_size: u32,
    /// Frames.
    #[prost(uint32, required, tag = "4")]
    pub frame_nr: u32,
    /// TPACKET_V3 block retire timeout (ms).
    #[prost(uint32, required, tag = "5")]
    pub retire_tmo: u32,
    /// TPACKET_V3 private bytes per block.
    #[prost(uint32, required, tag = "6")]
    pub sizeof_priv: u32,
    /// TPACKET_V3 feature request word.
    #[prost(uint32, required, tag = "7")]
    pub features: u32,
}

/// A packet socket (CRIU's `packet_sock_entry`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PacketSockEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// `SOCK_RAW`, `SOCK_DGRAM` or `SOCK_PACKET`.
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    /// The protocol it receives, host byte order (0: none).
    #[prost(uint32, required, tag = "3")]
    pub protocol: u32,
    /// Open flags of the file.
    #[prost(uint32, required, tag = "4")]
    pub flags: u32,
    /// Bound interface index (0: all).
    #[prost(uint32, required, tag = "5")]
    pub ifindex: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "6")]
    pub fown: Option<FownEntry>,
    /// Socket options (required).
    #[prost(message, optional, tag = "7")]
    pub opts: Option<SkOptsEntry>,
    /// `PACKET_VERSION`.
    #[prost(uint32, required, tag = "8")]
    pub version: u32,
    /// `PACKET_RESERVE`.
    #[prost(uint32, required, tag = "9")]
    pub reserve: u32,
    /// `PACKET_AUXDATA`.
    #[prost(bool, required, tag = "10")]
    pub aux_data: bool,
    /// `PACKET_ORIGDEV`.
    #[prost(bool, required, tag = "11")]
    pub orig_dev: bool,
    /// `PACKET_VNET_HDR`.
    #[prost(bool, required, tag = "12")]
    pub vnet_hdr: bool,
    /// `PACKET_LOSS`.
    #[prost(bool, required, tag = "13")]
    pub loss: bool,
    /// `PACKET_TIMESTAMP`.
    #[prost(uint32, required, tag = "14")]
    pub timestamp: u32,
    /// `PACKET_COPY_THRESH`.
    #[prost(uint32, required, tag = "15")]
    pub copy_thresh: u32,
    /// Memberships.
    #[prost(message, repeated, tag = "16")]
    pub mclist: Vec<PacketMclist>,
    /// `PACKET_FANOUT` (id | type << 16 | flags << 24); 0xffffffff: in no group.
    #[prost(uint32, optional, tag = "17", default = "4294967295")]
    pub fanout: Option<u32>,
    /// The receive ring.
    #[prost(message, optional, tag = "18")]
    pub rx_ring: Option<PacketRing>,
    /// The transmit ring.
    #[prost(message, optional, tag = "19")]
    pub tx_ring: Option<PacketRing>,
    /// Network namespace id.
    #[prost(uint32, optional, tag = "20")]
    pub ns_id: Option<u32>,
    /// stasis: the protocol the socket was created with (`SO_PROTOCOL`, network byte
    /// order), which `bind` does not change.
    #[prost(uint32, optional, tag = "1000")]
    pub stasis_sk_protocol: Option<u32>,
    /// stasis: packet options CRIU has no field for (`PACKET_IGNORE_OUTGOING`,
    /// `QDISC_BYPASS`, `TX_HAS_OFF`, `VNET_HDR_SZ`) when set, and the generic options that
    /// differ from a fresh socket's, in setting order.
    #[prost(message, repeated, tag = "1001")]
    pub stasis_opts: Vec<StasisSockoptEntry>,
}
