//! Packet sockets, made again by stasis before any process is forked: created with the
//! protocol they were created with, given their BPF filter at once (what arrived before it
//! is thrown away: the filter would have refused it), the generic options, the
//! `PACKET_*` options (version, reserve, loss, virtio header and the others a ring
//! depends on come before the rings), the rings with the same request, memberships,
//! bound to their interface and protocol, and last joined to their fanout group (only a
//! bound socket can join; both members of a group are made here, so they share it
//! again). A mapping of the ring is made by the process from this socket at the saved
//! address, like a shared file mapping (`memory.rs`).

use std::os::fd::{AsFd, OwnedFd};

use stasis_images::pb;
use stasis_sys::packet::{self as pk, Membership, Ring};
use stasis_sys::{inet, net};

use super::OpenCtx;
use super::netlink::set_generic;
use crate::error::{RestoreError, Result, SysContext};

/// `PACKET_FANOUT` of a socket in no group.
const NO_FANOUT: u32 = u32::MAX;

fn ring(r: &pb::PacketRing) -> Ring {
    Ring {
        block_size: r.block_size,
        block_nr: r.block_nr,
        frame_size: r.frame_size,
        frame_nr: r.frame_nr,
        retire_tmo: r.retire_tmo,
        sizeof_priv: r.sizeof_priv,
        features: r.features,
    }
}

/// The description of packet socket `e`.
pub(crate) fn open(cx: &OpenCtx<'_>, e: &pb::PacketSockEntry) -> Result<OwnedFd> {
    let pid = cx.pid;
    let what = format!("packet socket (file id {})", e.id);
    let kind = e.r#type as i32;
    if kind != libc::SOCK_RAW && kind != libc::SOCK_DGRAM {
        return Err(RestoreError::Unsupported {
            pid,
            resource: what,
            reason: format!("packet sockets of type {kind} are not supported"),
        });
    }
    let protocol = u16::try_from(e.protocol).map_err(|_| {
        crate::error::invalid("files.img", format!("{what}: protocol {:#x}", e.protocol))
    })?;
    let created_with = e.stasis_sk_protocol.unwrap_or(0) as i32;
    let sock =
        inet::socket(libc::AF_PACKET, kind, created_with).ctx(pid, || format!("create {what}"))?;
    let fd = sock.as_fd();
    set_generic(pid, fd, e.opts.as_ref(), &e.stasis_opts, &what)?;
    if created_with != 0 && e.opts.as_ref().is_some_and(|o| !o.so_filter.is_empty()) {
        // Received before the filter was attached: packets it would have refused.
        pk::drain(fd).ctx(pid, || format!("{what}: empty its queue"))?;
    }
    let set = |name: i32, v: i32, label: &str| {
        net::set_int_opt(fd, pk::SOL_PACKET, name, v).ctx(pid, || format!("{what}: {label}"))
    };
    for (v, name, label) in [
        (e.version, pk::PACKET_VERSION, "PACKET_VERSION"),
        (e.reserve, pk::PACKET_RESERVE, "PACKET_RESERVE"),
        (e.timestamp, pk::PACKET_TIMESTAMP, "PACKET_TIMESTAMP"),
        (e.copy_thresh, pk::PACKET_COPY_THRESH, "PACKET_COPY_THRESH"),
        (u32::from(e.aux_data), pk::PACKET_AUXDATA, "PACKET_AUXDATA"),
        (u32::from(e.orig_dev), pk::PACKET_ORIGDEV, "PACKET_ORIGDEV"),
        (
            u32::from(e.vnet_hdr),
            pk::PACKET_VNET_HDR,
            "PACKET_VNET_HDR",
        ),
        (u32::from(e.loss), pk::PACKET_LOSS, "PACKET_LOSS"),
    ] {
        if v != 0 {
            set(name, v as i32, label)?;
        }
    }
    for s in e.stasis_opts.iter().filter(|s| s.level == pk::SOL_PACKET) {
        inet::set_opt_bytes(fd, s.level, s.name, &s.value).ctx(pid, || {
            format!("{what}: setsockopt(SOL_PACKET, {})", s.name)
        })?;
    }
    for (r, name, label) in [
        (&e.rx_ring, pk::PACKET_RX_RING, "PACKET_RX_RING"),
        (&e.tx_ring, pk::PACKET_TX_RING, "PACKET_TX_RING"),
    ] {
        if let Some(r) = r {
            inet::set_opt_bytes(fd, pk::SOL_PACKET, name, &ring(r).request())
                .ctx(pid, || format!("{what}: {label}"))?;
        }
    }
    for m in &e.mclist {
        if m.addr.len() > 32 || m.r#type > u32::from(u16::MAX) {
            return Err(crate::error::invalid(
                "files.img",
                format!(
                    "{what}: a membership of type {} with {} address bytes",
                    m.r#type,
                    m.addr.len()
                ),
            ));
        }
        let req = pk::membership_request(&Membership {
            ifindex: m.index,
            count: 1,
            kind: m.r#type as u16,
            addr: m.addr.clone(),
        });
        inet::set_opt_bytes(fd, pk::SOL_PACKET, pk::PACKET_ADD_MEMBERSHIP, &req).ctx(
            pid,
            || {
                format!(
                    "{what}: PACKET_ADD_MEMBERSHIP type {} on interface {}",
                    m.r#type, m.index
                )
            },
        )?;
    }
    if e.ifindex != 0 || protocol != 0 {
        pk::bind(fd, e.ifindex, protocol).ctx(pid, || {
            format!(
                "bind {what} to interface {} protocol {protocol:#06x}",
                e.ifindex
            )
        })?;
    }
    if let Some(f) = e.fanout.filter(|f| *f != NO_FANOUT) {
        set(pk::PACKET_FANOUT, f as i32, "join its PACKET_FANOUT group")?;
    }
    cx.finish(
        sock,
        e.flags,
        libc::O_NONBLOCK | libc::O_ASYNC,
        e.fown.as_ref(),
        &what,
    )
}
