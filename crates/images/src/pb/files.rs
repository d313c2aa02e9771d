//! File messages: fd tables, open file descriptions of every kind we handle, fs context.

use super::proto_enum;
use super::*;

// ---- fdinfo.proto ----

proto_enum! {
    /// Kind of an open file description.
    pub enum FdTypes {
        /// Unknown / unset.
        Und = 0 => "UND",
        /// Regular file, directory or device node.
        Reg = 1 => "REG",
        /// Pipe.
        Pipe = 2 => "PIPE",
        /// Named pipe.
        Fifo = 3 => "FIFO",
        /// Inet (TCP/UDP, v4/v6) socket.
        Inetsk = 4 => "INETSK",
        /// Unix socket.
        Unixsk = 5 => "UNIXSK",
        /// eventfd.
        Eventfd = 6 => "EVENTFD",
        /// epoll instance.
        Eventpoll = 7 => "EVENTPOLL",
        /// inotify instance.
        Inotify = 8 => "INOTIFY",
        /// signalfd.
        Signalfd = 9 => "SIGNALFD",
        /// Packet socket.
        Packetsk = 10 => "PACKETSK",
        /// Terminal.
        Tty = 11 => "TTY",
        /// fanotify instance.
        Fanotify = 12 => "FANOTIFY",
        /// Netlink socket.
        Netlinksk = 13 => "NETLINKSK",
        /// Namespace file (`/proc/PID/ns/*`).
        Ns = 14 => "NS",
        /// `/dev/net/tun` file.
        Tunf = 15 => "TUNF",
        /// File handled by a plugin.
        Ext = 16 => "EXT",
        /// timerfd.
        Timerfd = 17 => "TIMERFD",
        /// memfd.
        Memfd = 18 => "MEMFD",
        /// BPF map.
        Bpfmap = 19 => "BPFMAP",
        /// pidfd.
        Pidfd = 20 => "PIDFD",
        /// stasis: a POSIX message queue (CRIU has no kind for them).
        StasisMqueue = 1000 => "STASIS_MQUEUE",
        /// Controlling terminal; internal to restore, never stored.
        CtlTty = 65534 => "CTL_TTY",
        /// autofs pipe; internal to restore, never stored.
        AutofsPipe = 65535 => "AUTOFS_PIPE",
    }
}

/// One slot of an fd table (`fdinfo-N.img`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FdinfoEntry {
    /// Id of the open file description in `files.img`.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Descriptor flags (`FD_CLOEXEC`).
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// Kind of the file.
    #[prost(enumeration = "FdTypes", required, tag = "3")]
    pub r#type: i32,
    /// The descriptor number.
    #[prost(uint32, required, tag = "4")]
    pub fd: u32,
    /// SELinux label of the file.
    #[prost(string, optional, tag = "5")]
    pub xattr_security_selinux: Option<String>,
}

/// An open file description in `files.img`: its kind and id, and the matching sub-entry.
///
/// Tags 5 (namespace file), 11 (tun file) and 21 (BPF map) are CRIU's kinds not declared
/// yet; decoding skips them.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FileEntry {
    /// Kind of the file; says which sub-entry is set.
    #[prost(enumeration = "FdTypes", required, tag = "1")]
    pub r#type: i32,
    /// Id, referred to by [`FdinfoEntry::id`] and by vmas.
    #[prost(uint32, required, tag = "2")]
    pub id: u32,
    /// Regular file.
    #[prost(message, optional, tag = "3")]
    pub reg: Option<RegFileEntry>,
    /// Inet socket.
    #[prost(message, optional, tag = "4")]
    pub isk: Option<InetSkEntry>,
    /// Packet socket.
    #[prost(message, optional, tag = "6")]
    pub psk: Option<PacketSockEntry>,
    /// Netlink socket.
    #[prost(message, optional, tag = "7")]
    pub nlsk: Option<NetlinkSkEntry>,
    /// eventfd.
    #[prost(message, optional, tag = "8")]
    pub efd: Option<EventfdFileEntry>,
    /// epoll instance.
    #[prost(message, optional, tag = "9")]
    pub epfd: Option<EventpollFileEntry>,
    /// signalfd.
    #[prost(message, optional, tag = "10")]
    pub sgfd: Option<SignalfdEntry>,
    /// timerfd.
    #[prost(message, optional, tag = "12")]
    pub tfd: Option<TimerfdEntry>,
    /// inotify instance.
    #[prost(message, optional, tag = "13")]
    pub ify: Option<InotifyFileEntry>,
    /// fanotify instance.
    #[prost(message, optional, tag = "14")]
    pub ffy: Option<FanotifyFileEntry>,
    /// Plugin-handled file.
    #[prost(message, optional, tag = "15")]
    pub ext: Option<ExtFileEntry>,
    /// Unix socket.
    #[prost(message, optional, tag = "16")]
    pub usk: Option<UnixSkEntry>,
    /// Named pipe.
    #[prost(message, optional, tag = "17")]
    pub fifo: Option<FifoEntry>,
    /// Pipe end.
    #[prost(message, optional, tag = "18")]
    pub pipe: Option<PipeEntry>,
    /// Terminal.
    #[prost(message, optional, tag = "19")]
    pub tty: Option<TtyFileEntry>,
    /// memfd.
    #[prost(message, optional, tag = "20")]
    pub memfd: Option<MemfdFileEntry>,
    /// pidfd.
    #[prost(message, optional, tag = "22")]
    pub pidfd: Option<PidfdEntry>,
    /// stasis: a POSIX message queue description.
    #[prost(message, optional, tag = "1000")]
    pub stasis_mqueue: Option<StasisMqueueEntry>,
}

/// stasis: an open POSIX message queue (`mq_open`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StasisMqueueEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Queue name, with its leading slash.
    #[prost(string, required, tag = "2")]
    pub name: String,
    /// Open flags.
    #[prost(uint32, required, tag = "3")]
    pub flags: u32,
    /// SIGIO owner.
    #[prost(message, optional, tag = "4")]
    pub fown: Option<FownEntry>,
    /// The queue, shared by its descriptions (its inode number).
    #[prost(uint64, required, tag = "5")]
    pub queue_id: u64,
    /// The queue itself, on the first of its descriptions.
    #[prost(message, optional, tag = "6")]
    pub queue: Option<StasisMqueueQueue>,
}

/// stasis: a POSIX message queue: attributes, messages, notification.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StasisMqueueQueue {
    /// Mode of the queue file.
    #[prost(uint32, required, tag = "1")]
    pub mode: u32,
    /// Owner uid.
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    /// Owner gid.
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
    /// `mq_maxmsg`.
    #[prost(int64, required, tag = "4")]
    pub maxmsg: i64,
    /// `mq_msgsize`.
    #[prost(int64, required, tag = "5")]
    pub msgsize: i64,
    /// Queued messages, in the order they are received.
    #[prost(message, repeated, tag = "6")]
    pub messages: Vec<StasisMqMessage>,
    /// The registered notification, if any.
    #[prost(message, optional, tag = "7")]
    pub notify: Option<StasisMqNotify>,
}

/// stasis: one queued message.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StasisMqMessage {
    /// Priority.
    #[prost(uint32, required, tag = "1")]
    pub prio: u32,
    /// The bytes.
    #[prost(bytes = "vec", required, tag = "2")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes")]
    pub data: Vec<u8>,
}

/// stasis: a queue's notification registration (`mq_notify`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StasisMqNotify {
    /// The registered process.
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
    /// `sigev_notify` (SIGEV_SIGNAL or SIGEV_NONE).
    #[prost(int32, required, tag = "2")]
    pub notify: i32,
    /// `sigev_signo`.
    #[prost(int32, required, tag = "3")]
    pub signo: i32,
    /// `sigev_value`.
    #[prost(uint64, required, tag = "4")]
    pub value: u64,
}

// ---- fs.proto ----

/// The single entry of `fs-PID.img`: filesystem context of a task.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FsEntry {
    /// Files id of the working directory.
    #[prost(uint32, required, tag = "1")]
    pub cwd_id: u32,
    /// Files id of the root directory.
    #[prost(uint32, required, tag = "2")]
    pub root_id: u32,
    /// File creation mask.
    #[prost(uint32, optional, tag = "3")]
    pub umask: Option<u32>,
}

// ---- fown.proto ----

/// Owner of a file for `SIGIO` delivery (`F_GETOWN_EX`, `F_GETSIG`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FownEntry {
    /// Real uid of the process that set the owner.
    #[prost(uint32, required, tag = "1")]
    pub uid: u32,
    /// Effective uid of the process that set the owner.
    #[prost(uint32, required, tag = "2")]
    pub euid: u32,
    /// Signal sent instead of SIGIO (0 for SIGIO).
    #[prost(uint32, required, tag = "3")]
    pub signum: u32,
    /// Kind of owner (`F_OWNER_TID`, `F_OWNER_PID` or `F_OWNER_PGRP`).
    #[prost(uint32, required, tag = "4")]
    pub pid_type: u32,
    /// Owner pid or pgid (0 when not set).
    #[prost(uint32, required, tag = "5")]
    pub pid: u32,
}

// ---- regfile.proto ----

/// An open regular file, directory or device node.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RegFileEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Open flags (`O_*`).
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// File offset.
    #[prost(uint64, required, tag = "3")]
    pub pos: u64,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "5")]
    pub fown: Option<FownEntry>,
    /// Path, absolute within its mount namespace.
    #[prost(string, required, tag = "6")]
    pub name: String,
    /// Mount id the file is on; absent means -1 (unknown).
    #[prost(sint32, optional, tag = "7", default = "-1")]
    pub mnt_id: Option<i32>,
    /// Size at dump time, checked on restore.
    #[prost(uint64, optional, tag = "8")]
    pub size: Option<u64>,
    /// The file is external: opened by whoever restores, not by us.
    #[prost(bool, optional, tag = "9")]
    pub ext: Option<bool>,
    /// `st_mode` at dump time.
    #[prost(uint32, optional, tag = "10")]
    pub mode: Option<u32>,
    /// ELF build-id of the file, packed into little-endian 32-bit words (zero padded).
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub build_id: Vec<u32>,
    /// CRC32C of (part of) the file, checked on restore.
    #[prost(uint32, optional, tag = "12")]
    pub checksum: Option<u32>,
    /// Which bytes the checksum covers (CRIU's checksum mode).
    #[prost(uint32, optional, tag = "13")]
    pub checksum_config: Option<u32>,
    /// Parameter of the checksum mode (e.g. how many bytes).
    #[prost(uint32, optional, tag = "14")]
    pub checksum_parameter: Option<u32>,
    /// stasis: modification time at dump time (nanoseconds since the epoch), checked on
    /// restore with the size.
    #[prost(uint64, optional, tag = "1000")]
    pub stasis_mtime: Option<u64>,
}

// ---- pipe.proto, pipe-data.proto, fifo.proto ----

/// One end of a pipe.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PipeEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Pipe identity (its inode number); both ends share it.
    #[prost(uint32, required, tag = "2")]
    pub pipe_id: u32,
    /// Open flags (`O_*`), which say which end this is.
    #[prost(uint32, required, tag = "3")]
    pub flags: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "4")]
    pub fown: Option<FownEntry>,
}

/// Buffered contents of a pipe; the bytes follow the entry as raw payload.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PipeDataEntry {
    /// Pipe identity ([`PipeEntry::pipe_id`]).
    #[prost(uint32, required, tag = "1")]
    pub pipe_id: u32,
    /// Number of payload bytes after the entry.
    #[prost(uint32, required, tag = "2")]
    pub bytes: u32,
    /// Pipe buffer size (`F_GETPIPE_SZ`).
    #[prost(uint32, optional, tag = "3")]
    pub size: Option<u32>,
    /// stasis: sizes of the packets the bytes are made of, for packet-mode (`O_DIRECT`)
    /// pipes; empty for a plain byte stream.
    #[prost(uint32, repeated, packed = "false", tag = "1000")]
    pub stasis_packets: Vec<u32>,
}

/// An open named pipe.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FifoEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Pipe identity (inode number).
    #[prost(uint32, required, tag = "2")]
    pub pipe_id: u32,
    /// Files id of the regular-file entry describing its path.
    #[prost(uint32, optional, tag = "3")]
    pub regf_id: Option<u32>,
}

// ---- time.proto, ghost-file.proto, remap-file-path.proto ----

/// A time in seconds and microseconds.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct Timeval {
    /// Seconds.
    #[prost(uint64, required, tag = "1")]
    pub tv_sec: u64,
    /// Microseconds.
    #[prost(uint64, required, tag = "2")]
    pub tv_usec: u64,
}

/// A deleted (unlinked) file whose contents are saved in the image.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct GhostFileEntry {
    /// Owner uid.
    #[prost(uint32, required, tag = "1")]
    pub uid: u32,
    /// Owner gid.
    #[prost(uint32, required, tag = "2")]
    pub gid: u32,
    /// `st_mode`.
    #[prost(uint32, required, tag = "3")]
    pub mode: u32,
    /// Device the file was on.
    #[prost(uint32, optional, tag = "4")]
    pub dev: Option<u32>,
    /// Inode number.
    #[prost(uint64, optional, tag = "5")]
    pub ino: Option<u64>,
    /// Device number of a device node.
    #[prost(uint32, optional, tag = "6")]
    pub rdev: Option<u32>,
    /// Access time.
    #[prost(message, optional, tag = "7")]
    pub atim: Option<Timeval>,
    /// Modification time.
    #[prost(message, optional, tag = "8")]
    pub mtim: Option<Timeval>,
    /// Contents are stored as [`GhostChunkEntry`] chunks (sparse) rather than in one piece.
    #[prost(bool, optional, tag = "9")]
    pub chunks: Option<bool>,
    /// File size.
    #[prost(uint64, optional, tag = "10")]
    pub size: Option<u64>,
    /// Target of a symlink.
    #[prost(string, optional, tag = "11")]
    pub symlnk_target: Option<String>,
}

/// One data extent of a ghost file; its bytes follow as raw payload.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct GhostChunkEntry {
    /// Length in bytes.
    #[prost(uint64, required, tag = "1")]
    pub len: u64,
    /// Offset in the file.
    #[prost(uint64, required, tag = "2")]
    pub off: u64,
}

proto_enum! {
    /// How a file's path is replaced on restore.
    pub enum RemapType {
        /// Through a link made at dump time.
        Linked = 0 => "LINKED",
        /// Through a ghost file recreated from the image.
        Ghost = 1 => "GHOST",
        /// A `/proc/PID/...` path of a dead process.
        Procfs = 2 => "PROCFS",
    }
}

/// Redirects the path of a file to a remapped one.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RemapFilePathEntry {
    /// Files id of the file whose path is remapped.
    #[prost(uint32, required, tag = "1")]
    pub orig_id: u32,
    /// Id of the replacement (ghost file id or link's files id).
    #[prost(uint32, required, tag = "2")]
    pub remap_id: u32,
    /// Kind of remap.
    #[prost(enumeration = "RemapType", optional, tag = "3")]
    pub remap_type: Option<i32>,
}

// ---- eventfd.proto, eventpoll.proto, signalfd.proto, timerfd.proto ----

/// An eventfd.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct EventfdFileEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Open flags (`O_*`, including `EFD_SEMAPHORE`).
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "3")]
    pub fown: Option<FownEntry>,
    /// Counter value.
    #[prost(uint64, required, tag = "4")]
    pub counter: u64,
    /// stasis: `EFD_SEMAPHORE` mode (absent when the kernel did not tell).
    #[prost(bool, optional, tag = "1000")]
    pub stasis_semaphore: Option<bool>,
}

/// One file watched by an epoll instance.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct EventpollTfdEntry {
    /// Files id of the epoll instance.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Descriptor number the target was added with.
    #[prost(uint32, required, tag = "2")]
    pub tfd: u32,
    /// `EPOLL*` event mask.
    #[prost(uint32, required, tag = "3")]
    pub events: u32,
    /// User data returned with events.
    #[prost(uint64, required, tag = "4")]
    pub data: u64,
    /// Device of the target, to find it when `tfd` was closed or reused.
    #[prost(uint32, optional, tag = "5")]
    pub dev: Option<u32>,
    /// Inode of the target.
    #[prost(uint64, optional, tag = "6")]
    pub inode: Option<u64>,
    /// File position of the target.
    #[prost(uint64, optional, tag = "7")]
    pub pos: Option<u64>,
    /// stasis: the fd where the target is open now, when `tfd` was closed or reused
    /// since it was registered.
    #[prost(uint32, optional, tag = "1000")]
    pub stasis_target_fd: Option<u32>,
}

/// An epoll instance.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct EventpollFileEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Open flags.
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "3")]
    pub fown: Option<FownEntry>,
    /// Watched files.
    #[prost(message, repeated, tag = "4")]
    pub tfd: Vec<EventpollTfdEntry>,
}

/// A signalfd.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SignalfdEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Open flags.
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "3")]
    pub fown: Option<FownEntry>,
    /// Signals it accepts.
    #[prost(uint64, required, tag = "4")]
    pub sigmask: u64,
}

/// A timerfd.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TimerfdEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Open flags.
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "3")]
    pub fown: Option<FownEntry>,
    /// Clock it counts.
    #[prost(uint32, required, tag = "4")]
    pub clockid: u32,
    /// Expirations not yet read.
    #[prost(uint64, required, tag = "5")]
    pub ticks: u64,
    /// `TFD_TIMER_*` flags it was armed with.
    #[prost(uint32, required, tag = "6")]
    pub settime_flags: u32,
    /// Time to next expiry, seconds.
    #[prost(uint64, required, tag = "7")]
    pub vsec: u64,
    /// Time to next expiry, nanoseconds.
    #[prost(uint64, required, tag = "8")]
    pub vnsec: u64,
    /// Interval, seconds.
    #[prost(uint64, required, tag = "9")]
    pub isec: u64,
    /// Interval, nanoseconds.
    #[prost(uint64, required, tag = "10")]
    pub insec: u64,
    /// stasis: for a wall-clock timer armed with `TFD_TIMER_ABSTIME`, its target time in
    /// nanoseconds since the epoch (kept as such rather than as the time left).
    #[prost(uint64, optional, tag = "1000")]
    pub stasis_realtime_target: Option<u64>,
}

// ---- fh.proto, fsnotify.proto ----

proto_enum! {
    /// Sizes related to file handles.
    pub enum FhEntrySizes {
        /// Number of 64-bit words a stored handle has at least.
        MinEntries = 16 => "min_entries",
    }
}

/// A file handle (`name_to_handle_at(2)`), to reopen a watched inode.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FhEntry {
    /// Handle size in bytes.
    #[prost(uint32, required, tag = "1")]
    pub bytes: u32,
    /// Handle type.
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    /// Handle bytes as 64-bit words.
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub handle: Vec<u64>,
    /// Path found for the handle at dump time.
    #[prost(string, optional, tag = "4")]
    pub path: Option<String>,
    /// Mount id of that path.
    #[prost(uint32, optional, tag = "5")]
    pub mnt_id: Option<u32>,
}

/// A cached inode-to-path resolution.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IrmapCacheEntry {
    /// Device.
    #[prost(uint32, required, tag = "1")]
    pub dev: u32,
    /// Inode number.
    #[prost(uint64, required, tag = "2")]
    pub inode: u64,
    /// Path.
    #[prost(string, required, tag = "3")]
    pub path: String,
}

/// One inotify watch.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct InotifyWdEntry {
    /// Files id of the inotify instance.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Watched inode.
    #[prost(uint64, required, tag = "2")]
    pub i_ino: u64,
    /// Event mask.
    #[prost(uint32, required, tag = "3")]
    pub mask: u32,
    /// Ignored mask.
    #[prost(uint32, required, tag = "4")]
    pub ignored_mask: u32,
    /// Device of the watched inode.
    #[prost(uint32, required, tag = "5")]
    pub s_dev: u32,
    /// Watch descriptor.
    #[prost(uint32, required, tag = "6")]
    pub wd: u32,
    /// Handle of the watched inode (required).
    #[prost(message, optional, tag = "7")]
    pub f_handle: Option<FhEntry>,
}

/// An inotify instance.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct InotifyFileEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Open flags.
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "4")]
    pub fown: Option<FownEntry>,
    /// Watches.
    #[prost(message, repeated, tag = "5")]
    pub wd: Vec<InotifyWdEntry>,
}

proto_enum! {
    /// What a fanotify mark is attached to.
    pub enum MarkType {
        /// An inode.
        Inode = 1 => "INODE",
        /// A mount.
        Mount = 2 => "MOUNT",
    }
}

/// Target of an inode fanotify mark.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FanotifyInodeMarkEntry {
    /// Inode number.
    #[prost(uint64, required, tag = "1")]
    pub i_ino: u64,
    /// Handle of the inode (required).
    #[prost(message, optional, tag = "2")]
    pub f_handle: Option<FhEntry>,
}

/// Target of a mount fanotify mark.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FanotifyMountMarkEntry {
    /// Mount id.
    #[prost(uint32, required, tag = "1")]
    pub mnt_id: u32,
    /// Mount point path.
    #[prost(string, optional, tag = "2")]
    pub path: Option<String>,
}

/// One fanotify mark.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FanotifyMarkEntry {
    /// Files id of the fanotify instance.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Inode or mount mark.
    #[prost(enumeration = "MarkType", required, tag = "2")]
    pub r#type: i32,
    /// Mark flags.
    #[prost(uint32, required, tag = "3")]
    pub mflags: u32,
    /// Event mask.
    #[prost(uint32, required, tag = "4")]
    pub mask: u32,
    /// Ignored mask.
    #[prost(uint32, required, tag = "5")]
    pub ignored_mask: u32,
    /// Device of the target.
    #[prost(uint32, required, tag = "6")]
    pub s_dev: u32,
    /// Inode target.
    #[prost(message, optional, tag = "7")]
    pub ie: Option<FanotifyInodeMarkEntry>,
    /// Mount target.
    #[prost(message, optional, tag = "8")]
    pub me: Option<FanotifyMountMarkEntry>,
}

/// A fanotify instance.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FanotifyFileEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Open flags.
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "3")]
    pub fown: Option<FownEntry>,
    /// `fanotify_init` flags.
    #[prost(uint32, required, tag = "4")]
    pub faflags: u32,
    /// `fanotify_init` event file flags.
    #[prost(uint32, required, tag = "5")]
    pub evflags: u32,
    /// Marks.
    #[prost(message, repeated, tag = "6")]
    pub mark: Vec<FanotifyMarkEntry>,
}

// ---- memfd.proto ----

/// An open memfd.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct MemfdFileEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Open flags.
    #[prost(uint32, required, tag = "2")]
    pub flags: u32,
    /// File offset.
    #[prost(uint64, required, tag = "3")]
    pub pos: u64,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "4")]
    pub fown: Option<FownEntry>,
    /// Id of the memfd's inode entry (shared by all opens of the same memfd).
    #[prost(uint32, required, tag = "5")]
    pub inode_id: u32,
}

/// The inode behind one or more memfd opens or mappings.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct MemfdInodeEntry {
    /// Name given to `memfd_create` (without the `memfd:` prefix).
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// Owner uid.
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    /// Owner gid.
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
    /// Size in bytes.
    #[prost(uint64, required, tag = "4")]
    pub size: u64,
    /// Shared-memory id whose pagemap holds the contents.
    #[prost(uint32, required, tag = "5")]
    pub shmid: u32,
    /// `F_SEAL_*` seals.
    #[prost(uint32, required, tag = "6")]
    pub seals: u32,
    /// Id of this inode entry.
    #[prost(uint64, required, tag = "7")]
    pub inode_id: u64,
    /// `MFD_HUGETLB` and huge page size flags.
    #[prost(uint32, optional, tag = "8")]
    pub hugetlb_flag: Option<u32>,
    /// `st_mode`.
    #[prost(uint32, optional, tag = "9")]
    pub mode: Option<u32>,
}

// ---- pidfd.proto ----

/// A pidfd.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PidfdEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Inode of the pidfd.
    #[prost(uint32, required, tag = "2")]
    pub ino: u32,
    /// Open flags.
    #[prost(uint32, required, tag = "3")]
    pub flags: u32,
    /// Pid it refers to, in the innermost namespace (-1 if the process is gone).
    #[prost(int32, required, tag = "4")]
    pub nspid: i32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "5")]
    pub fown: Option<FownEntry>,
    /// stasis: how the process a dead pidfd refers to ended (its wait status), as
    /// `PIDFD_GET_INFO` tells it.
    #[prost(int32, optional, tag = "1000")]
    pub stasis_exit_status: Option<i32>,
}

// ---- ext-file.proto ----

/// A file handled by a plugin.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ExtFileEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "5")]
    pub fown: Option<FownEntry>,
}

// ---- file-lock.proto ----

/// A file lock (flock, POSIX or OFD).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct FileLockEntry {
    /// CRIU's lock kind bits (flock, POSIX, OFD, lease...).
    #[prost(uint32, required, tag = "1")]
    pub flag: u32,
    /// Lock type (`F_RDLCK`, `F_WRLCK`, or `LOCK_*` for flock).
    #[prost(uint32, required, tag = "2")]
    pub r#type: u32,
    /// Owning process.
    #[prost(int32, required, tag = "3")]
    pub pid: i32,
    /// Descriptor the lock was found through.
    #[prost(int32, required, tag = "4")]
    pub fd: i32,
    /// Start offset.
    #[prost(int64, required, tag = "5")]
    pub start: i64,
    /// Length (0 to end of file).
    #[prost(int64, required, tag = "6")]
    pub len: i64,
}
