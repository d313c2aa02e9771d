//! Unix sockets: type, state, name, peer, options, shutdown, from `sock_diag` and
//! `getsockopt` on our copy; their receive queues into `sk-queues.img`, peeked at with
//! `MSG_PEEK` and `SO_PEEK_OFF` so nothing is consumed (the process's peek offset is put
//! back).
//!
//! Supported so far: connected pairs inside the tree without names (socketpairs), datagram
//! sockets (bound or not, connected or not), listeners without connections waiting to be
//! accepted, unconnected stream sockets. Everything else is a one-line error.

use std::collections::HashMap;
use std::os::fd::AsFd;

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::net::{self, UnixDiag};
use stasis_sys::{Pid, fs, proc};

use super::{Fd, FileTable};
use crate::error::{DumpError, Result, SysContext};

const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;

/// The unix sockets of the dump.
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    /// `sock_diag`'s view, read once.
    diag: Option<HashMap<u32, UnixDiag>>,
    /// Queued messages: entry and bytes.
    queues: Vec<(pb::SkPacketEntry, Vec<u8>)>,
    /// Connected sockets whose peer must be in the dump: (pid, fd, inode, peer inode).
    peers: Vec<(Pid, i32, u32, u32)>,
    /// Inodes dumped.
    dumped: std::collections::HashSet<u32>,
}

impl Sockets {
    /// Every connected socket's peer must be one of the tree's.
    pub fn check_peers(&self) -> Result<()> {
        for &(pid, fd, ino, peer) in &self.peers {
            if !self.dumped.contains(&peer) {
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!("fd {fd} (socket:[{ino}])"),
                    reason: format!(
                        "its peer (socket:[{peer}]) belongs to no process of the tree; \
                         external unix sockets are not supported yet"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Writes `sk-queues.img`, with the datagrams queued on inet sockets too.
    pub fn write(&self, dir: &ImageDir, inet: &[(pb::SkPacketEntry, Vec<u8>)]) -> Result<()> {
        if self.queues.is_empty() && inet.is_empty() {
            return Ok(());
        }
        let mut w = dir.create(ImageKind::SkQueues, 0)?;
        for (e, data) in self.queues.iter().chain(inet) {
            w.write(e)?;
            w.write_raw(data)?;
        }
        w.finish()?;
        Ok(())
    }
}

fn opt(f: &Fd, name: i32) -> Result<i32> {
    net::get_int_opt(f.file.as_fd(), libc::SOL_SOCKET, name)
        .ctx(f.pid, || format!("fd {}: getsockopt({name})", f.fd))
}

/// The options every socket has.
fn options(f: &Fd) -> Result<pb::SkOptsEntry> {
    let tmo = |name| {
        net::get_timeval_opt(f.file.as_fd(), name)
            .ctx(f.pid, || format!("fd {}: getsockopt({name})", f.fd))
    };
    let (snd_sec, snd_usec) = tmo(libc::SO_SNDTIMEO)?;
    let (rcv_sec, rcv_usec) = tmo(libc::SO_RCVTIMEO)?;
    Ok(pb::SkOptsEntry {
        so_sndbuf: opt(f, libc::SO_SNDBUF)? as u32,
        so_rcvbuf: opt(f, libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        so_priority: Some(opt(f, libc::SO_PRIORITY)? as u32),
        so_mark: Some(opt(f, libc::SO_MARK)? as u32),
        so_passcred: Some(opt(f, libc::SO_PASSCRED)? != 0),
        so_passsec: Some(opt(f, libc::SO_PASSSEC)? != 0),
        stasis_peek_off: Some(opt(f, libc::SO_PEEK_OFF)?),
        ..Default::default()
    })
}

/// Copies the receive queue of the socket open at `f` without consuming it.
fn queue(f: &Fd, id: u32, passcred: bool) -> Result<Vec<(pb::SkPacketEntry, Vec<u8>)>> {
    let file = f.file.as_fd();
    let what = |s: &str| format!("fd {}: {s}", f.fd);
    let saved = net::get_int_opt(file, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .ctx(f.pid, || what("SO_PEEK_OFF"))?;
    net::set_int_opt(file, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .ctx(f.pid, || what("set SO_PEEK_OFF"))?;
    let mut out = Vec::new();
    let peeked = (|| -> Result<()> {
        while let Some(m) = net::peek(file, 1 << 20).ctx(f.pid, || what("peek at its queue"))? {
            if m.had_rights {
                return Err(
                    f.unsupported("file descriptors in flight (SCM_RIGHTS) are not supported yet")
                );
            }
            out.push((
                pb::SkPacketEntry {
                    id_for: id,
                    length: m.data.len() as u32,
                    scm: Vec::new(),
                    stasis_ucred: m
                        .creds
                        .filter(|_| passcred)
                        .map(|(pid, uid, gid)| pb::StasisUcredEntry { pid, uid, gid }),
                    stasis_from: None,
                },
                m.data,
            ));
        }
        Ok(())
    })();
    // The process's own peek offset, whatever happened.
    net::set_int_opt(file, libc::SOL_SOCKET, libc::SO_PEEK_OFF, saved)
        .ctx(f.pid, || what("put SO_PEEK_OFF back"))?;
    peeked.map(|()| out)
}

/// A socket open at `f`; returns its file id.
pub(crate) fn dump_socket(table: &mut FileTable, f: &Fd) -> Result<u32> {
    let own_net = proc::read_link(proc::path(f.pid, "ns/net")).ok();
    if own_net != proc::read_link("/proc/self/ns/net".into()).ok() {
        return Err(
            f.unsupported("unix sockets of another network namespace are not supported yet")
        );
    }
    if table.sockets.diag.is_none() {
        table.sockets.diag =
            Some(net::unix_sockets().ctx(f.pid, || "sock_diag of unix sockets".into())?);
    }
    let ino = f.st.st_ino as u32;
    let d = table
        .sockets
        .diag
        .as_ref()
        .and_then(|m| m.get(&ino))
        .cloned()
        .ok_or_else(|| f.unsupported("sock_diag does not know this socket"))?;
    if d.state == TCP_LISTEN && !d.icons.is_empty() {
        return Err(f.unsupported(format!(
            "{} connections wait in its accept queue; they are not supported yet",
            d.icons.len()
        )));
    }
    let connected = d.state == TCP_ESTABLISHED && d.peer != 0;
    let peer = d.peer;
    let peer_named = connected
        && table
            .sockets
            .diag
            .as_ref()
            .and_then(|m| m.get(&peer))
            .is_some_and(|p| !p.name.is_empty());
    if connected && i32::from(d.kind) != libc::SOCK_DGRAM && (!d.name.is_empty() || peer_named) {
        return Err(f.unsupported(
            "connected stream and seqpacket sockets with a name (accepted connections) are \
             not supported yet",
        ));
    }
    let opts = options(f)?;
    let passcred = opts.so_passcred == Some(true);
    if net::unix_path(&d.name).is_some_and(|p| p.is_relative()) {
        return Err(f.unsupported(format!(
            "it is bound to the relative path {}; such sockets are not supported yet",
            String::from_utf8_lossy(&d.name).trim_end_matches('\0')
        )));
    }
    let deleted = net::unix_path(&d.name)
        .map(|path| !fs::stat(path).is_ok_and(|st| Some(st.st_ino as u32) == d.vfs.map(|v| v.0)));
    if deleted == Some(true) {
        return Err(f.unsupported(
            "its bound path was deleted or replaced; such sockets are not supported yet",
        ));
    }
    let backlog = if d.state == TCP_LISTEN {
        d.rqlen.map_or(0, |(_, max)| max)
    } else {
        0
    };
    let (flags, fown) = (f.flags(), f.fown());
    let shutdown = d.shutdown & 3;
    let name = d.name.clone();
    let id = table.add(pb::FdTypes::Unixsk, |id, e| {
        e.usk = Some(pb::UnixSkEntry {
            id,
            ino,
            r#type: u32::from(d.kind),
            state: u32::from(d.state),
            flags,
            uflags: 0,
            backlog,
            peer: if d.state == TCP_ESTABLISHED { peer } else { 0 },
            fown: Some(fown),
            opts: Some(opts),
            name,
            shutdown: Some(i32::from(shutdown)),
            file_perms: None,
            name_dir: None,
            deleted,
            ns_id: None,
            mnt_id: None,
        });
    });
    if d.state != TCP_LISTEN {
        let q = queue(f, id, passcred)?;
        table.sockets.queues.extend(q);
    }
    if connected {
        table.sockets.peers.push((f.pid, f.fd, ino, peer));
    }
    table.sockets.dumped.insert(ino);
    Ok(id)
}
