//! Unix sockets, made again by stasis before any process is forked.
//!
//! - Two sockets connected to each other, neither end accepted, are a `socketpair` (each
//!   end then bound to its own name, if it had one).
//! - An accepted connection is accepted again: its client (bound to its own name first)
//!   connects to the listener with the accepted end's name, which is the tree's listener
//!   if it has one (before that listener's waiting connections are queued), else a
//!   temporary listener bound to the name for the moment.
//! - Any other socket is created, bound to its name (a stale socket file of the dead
//!   original is removed first) and made to listen. A name whose file was deleted or
//!   replaced is bound at its path (what is there now moved aside for the moment) and
//!   the path is put back as it was once every socket is connected and refilled
//!   ([`Late::refill`]), so the socket keeps its name without a file.
//!
//! Once every socket exists ([`Sockets::finish`]), datagram sockets connect to their
//! named peers (outside the tree too: `USK_EXTERN` entries), and the clients of
//! connections waiting to be accepted connect to their listeners in queue order and send
//! again what they had sent. The queued messages are sent again once every process of the
//! tree exists (their credentials may name any of them), before any runs: from the
//! connected peer, from the socket with the sender's name, or from a socket of ours aimed
//! at the bound name, with the fds that were in flight; then names are put back and
//! shutdowns applied.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fs, net};

use super::OpenCtx;
use crate::error::{RestoreError, Result, SysContext};

const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;
/// CRIU's flag of a socket outside the tree (`--ext-unix-sk`).
const USK_EXTERN: u32 = 1;

/// The messages queued on each socket, by its file id, oldest first.
pub type Queues = HashMap<u32, Vec<(pb::SkPacketEntry, Vec<u8>)>>;

/// Reads `sk-queues.img`.
pub fn load(dir: &ImageDir) -> Result<Queues> {
    let mut out: HashMap<u32, Vec<_>> = HashMap::new();
    if let Some(mut r) = dir.open_optional(ImageKind::SkQueues, 0)? {
        while let Some(e) = r.next::<pb::SkPacketEntry>()? {
            let data = r.read_payload(u64::from(e.length))?;
            out.entry(e.id_for).or_default().push((e, data));
        }
    }
    Ok(out)
}

/// The file ids of the fds in flight in queued messages.
pub fn in_flight_ids(queues: &Queues) -> Vec<u32> {
    let mut ids: Vec<u32> = queues
        .values()
        .flatten()
        .flat_map(|(e, _)| e.scm.iter())
        .filter(|s| s.r#type == libc::SCM_RIGHTS as u32)
        .flat_map(|s| s.rights.iter().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Names relative to a directory (`name_dir`, saved with them) made absolute in `files`,
/// so that connecting, sending, and moving files aside work from anywhere; only the bind
/// uses the relative name again ([`bind_name`]). Returns what each relative name became.
pub fn absolute_names(files: &mut HashMap<u32, pb::FileEntry>) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut map = HashMap::new();
    for e in files.values_mut().filter_map(|f| f.usk.as_mut()) {
        let (Some(dir), Some(path)) = (e.name_dir.as_deref(), net::unix_path(&e.name)) else {
            continue;
        };
        if path.is_absolute() {
            continue;
        }
        use std::os::unix::ffi::OsStrExt;
        let mut abs = Path::new(dir).join(path).as_os_str().as_bytes().to_vec();
        if e.name.last() == Some(&0) {
            abs.push(0);
        }
        map.insert(e.name.clone(), abs.clone());
        e.name = abs;
    }
    map
}

/// The senders' names of queued messages, made absolute as [`absolute_names`] made them.
pub fn absolute_senders(queues: &mut Queues, names: &HashMap<Vec<u8>, Vec<u8>>) {
    if names.is_empty() {
        return;
    }
    for (m, _) in queues.values_mut().flatten() {
        if let Some(abs) = m.stasis_unix_from.as_ref().and_then(|f| names.get(f)) {
            m.stasis_unix_from = Some(abs.clone());
        }
    }
}

/// Binds `sock` to the name of entry `e`: a name that was relative to `name_dir` (made
/// absolute by [`absolute_names`]) is bound as it was, relative, from that directory.
fn bind_name(sock: BorrowedFd<'_>, e: &pb::UnixSkEntry) -> stasis_sys::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if let (Some(dir), Some(path)) = (e.name_dir.as_deref(), net::unix_path(&e.name))
        && let Ok(rel) = path.strip_prefix(dir)
    {
        let mut name = rel.as_os_str().as_bytes().to_vec();
        name.push(0);
        return net::unix_bind_in(sock, Path::new(dir), &name);
    }
    net::unix_bind(sock, &e.name)
}

/// A path bound for a moment: our socket file is removed from it and what was there
/// before (moved aside) put back, when applied or dropped.
#[derive(Debug)]
struct PathFix {
    path: PathBuf,
    aside: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct PathFixes(Vec<PathFix>);

impl PathFixes {
    fn apply(&mut self) {
        for f in self.0.drain(..).rev() {
            if is_socket(&f.path) {
                let _ = std::fs::remove_file(&f.path);
            }
            if let Some(aside) = f.aside {
                let _ = std::fs::rename(&aside, &f.path);
            }
        }
    }
}

impl Drop for PathFixes {
    fn drop(&mut self) {
        self.apply();
    }
}

/// Binds `sock` to `e`'s name at `path`, moving whatever is there aside first; the
/// returned fix puts it back.
fn bind_over(
    sock: BorrowedFd<'_>,
    e: &pb::UnixSkEntry,
    path: &Path,
) -> stasis_sys::Result<PathFix> {
    let aside = if std::fs::symlink_metadata(path).is_ok() {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let aside = (0u32..)
            .map(|n| dir.join(format!(".stasis-unix-{}-{n}", std::process::id())))
            .find(|p| std::fs::symlink_metadata(p).is_err())
            .expect("a free name");
        std::fs::rename(path, &aside)
            .map_err(|e| stasis_sys::Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        Some(aside)
    } else {
        None
    };
    let fix = PathFix {
        path: path.to_owned(),
        aside,
    };
    match bind_name(sock, e) {
        Ok(()) => Ok(fix),
        Err(e) => {
            PathFixes(vec![fix]).apply();
            Err(e)
        }
    }
}

/// The sockets made so far, by inode.
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    made: HashMap<u32, OwnedFd>,
    /// Entries of the sockets made, by inode.
    entries: HashMap<u32, pb::UnixSkEntry>,
    fixes: PathFixes,
}

/// What is left to do once every process of the tree exists (see the module comment).
#[derive(Debug, Default)]
pub struct Late {
    made: HashMap<u32, OwnedFd>,
    entries: HashMap<u32, pb::UnixSkEntry>,
    fixes: PathFixes,
    /// The descriptions in flight, by file id.
    rights: HashMap<u32, OwnedFd>,
    /// Each socket's queue, by inode.
    queues: HashMap<u32, Vec<(pb::SkPacketEntry, Vec<u8>)>>,
}

fn is_socket(path: &Path) -> bool {
    fs::stat(path).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

/// Every unix socket entry of the images, by inode.
fn by_ino<'a>(cx: &OpenCtx<'a>) -> HashMap<u32, &'a pb::UnixSkEntry> {
    cx.images
        .files
        .values()
        .filter_map(|f| f.usk.as_ref())
        .map(|u| (u.ino, u))
        .collect()
}

fn accepted(e: &pb::UnixSkEntry) -> bool {
    e.stasis_accepted == Some(true)
}

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .trim_end_matches('\0')
        .replace('\0', "@")
}

impl Sockets {
    /// The description of unix socket `e`.
    pub fn open(&mut self, cx: &OpenCtx<'_>, e: &pb::UnixSkEntry) -> Result<OwnedFd> {
        let pid = cx.pid;
        let what = format!("unix socket:[{}]", e.ino);
        if e.uflags & USK_EXTERN != 0 {
            return Err(RestoreError::Unsupported {
                pid,
                resource: what,
                reason: "it is a socket outside the tree".into(),
            });
        }
        if !self.made.contains_key(&e.ino) {
            self.make(cx, e)?;
        }
        let sock = &self.made[&e.ino];
        let fd = sock
            .try_clone()
            .map_err(|err| RestoreError::Other(format!("process {pid}: dup {what}: {err}")))?;
        fs::set_status_flags(
            fd.as_fd(),
            e.flags as i32 & (libc::O_NONBLOCK | libc::O_ASYNC),
        )
        .ctx(pid, || format!("F_SETFL on {what}"))?;
        super::reg::set_fown(pid, fd.as_fd(), e.fown.as_ref(), &what)?;
        cx.keep(fd)
    }

    fn insert(&mut self, e: &pb::UnixSkEntry, fd: OwnedFd) {
        self.made.insert(e.ino, fd);
        self.entries.insert(e.ino, e.clone());
    }

    fn make(&mut self, cx: &OpenCtx<'_>, e: &pb::UnixSkEntry) -> Result<()> {
        let pid = cx.pid;
        let what = format!("unix socket:[{}]", e.ino);
        let kind = e.r#type as i32;
        let stream = kind != libc::SOCK_DGRAM;
        let all = by_ino(cx);
        let partner = all.get(&e.peer).copied().filter(|p| {
            e.state == TCP_ESTABLISHED
                && p.state == TCP_ESTABLISHED
                && p.peer == e.ino
                && p.r#type == e.r#type
        });
        if let Some(p) = partner {
            // Each end bound afterwards (an autobound name too: SO_PASSCRED binds a
            // datagram socket to one when it sends).
            if !accepted(e) && !accepted(p) {
                let (a, b) = net::unix_pair(kind).ctx(pid, || format!("socketpair for {what}"))?;
                set_options(pid, a.as_fd(), e, &what)?;
                set_options(pid, b.as_fd(), p, &what)?;
                self.bind_own(pid, a.as_fd(), e)?;
                self.bind_own(pid, b.as_fd(), p)?;
                self.insert(e, a);
                self.insert(p, b);
                return Ok(());
            }
            if stream {
                let (server, client) = if accepted(e) { (e, p) } else { (p, e) };
                let c = net::unix_socket(kind).ctx(pid, || format!("create {what}"))?;
                set_options(pid, c.as_fd(), client, &what)?;
                self.bind_own(pid, c.as_fd(), client)?;
                let s = self.accept_from(cx, &all, server, c.as_fd())?;
                set_options(pid, s.as_fd(), server, &what)?;
                self.insert(client, c);
                self.insert(server, s);
                return Ok(());
            }
        }
        let sock = net::unix_socket(kind).ctx(pid, || format!("create {what}"))?;
        set_options(pid, sock.as_fd(), e, &what)?;
        self.bind_own(pid, sock.as_fd(), e)?;
        if e.state == TCP_LISTEN {
            net::listen(sock.as_fd(), e.backlog as i32).ctx(pid, || format!("listen on {what}"))?;
        }
        self.insert(e, sock);
        Ok(())
    }

    /// Binds `sock` to `e`'s own name, if it has one (an accepted socket's name is its
    /// listener's).
    fn bind_own(&mut self, pid: Pid, sock: BorrowedFd<'_>, e: &pb::UnixSkEntry) -> Result<()> {
        if e.name.is_empty() || accepted(e) {
            return Ok(());
        }
        let what = || format!("bind unix socket:[{}] to {}", e.ino, show(&e.name));
        match net::unix_path(&e.name) {
            Some(path) if e.deleted == Some(true) => {
                let fix = bind_over(sock, e, path).ctx(pid, what)?;
                self.fixes.0.push(fix);
            }
            Some(path) => {
                // The dead original's socket file; anything else at the path is kept.
                if is_socket(path) {
                    let _ = std::fs::remove_file(path);
                }
                bind_name(sock, e).ctx(pid, what)?;
            }
            None => net::unix_bind(sock, &e.name).ctx(pid, what)?,
        }
        Ok(())
    }

    /// Connects `client` to a listener with `server`'s name and accepts the connection:
    /// the tree's listener of that name if there is one, else a temporary one.
    fn accept_from(
        &mut self,
        cx: &OpenCtx<'_>,
        all: &HashMap<u32, &pb::UnixSkEntry>,
        server: &pb::UnixSkEntry,
        client: BorrowedFd<'_>,
    ) -> Result<OwnedFd> {
        let pid = cx.pid;
        let what = || {
            format!(
                "accept unix socket:[{}] again from {}",
                server.ino,
                show(&server.name)
            )
        };
        let listener = all.values().copied().find(|l| {
            l.state == TCP_LISTEN
                && l.name == server.name
                && l.r#type == server.r#type
                && l.uflags & USK_EXTERN == 0
        });
        if let Some(l) = listener {
            if !self.made.contains_key(&l.ino) {
                self.make(cx, l)?;
            }
            net::unix_connect(client, &server.name).ctx(pid, what)?;
            return net::accept(self.made[&l.ino].as_fd()).ctx(pid, what);
        }
        let temp = net::unix_socket(server.r#type as i32).ctx(pid, what)?;
        let mut fix = PathFixes::default();
        match net::unix_path(&server.name) {
            Some(path) => fix
                .0
                .push(bind_over(temp.as_fd(), server, path).ctx(pid, what)?),
            None => net::unix_bind(temp.as_fd(), &server.name).ctx(pid, what)?,
        }
        net::listen(temp.as_fd(), 1).ctx(pid, what)?;
        net::unix_connect(client, &server.name).ctx(pid, what)?;
        let s = net::accept(temp.as_fd()).ctx(pid, what)?;
        drop(temp);
        fix.apply();
        Ok(s)
    }

    /// Once every socket exists: connects datagram sockets to their named peers, and the
    /// clients of waiting connections to their listeners (with what they had sent).
    pub fn finish(&mut self, images: &crate::image::Images, pid: Pid) -> Result<()> {
        let all: HashMap<u32, &pb::UnixSkEntry> = images
            .files
            .values()
            .filter_map(|f| f.usk.as_ref())
            .map(|u| (u.ino, u))
            .collect();
        for (ino, e) in &self.entries {
            if e.state != TCP_ESTABLISHED || e.peer == 0 || e.r#type as i32 != libc::SOCK_DGRAM {
                continue;
            }
            let Some(peer) = all.get(&e.peer) else {
                continue;
            };
            if peer.peer == *ino {
                continue; // a socketpair, connected already
            }
            net::unix_connect(self.made[ino].as_fd(), &peer.name).ctx(pid, || {
                format!("connect socket:[{ino}] to {}", show(&peer.name))
            })?;
        }
        let listeners: Vec<pb::UnixSkEntry> = self
            .entries
            .values()
            .filter(|e| e.state == TCP_LISTEN && !e.stasis_icons.is_empty())
            .cloned()
            .collect();
        for l in listeners {
            for client in &l.stasis_icons {
                let what = || {
                    format!(
                        "connect socket:[{client}] to {} (a connection waiting to be accepted)",
                        show(&l.name)
                    )
                };
                let Some(c) = self.made.get(client) else {
                    return Err(RestoreError::Other(format!(
                        "process {pid}: socket:[{client}] waits on socket:[{}] but was not \
                         restored",
                        l.ino
                    )));
                };
                net::unix_connect(c.as_fd(), &l.name).ctx(pid, what)?;
                let id = self.entries[client].id;
                for (m, data) in images.file_data.sk_queues.get(&id).into_iter().flatten() {
                    if m.stasis_to_peer == Some(true) {
                        net::send_to(c.as_fd(), data, None, None, &[]).ctx(pid, what)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// What is left for once the tree exists, with the descriptions in flight (from
    /// `by_id`).
    pub fn into_late(
        mut self,
        images: &crate::image::Images,
        by_id: &HashMap<u32, OwnedFd>,
        pid: Pid,
    ) -> Result<Late> {
        let mut rights = HashMap::new();
        for id in in_flight_ids(&images.file_data.sk_queues) {
            let fd = by_id
                .get(&id)
                .ok_or_else(|| {
                    RestoreError::Other(format!("file id {id} in flight was not opened"))
                })?
                .try_clone()
                .map_err(|e| RestoreError::Other(format!("process {pid}: dup: {e}")))?;
            rights.insert(id, fd);
        }
        let mut queues = HashMap::new();
        for (ino, e) in &self.entries {
            if let Some(q) = images.file_data.sk_queues.get(&e.id) {
                let q: Vec<_> = q
                    .iter()
                    .filter(|(m, _)| m.stasis_to_peer != Some(true))
                    .cloned()
                    .collect();
                if !q.is_empty() {
                    queues.insert(*ino, q);
                }
            }
        }
        Ok(Late {
            made: std::mem::take(&mut self.made),
            entries: std::mem::take(&mut self.entries),
            fixes: std::mem::take(&mut self.fixes),
            rights,
            queues,
        })
    }
}

impl Late {
    /// Once every process of the tree exists (`host` gives a pid of the tree as stasis
    /// sees it): sends the queued messages again, puts deleted or replaced names back,
    /// applies shutdowns, and lets go of every socket.
    pub fn refill(&mut self, pid: Pid, mut host: impl FnMut(Pid) -> Option<Pid>) -> Result<()> {
        let mut temps: HashMap<Vec<u8>, OwnedFd> = HashMap::new();
        let mut widened: HashSet<u32> = HashSet::new();
        let inos: Vec<u32> = self.queues.keys().copied().collect();
        for ino in inos {
            let e = &self.entries[&ino];
            let queue = &self.queues[&ino];
            let what = || format!("put back the messages queued on socket:[{ino}]");
            let via_peer = (e.state == TCP_ESTABLISHED)
                .then(|| self.entries.get(&e.peer).filter(|p| p.peer == ino))
                .flatten();
            let dgram = e.r#type as i32 == libc::SOCK_DGRAM;
            for (m, data) in queue {
                let from = m.stasis_unix_from.as_deref().unwrap_or_default();
                // The sender: the socket with the sender's name, the connected peer, or
                // a socket of ours (with the sender's name if it is free) aimed at the
                // bound name.
                let can_send =
                    |s: &&pb::UnixSkEntry| s.ino != ino && (s.peer == 0 || s.peer == ino);
                let named = if !dgram {
                    None
                } else if !from.is_empty() {
                    self.entries
                        .values()
                        .filter(can_send)
                        .find(|s| s.name == from && !accepted(s))
                } else {
                    m.stasis_sender
                        .and_then(|s| self.entries.get(&s))
                        .filter(can_send)
                        .filter(|s| s.name.is_empty())
                };
                let (sender_ino, to): (Option<u32>, Option<&[u8]>) = match (named, via_peer) {
                    (Some(s), _) if s.peer == ino => (Some(s.ino), None),
                    (Some(s), _) if !e.name.is_empty() => (Some(s.ino), Some(&e.name[..])),
                    (_, Some(p)) => (Some(p.ino), None),
                    _ if dgram && !e.name.is_empty() => (None, Some(&e.name[..])),
                    _ => {
                        return Err(RestoreError::Unsupported {
                            pid,
                            resource: format!("socket:[{ino}]"),
                            reason: "it has messages queued but neither a peer nor a name to \
                                     send them to"
                                .into(),
                        });
                    }
                };
                let sender = match sender_ino {
                    Some(s) => self.made[&s].as_fd(),
                    None => {
                        if !temps.contains_key(from) {
                            let t = net::unix_socket(e.r#type as i32).ctx(pid, what)?;
                            // An abstract name of a sender that is gone: taken for the
                            // moment so the receiver sees it (best effort).
                            if from.first() == Some(&0) {
                                let _ = net::unix_bind(t.as_fd(), from);
                            }
                            temps.insert(from.to_vec(), t);
                        }
                        temps[from].as_fd()
                    }
                };
                // The bytes in flight were charged to the original senders as they
                // went; one sender may send them all now, so its send buffer is made
                // room for them and set back after.
                if let Some(s) = sender_ino.filter(|s| widened.insert(*s)) {
                    let total: usize = queue.iter().map(|(_, d)| d.len() + 1024).sum();
                    let room = (total + (1 << 16)).min(i32::MAX as usize / 2) as i32;
                    net::set_int_opt(
                        self.made[&s].as_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_SNDBUFFORCE,
                        room,
                    )
                    .ctx(pid, what)?;
                } else if sender_ino.is_none() {
                    let total: usize = queue.iter().map(|(_, d)| d.len() + 1024).sum();
                    let room = (total + (1 << 16)).min(i32::MAX as usize / 2) as i32;
                    net::set_int_opt(sender, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, room)
                        .ctx(pid, what)?;
                }
                let mut rights = Vec::new();
                for s in m.scm.iter().filter(|s| s.r#type == libc::SCM_RIGHTS as u32) {
                    for id in &s.rights {
                        let fd = self.rights.get(id).ok_or_else(|| {
                            RestoreError::Other(format!(
                                "socket:[{ino}]: file id {id} in flight was not opened"
                            ))
                        })?;
                        rights.push(fd.as_fd());
                    }
                }
                let creds = m
                    .stasis_ucred
                    .as_ref()
                    .map(|u| (host(u.pid).unwrap_or(u.pid), u.uid, u.gid));
                let sent = net::send_to(sender, data, to, creds, &rights);
                // Credentials naming a process that does not exist (one that was gone at
                // the dump) are refused: the message goes without them (the receiver
                // sees stasis's).
                let sent = match sent {
                    Err(stasis_sys::Errno(libc::ESRCH)) if creds.is_some() => {
                        net::send_to(sender, data, to, None, &rights)
                    }
                    other => other,
                };
                sent.ctx(pid, what)?;
            }
        }
        for s in widened {
            set_sndbuf(pid, self.made[&s].as_fd(), &self.entries[&s])?;
        }
        drop(temps);
        self.fixes.apply();
        for (ino, e) in &self.entries {
            set_filter(pid, self.made[ino].as_fd(), e)?;
        }
        for (ino, e) in &self.entries {
            let how = match e.shutdown.unwrap_or(0) {
                1 => libc::SHUT_RD,
                2 => libc::SHUT_WR,
                3 => libc::SHUT_RDWR,
                _ => continue,
            };
            net::shutdown(self.made[ino].as_fd(), how)
                .ctx(pid, || format!("shut down socket:[{ino}]"))?;
        }
        self.made.clear();
        self.rights.clear();
        Ok(())
    }
}

/// Gives a socket the send buffer size the dump saw. getsockopt reports twice what was
/// asked for; the FORCE forms ignore the sysctl caps.
fn set_sndbuf(pid: Pid, fd: BorrowedFd<'_>, e: &pb::UnixSkEntry) -> Result<()> {
    let Some(o) = &e.opts else { return Ok(()) };
    net::set_int_opt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        (o.so_sndbuf / 2) as i32,
    )
    .ctx(pid, || format!("socket:[{}]: SO_SNDBUFFORCE", e.ino))
}

/// Gives a socket the options the dump saw.
fn set_options(pid: Pid, fd: BorrowedFd<'_>, e: &pb::UnixSkEntry, what: &str) -> Result<()> {
    let Some(o) = &e.opts else { return Ok(()) };
    let set = |name: i32, v: i32| {
        net::set_int_opt(fd, libc::SOL_SOCKET, name, v)
            .ctx(pid, || format!("{what}: setsockopt({name}, {v})"))
    };
    set_sndbuf(pid, fd, e)?;
    set(libc::SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32)?;
    super::inet::set_timeouts(pid, fd, o, what)?;
    if let Some(p) = o.so_priority.filter(|p| *p != 0) {
        set(libc::SO_PRIORITY, p as i32)?;
    }
    if let Some(m) = o.so_mark.filter(|m| *m != 0) {
        set(libc::SO_MARK, m as i32)?;
    }
    if o.so_passcred == Some(true) {
        set(libc::SO_PASSCRED, 1)?;
    }
    if o.so_passsec == Some(true) {
        set(libc::SO_PASSSEC, 1)?;
    }
    if o.stasis_passpidfd == Some(true) {
        set(net::SO_PASSPIDFD, 1)?;
    }
    if let Some(off) = o.stasis_peek_off.filter(|o| *o >= 0) {
        set(libc::SO_PEEK_OFF, off)?;
    }
    if let Some(l) = o.so_rcvlowat.filter(|l| *l > 1) {
        set(libc::SO_RCVLOWAT, l as i32)?;
    }
    Ok(())
}

/// Attaches a socket's filter (and locks it as it was), once its queue is refilled: the
/// messages in flight may be ones the filter, attached after them, would drop.
fn set_filter(pid: Pid, fd: BorrowedFd<'_>, e: &pb::UnixSkEntry) -> Result<()> {
    let Some(o) = e.opts.as_ref().filter(|o| !o.so_filter.is_empty()) else {
        return Ok(());
    };
    let what = || format!("socket:[{}]: SO_ATTACH_FILTER", e.ino);
    stasis_sys::inet::attach_filter(fd, &o.so_filter).ctx(pid, what)?;
    if o.stasis_lock_filter == Some(true) {
        net::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_LOCK_FILTER, 1).ctx(pid, what)?;
    }
    Ok(())
}
