//! Sockets: what `sock_diag` says of unix sockets, socket options, names, queued data read
//! without consuming it (`MSG_PEEK` with `SO_PEEK_OFF`), and making sockets again.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::{Errno, Result};

/// A unix socket as `sock_diag` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`.
    pub kind: u8,
    /// TCP-like state: `TCP_ESTABLISHED` (1), `TCP_CLOSE` (7), `TCP_LISTEN` (10).
    pub state: u8,
    /// Socket inode.
    pub ino: u32,
    /// Bound name (a path, or `\0`-led abstract name), empty if unbound.
    pub name: Vec<u8>,
    /// Inode and device of the bound path's file.
    pub vfs: Option<(u32, u32)>,
    /// The peer's inode (0 if none).
    pub peer: u32,
    /// For a listener: the inodes of the clients of the connections waiting in its accept
    /// queue.
    pub icons: Vec<u32>,
    /// Receive and send queue lengths (a listener: pending connections and backlog).
    pub rqlen: Option<(u32, u32)>,
    /// `SHUT_RD` (1) / `SHUT_WR` (2) bits.
    pub shutdown: u8,
}

/// The native-endian `u32` at `at` of `b` (0 past its end).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The control messages the kernel wrote into `msg`'s control buffer (after a
/// `recvmsg`): (level, type, payload) each.
pub(crate) fn control_messages(msg: &libc::msghdr) -> Vec<(i32, i32, Vec<u8>)> {
    let mut out = Vec::new();
    // SAFETY: the control buffer was filled by the kernel; CMSG_* walk it within
    // msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: `c` points at a complete cmsghdr inside the control buffer.
        let h = unsafe { &*c };
        // SAFETY: CMSG_DATA points inside the same cmsghdr's payload.
        let payload = unsafe { libc::CMSG_DATA(c) };
        let len = h.cmsg_len.saturating_sub(payload as usize - c as usize);
        // SAFETY: the payload's `len` bytes lie inside the control buffer.
        let data = unsafe { std::slice::from_raw_parts(payload, len) }.to_vec();
        out.push((h.cmsg_level, h.cmsg_type, data));
        // SAFETY: CMSG_NXTHDR stays within the control buffer or returns null.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    out
}

/// A `struct ucred` (pid, uid, gid) as the bytes of an `SCM_CREDENTIALS` payload.
pub(crate) fn ucred_bytes((pid, uid, gid): (i32, u32, u32)) -> Vec<u8> {
    let mut v = pid.to_ne_bytes().to_vec();
    v.extend_from_slice(&uid.to_ne_bytes());
    v.extend_from_slice(&gid.to_ne_bytes());
    v
}

/// Lays out `SOL_SOCKET` control messages (type, payload) in `buf` and points `msg` at
/// them, for a `sendmsg` (nothing if there are none).
pub(crate) fn put_control_messages(
    msg: &mut libc::msghdr,
    buf: &mut [u64],
    messages: &[(i32, Vec<u8>)],
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let space: usize = messages
        .iter()
        // SAFETY: CMSG_SPACE is a size computation.
        .map(|(_, d)| unsafe { libc::CMSG_SPACE(d.len() as u32) } as usize)
        .sum();
    if space > size_of_val(buf) {
        return Err(Errno(libc::EMSGSIZE));
    }
    buf.fill(0);
    msg.msg_control = buf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer holds `space` bytes, room for every message.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    for (ty, data) in messages {
        if c.is_null() {
            return Err(Errno(libc::EMSGSIZE));
        }
        // SAFETY: `c` points at a cmsghdr inside our control buffer.
        let h = unsafe { &mut *c };
        h.cmsg_level = libc::SOL_SOCKET;
        h.cmsg_type = *ty;
        // SAFETY: CMSG_LEN is a size computation.
        h.cmsg_len = unsafe { libc::CMSG_LEN(data.len() as u32) } as usize;
        // SAFETY: CMSG_DATA computes where this message's payload starts.
        let payload = unsafe { libc::CMSG_DATA(c) };
        // SAFETY: the payload has room for data.len() bytes (counted in `space`).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), payload, data.len()) };
        // SAFETY: CMSG_NXTHDR stays within msg_controllen or returns null.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    Ok(())
}

/// Sends one `SOCK_DIAG_BY_FAMILY` dump request whose body (after the netlink header) is
/// `body`, and returns the body of every answer. A family or protocol the kernel has no
/// diag module for answers with nothing.
pub(crate) fn diag_dump(body: &[u8]) -> Result<Vec<Vec<u8>>> {
    // SAFETY: integer arguments.
    let r = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    let fd = Errno::result(r.into())? as i32;
    // SAFETY: the kernel just gave us this fd.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    let mut req = Vec::with_capacity(16 + body.len());
    req.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(body);
    // SAFETY: send reads req.len() bytes.
    let r = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    Errno::result(r as libc::c_long)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: recv writes at most buf.len() bytes.
        let r = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = Errno::result(r as libc::c_long)? as usize;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32_at(&buf, at) as usize;
            let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < 16 || at + len > n {
                return Err(Errno(libc::EPROTO));
            }
            match i32::from(ty) {
                libc::NLMSG_DONE => return Ok(out),
                libc::NLMSG_ERROR => {
                    let e = u32_at(&buf, at + 16) as i32;
                    return if e == -libc::ENOENT || e == -libc::EINVAL {
                        Ok(out)
                    } else {
                        Err(Errno(-e))
                    };
                }
                _ => out.push(buf[at + 16..at + len].to_vec()),
            }
            at += len.next_multiple_of(4);
        }
    }
}

/// The attributes after a diag message's fixed part: (type, payload).
pub(crate) fn attributes(msg: &[u8], fixed: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut a = fixed;
    while a + 4 <= msg.len() {
        let alen = u16::from_ne_bytes([msg[a], msg[a + 1]]) as usize;
        let aty = u16::from_ne_bytes([msg[a + 2], msg[a + 3]]);
        if alen < 4 || a + alen > msg.len() {
            break;
        }
        out.push((aty, &msg[a + 4..a + alen]));
        a += alen.next_multiple_of(4);
    }
    out
}

/// Every unix socket of our network namespace, by inode (`sock_diag`).
pub fn unix_sockets() -> Result<std::collections::HashMap<u32, UnixDiag>> {
    const UDIAG_SHOW_ALL: u32 = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x40;
    // unix_diag_req: family, protocol, pad, states, ino, show, cookie.
    let mut body = vec![libc::AF_UNIX as u8, 0, 0, 0];
    body.extend_from_slice(&u32::MAX.to_ne_bytes()); // states
    body.extend_from_slice(&0u32.to_ne_bytes()); // ino
    body.extend_from_slice(&UDIAG_SHOW_ALL.to_ne_bytes());
    body.extend_from_slice(&[0u8; 8]); // cookie
    let mut out = std::collections::HashMap::new();
    for msg in diag_dump(&body)? {
        // unix_diag_msg: family, type, state, pad, ino, cookie (16 bytes).
        if msg.len() < 16 {
            continue;
        }
        let mut d = UnixDiag {
            kind: msg[1],
            state: msg[2],
            ino: u32_at(&msg, 4),
            ..Default::default()
        };
        for (ty, data) in attributes(&msg, 16) {
            match ty {
                0 => d.name = data.to_vec(),
                1 => d.vfs = Some((u32_at(data, 0), u32_at(data, 4))),
                2 => d.peer = u32_at(data, 0),
                3 => d.icons = data.chunks_exact(4).map(|c| u32_at(c, 0)).collect(),
                4 => d.rqlen = Some((u32_at(data, 0), u32_at(data, 4))),
                6 => d.shutdown = data.first().copied().unwrap_or(0),
                _ => {}
            }
        }
        out.insert(d.ino, d);
    }
    Ok(out)
}

/// An integer socket option (`getsockopt`).
pub fn get_int_opt(fd: BorrowedFd<'_>, level: i32, name: i32) -> Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut v).cast(), &mut len) };
    Errno::result(r.into()).map(|_| v)
}

/// Sets an integer socket option (`setsockopt`).
pub fn set_int_opt(fd: BorrowedFd<'_>, level: i32, name: i32, v: i32) -> Result<()> {
    // SAFETY: setsockopt reads one int.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const v).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// A `timeval` socket option (`SO_SNDTIMEO`, `SO_RCVTIMEO`): (seconds, microseconds).
pub fn get_timeval_opt(fd: BorrowedFd<'_>, name: i32) -> Result<(u64, u64)> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `tv`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&raw mut tv).cast(),
            &mut len,
        )
    };
    Errno::result(r.into()).map(|_| (tv.tv_sec as u64, tv.tv_usec as u64))
}

/// Sets a `timeval` socket option.
pub fn set_timeval_opt(fd: BorrowedFd<'_>, name: i32, (sec, usec): (u64, u64)) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: sec as i64,
        tv_usec: usec as i64,
    };
    // SAFETY: setsockopt reads one timeval.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Errno::result(r.into()).map(drop)
}

/// `socketpair(AF_UNIX, kind)`.
pub fn unix_pair(kind: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two fds.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    Errno::result(r.into())?;
    // SAFETY: the first fd is new and ours.
    let a = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: the second fd is new and ours.
    let b = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((a, b))
}

/// A new unix socket of `kind`.
pub fn unix_socket(kind: i32) -> Result<OwnedFd> {
    // SAFETY: integer arguments.
    let r = unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) };
    let fd = Errno::result(r.into())? as i32;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr_un(name: &[u8]) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() > a.sun_path.len() {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    a.sun_family = libc::AF_UNIX as u16;
    for (d, s) in a.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = (size_of::<libc::sa_family_t>() + name.len()) as libc::socklen_t;
    Ok((a, len))
}

/// The file-system path of a unix socket name: `None` for an abstract or empty name. The
/// kernel reports path names with their terminating NUL, which is cut here.
pub fn unix_path(name: &[u8]) -> Option<&std::path::Path> {
    use std::os::unix::ffi::OsStrExt;
    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    (end > 0).then(|| std::path::Path::new(std::ffi::OsStr::from_bytes(&name[..end])))
}

/// Binds a unix socket to `name` (a path, or a `\0`-led abstract name).
pub fn unix_bind(fd: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    let (a, len) = sockaddr_un(name)?;
    // SAFETY: bind reads `len` bytes of `a`.
    let r = unsafe { libc::bind(fd.as_raw_fd(), (&raw const a).cast(), len) };
    Errno::result(r.into()).map(drop)
}

/// Binds a unix socket to the relative path `name` as seen from directory `dir` (the
/// kernel keeps the name as it was given, relative): from a thread with a working
/// directory of its own, so stasis's is untouched.
pub fn unix_bind_in(fd: BorrowedFd<'_>, dir: &std::path::Path, name: &[u8]) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(CLONE_FS) gives this thread a copy of the process's working
            // directory, root and umask; nothing else changes.
            Errno::result(unsafe { libc::unshare(libc::CLONE_FS) }.into())?;
            std::env::set_current_dir(dir)
                .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
            unix_bind(fd, name)
        })
        .join()
        .unwrap_or(Err(Errno(libc::EIO)))
    })
}

/// Connects a unix socket to `name`.
pub fn unix_connect(fd: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    let (a, len) = sockaddr_un(name)?;
    // SAFETY: connect reads `len` bytes of `a`.
    let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const a).cast(), len) };
    Errno::result(r.into()).map(drop)
}

/// `listen(fd, backlog)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> Result<()> {
    // SAFETY: integer arguments.
    Errno::result(unsafe { libc::listen(fd.as_raw_fd(), backlog) }.into()).map(drop)
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> Result<()> {
    // SAFETY: integer arguments.
    Errno::result(unsafe { libc::shutdown(fd.as_raw_fd(), how) }.into()).map(drop)
}

/// A message peeked at: its bytes, the sender's credentials if the receiver asked for
/// them (`SO_PASSCRED`), and the file descriptors that came with it.
#[derive(Debug, Default)]
pub struct Peeked {
    /// The bytes.
    pub data: Vec<u8>,
    /// (pid, uid, gid) from `SCM_CREDENTIALS`.
    pub creds: Option<(i32, u32, u32)>,
    /// `SCM_RIGHTS`: a peek installs copies of the fds in flight in our process (each
    /// the very open file description in flight), in the order they were sent.
    pub rights: Vec<OwnedFd>,
    /// The sender's name (`sun_path` bytes; empty for an unnamed sender or a stream).
    pub from: Vec<u8>,
}

/// Peeks at the next message (or, for a `stream`, the next bytes) at the socket's peek
/// offset without waiting, and moves the offset past it (`SO_PEEK_OFF` must be set; an
/// empty datagram is seen once, then skipped). `None` when nothing is left.
pub fn peek(fd: BorrowedFd<'_>, max: usize, stream: bool) -> Result<Option<Peeked>> {
    let mut data = vec![0u8; max.max(1)];
    // Room for SCM_MAX_FD (253) fds, credentials and a pidfd.
    let mut ctl = [0u64; 192];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below live across the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // SAFETY: an all-zero sockaddr_un is valid to be overwritten.
    let mut from: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&ctl);
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
    // SAFETY: recvmsg writes into the buffers msg describes.
    let r = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    let n = match Errno::result(r as libc::c_long) {
        Ok(0) if stream && msg.msg_controllen == 0 => return Ok(None),
        Ok(n) => n as usize,
        Err(Errno(libc::EAGAIN)) => return Ok(None),
        Err(e) => return Err(e),
    };
    data.truncate(n);
    let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    let name_len = (msg.msg_namelen as usize).saturating_sub(size_of::<libc::sa_family_t>());
    let mut out = Peeked {
        data,
        from: from.sun_path[..name_len.min(from.sun_path.len())]
            .iter()
            .map(|c| *c as u8)
            .collect(),
        ..Default::default()
    };
    for (level, ty, data) in control_messages(&msg) {
        if level != libc::SOL_SOCKET {
            continue;
        }
        match ty {
            libc::SCM_CREDENTIALS if data.len() >= 12 => {
                out.creds = Some((u32_at(&data, 0) as i32, u32_at(&data, 4), u32_at(&data, 8)));
            }
            // Fds installed for us by the kernel: each becomes ours to own (a pidfd is
            // closed right away).
            libc::SCM_RIGHTS | SCM_PIDFD => {
                for fd in data.chunks_exact(4).map(|c| u32_at(c, 0) as i32) {
                    // SAFETY: the kernel installed this fd for us with the message; nothing
                    // else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if ty == libc::SCM_RIGHTS {
                        out.rights.push(owned);
                    }
                }
            }
            _ => {}
        }
    }
    if truncated {
        return Err(Errno(libc::ENOBUFS));
    }
    Ok(Some(out))
}

/// `SO_PASSPIDFD`: the receiver gets a pidfd of the sender with each message.
pub const SO_PASSPIDFD: i32 = 76;
/// The control message carrying that pidfd.
const SCM_PIDFD: i32 = 0x04;

/// Sends one message (stream bytes, or a datagram), to unix name `to` if given, with
/// credentials and file descriptors (`SCM_RIGHTS`) if given, without waiting.
pub fn send_to(
    fd: BorrowedFd<'_>,
    data: &[u8],
    to: Option<&[u8]>,
    creds: Option<(i32, u32, u32)>,
    rights: &[BorrowedFd<'_>],
) -> Result<()> {
    let dest = to.map(sockaddr_un).transpose()?;
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // The kernel takes at most 253 fds per message (SCM_MAX_FD).
    if rights.len() > 253 {
        return Err(Errno(libc::EINVAL));
    }
    let mut ctl = [0u64; 160];
    // SAFETY: an all-zero msghdr is valid; the pointers set below live across the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some((addr, len)) = &dest {
        msg.msg_name = (addr as *const libc::sockaddr_un).cast_mut().cast();
        msg.msg_namelen = *len;
    }
    let mut control: Vec<(i32, Vec<u8>)> = Vec::new();
    if let Some(c) = creds {
        control.push((libc::SCM_CREDENTIALS, ucred_bytes(c)));
    }
    if !rights.is_empty() {
        let fds = rights
            .iter()
            .flat_map(|r| r.as_raw_fd().to_ne_bytes())
            .collect();
        control.push((libc::SCM_RIGHTS, fds));
    }
    put_control_messages(&mut msg, &mut ctl, &control)?;
    // SAFETY: sendmsg reads the buffers msg describes.
    let r = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    let n = Errno::result(r as libc::c_long)? as usize;
    if n != data.len() {
        return Err(Errno(libc::EMSGSIZE));
    }
    Ok(())
}

/// `accept4` with `SOCK_CLOEXEC`: the next connection waiting on listener `fd`.
pub fn accept(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    // SAFETY: no address is asked for.
    let r = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    let fd = Errno::result(r.into())? as i32;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The socket's own name as raw `sun_path` bytes (`getsockname`), empty if unbound.
pub fn unix_name(fd: BorrowedFd<'_>) -> Result<Vec<u8>> {
    // SAFETY: an all-zero sockaddr_un is valid to be overwritten.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `a`.
    let r = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut a).cast(), &mut len) };
    Errno::result(r.into())?;
    let n = (len as usize).saturating_sub(size_of::<libc::sa_family_t>());
    Ok(a.sun_path[..n.min(a.sun_path.len())]
        .iter()
        .map(|c| *c as u8)
        .collect())
}
