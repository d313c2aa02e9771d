//! Packet sockets (`AF_PACKET`): type, protocol, bound interface, memberships (promisc,
//! allmulti, multicast and unicast addresses), `PACKET_*` options, fanout group, rings,
//! the BPF filter and the generic socket options. `sock_diag` (`PACKET_DIAG`) gives the
//! interface, protocol, options CRIU's entry has, memberships, rings and fanout;
//! `getsockopt` the options it does not show.
//!
//! A mapping of a socket (a ring, `mmap`ed from the socket) is a vma of status `SOCKET`
//! naming the socket's file id; its pages are not saved: the restore maps the new
//! socket's ring at the same address, empty.
//!
//! What is lost, as a network can lose packets: packets queued on the socket (peeking
//! shows only the first: no `SO_PEEK_OFF`; dropped with a warning), frames of a ring that
//! the process had not handed back to the kernel yet (the ring comes back empty), and the
//! statistics (`PACKET_STATISTICS`, reset on every read anyway). Refused: `SOCK_PACKET` sockets, a
//! fanout group steered by a BPF program (`PACKET_FANOUT_DATA` cannot be read back),
//! mappings that cover part of a ring, mapped sockets with no fd left.

use std::collections::HashMap;
use std::os::fd::AsFd;

use stasis_images::pb;
use stasis_sys::packet::{self as pk, PacketDiag};
use stasis_sys::proc::Vma;
use stasis_sys::{Pid, net};

use super::inet::{check_netns, int_opt};
use super::netlink::generic_options;
use super::{Fd, FileTable};
use crate::error::{DumpError, Result, SysContext};

/// `SOCK_PACKET` (libc deprecates its name).
const SOCK_PACKET: i32 = 10;
/// `PACKET_FANOUT` types whose steering program cannot be read back.
const FANOUT_CBPF: u32 = 6;
const FANOUT_EBPF: u32 = 7;
/// `PACKET_FANOUT_FLAG_UNIQUEID`, as it shows in the top byte of `PACKET_FANOUT`.
const FANOUT_FLAG_UNIQUEID: u32 = 0x20;

/// The packet sockets of one dump.
#[derive(Debug, Default)]
pub(crate) struct PacketSockets {
    /// `sock_diag`'s view, read once.
    diag: Option<HashMap<u32, PacketDiag>>,
    /// Dumped sockets by inode: file id, and the bytes of their rings.
    by_ino: HashMap<u64, (u32, u64)>,
}

fn ring(r: &pk::Ring) -> pb::PacketRing {
    pb::PacketRing {
        block_size: r.block_size,
        block_nr: r.block_nr,
        frame_size: r.frame_size,
        frame_nr: r.frame_nr,
        retire_tmo: r.retire_tmo,
        sizeof_priv: r.sizeof_priv,
        features: r.features,
    }
}

/// A packet socket open at `f`; returns its file id.
pub(crate) fn dump_socket(table: &mut FileTable, f: &Fd) -> Result<u32> {
    check_netns(f)?;
    let fd = f.file.as_fd();
    let kind = int_opt(f, libc::SOL_SOCKET, libc::SO_TYPE)?;
    let sk_protocol = int_opt(f, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    if kind == SOCK_PACKET {
        return Err(f.unsupported("SOCK_PACKET sockets (obsolete) are not supported"));
    }
    if table.packet.diag.is_none() {
        table.packet.diag =
            Some(pk::packet_sockets().ctx(f.pid, || "sock_diag of packet sockets".into())?);
    }
    let ino = f.st.st_ino as u32;
    let Some(d) = table
        .packet
        .diag
        .as_ref()
        .and_then(|m| m.get(&ino))
        .cloned()
    else {
        return Err(f.unsupported("sock_diag does not know this packet socket"));
    };
    let mut fanout = d.fanout;
    if let Some(v) = fanout {
        let kind = (v >> 16) & 0xff;
        if kind == FANOUT_CBPF || kind == FANOUT_EBPF {
            return Err(f.unsupported(
                "its fanout group is steered by a BPF program (PACKET_FANOUT_DATA), which \
                 cannot be read back",
            ));
        }
        // A group id the kernel picked is joined by its number again.
        fanout = Some(v & !(FANOUT_FLAG_UNIQUEID << 24));
    }
    let mut mclist = Vec::new();
    for m in &d.mclist {
        // Added `count` times, dropped as many times: each addition is one entry.
        for _ in 0..m.count.max(1) {
            mclist.push(pb::PacketMclist {
                index: m.ifindex,
                r#type: u32::from(m.kind),
                addr: m.addr.clone(),
            });
        }
    }
    let mut stasis_opts = Vec::new();
    for name in [
        pk::PACKET_VNET_HDR_SZ,
        pk::PACKET_TX_HAS_OFF,
        pk::PACKET_QDISC_BYPASS,
        pk::PACKET_IGNORE_OUTGOING,
    ] {
        // VNET_HDR_SZ is newer than some kernels.
        let v = net::get_int_opt(fd, pk::SOL_PACKET, name).unwrap_or(0);
        // PACKET_VNET_HDR sets the header size itself.
        let implied = name == pk::PACKET_VNET_HDR_SZ && d.flags & pk::PDI_VNETHDR != 0 && v == 10;
        if v != 0 && !implied {
            stasis_opts.push(pb::StasisSockoptEntry {
                level: pk::SOL_PACKET,
                name,
                value: v.to_ne_bytes().to_vec(),
            });
        }
    }
    stasis_opts.extend(generic_options(
        &mut table.netlink.fresh,
        f,
        (libc::AF_PACKET, kind, 0),
    )?);
    let opts = super::inet::sk_opts(f)?;
    let queued = stasis_sys::fds::bytes_readable(fd).unwrap_or(0);
    if queued > 0 {
        log::warn!(
            "process {}: fd {}: the packets queued on this packet socket ({queued} bytes) are \
             dropped, as a network may drop them",
            f.pid,
            f.fd
        );
    }
    let ring_len =
        d.rx_ring.map_or(0, |r| r.mapped_len()) + d.tx_ring.map_or(0, |r| r.mapped_len());
    let (flags, fown) = (f.flags(), f.fown());
    let id = table.add(pb::FdTypes::Packetsk, |id, e| {
        e.psk = Some(pb::PacketSockEntry {
            id,
            r#type: kind as u32,
            protocol: u32::from(d.num),
            flags,
            ifindex: d.ifindex,
            fown: Some(fown),
            opts: Some(opts),
            version: d.version,
            reserve: d.reserve,
            aux_data: d.flags & pk::PDI_AUXDATA != 0,
            orig_dev: d.flags & pk::PDI_ORIGDEV != 0,
            vnet_hdr: d.flags & pk::PDI_VNETHDR != 0,
            loss: d.flags & pk::PDI_LOSS != 0,
            timestamp: d.tstamp,
            copy_thresh: d.copy_thresh,
            mclist,
            fanout,
            rx_ring: d.rx_ring.as_ref().map(ring),
            tx_ring: d.tx_ring.as_ref().map(ring),
            ns_id: None,
            stasis_sk_protocol: Some(sk_protocol as u32),
            stasis_opts,
        });
    });
    table.packet.by_ino.insert(f.st.st_ino, (id, ring_len));
    Ok(id)
}

impl FileTable {
    /// The file id of the packet socket whose ring `vma` maps (its fds are dumped before
    /// its memory).
    pub fn socket_mapping(&mut self, pid: Pid, vma: &Vma) -> Result<u32> {
        let unsupported = |reason: String| DumpError::Unsupported {
            pid,
            resource: format!("vma {:x}-{:x} (socket:[{}])", vma.start, vma.end, vma.inode),
            reason,
        };
        let Some(&(id, ring_len)) = self.packet.by_ino.get(&vma.inode) else {
            return Err(unsupported(
                "a mapping of a socket that is no packet socket open in the process (mapped \
                 sockets are restored through their fd)"
                    .into(),
            ));
        };
        if vma.offset != 0 || vma.len() != ring_len {
            return Err(unsupported(format!(
                "it maps part of the socket's rings ({} of {ring_len} bytes at offset {}); \
                 only whole ring mappings can be made again",
                vma.len(),
                vma.offset
            )));
        }
        Ok(id)
    }
}
