//! Unix sockets: type, state, name, peer, options, shutdown, from `sock_diag` and
//! `getsockopt` on our copy; their receive queues into `sk-queues.img`, peeked at with
//! `MSG_PEEK` and `SO_PEEK_OFF` so nothing is consumed (the process's peek offset is put
//! back). File descriptors in flight (`SCM_RIGHTS`) come with a peek as fds of our own:
//! each is dumped as a file description of its own (the same id as an fd of the tree
//! that shares it) and named by id in the message's entry.
//!
//! A listener's connections waiting to be accepted have no fd anywhere: the client's
//! entry names the listener as its peer (as CRIU's) and the listener lists its clients in
//! queue order. What a client sent before being accepted waits on the other end, which
//! the kernel lets nobody read without accepting it: with the tree killed after the dump,
//! stasis accepts those connections on its copy of the listener as the very last step,
//! once every other image is written; with `--leave-running` such a tree is refused.
//!
//! An accepted connection's name is its listener's: the entry says so
//! (`stasis_accepted`), for the restore to accept it again from a listener with that name.
//! A name whose file was deleted or replaced is kept with `deleted` set.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::net::{self, UnixDiag};
use stasis_sys::{Pid, fs, proc};

use super::{Fd, FileOptions, FileTable};
use crate::error::{DumpError, Result, SysContext};

const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;
/// CRIU's flag of an entry made for a socket outside the tree (`--ext-unix-sk`).
pub(crate) const USK_EXTERN: u32 = 1;

/// A connected socket whose peer must be in the dump.
#[derive(Debug)]
struct Peer {
    pid: Pid,
    fd: i32,
    ino: u32,
    peer: u32,
    dgram: bool,
}

/// A listener with connections waiting whose data can only be read by accepting them.
#[derive(Debug)]
struct Pending {
    pid: Pid,
    fd: i32,
    ino: u32,
    /// Our copy of the listener.
    listener: OwnedFd,
    /// The clients, in queue order.
    icons: Vec<u32>,
    /// `SOCK_STREAM` or `SOCK_SEQPACKET`.
    kind: i32,
}

/// The unix sockets of the dump.
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    /// `sock_diag`'s view, read once.
    diag: Option<HashMap<u32, UnixDiag>>,
    /// Queued messages: entry and bytes.
    queues: Vec<(pb::SkPacketEntry, Vec<u8>)>,
    peers: Vec<Peer>,
    /// Inodes dumped, with their file ids.
    dumped: HashMap<u32, u32>,
    /// Listeners with waiting connections, by inode.
    listeners: HashMap<u32, Pending>,
    /// Listeners whose waiting connections carry data (read at the end).
    to_drain: HashSet<u32>,
    /// The fds that came in flight, kept open until the dump ends: sharing is found
    /// by `kcmp` on their numbers.
    in_flight: Vec<OwnedFd>,
    /// Inodes of the sockets whose queues are being read, outermost first, while their
    /// fds in flight are dumped.
    in_flight_path: Vec<u32>,
    /// `--ext-unix-sk`.
    ext: bool,
    /// `--skip-in-flight`.
    skip_in_flight: bool,
}

/// Every connected socket's peer must be one of the tree's; with `--ext-unix-sk` a
/// datagram socket may be connected to a named socket outside, which gets an entry of
/// its own (CRIU's `USK_EXTERN`) for the restore to connect to by name.
pub(crate) fn check_peers(table: &mut FileTable) -> Result<()> {
    // A connection from outside the tree waiting on a listener of the tree: left behind
    // with --skip-in-flight (its client sees it reset), else refused.
    let skip = table.sockets.skip_in_flight;
    let dumped = &table.sockets.dumped;
    for e in table.entries.iter_mut().filter_map(|e| e.usk.as_mut()) {
        let outside: Vec<u32> = e
            .stasis_icons
            .iter()
            .copied()
            .filter(|c| !dumped.contains_key(c))
            .collect();
        if outside.is_empty() {
            continue;
        }
        let l = table.sockets.listeners.get(&e.ino);
        if !skip {
            return Err(DumpError::Unsupported {
                pid: l.map_or(0, |l| l.pid),
                resource: format!("fd {} (socket:[{}])", l.map_or(-1, |l| l.fd), e.ino),
                reason: format!(
                    "a connection from socket:[{}] outside the tree waits in its accept \
                     queue (--skip-in-flight leaves such connections behind)",
                    outside[0]
                ),
            });
        }
        log::warn!(
            "socket:[{}]: {} connections from outside the tree waiting to be accepted are \
             left behind (--skip-in-flight)",
            e.ino,
            outside.len()
        );
        e.stasis_icons.retain(|c| !outside.contains(c));
    }
    let peers = std::mem::take(&mut table.sockets.peers);
    for p in &peers {
        if table.sockets.dumped.contains_key(&p.peer) {
            continue;
        }
        let resource = format!("fd {} (socket:[{}])", p.fd, p.ino);
        let fail = |reason: String| DumpError::Unsupported {
            pid: p.pid,
            resource: resource.clone(),
            reason,
        };
        let outside = table
            .sockets
            .diag
            .as_ref()
            .and_then(|m| m.get(&p.peer))
            .cloned();
        if !table.sockets.ext {
            return Err(fail(format!(
                "its peer (socket:[{}]) belongs to no process of the tree (use --ext-unix-sk \
                 for datagram sockets connected to a name outside)",
                p.peer
            )));
        }
        if !p.dgram {
            return Err(fail(format!(
                "it is connected to socket:[{}] outside the tree; one end of a stream \
                 connection cannot be restored, even with --ext-unix-sk",
                p.peer
            )));
        }
        let Some(peer) = outside.filter(|d| !d.name.is_empty()) else {
            return Err(fail(format!(
                "it is connected to socket:[{}] outside the tree, which has no name to \
                 connect to again",
                p.peer
            )));
        };
        let ino = p.peer;
        let id = table.add(pb::FdTypes::Unixsk, |id, e| {
            e.usk = Some(pb::UnixSkEntry {
                id,
                ino,
                r#type: libc::SOCK_DGRAM as u32,
                state: u32::from(TCP_LISTEN),
                flags: 0,
                uflags: USK_EXTERN,
                backlog: 0,
                peer: 0,
                fown: Some(pb::FownEntry::default()),
                opts: Some(pb::SkOptsEntry::default()),
                name: peer.name.clone(),
                ..Default::default()
            });
        });
        log::info!(
            "socket:[{}] of process {} is connected to {} outside the tree (--ext-unix-sk)",
            p.ino,
            p.pid,
            String::from_utf8_lossy(&peer.name).trim_end_matches('\0')
        );
        table.sockets.dumped.insert(ino, id);
    }
    Ok(())
}

impl Sockets {
    /// Writes `sk-queues.img`, with the datagrams queued on inet sockets too.
    pub fn write(&self, dir: &ImageDir, inet: &[(pb::SkPacketEntry, Vec<u8>)]) -> Result<()> {
        if self.queues.is_empty() && inet.is_empty() {
            return Ok(());
        }
        self.write_always(dir, inet)
    }

    /// [`Sockets::write`], also when there is nothing to write (the file is appended to).
    pub fn write_always(
        &self,
        dir: &ImageDir,
        inet: &[(pb::SkPacketEntry, Vec<u8>)],
    ) -> Result<()> {
        let mut w = dir.create(ImageKind::SkQueues, 0)?;
        for (e, data) in self.queues.iter().chain(inet) {
            w.write(e)?;
            w.write_raw(data)?;
        }
        w.finish()?;
        Ok(())
    }

    /// Whether the dump must accept connections to read what their clients sent.
    pub fn must_drain(&self) -> bool {
        !self.to_drain.is_empty()
    }

    /// Reads what the clients of waiting connections sent, by accepting every connection
    /// waiting on the listeners that have such data (our copies of them): this takes the
    /// connections from the tree, so it is done only when the tree is killed after the
    /// dump, once everything else is written. The bytes become entries of the clients'
    /// queues marked `stasis_to_peer`.
    pub fn drain(&mut self) -> Result<Vec<(pb::SkPacketEntry, Vec<u8>)>> {
        let mut drained = Vec::new();
        for ino in std::mem::take(&mut self.to_drain) {
            let Some(l) = self.listeners.remove(&ino) else {
                continue;
            };
            let what = |s: &str| format!("fd {} (socket:[{}]): {s}", l.fd, l.ino);
            let mut accepted = Vec::new();
            for _ in &l.icons {
                let a = net::accept(l.listener.as_fd())
                    .ctx(l.pid, || what("accept a waiting connection"))?;
                accepted.push(a);
            }
            let diag = net::unix_sockets().ctx(l.pid, || "sock_diag of unix sockets".into())?;
            for a in accepted {
                let st = fs::fstat(a.as_fd()).ctx(l.pid, || what("fstat"))?;
                let client = diag.get(&(st.st_ino as u32)).map_or(0, |d| d.peer);
                // A client outside the tree: left behind (--skip-in-flight).
                let Some(&id) = self.dumped.get(&client) else {
                    continue;
                };
                let desc = format!("fd {} (a connection waiting on it)", l.fd);
                let stream = l.kind == libc::SOCK_STREAM;
                for (mut e, data, rights) in queue(a.as_fd(), l.pid, &desc, id, false, stream)? {
                    if !rights.is_empty() {
                        return Err(DumpError::Unsupported {
                            pid: l.pid,
                            resource: what("accept queue"),
                            reason: "a waiting connection carries file descriptors".into(),
                        });
                    }
                    e.stasis_to_peer = Some(true);
                    drained.push((e, data));
                }
            }
        }
        Ok(drained)
    }

    /// At most how many bytes [`Sockets::drain`]'s entries take in `sk-queues.img`: what
    /// the waiting clients have sent is charged to them (their send queue, in memory
    /// bytes, which a message's entry and payload never exceed), with some room over.
    pub fn drain_reserve(&self) -> u64 {
        let diag = self.diag.as_ref();
        let charged: u64 = self
            .listeners
            .iter()
            .filter(|(ino, _)| self.to_drain.contains(ino))
            .flat_map(|(_, l)| l.icons.iter())
            .map(|c| {
                diag.and_then(|d| d.get(c))
                    .and_then(|d| d.rqlen)
                    .map_or(0, |(_, w)| u64::from(w))
                    + 1024
            })
            .sum();
        charged + 4096
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
    // Older kernels do not know SO_PASSPIDFD.
    let passpidfd = net::get_int_opt(f.file.as_fd(), libc::SOL_SOCKET, net::SO_PASSPIDFD)
        .ok()
        .map(|v| v != 0);
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
        stasis_passpidfd: passpidfd.filter(|p| *p),
        so_rcvlowat: Some(opt(f, libc::SO_RCVLOWAT)? as u32),
        so_filter: stasis_sys::inet::get_filter(f.file.as_fd())
            .ctx(f.pid, || format!("fd {}: SO_GET_FILTER", f.fd))?,
        stasis_lock_filter: Some(opt(f, libc::SO_LOCK_FILTER)? != 0).filter(|l| *l),
        ..Default::default()
    })
}

type Queued = (pb::SkPacketEntry, Vec<u8>, Vec<OwnedFd>);

/// Copies the receive queue of socket `file` without consuming it: each message with the
/// fds in flight with it (copies of ours).
fn queue(
    file: BorrowedFd<'_>,
    pid: Pid,
    desc: &str,
    id: u32,
    passcred: bool,
    stream: bool,
) -> Result<Vec<Queued>> {
    let what = |s: &str| format!("{desc}: {s}");
    let saved = net::get_int_opt(file, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .ctx(pid, || what("SO_PEEK_OFF"))?;
    net::set_int_opt(file, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .ctx(pid, || what("set SO_PEEK_OFF"))?;
    let mut out = Vec::new();
    let peeked = (|| -> Result<()> {
        while let Some(m) =
            net::peek(file, 1 << 20, stream).ctx(pid, || what("peek at its queue"))?
        {
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
                    stasis_to_peer: None,
                    stasis_unix_from: (!m.from.is_empty()).then_some(m.from),
                    stasis_sender: None,
                },
                m.data,
                m.rights,
            ));
        }
        Ok(())
    })();
    // The process's own peek offset, whatever happened.
    net::set_int_opt(file, libc::SOL_SOCKET, libc::SO_PEEK_OFF, saved)
        .ctx(pid, || what("put SO_PEEK_OFF back"))?;
    peeked.map(|()| out)
}

/// The listener (of the diag view) whose accept queue holds a connection from `ino`.
fn listener_of(diag: &HashMap<u32, UnixDiag>, ino: u32) -> Option<&UnixDiag> {
    diag.values()
        .find(|d| d.state == TCP_LISTEN && d.icons.contains(&ino))
}

/// A socket open at `f`; returns its file id.
pub(crate) fn dump_socket(
    table: &mut FileTable,
    dir: &ImageDir,
    f: &Fd,
    opts: FileOptions,
) -> Result<u32> {
    let own_net = proc::read_link(proc::path(f.pid, "ns/net")).ok();
    if own_net != proc::read_link("/proc/self/ns/net".into()).ok() {
        return Err(
            f.unsupported("unix sockets of another network namespace are not supported yet")
        );
    }
    table.sockets.ext = opts.ext_unix_sk;
    table.sockets.skip_in_flight = opts.skip_in_flight;
    if table.sockets.diag.is_none() {
        table.sockets.diag =
            Some(net::unix_sockets().ctx(f.pid, || "sock_diag of unix sockets".into())?);
    }
    let diag = table.sockets.diag.as_ref().expect("read above");
    let ino = f.st.st_ino as u32;
    let d = diag
        .get(&ino)
        .cloned()
        .ok_or_else(|| f.unsupported("sock_diag does not know this socket"))?;
    let kind = i32::from(d.kind);
    let stream = kind != libc::SOCK_DGRAM;
    if d.state == TCP_LISTEN && !d.icons.is_empty() {
        if d.icons.contains(&0) {
            return Err(f.unsupported(
                "a connection waiting in its accept queue was closed by its client; what it \
                 sent cannot be saved",
            ));
        }
        if f.extra("scm_fds").is_some_and(|n| n.trim() != "0") {
            return Err(f.unsupported(
                "connections waiting in its accept queue carry file descriptors; they are not \
                 supported",
            ));
        }
    }
    // A client whose connection waits in an accept queue: its peer is the listener.
    let waiting_on = (stream && d.state == TCP_ESTABLISHED && d.peer == 0)
        .then(|| listener_of(diag, ino))
        .flatten()
        .map(|l| l.ino);
    if let Some(l) = waiting_on {
        let sent = d.rqlen.map_or(0, |(_, w)| w);
        if sent > 0 {
            if opts.leave_running {
                return Err(f.unsupported(format!(
                    "its connection to socket:[{l}] waits in the accept queue with data it \
                     sent, which the kernel lets nobody read without accepting the \
                     connection; that cannot be undone for a tree left running"
                )));
            }
            table.sockets.to_drain.insert(l);
        }
    }
    let connected = d.state == TCP_ESTABLISHED && d.peer != 0;
    let peer = if connected {
        d.peer
    } else {
        waiting_on.unwrap_or(0)
    };
    // An accepted socket shows its listener's name (and bound file) without owning it:
    // a listener has the same. (With the listener gone it looks like a socket bound to
    // the name, and is restored as one.)
    let accepted = connected
        && stream
        && !d.name.is_empty()
        && diag
            .values()
            .any(|o| o.state == TCP_LISTEN && o.ino != ino && o.name == d.name && o.vfs == d.vfs);
    // A datagram from an unnamed sender of an unconnected receiver: its sender is
    // known when only one unnamed datagram socket that could have sent it has bytes
    // charged to it.
    let unnamed_sender = (!stream && !connected)
        .then(|| {
            let mut c = diag.values().filter(|o| {
                i32::from(o.kind) == libc::SOCK_DGRAM
                    && o.name.is_empty()
                    && o.ino != ino
                    && (o.peer == 0 || o.peer == ino)
                    && o.rqlen.is_some_and(|(_, w)| w > 0)
            });
            match (c.next(), c.next()) {
                (Some(one), None) => Some(one.ino),
                _ => None,
            }
        })
        .flatten();
    let opts_e = options(f)?;
    let passcred = opts_e.so_passcred == Some(true);
    // A name relative to the binder's working directory then (the kernel keeps it as
    // given): found in the process's working directory now, as CRIU does, and saved with
    // that directory (`name_dir`).
    let name_dir = match (net::unix_path(&d.name), d.vfs) {
        (Some(path), vfs) if path.is_relative() => {
            let cwd = proc::read_link(proc::path(f.pid, "cwd"))
                .map_err(|e| f.unsupported(format!("its working directory: {e}")))?;
            let here = fs::stat(&cwd.join(path)).ok();
            match (here, vfs) {
                (Some(st), Some((vfs_ino, _))) if st.st_ino as u32 == vfs_ino => Some(cwd),
                _ => {
                    return Err(f.unsupported(format!(
                        "it is bound to the relative path {}, which is not in the process's \
                         working directory {}",
                        path.display(),
                        cwd.display()
                    )));
                }
            }
        }
        _ => None,
    };
    // The bound file is gone (or something else is at its path now).
    let deleted = match (net::unix_path(&d.name), d.vfs) {
        (Some(path), Some((vfs_ino, _))) if !accepted => {
            let full = name_dir
                .as_ref()
                .map_or_else(|| path.to_owned(), |d| d.join(path));
            Some(!fs::stat(&full).is_ok_and(|st| st.st_ino as u32 == vfs_ino))
        }
        _ => None,
    };
    let backlog = if d.state == TCP_LISTEN {
        d.rqlen.map_or(0, |(_, max)| max)
    } else {
        0
    };
    let (flags, fown) = (f.flags(), f.fown());
    let shutdown = d.shutdown & 3;
    let name = d.name.clone();
    let icons = d.icons.clone();
    let id = table.add(pb::FdTypes::Unixsk, |id, e| {
        e.usk = Some(pb::UnixSkEntry {
            id,
            ino,
            r#type: u32::from(d.kind),
            state: u32::from(d.state),
            flags,
            uflags: 0,
            backlog,
            peer,
            fown: Some(fown),
            opts: Some(opts_e),
            name,
            shutdown: Some(i32::from(shutdown)),
            file_perms: None,
            name_dir: name_dir.map(|d| d.to_string_lossy().into_owned()),
            deleted,
            ns_id: None,
            mnt_id: None,
            stasis_icons: icons,
            stasis_accepted: accepted.then_some(true),
        });
    });
    table.sockets.dumped.insert(ino, id);
    if d.state == TCP_LISTEN && !d.icons.is_empty() {
        let copy = f.file.try_clone().map_err(|e| DumpError::Sys {
            pid: f.pid,
            what: format!("fd {}: dup", f.fd),
            errno: stasis_sys::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        table.sockets.listeners.insert(
            ino,
            Pending {
                pid: f.pid,
                fd: f.fd,
                ino,
                listener: copy,
                icons: d.icons.clone(),
                kind,
            },
        );
    }
    if d.state != TCP_LISTEN {
        let desc = format!("fd {}", f.fd);
        let q = queue(
            f.file.as_fd(),
            f.pid,
            &desc,
            id,
            passcred,
            kind == libc::SOCK_STREAM,
        )?;
        for (mut e, data, rights) in q {
            if e.stasis_unix_from.is_none() {
                e.stasis_sender = unnamed_sender;
            }
            if !rights.is_empty() {
                let mut ids = Vec::with_capacity(rights.len());
                for r in rights {
                    ids.push(dump_in_flight(table, dir, f, r, opts)?);
                }
                e.scm = vec![pb::ScmEntry {
                    r#type: libc::SCM_RIGHTS as u32,
                    rights: ids,
                }];
            }
            table.sockets.queues.push((e, data));
        }
    }
    if peer != 0 {
        table.sockets.peers.push(Peer {
            pid: f.pid,
            fd: f.fd,
            ino,
            peer,
            dgram: !stream,
        });
    }
    Ok(id)
}

/// An fd in flight in a message queued on `f`, as a file description of our own process
/// (kept open until the dump ends); returns its file id.
fn dump_in_flight(
    table: &mut FileTable,
    dir: &ImageDir,
    f: &Fd,
    file: OwnedFd,
    opts: FileOptions,
) -> Result<u32> {
    let me = std::process::id() as Pid;
    let raw = file.as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{raw}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A socket in flight is dumped like any other (its own queue may carry more); one
    // that is in flight inside its own queue, however deep, would never end.
    let ino = fs::fstat(file.as_fd())
        .ctx(f.pid, || format!("fstat of {link} in flight"))?
        .st_ino as u32;
    if link.starts_with("socket:[") && table.sockets.in_flight_path.contains(&ino) {
        return Err(f.unsupported(format!(
            "a message queued on it carries {link}, which carries that message itself"
        )));
    }
    let pidfd = stasis_sys::process::pidfd_open(me).ctx(f.pid, || "pidfd_open(self)".into())?;
    table.sockets.in_flight.push(file);
    table.sockets.in_flight_path.push(ino);
    let dumped = table.dump_fd(dir, me, &pidfd, raw, opts);
    table.sockets.in_flight_path.pop();
    let (entry, _, _) = dumped.map_err(|e| match e {
        DumpError::Unsupported { reason, .. } => f.unsupported(format!(
            "a message queued on it carries {link}, which cannot be saved: {reason}"
        )),
        other => other,
    })?;
    Ok(entry.id)
}
