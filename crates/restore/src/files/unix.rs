//! Unix sockets, made again by stasis before any process is forked: a connected pair
//! without names as a `socketpair`, any other socket created, bound to its name (a stale
//! socket file of the dead original is removed first) and made to listen; once every
//! socket exists ([`Sockets::finish`]), datagram sockets connect to their named peers, the
//! queued messages are sent again to their sockets (from the peer of a connected one,
//! from a socket of ours to a bound one), and shutdowns are applied.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fs, net};

use super::OpenCtx;
use crate::error::{RestoreError, Result, SysContext};

const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;

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

/// The sockets made so far, by inode.
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    made: HashMap<u32, OwnedFd>,
    /// Entries of the sockets made, by inode.
    entries: HashMap<u32, pb::UnixSkEntry>,
}

fn is_stale_socket(path: &Path) -> bool {
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

impl Sockets {
    /// The description of unix socket `e`.
    pub fn open(&mut self, cx: &OpenCtx<'_>, e: &pb::UnixSkEntry) -> Result<OwnedFd> {
        let pid = cx.pid;
        let what = format!("unix socket:[{}]", e.ino);
        if !self.made.contains_key(&e.ino) {
            self.make(cx, e, &what)?;
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

    fn make(&mut self, cx: &OpenCtx<'_>, e: &pb::UnixSkEntry, what: &str) -> Result<()> {
        let pid = cx.pid;
        let kind = e.r#type as i32;
        let all = by_ino(cx);
        let partner = all
            .get(&e.peer)
            .filter(|p| e.state == TCP_ESTABLISHED && p.peer == e.ino && p.r#type == e.r#type)
            .filter(|p| e.name.is_empty() && p.name.is_empty());
        if let Some(p) = partner {
            let (a, b) = net::unix_pair(kind).ctx(pid, || format!("socketpair for {what}"))?;
            set_options(pid, a.as_fd(), e, what)?;
            set_options(pid, b.as_fd(), p, what)?;
            self.made.insert(e.ino, a);
            self.made.insert(p.ino, b);
            self.entries.insert(e.ino, e.clone());
            self.entries.insert(p.ino, (*p).clone());
            return Ok(());
        }
        let sock = net::unix_socket(kind).ctx(pid, || format!("create {what}"))?;
        set_options(pid, sock.as_fd(), e, what)?;
        if !e.name.is_empty() {
            // The dead original's socket file; anything else at the path is kept.
            if let Some(path) = net::unix_path(&e.name)
                && is_stale_socket(path)
            {
                let _ = std::fs::remove_file(path);
            }
            net::unix_bind(sock.as_fd(), &e.name).ctx(pid, || {
                format!("bind {what} to {}", String::from_utf8_lossy(&e.name))
            })?;
        }
        if e.state == TCP_LISTEN {
            net::listen(sock.as_fd(), e.backlog as i32).ctx(pid, || format!("listen on {what}"))?;
        }
        self.made.insert(e.ino, sock);
        self.entries.insert(e.ino, e.clone());
        Ok(())
    }

    /// Once every socket exists: connects datagram sockets to their named peers, sends
    /// the queued messages again, applies shutdowns.
    pub fn finish(&mut self, images: &crate::image::Images, pid: Pid) -> Result<()> {
        for (ino, e) in &self.entries {
            if e.state != TCP_ESTABLISHED || e.peer == 0 {
                continue;
            }
            let Some(peer) = self.entries.get(&e.peer) else {
                continue;
            };
            if peer.peer == *ino && e.name.is_empty() && peer.name.is_empty() {
                continue; // a socketpair, connected already
            }
            net::unix_connect(self.made[ino].as_fd(), &peer.name).ctx(pid, || {
                format!(
                    "connect socket:[{ino}] to {}",
                    String::from_utf8_lossy(&peer.name)
                )
            })?;
        }
        for (ino, e) in &self.entries {
            let Some(queue) = images.file_data.sk_queues.get(&e.id) else {
                continue;
            };
            let what = || format!("put back the messages queued on socket:[{ino}]");
            // The sender: the connected peer, or a socket of ours aimed at the bound name.
            let via_peer = (e.state == TCP_ESTABLISHED)
                .then(|| self.entries.get(&e.peer).filter(|p| p.peer == *ino))
                .flatten();
            let temp;
            let (sender, to): (std::os::fd::BorrowedFd<'_>, Option<&[u8]>) = match via_peer {
                Some(p) => (self.made[&p.ino].as_fd(), None),
                None if !e.name.is_empty() => {
                    temp = net::unix_socket(e.r#type as i32).ctx(pid, what)?;
                    (temp.as_fd(), Some(&e.name[..]))
                }
                None => {
                    return Err(RestoreError::Unsupported {
                        pid,
                        resource: format!("socket:[{ino}]"),
                        reason: "it has messages queued but neither a peer nor a name to send \
                                 them to"
                            .into(),
                    });
                }
            };
            // The bytes in flight were charged to the original senders as they went; one
            // sender now sends them all, so its send buffer is made room for them and
            // set back after.
            let total: usize = queue.iter().map(|(_, d)| d.len() + 1024).sum();
            let room = (total + (1 << 16)).min(i32::MAX as usize / 2) as i32;
            net::set_int_opt(sender, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, room)
                .ctx(pid, what)?;
            for (m, data) in queue {
                let creds = m.stasis_ucred.as_ref().map(|u| (u.pid, u.uid, u.gid));
                let sent = net::send_to(sender, data, to, creds);
                // Credentials naming a process that does not exist (yet) are refused: the
                // message goes without them (the receiver sees stasis's).
                let sent = match sent {
                    Err(stasis_sys::Errno(libc::ESRCH)) if creds.is_some() => {
                        net::send_to(sender, data, to, None)
                    }
                    other => other,
                };
                sent.ctx(pid, what)?;
            }
            if let Some(p) = via_peer {
                set_sndbuf(pid, sender, p)?;
            }
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
        Ok(())
    }
}

/// Gives a socket the send buffer size the dump saw. getsockopt reports twice what was
/// asked for; the FORCE forms ignore the sysctl caps.
fn set_sndbuf(pid: Pid, fd: std::os::fd::BorrowedFd<'_>, e: &pb::UnixSkEntry) -> Result<()> {
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
fn set_options(
    pid: Pid,
    fd: std::os::fd::BorrowedFd<'_>,
    e: &pb::UnixSkEntry,
    what: &str,
) -> Result<()> {
    let Some(o) = &e.opts else { return Ok(()) };
    let set = |name: i32, v: i32| {
        net::set_int_opt(fd, libc::SOL_SOCKET, name, v)
            .ctx(pid, || format!("{what}: setsockopt({name}, {v})"))
    };
    set_sndbuf(pid, fd, e)?;
    set(libc::SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32)?;
    net::set_timeval_opt(fd, libc::SO_SNDTIMEO, (o.so_snd_tmo_sec, o.so_snd_tmo_usec))
        .ctx(pid, || format!("{what}: SO_SNDTIMEO"))?;
    net::set_timeval_opt(fd, libc::SO_RCVTIMEO, (o.so_rcv_tmo_sec, o.so_rcv_tmo_usec))
        .ctx(pid, || format!("{what}: SO_RCVTIMEO"))?;
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
    if let Some(off) = o.stasis_peek_off.filter(|o| *o >= 0) {
        set(libc::SO_PEEK_OFF, off)?;
    }
    Ok(())
}
