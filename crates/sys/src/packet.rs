//! Packet sockets (`AF_PACKET`): what `sock_diag` (`PACKET_DIAG`) says of them (options,
//! memberships, rings, fanout), their link-layer address, binding, memberships and rings
//! set again, and their queues emptied.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::net::{attributes, diag_dump, u32_at};
use crate::{Errno, Result};

/// `SOL_PACKET`.
pub const SOL_PACKET: i32 = 263;
/// `PACKET_ADD_MEMBERSHIP`.
pub const PACKET_ADD_MEMBERSHIP: i32 = 1;
/// `PACKET_RX_RING`.
pub const PACKET_RX_RING: i32 = 5;
/// `PACKET_COPY_THRESH`.
pub const PACKET_COPY_THRESH: i32 = 7;
/// `PACKET_AUXDATA`.
pub const PACKET_AUXDATA: i32 = 8;
/// `PACKET_ORIGDEV`.
pub const PACKET_ORIGDEV: i32 = 9;
/// `PACKET_VERSION`.
pub const PACKET_VERSION: i32 = 10;
/// `PACKET_RESERVE`.
pub const PACKET_RESERVE: i32 = 12;
/// `PACKET_TX_RING`.
pub const PACKET_TX_RING: i32 = 13;
/// `PACKET_LOSS`.
pub const PACKET_LOSS: i32 = 14;
/// `PACKET_VNET_HDR`.
pub const PACKET_VNET_HDR: i32 = 15;
/// `PACKET_TIMESTAMP`.
pub const PACKET_TIMESTAMP: i32 = 17;
/// `PACKET_FANOUT`.
pub const PACKET_FANOUT: i32 = 18;
/// `PACKET_TX_HAS_OFF`.
pub const PACKET_TX_HAS_OFF: i32 = 19;
/// `PACKET_QDISC_BYPASS`.
pub const PACKET_QDISC_BYPASS: i32 = 20;
/// `PACKET_IGNORE_OUTGOING`.
pub const PACKET_IGNORE_OUTGOING: i32 = 23;
/// `PACKET_VNET_HDR_SZ`.
pub const PACKET_VNET_HDR_SZ: i32 = 24;

/// `pdi_flags` bits.
pub const PDI_RUNNING: u32 = 0x1;
/// `PACKET_AUXDATA` on.
pub const PDI_AUXDATA: u32 = 0x2;
/// `PACKET_ORIGDEV` on.
pub const PDI_ORIGDEV: u32 = 0x4;
/// `PACKET_VNET_HDR` on.
pub const PDI_VNETHDR: u32 = 0x8;
/// `PACKET_LOSS` on.
pub const PDI_LOSS: u32 = 0x10;

/// A ring's request (`tpacket_req3`), as `PACKET_DIAG_RX_RING`/`TX_RING` report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// Bytes per block.
    pub block_size: u32,
    /// Blocks.
    pub block_nr: u32,
    /// Bytes per frame.
    pub frame_size: u32,
    /// Frames.
    pub frame_nr: u32,
    /// TPACKET_V3: block retire timeout (ms).
    pub retire_tmo: u32,
    /// TPACKET_V3: private bytes per block.
    pub sizeof_priv: u32,
    /// TPACKET_V3: feature request word.
    pub features: u32,
}

impl Ring {
    /// The bytes the ring takes in a mapping of the socket.
    pub fn mapped_len(&self) -> u64 {
        u64::from(self.block_size) * u64::from(self.block_nr)
    }

    /// The ring as `tpacket_req3` bytes (a `tpacket_req` is its first 16).
    pub fn request(&self) -> Vec<u8> {
        [
            self.block_size,
            self.block_nr,
            self.frame_size,
            self.frame_nr,
            self.retire_tmo,
            self.sizeof_priv,
            self.features,
        ]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect()
    }
}

/// A membership (`packet_diag_mclist`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Interface index.
    pub ifindex: u32,
    /// How many times it was added.
    pub count: u32,
    /// `PACKET_MR_MULTICAST` (0), `PROMISC` (1), `ALLMULTI` (2), `UNICAST` (3).
    pub kind: u16,
    /// The address (multicast and unicast kinds).
    pub addr: Vec<u8>,
}

/// A packet socket as `sock_diag` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketDiag {
    /// `SOCK_RAW`, `SOCK_DGRAM` or `SOCK_PACKET`.
    pub kind: u8,
    /// The protocol it receives (host byte order; 0: none).
    pub num: u16,
    /// Socket inode.
    pub ino: u32,
    /// Bound interface index (0: all).
    pub ifindex: u32,
    /// `PACKET_VERSION`.
    pub version: u32,
    /// `PACKET_RESERVE`.
    pub reserve: u32,
    /// `PACKET_COPY_THRESH`.
    pub copy_thresh: u32,
    /// `PACKET_TIMESTAMP`.
    pub tstamp: u32,
    /// `PDI_*` bits.
    pub flags: u32,
    /// Memberships.
    pub mclist: Vec<Membership>,
    /// The receive ring.
    pub rx_ring: Option<Ring>,
    /// The transmit ring.
    pub tx_ring: Option<Ring>,
    /// `PACKET_FANOUT` (id | type << 16 | flags << 24), if in a group.
    pub fanout: Option<u32>,
}

fn ring_of(d: &[u8]) -> Ring {
    Ring {
        block_size: u32_at(d, 0),
        block_nr: u32_at(d, 4),
        frame_size: u32_at(d, 8),
        frame_nr: u32_at(d, 12),
        retire_tmo: u32_at(d, 16),
        sizeof_priv: u32_at(d, 20),
        features: u32_at(d, 24),
    }
}

/// Every packet socket of our network namespace, by inode.
pub fn packet_sockets() -> Result<HashMap<u32, PacketDiag>> {
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8; // INFO, MCLIST, RING_CFG, FANOUT
    // packet_diag_req: family, protocol, pad, ino, show, cookie.
    let mut body = vec![libc::AF_PACKET as u8, 0, 0, 0];
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&SHOW.to_ne_bytes());
    body.extend_from_slice(&[0u8; 8]);
    let mut out = HashMap::new();
    // packet_diag_msg: family, type, num (u16), ino, cookie (16 bytes).
    for m in diag_dump(&body)? {
        if m.len() < 16 {
            continue;
        }
        let mut d = PacketDiag {
            kind: m[1],
            num: u16::from_ne_bytes([m[2], m[3]]),
            ino: u32_at(&m, 4),
            ..Default::default()
        };
        for (ty, data) in attributes(&m, 16) {
            match ty {
                0 => {
                    d.ifindex = u32_at(data, 0);
                    d.version = u32_at(data, 4);
                    d.reserve = u32_at(data, 8);
                    d.copy_thresh = u32_at(data, 12);
                    d.tstamp = u32_at(data, 16);
                    d.flags = u32_at(data, 20);
                }
                1 => {
                    // packet_diag_mclist: index, count, type (u16), alen (u16), addr[32].
                    for mc in data.chunks_exact(44) {
                        let alen = usize::from(u16::from_ne_bytes([mc[10], mc[11]])).min(32);
                        d.mclist.push(Membership {
                            ifindex: u32_at(mc, 0),
                            count: u32_at(mc, 4),
                            kind: u16::from_ne_bytes([mc[8], mc[9]]),
                            addr: mc[12..12 + alen].to_vec(),
                        });
                    }
                }
                2 => d.rx_ring = Some(ring_of(data)),
                3 => d.tx_ring = Some(ring_of(data)),
                4 => d.fanout = Some(u32_at(data, 0)),
                _ => {}
            }
        }
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// The socket's link-layer address (`getsockname`): (interface index, protocol in host
/// byte order).
pub fn local(fd: BorrowedFd<'_>) -> Result<(u32, u16)> {
    // SAFETY: an all-zero sockaddr_ll is valid to be overwritten.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `a`.
    let r = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut a).cast(), &mut len) };
    Errno::result(r.into())?;
    Ok((a.sll_ifindex as u32, u16::from_be(a.sll_protocol)))
}

/// Binds to interface `ifindex` (0: all) for `protocol` (host byte order; 0 keeps the
/// socket's).
pub fn bind(fd: BorrowedFd<'_>, ifindex: u32, protocol: u16) -> Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = protocol.to_be();
    a.sll_ifindex = ifindex as i32;
    // SAFETY: bind reads one sockaddr_ll.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const a).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// The `PACKET_ADD_MEMBERSHIP` request for `m` (a `packet_mreq` with room for the
/// longest hardware address).
pub fn membership_request(m: &Membership) -> Vec<u8> {
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&(m.ifindex as i32).to_ne_bytes());
    req.extend_from_slice(&m.kind.to_ne_bytes());
    req.extend_from_slice(&(m.addr.len() as u16).to_ne_bytes());
    let mut addr = [0u8; 32];
    let n = m.addr.len().min(32);
    addr[..n].copy_from_slice(&m.addr[..n]);
    req.extend_from_slice(&addr);
    req
}

/// Throws away everything queued on the socket; returns how many packets.
pub fn drain(fd: BorrowedFd<'_>) -> Result<usize> {
    let mut buf = [0u8; 1];
    let mut n = 0;
    loop {
        // SAFETY: recv writes at most one byte (the rest of the packet is dropped).
        let r = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        match Errno::result(r as libc::c_long) {
            Ok(_) => n += 1,
            Err(Errno(libc::EAGAIN)) => return Ok(n),
            Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn diag_shows_a_ring_and_a_membership() {
        let s = crate::inet::socket(libc::AF_PACKET, libc::SOCK_RAW, 0).unwrap();
        let fd = s.as_fd();
        let lo = crate::inet::if_index("lo").unwrap();
        let ring = Ring {
            block_size: 4096,
            block_nr: 2,
            frame_size: 2048,
            frame_nr: 4,
            ..Default::default()
        };
        crate::inet::set_opt_bytes(fd, SOL_PACKET, PACKET_RX_RING, &ring.request()).unwrap();
        let m = Membership {
            ifindex: lo,
            count: 1,
            kind: 2,
            addr: Vec::new(),
        };
        crate::inet::set_opt_bytes(
            fd,
            SOL_PACKET,
            PACKET_ADD_MEMBERSHIP,
            &membership_request(&m),
        )
        .unwrap();
        bind(fd, lo, 0).unwrap();
        assert_eq!(local(fd).unwrap(), (lo, 0));
        let ino = crate::fs::fstat(fd).unwrap().st_ino as u32;
        let d = packet_sockets().unwrap().remove(&ino).unwrap();
        assert_eq!(
            (d.ifindex, d.num, d.rx_ring, d.tx_ring),
            (lo, 0, Some(ring), None)
        );
        assert_eq!(d.mclist, vec![m]);
        assert_eq!(d.fanout, None);
        assert_eq!(drain(fd).unwrap(), 0);
    }
}
