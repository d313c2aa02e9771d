//! Terminals: pseudo-terminal pairs (index, lock, packet mode, peer), settings
//! (`termios2`, window size), session and foreground group, controlling terminal.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::{Errno, Result};

/// Terminal settings as `TCGETS2` returns them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Termios {
    /// Input modes.
    pub iflag: u32,
    /// Output modes.
    pub oflag: u32,
    /// Control modes.
    pub cflag: u32,
    /// Local modes.
    pub lflag: u32,
    /// Line discipline.
    pub line: u8,
    /// Control characters (the kernel's NCCS = 19).
    pub cc: [u8; 19],
    /// Input speed.
    pub ispeed: u32,
    /// Output speed.
    pub ospeed: u32,
}

fn int_ioctl(fd: BorrowedFd<'_>, req: libc::c_ulong) -> Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: these requests write one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) };
    Errno::result(r.into()).map(|_| v)
}

fn set_int_ioctl(fd: BorrowedFd<'_>, req: libc::c_ulong, v: i32) -> Result<()> {
    // SAFETY: these requests read one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &raw const v) };
    Errno::result(r.into()).map(drop)
}

/// The index N of the pty whose master is `fd` (`/dev/pts/N`; `TIOCGPTN`).
pub fn pty_index(fd: BorrowedFd<'_>) -> Result<u32> {
    int_ioctl(fd, libc::TIOCGPTN).map(|v| v as u32)
}

/// Whether the slave of master `fd` is locked (`TIOCGPTLCK`).
pub fn pty_locked(fd: BorrowedFd<'_>) -> Result<bool> {
    int_ioctl(fd, libc::TIOCGPTLCK).map(|v| v != 0)
}

/// Locks or unlocks the slave of master `fd` (`TIOCSPTLCK`).
pub fn set_pty_locked(fd: BorrowedFd<'_>, locked: bool) -> Result<()> {
    set_int_ioctl(fd, libc::TIOCSPTLCK, i32::from(locked))
}

/// Whether master `fd` is in packet mode (`TIOCGPKT`).
pub fn packet_mode(fd: BorrowedFd<'_>) -> Result<bool> {
    int_ioctl(fd, libc::TIOCGPKT).map(|v| v != 0)
}

/// Sets packet mode on master `fd` (`TIOCPKT`).
pub fn set_packet_mode(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    set_int_ioctl(fd, libc::TIOCPKT, i32::from(on))
}

/// Whether the terminal is in exclusive mode (`TIOCGEXCL`).
pub fn exclusive(fd: BorrowedFd<'_>) -> Result<bool> {
    int_ioctl(fd, libc::TIOCGEXCL).map(|v| v != 0)
}

/// Puts the terminal in exclusive mode (`TIOCEXCL`).
pub fn set_exclusive(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: TIOCEXCL takes no argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCEXCL) };
    Errno::result(r.into()).map(drop)
}

/// The session the terminal controls (`TIOCGSID`); `None` if none.
pub fn session(fd: BorrowedFd<'_>) -> Result<Option<i32>> {
    match int_ioctl(fd, libc::TIOCGSID) {
        Ok(s) => Ok(Some(s)),
        Err(Errno(libc::ENOTTY)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The foreground process group (`TIOCGPGRP`); `None` if the terminal controls no
/// session.
pub fn foreground(fd: BorrowedFd<'_>) -> Result<Option<i32>> {
    match int_ioctl(fd, libc::TIOCGPGRP) {
        Ok(g) => Ok(Some(g)),
        Err(Errno(libc::ENOTTY)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes `pgrp` the foreground group of the terminal (`TIOCSPGRP`).
pub fn set_foreground(fd: BorrowedFd<'_>, pgrp: i32) -> Result<()> {
    set_int_ioctl(fd, libc::TIOCSPGRP, pgrp)
}

/// Makes the terminal the controlling terminal of the calling session leader
/// (`TIOCSCTTY`, without stealing it from another session).
pub fn set_controlling(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an integer (0: do not steal).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(r.into()).map(drop)
}

/// Opens the slave of master `fd` (`TIOCGPTPEER`), with `flags` (O_NOCTTY is added).
pub fn open_peer(fd: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes the open flags as an integer and returns a new fd.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCGPTPEER,
            flags | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let fd = Errno::result(r.into())? as i32;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The settings of the terminal (`TCGETS2`; on a master, its slave's).
pub fn termios(fd: BorrowedFd<'_>) -> Result<Termios> {
    // SAFETY: an all-zero termios2 is a valid value to be overwritten.
    let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS2 writes one termios2.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCGETS2, &mut t) };
    Errno::result(r.into())?;
    let mut cc = [0u8; 19];
    cc.copy_from_slice(&t.c_cc[..19]);
    Ok(Termios {
        iflag: t.c_iflag,
        oflag: t.c_oflag,
        cflag: t.c_cflag,
        lflag: t.c_lflag,
        line: t.c_line,
        cc,
        ispeed: t.c_ispeed,
        ospeed: t.c_ospeed,
    })
}

/// Changes the settings of the terminal at once (`TCSETS2`), without flushing.
pub fn set_termios(fd: BorrowedFd<'_>, s: &Termios) -> Result<()> {
    // SAFETY: an all-zero termios2 is a valid value.
    let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
    t.c_iflag = s.iflag;
    t.c_oflag = s.oflag;
    t.c_cflag = s.cflag;
    t.c_lflag = s.lflag;
    t.c_line = s.line;
    t.c_cc[..19].copy_from_slice(&s.cc);
    t.c_ispeed = s.ispeed;
    t.c_ospeed = s.ospeed;
    // SAFETY: TCSETS2 reads one termios2.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCSETS2, &raw const t) };
    Errno::result(r.into()).map(drop)
}

/// The window size (rows, columns, x pixels, y pixels; `TIOCGWINSZ`).
pub fn winsize(fd: BorrowedFd<'_>) -> Result<[u16; 4]> {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut w) };
    Errno::result(r.into()).map(|_| [w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel])
}

/// Sets the window size (`TIOCSWINSZ`).
pub fn set_winsize(fd: BorrowedFd<'_>, ws: [u16; 4]) -> Result<()> {
    let w = libc::winsize {
        ws_row: ws[0],
        ws_col: ws[1],
        ws_xpixel: ws[2],
        ws_ypixel: ws[3],
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &raw const w) };
    Errno::result(r.into()).map(drop)
}

/// Settings under which bytes written to the master reach the slave's input exactly as
/// given, and bytes written to the slave reach the master unchanged: no echo, no
/// signals, no input or output translation, no special characters but line ends (the
/// end-of-file character included, which ends a line without being part of it). Lines
/// are still cut where they were (ICANON stays as it is).
pub fn transparent(t: &Termios) -> Termios {
    let mut r = *t;
    r.lflag &= !(libc::ECHO
        | libc::ECHOE
        | libc::ECHOK
        | libc::ECHONL
        | libc::ECHOCTL
        | libc::ECHOPRT
        | libc::ECHOKE
        | libc::ISIG
        | libc::IEXTEN);
    r.iflag &= !(libc::ICRNL
        | libc::INLCR
        | libc::IGNCR
        | libc::ISTRIP
        | libc::IUCLC
        | libc::IXON
        | libc::IXOFF
        | libc::INPCK
        | libc::PARMRK);
    r.oflag &= !libc::OPOST;
    for c in [
        libc::VERASE,
        libc::VKILL,
        libc::VWERASE,
        libc::VREPRINT,
        libc::VLNEXT,
        libc::VINTR,
        libc::VQUIT,
        libc::VSUSP,
        libc::VSTART,
        libc::VSTOP,
        libc::VDISCARD,
    ] {
        r.cc[c] = 0;
    }
    r
}

/// Non-canonical settings that return whatever input is buffered at once (the partial
/// line of a canonical terminal included).
pub fn drain_mode(t: &Termios) -> Termios {
    let mut r = transparent(t);
    r.cc[libc::VEOF] = 0;
    r.lflag &= !libc::ICANON;
    r.cc[libc::VMIN] = 0;
    r.cc[libc::VTIME] = 0;
    r
}

/// Reads the input a slave has not read yet, in a form [`refill`] writes back as it was:
/// complete lines of a canonical terminal one by one (a line that ended with the
/// end-of-file character gets it back, since that character is not part of the line),
/// then whatever is left (a partial line) through non-canonical settings. `slave` must be
/// non-blocking; its settings are `t` again afterwards.
pub fn take_input(slave: BorrowedFd<'_>, t: &Termios) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    if t.lflag & libc::ICANON != 0 {
        let ends = [b'\n', t.cc[libc::VEOL], t.cc[libc::VEOL2]];
        let ended = |c: u8| c != 0 && ends.contains(&c);
        loop {
            match crate::fds::read_some(slave, &mut buf) {
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if n == 0 || !ended(buf[n - 1]) {
                        out.push(t.cc[libc::VEOF]);
                    }
                }
                Err(Errno(libc::EAGAIN | libc::EIO)) => break,
                Err(e) => return Err(e),
            }
        }
    }
    set_termios(slave, &drain_mode(t))?;
    let rest = loop {
        match crate::fds::read_some(slave, &mut buf) {
            Ok(0) | Err(Errno(libc::EAGAIN | libc::EIO)) => break Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let back = set_termios(slave, t);
    rest.and(back).map(|()| out)
}

/// How many bytes `TIOCINQ` shows once `input` (as [`take_input`] gives it) is processed
/// by a slave with settings `t`: in canonical mode, those of complete lines, without the
/// end-of-file characters.
fn visible_input(input: &[u8], t: &Termios) -> usize {
    if t.lflag & libc::ICANON == 0 {
        return input.len();
    }
    let eof = t.cc[libc::VEOF];
    let ends = [b'\n', t.cc[libc::VEOL], t.cc[libc::VEOL2]];
    let complete = input
        .iter()
        .rposition(|c| *c != 0 && (ends.contains(c) || *c == eof))
        .map_or(0, |i| i + 1);
    complete - input[..complete].iter().filter(|c| **c == eof).count()
}

/// Waits (briefly, bounded) until the terminal at `fd` shows `expect` bytes to read: the
/// kernel hands bytes written to a pty's other end to its line discipline later, in a
/// worker, and they must be processed under the settings they were written with.
fn wait_processed(fd: BorrowedFd<'_>, expect: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        // A poll that finds nothing to read runs the pending work itself.
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd.
        unsafe { libc::poll(&mut p, 1, 0) };
        let n = crate::fds::bytes_readable(fd).unwrap_or(0) as usize;
        if n >= expect || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::yield_now();
    }
}

/// Writes bytes back into a pty pair: `input` for the slave to read (through the master;
/// as [`take_input`] gave it) and `output` for the master to read (through the slave),
/// under [`transparent`] settings so that nothing is echoed or translated, then puts the
/// settings `t` back once the line discipline has processed them.
pub fn refill(
    master: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    input: &[u8],
    output: &[u8],
    t: &Termios,
) -> Result<()> {
    set_termios(slave, &transparent(t))?;
    let already_in = crate::fds::bytes_readable(slave).unwrap_or(0) as usize;
    let already_out = crate::fds::bytes_readable(master).unwrap_or(0) as usize;
    let written = crate::fds::write_all(master, input).and_then(|()| {
        wait_processed(slave, already_in + visible_input(input, t));
        crate::fds::write_all(slave, output)
    });
    if written.is_ok() {
        wait_processed(master, already_out + output.len());
    }
    let back = set_termios(slave, t);
    written.and(back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_input_counts_complete_lines_without_eof_characters() {
        let mut t = Termios {
            lflag: libc::ICANON,
            ..Default::default()
        };
        t.cc[libc::VEOF] = 4;
        assert_eq!(visible_input(b"line1\npartial", &t), 6);
        assert_eq!(visible_input(b"abc\x04de\n\x04", &t), 6);
        assert_eq!(visible_input(b"partial", &t), 0);
        t.lflag = 0;
        assert_eq!(visible_input(b"partial", &t), 7);
    }
}
