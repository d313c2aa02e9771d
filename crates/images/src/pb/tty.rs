//! Terminal messages (CRIU's `tty.proto`).

use super::proto_enum;
use super::*;

/// Terminal window size (`TIOCGWINSZ`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct WinsizeEntry {
    /// Rows.
    #[prost(uint32, required, tag = "1")]
    pub ws_row: u32,
    /// Columns.
    #[prost(uint32, required, tag = "2")]
    pub ws_col: u32,
    /// Width in pixels.
    #[prost(uint32, required, tag = "3")]
    pub ws_xpixel: u32,
    /// Height in pixels.
    #[prost(uint32, required, tag = "4")]
    pub ws_ypixel: u32,
}

/// Terminal settings (`struct termios2`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TermiosEntry {
    /// Input modes.
    #[prost(uint32, required, tag = "1")]
    pub c_iflag: u32,
    /// Output modes.
    #[prost(uint32, required, tag = "2")]
    pub c_oflag: u32,
    /// Control modes.
    #[prost(uint32, required, tag = "3")]
    pub c_cflag: u32,
    /// Local modes.
    #[prost(uint32, required, tag = "4")]
    pub c_lflag: u32,
    /// Line discipline.
    #[prost(uint32, required, tag = "5")]
    pub c_line: u32,
    /// Input speed.
    #[prost(uint32, required, tag = "6")]
    pub c_ispeed: u32,
    /// Output speed.
    #[prost(uint32, required, tag = "7")]
    pub c_ospeed: u32,
    /// Control characters, one per word (`NCCS` of them).
    #[prost(uint32, repeated, packed = "false", tag = "8")]
    pub c_cc: Vec<u32>,
}

/// Unix98 pseudo-terminal details.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TtyPtyEntry {
    /// The pty number (N of `/dev/pts/N`).
    #[prost(uint32, required, tag = "1")]
    pub index: u32,
}

proto_enum! {
    /// Kind of terminal.
    pub enum TtyType {
        /// Unknown.
        Unknown = 0 => "UNKNOWN",
        /// Unix98 pseudo-terminal (master or slave).
        Pty = 1 => "PTY",
        /// `/dev/console`.
        Console = 2 => "CONSOLE",
        /// Virtual console.
        Vt = 3 => "VT",
        /// `/dev/tty`, the controlling terminal alias.
        Ctty = 4 => "CTTY",
        /// Terminal outside the dumped tree, passed in on restore.
        ExtTty = 5 => "EXT_TTY",
        /// Serial line.
        Serial = 6 => "SERIAL",
    }
}

/// Unread input buffered in a terminal.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TtyDataEntry {
    /// Id of the terminal ([`TtyInfoEntry::id`]).
    #[prost(uint32, required, tag = "1")]
    pub tty_id: u32,
    /// The bytes.
    #[prost(bytes = "vec", required, tag = "2")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes")]
    pub data: Vec<u8>,
}

/// A terminal device, shared by the files that have it open (`tty-info.img`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TtyInfoEntry {
    /// Terminal id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Kind of terminal.
    #[prost(enumeration = "TtyType", required, tag = "2")]
    pub r#type: i32,
    /// Pty slave is locked (`TIOCGPTLCK`).
    #[prost(bool, required, tag = "3")]
    pub locked: bool,
    /// Exclusive mode (`TIOCGEXCL`).
    #[prost(bool, required, tag = "4")]
    pub exclusive: bool,
    /// Pty packet mode (`TIOCGPKT`).
    #[prost(bool, required, tag = "5")]
    pub packet_mode: bool,
    /// Session the terminal controls (0 if none).
    #[prost(uint32, required, tag = "6")]
    pub sid: u32,
    /// Foreground process group.
    #[prost(uint32, required, tag = "7")]
    pub pgrp: u32,
    /// Device number of the terminal.
    #[prost(uint32, required, tag = "8")]
    pub rdev: u32,
    /// Settings.
    #[prost(message, optional, tag = "9")]
    pub termios: Option<TermiosEntry>,
    /// Locked settings (`TIOCGLCKTRMIOS`).
    #[prost(message, optional, tag = "10")]
    pub termios_locked: Option<TermiosEntry>,
    /// Window size.
    #[prost(message, optional, tag = "11")]
    pub winsize: Option<WinsizeEntry>,
    /// Pty details, for ptys.
    #[prost(message, optional, tag = "12")]
    pub pty: Option<TtyPtyEntry>,
    /// Device of the devpts instance, for ptys.
    #[prost(uint32, optional, tag = "13")]
    pub dev: Option<u32>,
    /// Owner uid of the device node.
    #[prost(uint32, optional, tag = "14")]
    pub uid: Option<u32>,
    /// Owner gid of the device node.
    #[prost(uint32, optional, tag = "15")]
    pub gid: Option<u32>,
}

/// An open terminal file.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TtyFileEntry {
    /// Files id.
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// Terminal it refers to ([`TtyInfoEntry::id`]).
    #[prost(uint32, required, tag = "2")]
    pub tty_info_id: u32,
    /// Open flags.
    #[prost(uint32, required, tag = "3")]
    pub flags: u32,
    /// SIGIO owner (required).
    #[prost(message, optional, tag = "4")]
    pub fown: Option<FownEntry>,
    /// Files id of the regular-file entry with its path, when opened by path.
    #[prost(uint32, optional, tag = "6")]
    pub regf_id: Option<u32>,
}
