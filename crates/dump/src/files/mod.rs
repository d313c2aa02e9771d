//! Open files: the fd table of each process (`fdinfo-N.img`) and the file descriptions
//! they point to (`files.img`), plus the files that mappings, cwd, root and the executable
//! refer to, and the data some kinds carry (pipe contents, ghost files, ...).
//!
//! An fd is inspected through `/proc/PID/fd/N` (what it points to), `/proc/PID/fdinfo/N`
//! (position, flags, mount, kind-specific lines), `stat`, and a copy of the very open file
//! description obtained with `pidfd_getfd`, which can be queried like one of our own fds
//! (owner, signal, pipe size, seals, ...). Two fds share a description if
//! `kcmp(KCMP_FILE)` says so; they then get one file id, so the offset stays shared after
//! restore.
//!
//! One submodule per kind: [`reg`] (regular files, directories, devices, deleted files),
//! [`pipe`] (pipes and FIFOs), [`anon`] (eventfd, signalfd, timerfd, pidfd), [`epoll`],
//! [`notify`] (inotify, fanotify), [`memfd`].

mod anon;
mod epoll;
mod inet;
mod locks;
mod memfd;
mod mqueue;
mod netlink;
mod notify;
mod packet;
mod pipe;
mod reg;
mod tty;
mod unix;

use std::os::fd::{AsFd, OwnedFd};

use stasis_images::consts::FD_CLOEXEC;
use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fs, net, proc, process};

pub use memfd::MemfdTable;

use crate::error::{DumpError, ProcContext, Result, SysContext};

const KCMP_FILE: i32 = 0;

/// Character device majors of terminals: tty (4), tty/console/ptmx (5), pts (136..=143).
fn is_tty_major(major: u32) -> bool {
    matches!(major, 4 | 5 | 136..=143)
}

/// A file description seen through an fd, for sharing detection.
#[derive(Debug)]
struct SeenFd {
    pid: Pid,
    fd: i32,
    id: u32,
    kind: pb::FdTypes,
}

/// Where fd `fd` of `pid` is among `list` (descriptions of one inode, in the kernel's
/// order): `Ok(i)` if it is the same description as `list[i]`, else `Err(i)`, where it
/// goes. `kcmp` orders file objects (1: less, 2: greater); if it cannot, every entry is
/// compared.
fn find_description(list: &[SeenFd], pid: Pid, fd: i32) -> std::result::Result<usize, usize> {
    use std::cmp::Ordering;
    let mut unordered = false;
    let found = list.binary_search_by(|seen| {
        match process::kcmp(seen.pid, pid, KCMP_FILE, seen.fd as u64, fd as u64) {
            Ok(0) => Ordering::Equal,
            Ok(1) => Ordering::Less,
            Ok(2) => Ordering::Greater,
            _ => {
                unordered = true;
                Ordering::Less
            }
        }
    });
    if !unordered {
        return found;
    }
    list.iter()
        .position(|seen| {
            process::kcmp(seen.pid, pid, KCMP_FILE, seen.fd as u64, fd as u64) == Ok(0)
        })
        .ok_or(list.len())
}

/// Every file entry of the dump, with ids, and the data images that go with them.
#[derive(Debug, Default)]
pub struct FileTable {
    next_id: u32,
    /// The entries of `files.img`.
    pub entries: Vec<pb::FileEntry>,
    /// Descriptions seen so far, by (device, inode), each list in the kernel's order of
    /// the file objects (`kcmp` orders them), so finding a shared one is a binary search.
    seen: std::collections::HashMap<(u64, u64), Vec<SeenFd>>,
    by_path: Vec<(String, u32, u32)>,
    pipes: pipe::PipeData,
    ghosts: reg::Ghosts,
    /// memfd inodes, shared with the memory dump (mappings of memfds).
    pub memfds: MemfdTable,
    /// The fd tables dumped so far (by `files_id`).
    tables: std::collections::HashSet<u32>,
    ttys: tty::Ttys,
    locks: locks::Locks,
    mqueues: mqueue::Queues,
    sockets: unix::Sockets,
    inet: inet::InetSockets,
    netlink: netlink::NetlinkSockets,
    packet: packet::PacketSockets,
}

/// Options that change how files are dumped.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileOptions {
    /// `--shell-job`: terminals inherited from outside the tree are allowed.
    pub shell_job: bool,
    /// `--ghost-limit`: the largest deleted file whose contents are saved.
    pub ghost_limit: u64,
    /// `--link-remap`: a deleted file that still has other links is reopened after
    /// restore through a link made at dump time.
    pub link_remap: bool,
    /// `--file-locks`: locks are saved (without it, a process holding one is refused).
    pub file_locks: bool,
    /// The tree has an IPC namespace of its own, whose objects are saved: its SysV shared
    /// memory attaches can be restored.
    pub private_ipc: bool,
    /// `--tcp-established`: TCP connections are saved (in repair mode, network locked);
    /// without it a tree with one is refused.
    pub tcp_established: bool,
    /// `--tcp-close`: TCP connections are saved as sockets only (no repair, no lock),
    /// to be restored closed; the kernel ends them when the tree is killed.
    pub tcp_close: bool,
    /// `--skip-in-flight`: connections waiting in a TCP listener's accept queue are left
    /// behind (their clients see them reset) instead of refusing the dump.
    pub skip_in_flight: bool,
    /// `--network-lock`: how connections are kept from the network while saved.
    pub network_lock: stasis_sys::netlock::Method,
    /// The tree's root (names the network lock).
    pub root: Pid,
    /// `--ext-unix-sk`: a datagram socket may be connected to a named socket outside the
    /// tree (connected again by name at restore).
    pub ext_unix_sk: bool,
    /// `--leave-running`: the tree goes on after the dump, so nothing may be taken from
    /// it (connections waiting to be accepted with data are refused).
    pub leave_running: bool,
}

/// Everything known about one fd while it is dumped.
#[derive(Debug)]
pub(crate) struct Fd {
    pub pid: Pid,
    pub fd: i32,
    /// Where `/proc/PID/fd/N` points (a path, `pipe:[N]`, `anon_inode:[eventfd]`, ...).
    pub link: String,
    pub info: proc::FdInfo,
    pub st: libc::stat64,
    /// Our copy of the open file description.
    pub file: OwnedFd,
}

impl Fd {
    /// Open flags of the description (without O_CLOEXEC, which belongs to the fd).
    pub fn flags(&self) -> u32 {
        self.info.flags & !(libc::O_CLOEXEC as u32)
    }

    /// The fd as error messages name it.
    pub fn resource(&self) -> String {
        format!("fd {} ({})", self.fd, self.link)
    }

    /// An error for state of this fd that stasis cannot save.
    pub fn unsupported(&self, reason: impl Into<String>) -> DumpError {
        DumpError::Unsupported {
            pid: self.pid,
            resource: self.resource(),
            reason: reason.into(),
        }
    }

    /// The owner (F_SETOWN_EX) and signal (F_SETSIG) of the description.
    pub fn fown(&self) -> pb::FownEntry {
        owner(self.pid, self.file.as_fd()).unwrap_or_default()
    }

    /// A kind-specific fdinfo line.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.info
            .extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl FileTable {
    /// The next file id.
    fn new_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds an entry of `kind` built by `fill` from its new id; returns the id.
    pub(crate) fn add(
        &mut self,
        kind: pb::FdTypes,
        fill: impl FnOnce(u32, &mut pb::FileEntry),
    ) -> u32 {
        let id = self.new_id();
        let mut entry = pb::FileEntry {
            r#type: kind as i32,
            id,
            ..Default::default()
        };
        fill(id, &mut entry);
        self.entries.push(entry);
        id
    }

    /// Adds a regular-file entry, giving it the next id.
    pub(crate) fn add_reg(&mut self, reg: pb::RegFileEntry) -> u32 {
        self.add(pb::FdTypes::Reg, |id, e| {
            e.reg = Some(pb::RegFileEntry { id, ..reg });
        })
    }

    /// A regular-file entry with the path, flags and owner of `f`: where a FIFO or a
    /// terminal was opened, for the restore to open it again by.
    pub(crate) fn path_entry(&mut self, f: &Fd) -> u32 {
        self.add_reg(pb::RegFileEntry {
            flags: f.flags(),
            pos: 0,
            fown: Some(f.fown()),
            name: f.link.clone(),
            mnt_id: Some(f.info.mnt_id),
            mode: Some(f.st.st_mode),
            ..Default::default()
        })
    }

    /// A regular-file entry for `path` opened with `flags`, shared by everything that
    /// refers to the same path with the same flags (mappings, cwd, exe).
    pub fn path_file(&mut self, pid: Pid, path: &str, flags: u32) -> Result<u32> {
        if let Some((_, _, id)) = self
            .by_path
            .iter()
            .find(|(p, f, _)| p == path && *f == flags)
        {
            return Ok(*id);
        }
        let st = fs::stat(std::path::Path::new(path)).ctx(pid, || format!("stat {path}"))?;
        let id = self.add_reg(pb::RegFileEntry {
            flags,
            pos: 0,
            fown: Some(pb::FownEntry::default()),
            name: path.to_owned(),
            size: Some(st.st_size as u64),
            mode: Some(st.st_mode),
            stasis_mtime: reg::mtime(&st),
            ..Default::default()
        });
        self.by_path.push((path.to_owned(), flags, id));
        Ok(id)
    }

    /// Whether fd table `files_id` was dumped already (processes sharing it with
    /// CLONE_FILES); marks it dumped.
    pub fn table_done(&mut self, files_id: u32) -> bool {
        !self.tables.insert(files_id)
    }

    /// Dumps the fd table of `pid`, returning its fdinfo entries.
    pub fn dump_fds(
        &mut self,
        dir: &ImageDir,
        pid: Pid,
        files_id: u32,
        opts: FileOptions,
    ) -> Result<Vec<pb::FdinfoEntry>> {
        let pidfd = process::pidfd_open(pid).ctx(pid, || "pidfd_open".to_owned())?;
        let mut out = Vec::new();
        let mut epolls = Vec::new();
        for fd in proc::fds(pid).pctx(pid)? {
            let (entry, epoll, info) = self.dump_fd(dir, pid, &pidfd, fd, opts)?;
            self.locks
                .note(pid, fd, files_id, entry.id, &info, opts.file_locks)?;
            out.push(entry);
            epolls.extend(epoll);
        }
        // Epoll targets are named by fd numbers of this process, so they are resolved
        // once the whole table is known.
        for ep in epolls {
            epoll::resolve_targets(self, pid, &out, ep)?;
        }
        Ok(out)
    }

    pub(crate) fn dump_fd(
        &mut self,
        dir: &ImageDir,
        pid: Pid,
        pidfd: &OwnedFd,
        fd: i32,
        opts: FileOptions,
    ) -> Result<(pb::FdinfoEntry, Option<epoll::Pending>, proc::FdInfo)> {
        let link_path = proc::path(pid, &format!("fd/{fd}"));
        let link = proc::read_link(link_path.clone()).pctx(pid)?;
        let link = link.to_string_lossy().into_owned();
        let info = proc::read_fdinfo(pid, fd).pctx(pid)?;
        let st = fs::stat(&link_path).ctx(pid, || format!("stat fd {fd} ({link})"))?;
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let fdinfo = |id: u32, kind: pb::FdTypes| pb::FdinfoEntry {
            id,
            flags: if cloexec { FD_CLOEXEC } else { 0 },
            r#type: kind as i32,
            fd: fd as u32,
            xattr_security_selinux: None,
        };

        // One open file description shared by several fds gets one id.
        let same_inode = self.seen.entry((st.st_dev, st.st_ino)).or_default();
        let slot = match find_description(same_inode, pid, fd) {
            Ok(i) => {
                let seen = &same_inode[i];
                return Ok((fdinfo(seen.id, seen.kind), None, info));
            }
            Err(slot) => slot,
        };

        let file = process::pidfd_getfd(pidfd, fd).ctx(pid, || format!("pidfd_getfd {fd}"))?;
        let f = Fd {
            pid,
            fd,
            link,
            info,
            st,
            file,
        };
        let mut pending_epoll = None;
        let (kind, id) = self.dump_description(dir, &f, opts, &mut pending_epoll)?;
        self.seen
            .entry((f.st.st_dev, f.st.st_ino))
            .or_default()
            .insert(slot, SeenFd { pid, fd, id, kind });
        Ok((fdinfo(id, kind), pending_epoll, f.info))
    }

    /// Saves one open file description by its kind; returns the kind and file id.
    fn dump_description(
        &mut self,
        dir: &ImageDir,
        f: &Fd,
        opts: FileOptions,
        pending_epoll: &mut Option<epoll::Pending>,
    ) -> Result<(pb::FdTypes, u32)> {
        use pb::FdTypes as T;
        let mode = f.st.st_mode & libc::S_IFMT;
        if let Some(anon) = f.link.strip_prefix("anon_inode:") {
            let anon = anon.trim_start_matches('[').trim_end_matches(']');
            return match anon {
                "eventfd" => Ok((T::Eventfd, anon::dump_eventfd(self, f)?)),
                "signalfd" => Ok((T::Signalfd, anon::dump_signalfd(self, f)?)),
                "timerfd" => Ok((T::Timerfd, anon::dump_timerfd(self, f)?)),
                "pidfd" => Ok((T::Pidfd, anon::dump_pidfd(self, f)?)),
                "eventpoll" => {
                    let (id, pending) = epoll::dump(self, f)?;
                    *pending_epoll = Some(pending);
                    Ok((T::Eventpoll, id))
                }
                "inotify" => Ok((T::Inotify, notify::dump_inotify(self, f)?)),
                "fanotify" => Ok((T::Fanotify, notify::dump_fanotify(self, f)?)),
                "io_uring" => Err(f.unsupported(
                    "io_uring instances are not supported (their rings and pending requests \
                     live in the kernel)",
                )),
                other => Err(f.unsupported(format!("{other} descriptors are not supported"))),
            };
        }
        if f.link.starts_with("pipe:[") {
            return Ok((T::Pipe, pipe::dump_pipe(self, f)?));
        }
        if f.link.starts_with("socket:[") {
            return self.dump_socket(dir, f, opts);
        }
        if !f.link.starts_with('/') {
            // Namespace files (net:[...]), BPF objects, ...
            return Err(f.unsupported("files of this kind are not supported yet"));
        }
        if mode == libc::S_IFREG && stasis_sys::ipc::is_mqueue(f.file.as_fd()) {
            return Ok((T::StasisMqueue, mqueue::dump_mqueue(self, f)?));
        }
        if f.link.starts_with("/memfd:") && mode == libc::S_IFREG {
            return Ok((T::Memfd, memfd::dump_memfd(self, dir, f)?));
        }
        if mode == libc::S_IFCHR
            && is_tty_major(libc::major(f.st.st_rdev))
            && let Some(id) = tty::dump_tty(self, f, opts)?
        {
            return Ok((T::Tty, id));
        }
        match mode {
            libc::S_IFIFO => Ok((T::Fifo, pipe::dump_fifo(self, f)?)),
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK => {
                Ok((T::Reg, reg::dump_reg(self, dir, f, opts)?))
            }
            libc::S_IFSOCK => Err(f.unsupported("sockets are not supported yet")),
            _ => Err(f.unsupported("files of this kind are not supported yet")),
        }
    }

    /// Whether [`FileTable::write_socket_queues_and_inventory`] takes connections from the
    /// tree (it must then be the last thing before the kill).
    pub fn takes_connections(&self) -> bool {
        self.sockets.must_drain()
    }

    /// Writes `sk-queues.img`, after reading what clients of connections waiting to be
    /// accepted sent (which accepts them on our copies of their listeners: only for a tree
    /// killed after the dump, as the last step before the inventory).
    ///
    /// Then the inventory, the mark of a complete dump. When connections must be accepted,
    /// everything that a full disk could make fail is done first (the queues known so far
    /// written, room for the rest reserved, the inventory written under a temporary
    /// name): a dump that fails before the accept leaves the tree as it was; after it
    /// only an I/O error can stop the dump.
    pub fn write_socket_queues_and_inventory(
        &mut self,
        dir: &ImageDir,
        inventory: &pb::InventoryEntry,
    ) -> Result<()> {
        let queues: Vec<_> = self
            .inet
            .queues
            .iter()
            .chain(&self.netlink.queues)
            .cloned()
            .collect();
        if !self.sockets.must_drain() {
            self.sockets.write(dir, &queues)?;
            return dir
                .write_all(ImageKind::Inventory, 0, [inventory])
                .map_err(Into::into);
        }
        self.sockets.write_always(dir, &queues)?;
        let name = ImageKind::SkQueues.file_name(0);
        let io = |file: &str, source: std::io::Error| {
            DumpError::Image(stasis_images::Error::Io {
                file: file.to_owned(),
                source,
            })
        };
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(&name))
            .map_err(|e| io(&name, e))?;
        let size = file.metadata().map_err(|e| io(&name, e))?.len();
        // Room for the data of the connections waiting to be accepted (a file system that
        // cannot reserve it is written to as it is).
        match fs::reserve_space(file.as_fd(), size, self.sockets.drain_reserve()) {
            Ok(()) => {}
            Err(stasis_sys::Errno(libc::EOPNOTSUPP)) => {
                log::warn!("{name}: the file system cannot reserve room (fallocate)");
            }
            Err(e) => return Err(io(&name, std::io::Error::from_raw_os_error(e.0))),
        }
        let temp = format!("{}.partial", ImageKind::Inventory.file_name(0));
        let mut w = stasis_images::ImageWriter::new(
            dir.create_raw(&temp)?,
            ImageKind::Inventory,
            temp.clone(),
        )?;
        w.write(inventory)?;
        w.finish()?;
        // Past this point the tree has lost those connections to us.
        let drained = self.sockets.drain()?;
        let mut w = stasis_images::ImageWriter::appending(file, name);
        for (e, data) in &drained {
            w.write(e)?;
            w.write_raw(data)?;
        }
        w.finish()?;
        let inv = ImageKind::Inventory.file_name(0);
        std::fs::rename(dir.join(&temp), dir.join(&inv)).map_err(|e| io(&inv, e))
    }

    /// Undoes what the dump did outside its images, after a failure: removes the links
    /// made for `--link-remap`, then all [`FileTable::put_back`] does.
    pub fn undo(&mut self) {
        self.ghosts.remove_links();
        self.put_back();
    }

    /// With `--tcp-established`: locks the TCP connections of the tree's fds, all in one
    /// step, before any is dumped.
    pub fn lock_connections(&mut self, pids: &[Pid], opts: FileOptions) -> Result<()> {
        self.inet.lock_connections(pids, opts)
    }

    /// Puts the terminals' bytes in flight back and gives the TCP connections back to
    /// the kernel, for a tree that goes on running.
    pub fn put_back(&mut self) {
        self.ttys.put_back();
        self.inet.release_connections();
    }

    /// Every pidfd must refer to a process of the tree (or to none: a dead process).
    pub fn check_pidfds(&self, tree: &[Pid]) -> Result<()> {
        for e in &self.entries {
            let Some(p) = &e.pidfd else { continue };
            if p.nspid > 0 && !tree.contains(&p.nspid) {
                let holder = self.seen.values().flatten().find(|s| s.id == e.id);
                return Err(DumpError::Unsupported {
                    pid: holder.map_or(0, |s| s.pid),
                    resource: format!(
                        "fd {} (pidfd of process {})",
                        holder.map_or(-1, |s| s.fd),
                        p.nspid
                    ),
                    reason: "it refers to a process outside the dumped tree".into(),
                });
            }
        }
        Ok(())
    }

    /// Writes the images that belong to the files (besides `files.img`, which the caller
    /// writes last of them: entries are added up to the end of the dump).
    pub fn write_data(&mut self, dir: &ImageDir) -> Result<()> {
        unix::check_peers(self)?;
        self.ttys.write(dir)?;
        self.locks.write(dir)?;
        self.netlink.take_queues()?;
        self.inet.write_streams(dir)?;
        self.pipes.write(dir)?;
        self.ghosts.write(dir)?;
        self.memfds.write(dir)?;
        Ok(())
    }
}

/// The `name:value` pairs of an fdinfo line such as `inotify wd:1 ino:1a2b sdev:800001`
/// or `tfd:        5 events:       19 data: 7`: a word with a colon inside gives its own
/// value, one ending in a colon takes the next word; other words are skipped.
pub(crate) fn fdinfo_fields(line: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        let Some((key, value)) = w.split_once(':') else {
            continue;
        };
        if value.is_empty() {
            if let Some(v) = words.next() {
                out.push((key, v));
            }
        } else {
            out.push((key, value));
        }
    }
    out
}

/// The fdinfo lines whose text starts with `key` (as `key: value`, reassembled from the
/// parsed pairs).
pub(crate) fn fdinfo_lines<'a>(f: &'a Fd, key: &'a str) -> impl Iterator<Item = String> + 'a {
    f.info
        .extra
        .iter()
        .filter(move |(k, _)| k == key)
        .map(|(k, v)| format!("{k}:{v}"))
}

/// The owner (F_SETOWN_EX) and signal (F_SETSIG) of an open file description.
fn owner(pid: Pid, file: std::os::fd::BorrowedFd<'_>) -> Result<pb::FownEntry> {
    let (pid_type, owner_pid) = fs::owner(file).ctx(pid, || "F_GETOWN_EX".to_owned())?;
    let signum = fs::owner_signal(file).ctx(pid, || "F_GETSIG".to_owned())?;
    Ok(pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: signum as u32,
        pid_type: pid_type as u32,
        pid: owner_pid as u32,
    })
}

impl FileTable {
    /// A socket, by its address family.
    fn dump_socket(
        &mut self,
        dir: &ImageDir,
        f: &Fd,
        opts: FileOptions,
    ) -> Result<(pb::FdTypes, u32)> {
        let domain = net::get_int_opt(f.file.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
            .ctx(f.pid, || format!("fd {}: getsockopt(SO_DOMAIN)", f.fd))?;
        match domain {
            libc::AF_UNIX => Ok((pb::FdTypes::Unixsk, unix::dump_socket(self, dir, f, opts)?)),
            libc::AF_INET | libc::AF_INET6 => Ok((
                pb::FdTypes::Inetsk,
                inet::dump_socket(self, f, domain, opts)?,
            )),
            libc::AF_NETLINK => Ok((pb::FdTypes::Netlinksk, netlink::dump_socket(self, f)?)),
            libc::AF_PACKET => Ok((pb::FdTypes::Packetsk, packet::dump_socket(self, f)?)),
            _ => Err(f.unsupported(format!(
                "sockets of address family {domain} are not supported yet"
            ))),
        }
    }
}
