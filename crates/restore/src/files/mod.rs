//! Reopening the fd tables of the tree.
//!
//! Every open file description of the tree is recreated once, by stasis, before any
//! process is forked ([`OpenedFiles::open_all`]), and kept at fd numbers above every number
//! the tree uses. Each restore process inherits them all and dups the ones its table names
//! to their numbers ([`OpenedFiles::install`]); descriptions shared between fds and between
//! processes stay shared (one offset, one pipe, one counter), as they were.
//!
//! A few things can only be done by the process itself, once the whole tree exists
//! ([`OpenedFiles::install_late`]): pidfds of processes of the tree (opened by pid), and
//! the targets of epoll instances (registered under fd numbers of that process).
//!
//! One submodule per kind, paired with the dump's: [`reg`] (regular files, ghosts and
//! links), [`pipe`], [`anon`] (eventfd, signalfd, timerfd, pidfd), [`epoll`], [`notify`],
//! [`memfd`].

mod anon;
mod epoll;
mod inet;
mod locks;
mod memfd;
mod netlink;
mod notify;
mod packet;
mod pipe;
mod reg;
mod tty;
mod unix;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::PathBuf;

use stasis_images::consts::{FD_CLOEXEC, vma_status};
use stasis_images::{ImageDir, pb};
use stasis_sys::process::RestoreChild;
use stasis_sys::{Pid, fs};

pub use inet::TcpRepaired;
pub use reg::open_reg;
pub use tty::{TtyImages, load as load_ttys};
pub use unix::{absolute_names as absolute_unix_names, absolute_senders as absolute_unix_senders};

use crate::error::{RestoreError, Result, SysContext, invalid};
use crate::image::{Images, ProcessImage};

/// How strictly files are checked against what the dump saw.
#[derive(Clone, Copy, Debug)]
pub struct Validation {
    /// A regular file whose size or mtime changed is an error (unless only appended to).
    pub contents: bool,
    /// A file whose permission bits changed is an error.
    pub rwx: bool,
}

/// The data images of the files: pipe contents, ghost files, remaps, memfd inodes.
#[derive(Debug, Default)]
pub struct FileData {
    /// `pipes-data.img` by pipe id.
    pub pipes: HashMap<u32, (pb::PipeDataEntry, Vec<u8>)>,
    /// `fifo-data.img` by pipe id.
    pub fifos: HashMap<u32, (pb::PipeDataEntry, Vec<u8>)>,
    /// `remap-fpath.img` by the file id whose path is replaced.
    pub remaps: HashMap<u32, pb::RemapFilePathEntry>,
    /// Ghost files by ghost id: attributes and data extents.
    pub ghosts: HashMap<u32, reg::Ghost>,
    /// `memfd.img` by inode id.
    pub memfds: HashMap<u64, pb::MemfdInodeEntry>,
    /// `filelocks.img`.
    pub locks: Vec<pb::FileLockEntry>,
    /// `sk-queues.img`: queued messages by the file id of their socket.
    pub sk_queues: unix::Queues,
    /// `tcp-stream-INO.img` of each TCP connection, by socket inode.
    pub tcp_streams: HashMap<u32, inet::TcpStream>,
}

/// Reads the data images `files` refers to.
pub fn load_data(dir: &ImageDir, files: &HashMap<u32, pb::FileEntry>) -> Result<FileData> {
    let mut data = FileData {
        pipes: pipe::load(dir, stasis_images::ImageKind::PipesData)?,
        fifos: pipe::load(dir, stasis_images::ImageKind::FifoData)?,
        ..Default::default()
    };
    if let Some(mut r) = dir.open_optional(stasis_images::ImageKind::RemapFpath, 0)? {
        for e in r.collect_all::<pb::RemapFilePathEntry>()? {
            data.remaps.insert(e.orig_id, e);
        }
    }
    for remap in data.remaps.values() {
        if !files.contains_key(&remap.orig_id) {
            return Err(invalid(
                "remap-fpath.img",
                format!("remaps file id {}, which files.img lacks", remap.orig_id),
            ));
        }
        match remap.remap_type() {
            pb::RemapType::Ghost => {
                if let Entry::Vacant(slot) = data.ghosts.entry(remap.remap_id) {
                    slot.insert(reg::load_ghost(dir, remap.remap_id)?);
                }
            }
            pb::RemapType::Linked => {
                if files
                    .get(&remap.remap_id)
                    .and_then(|f| f.reg.as_ref())
                    .is_none()
                {
                    return Err(invalid(
                        "remap-fpath.img",
                        format!("link of file {} is not in files.img", remap.orig_id),
                    ));
                }
            }
            pb::RemapType::Procfs => {
                return Err(invalid(
                    "remap-fpath.img",
                    format!(
                        "file {}: /proc files of dead processes are not supported",
                        remap.orig_id
                    ),
                ));
            }
        }
    }
    data.locks = locks::load(dir)?;
    data.sk_queues = unix::load(dir)?;
    data.tcp_streams = inet::load_streams(dir, files)?;
    if let Some(mut r) = dir.open_optional(stasis_images::ImageKind::MemfdInode, 0)? {
        for e in r.collect_all::<pb::MemfdInodeEntry>()? {
            data.memfds.insert(e.inode_id, e);
        }
    }
    Ok(data)
}

/// Something a process does for itself after [`OpenedFiles::install`].
#[derive(Debug)]
enum Late {
    /// A pidfd of a process of the tree: (its pid, the pidfd_open flags).
    Pidfd(Pid, u32),
    /// A file under `/proc/PID` of a process of the tree.
    Reg(pb::RegFileEntry),
    /// A POSIX message queue (opened by name in the tree's IPC namespace).
    Mqueue(String, u32),
}

/// The SIGIO owner of a description of any kind.
fn fown_of(f: &pb::FileEntry) -> Option<&pb::FownEntry> {
    f.reg
        .as_ref()
        .and_then(|e| e.fown.as_ref())
        .or_else(|| f.pipe.as_ref().and_then(|e| e.fown.as_ref()))
        .or_else(|| f.efd.as_ref().and_then(|e| e.fown.as_ref()))
        .or_else(|| f.epfd.as_ref().and_then(|e| e.fown.as_ref()))
        .or_else(|| f.sgfd.as_ref().and_then(|e| e.fown.as_ref()))
        .or_else(|| f.tfd.as_ref().and_then(|e| e.fown.as_ref()))
        .or_else(|| f.ify.as_ref().and_then(|e| e.fown.as_ref()))
        .or_else(|| f.ffy.as_ref().and_then(|e| e.fown.as_ref()))
        .or_else(|| f.memfd.as_ref().and_then(|e| e.fown.as_ref()))
        .or_else(|| f.pidfd.as_ref().and_then(|e| e.fown.as_ref()))
}

/// Whether `path` is under `/proc/PID` (or `/proc/PID/task/TID`) of a task of the tree.
fn proc_of_tree(path: &str, tree: &HashSet<Pid>) -> bool {
    path.strip_prefix("/proc/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|pid| pid.parse::<Pid>().ok())
        .is_some_and(|pid| tree.contains(&pid))
}

/// Every file description of the tree, opened once by stasis before any process is
/// forked and kept at numbers above every fd number the tree uses.
#[derive(Debug, Default)]
pub struct OpenedFiles {
    by_id: HashMap<u32, OwnedFd>,
    late: HashMap<u32, Late>,
    /// Epoll file ids, with the targets each registers.
    epolls: HashMap<u32, Vec<pb::EventpollTfdEntry>>,
    /// Descriptions with an owner for SIGIO (`F_SETOWN_EX`): (kind, pid or pgid).
    owners: HashMap<u32, (i32, Pid)>,
    /// The process that finishes each description (registers epoll targets, sets the
    /// owner): the first that has it.
    holder: HashMap<u32, Pid>,
    /// Links made by the dump for `--link-remap`, removed once the restore succeeded.
    links: Vec<PathBuf>,
    /// Our fds are at or above this number; the tree's are below.
    high: RawFd,
    /// The file id of each pty master, by pty index.
    pty_masters: HashMap<u32, u32>,
    /// TCP connections in repair mode until the tree is ready, SO_REUSEPORT groups.
    inet: inet::InetState,
    /// Unix socket queues, names and shutdowns, for once the tree exists.
    unix_late: unix::Late,
}

/// What opening a description needs besides its entry.
pub(crate) struct OpenCtx<'a> {
    pub images: &'a Images,
    pub high: RawFd,
    pub validation: Validation,
    /// The process the description is opened for (error messages).
    pub pid: Pid,
}

impl OpenCtx<'_> {
    /// An fd moved above the tree's numbers.
    pub fn keep(&self, fd: OwnedFd) -> Result<OwnedFd> {
        fs::move_above(fd, self.high).ctx(self.pid, || "move an fd out of the way".into())
    }

    /// A description just made, given the status flags the dump saw (only those in
    /// `settable`: F_SETFL changes no others) and its signal, and kept.
    pub fn finish(
        &self,
        fd: OwnedFd,
        flags: u32,
        settable: i32,
        fown: Option<&pb::FownEntry>,
        what: &str,
    ) -> Result<OwnedFd> {
        fs::set_status_flags(fd.as_fd(), flags as i32 & settable)
            .ctx(self.pid, || format!("F_SETFL on {what}"))?;
        reg::set_fown(self.pid, fd.as_fd(), fown, what)?;
        self.keep(fd)
    }
}

/// The highest fd number the tree's restore needs below our own fds: every fd of every
/// table, and every number an epoll target was registered under.
pub fn highest_fd(images: &Images) -> RawFd {
    let mut high = 2;
    for p in &images.processes {
        for f in &p.fds {
            high = high.max(f.fd as RawFd);
        }
    }
    for f in images.files.values() {
        if let Some(ep) = &f.epfd {
            for t in &ep.tfd {
                high = high.max(t.tfd as RawFd);
            }
        }
    }
    high
}

impl OpenedFiles {
    /// Opens every description any process's fd table or mapping refers to, at numbers
    /// >= `high`.
    pub fn open_all(images: &Images, high: RawFd, validation: Validation) -> Result<OpenedFiles> {
        let mut opened = OpenedFiles {
            high,
            ..Default::default()
        };
        let mut pipes = pipe::Pipes::default();
        let mut memfds = memfd::Inodes::default();
        let mut ghosts = reg::GhostFiles::default();
        let mut ptys = tty::Ptys::default();
        let mut sockets = unix::Sockets::default();
        let mut netlinks = netlink::Netlinks::default();
        // Mappings that are opened here rather than by path in the process: memfds and
        // files whose path was replaced.
        let mut wanted: Vec<(Pid, u32, String)> = Vec::new();
        for p in &images.processes {
            for e in &p.fds {
                wanted.push((p.pid(), e.id, format!("fd {}", e.fd)));
            }
            for (id, what) in [
                (p.fs.cwd_id, "cwd"),
                (p.fs.root_id, "root"),
                (p.mm.exe_file_id, "exe"),
            ] {
                if images.file_data.remaps.contains_key(&id) {
                    wanted.push((p.pid(), id, what.to_owned()));
                }
            }
            for v in &p.mm.vmas {
                let file_backed =
                    v.status & (vma_status::FILE_PRIVATE | vma_status::FILE_SHARED) != 0;
                let id = v.shmid as u32;
                if v.status & vma_status::SOCKET != 0 {
                    // A packet ring, mapped from the socket.
                    wanted.push((p.pid(), id, format!("vma {:#x}", v.start)));
                    continue;
                }
                if file_backed
                    && (v.status & vma_status::MEMFD != 0
                        || images.file_data.remaps.contains_key(&id))
                {
                    wanted.push((p.pid(), id, format!("vma {:#x}", v.start)));
                }
            }
        }
        let tree_pids: HashSet<Pid> = images
            .processes
            .iter()
            .flat_map(|p| p.pstree.threads.iter().map(|t| *t as Pid))
            .chain(images.zombies.iter().map(|z| z.pid()))
            .collect();
        // inotify and fanotify instances last: opening files under their watches would
        // queue events the process never had.
        let is_notify = |id: u32| {
            images
                .files
                .get(&id)
                .is_some_and(|f| f.ify.is_some() || f.ffy.is_some())
        };
        // TCP connections after listeners: a listener binds its port normally, which a
        // connection (bound in repair mode) on the same port would otherwise prevent.
        let is_connection = |id: u32| {
            images
                .files
                .get(&id)
                .and_then(|f| f.isk.as_ref())
                .is_some_and(|i| {
                    i.r#type as i32 == libc::SOCK_STREAM
                        && stasis_sys::inet::is_tcp_connection(i.state)
                })
        };
        // Descriptions in flight in queued messages, sent again with them (opened for
        // the root: nobody holds them).
        let first = images.processes.first().map_or(0, |p| p.pid());
        for id in unix::in_flight_ids(&images.file_data.sk_queues) {
            wanted.push((first, id, "a file in flight".to_owned()));
        }
        wanted.sort_by_key(|(_, id, _)| (is_notify(*id), is_connection(*id)));
        let mut done = HashSet::new();
        for (pid, id, user) in wanted {
            if !done.insert(id) {
                continue;
            }
            let entry = images.files.get(&id).ok_or_else(|| {
                invalid(
                    "files.img",
                    format!("process {pid}: {user} refers to missing file id {id}"),
                )
            })?;
            let cx = OpenCtx {
                images,
                high,
                validation,
                pid,
            };
            let unsupported = |what: &str| RestoreError::Unsupported {
                pid,
                resource: format!("{user} (file id {id})"),
                reason: format!("{what} are not supported"),
            };
            use pb::FdTypes as T;
            let fd = match (T::try_from(entry.r#type), entry) {
                (Ok(T::Reg), pb::FileEntry { reg: Some(reg), .. })
                    if proc_of_tree(&reg.name, &tree_pids) || reg.name == "/dev/tty" =>
                {
                    // /proc/PID/... of a process of the tree exists once the tree does;
                    // /dev/tty is whatever terminal controls the process's session then.
                    opened.late.insert(id, Late::Reg(reg.clone()));
                    continue;
                }
                (Ok(T::Reg), pb::FileEntry { reg: Some(reg), .. }) => {
                    match images.file_data.remaps.get(&id) {
                        Some(remap) => {
                            reg::open_remapped(&cx, reg, remap, &mut ghosts, &mut opened.links)?
                        }
                        None => cx.keep(open_reg(pid, reg, cx.validation)?)?,
                    }
                }
                (Ok(T::Pipe), pb::FileEntry { pipe: Some(pe), .. }) => pipes.open_pipe(&cx, pe)?,
                (Ok(T::Fifo), pb::FileEntry { fifo: Some(fe), .. }) => pipes.open_fifo(&cx, fe)?,
                (Ok(T::Eventfd), pb::FileEntry { efd: Some(e), .. }) => anon::open_eventfd(&cx, e)?,
                (Ok(T::Signalfd), pb::FileEntry { sgfd: Some(e), .. }) => {
                    anon::open_signalfd(&cx, e)?
                }
                (Ok(T::Timerfd), pb::FileEntry { tfd: Some(e), .. }) => anon::open_timerfd(&cx, e)?,
                (Ok(T::Pidfd), pb::FileEntry { pidfd: Some(e), .. }) => {
                    if e.nspid > 0 {
                        opened.late.insert(id, Late::Pidfd(e.nspid, e.flags));
                        continue;
                    }
                    anon::open_dead_pidfd(&cx, e)?
                }
                (Ok(T::Eventpoll), pb::FileEntry { epfd: Some(e), .. }) => {
                    opened.epolls.insert(id, e.tfd.clone());
                    epoll::create(&cx, e)?
                }
                (Ok(T::Inotify), pb::FileEntry { ify: Some(e), .. }) => {
                    notify::open_inotify(&cx, e)?
                }
                (Ok(T::Fanotify), pb::FileEntry { ffy: Some(e), .. }) => {
                    notify::open_fanotify(&cx, e)?
                }
                (Ok(T::Memfd), pb::FileEntry { memfd: Some(e), .. }) => memfds.open(&cx, e)?,
                (
                    Ok(T::StasisMqueue),
                    pb::FileEntry {
                        stasis_mqueue: Some(e),
                        ..
                    },
                ) => {
                    opened
                        .late
                        .insert(id, Late::Mqueue(e.name.clone(), e.flags));
                    continue;
                }
                (Ok(T::Unixsk), pb::FileEntry { usk: Some(e), .. }) => sockets.open(&cx, e)?,
                (Ok(T::Inetsk), pb::FileEntry { isk: Some(e), .. }) => {
                    inet::open(&cx, e, &mut opened.inet)?
                }
                (Ok(T::Netlinksk), pb::FileEntry { nlsk: Some(e), .. }) => netlinks.open(&cx, e)?,
                (Ok(T::Packetsk), pb::FileEntry { psk: Some(e), .. }) => packet::open(&cx, e)?,
                (Ok(T::Unixsk | T::Inetsk | T::Packetsk | T::Netlinksk), _) => {
                    return Err(unsupported("sockets of this family"));
                }
                (Ok(T::Tty), pb::FileEntry { tty: Some(e), .. }) => {
                    if e.tty_info_id % 2 == 1 {
                        opened.pty_masters.insert(e.tty_info_id / 2, id);
                    }
                    ptys.open(&cx, e)?
                }
                (kind, _) => {
                    return Err(unsupported(&format!("files of type {kind:?}")));
                }
            };
            opened.by_id.insert(id, fd);
        }
        // Fake ends and temporary names are not needed once every description exists.
        sockets.finish(images, first)?;
        opened.unix_late = sockets.into_late(images, &opened.by_id, first)?;
        netlinks.finish(images)?;
        pipes.finish();
        ghosts.finish();
        ptys.finish(first)?;
        for p in &images.processes {
            for e in &p.fds {
                opened.holder.entry(e.id).or_insert(p.pid());
                if let Some(own) = images.files.get(&e.id).and_then(fown_of)
                    && own.pid != 0
                {
                    opened
                        .owners
                        .insert(e.id, (own.pid_type as i32, own.pid as Pid));
                }
            }
        }
        Ok(opened)
    }

    /// A slave of pty `index` (opened through the master), for its session leader to make
    /// it the controlling terminal again.
    fn pty_slave(&self, pid: Pid, index: u32) -> Result<OwnedFd> {
        let master = self
            .pty_masters
            .get(&index)
            .and_then(|id| self.by_id.get(id))
            .ok_or_else(|| RestoreError::Unsupported {
                pid,
                resource: format!("pty {index}"),
                reason: "it controls the session, but no process of the tree holds its master"
                    .into(),
            })?;
        stasis_sys::tty::open_peer(master.as_fd(), libc::O_RDWR)
            .ctx(pid, || format!("pty {index}: open its slave"))
    }

    /// Makes the pty that controlled session leader `pid`'s session its controlling
    /// terminal again (right after `setsid`, before the session's other processes exist).
    pub fn acquire_controlling(&self, images: &Images, pid: Pid) -> Result<()> {
        let Some(info) = tty::controlling_of(images, pid) else {
            return Ok(());
        };
        let index = info.pty.as_ref().map_or(0, |p| p.index);
        let slave = self.pty_slave(pid, index)?;
        stasis_sys::tty::set_controlling(slave.as_fd())
            .ctx(pid, || format!("pty {index}: TIOCSCTTY"))
    }

    /// Gives back the foreground group of the terminal session leader `pid` controls
    /// (once every group of the tree exists).
    fn restore_foreground(&self, images: &Images, pid: Pid) -> Result<()> {
        let Some(info) = tty::controlling_of(images, pid).filter(|i| i.pgrp != 0) else {
            return Ok(());
        };
        let index = info.pty.as_ref().map_or(0, |p| p.index);
        let slave = self.pty_slave(pid, index)?;
        stasis_sys::tty::set_foreground(slave.as_fd(), info.pgrp as Pid).ctx(pid, || {
            format!("pty {index}: make {} the foreground group", info.pgrp)
        })
    }

    /// The description opened for a mapping (memfd, ghost or linked file), if it was
    /// opened here rather than left to the process to open by path.
    pub fn mapped(&self, id: u32) -> Option<&OwnedFd> {
        self.by_id.get(&id)
    }

    /// A file the process refers to by its entry (cwd, executable): the description opened
    /// here if the path had to be replaced (a ghost or a link), else the path opened with
    /// `flags`.
    pub fn open_entry(
        &self,
        pid: Pid,
        images: &Images,
        id: u32,
        flags: i32,
        what: &str,
    ) -> Result<OwnedFd> {
        if let Some(fd) = self.by_id.get(&id) {
            return fd
                .try_clone()
                .map_err(|e| RestoreError::Other(format!("process {pid}: dup the {what}: {e}")));
        }
        let reg = images.reg_file(id, what)?;
        fs::open(std::path::Path::new(&reg.name), flags, 0)
            .ctx(pid, || format!("open {what} {}", reg.name))
    }

    /// Puts `p`'s descriptions at their fd numbers (which must be free or unused).
    pub fn install(&self, p: &ProcessImage) -> Result<()> {
        let pid = p.pid();
        for e in &p.fds {
            if self.late.contains_key(&e.id) {
                continue;
            }
            let file = self.by_id.get(&e.id).ok_or_else(|| {
                RestoreError::Other(format!("process {pid}: file id {} was not opened", e.id))
            })?;
            fs::dup_to(file.as_fd(), e.fd as RawFd, e.flags & FD_CLOEXEC != 0)
                .ctx(pid, || format!("install fd {}", e.fd))?;
        }
        Ok(())
    }

    /// What `p` must do itself once every process of the tree exists and its fd table is
    /// installed: open pidfds of processes of the tree, register epoll targets.
    pub fn install_late(
        &self,
        token: &RestoreChild,
        images: &Images,
        p: &ProcessImage,
    ) -> Result<()> {
        let pid = p.pid();
        self.restore_foreground(images, pid)?;
        let mut late: HashMap<u32, OwnedFd> = HashMap::new();
        for e in &p.fds {
            let Some(what) = self.late.get(&e.id) else {
                continue;
            };
            let file = match late.entry(e.id) {
                Entry::Occupied(f) => f.into_mut(),
                Entry::Vacant(slot) => {
                    let fd = match what {
                        Late::Pidfd(target, flags) => anon::open_live_pidfd(pid, *target, *flags)?,
                        Late::Reg(reg) => reg::open_proc_file(pid, reg)?,
                        Late::Mqueue(name, flags) => {
                            // Exactly its flags: mq_open keeps O_CLOEXEC among the
                            // description's flags, where F_GETFL shows it.
                            let mode = *flags as i32 & (libc::O_ACCMODE | libc::O_NONBLOCK);
                            stasis_sys::ipc::mq_open(name.trim_start_matches('/'), mode, 0, None)
                                .ctx(pid, || format!("open message queue {name}"))?
                        }
                    };
                    // Out of the way first: it could land on a number it is to be put at.
                    slot.insert(fs::move_above(fd, self.high).ctx(pid, || "move an fd".into())?)
                }
            };
            fs::dup_to(file.as_fd(), e.fd as RawFd, e.flags & FD_CLOEXEC != 0)
                .ctx(pid, || format!("install fd {}", e.fd))?;
        }
        drop(late);
        let slot = |n: RawFd| {
            p.fds.iter().find(|e| e.fd as RawFd == n).and_then(|e| {
                self.by_id
                    .get(&e.id)
                    .map(|f| (f.as_fd(), e.flags & FD_CLOEXEC != 0))
            })
        };
        let mut finished = HashSet::new();
        for e in &p.fds {
            if self.holder.get(&e.id) != Some(&pid) || !finished.insert(e.id) {
                continue;
            }
            if let Some(targets) = self.epolls.get(&e.id) {
                let ep = self.by_id[&e.id].as_fd();
                epoll::register(token, pid, ep, targets, slot)?;
            }
            if let Some(&(kind, owner)) = self.owners.get(&e.id) {
                // Through the fd number: the description may be one opened just now.
                let fd = slot(e.fd as RawFd).map(|(f, _)| f);
                let set = match fd {
                    Some(f) => fs::set_owner(f, kind, owner),
                    None => fs::set_owner_fd(e.fd as RawFd, kind, owner),
                };
                set.ctx(pid, || format!("fd {}: F_SETOWN_EX to {owner}", e.fd))?;
            }
        }
        Ok(())
    }

    /// Takes `p`'s file locks again. Last of all: closing any fd of a locked file (our
    /// copies of the descriptions included) drops the process's POSIX locks on it.
    pub fn take_locks(&self, images: &Images, p: &ProcessImage) -> Result<()> {
        locks::take_locks_of(images, &images.file_data.locks, p)?;
        crate::ipc::register_mq_notifications(images, p)
    }

    /// Closes every description (the processes have their own copies now) and returns the
    /// links the dump made for `--link-remap`, to remove once the restore succeeded: the
    /// restored processes hold the files open, the names were only a way back to them.
    pub fn close(self) -> Vec<PathBuf> {
        self.links
    }

    /// The unix sockets' queues, names and shutdowns, for [`unix::Late::refill`] once
    /// every process of the tree exists.
    pub fn take_unix_late(&mut self) -> unix::Late {
        std::mem::take(&mut self.unix_late)
    }

    /// The TCP connections left in repair mode, for [`TcpRepaired::release`] once
    /// the tree is ready.
    pub fn take_tcp(&mut self) -> Vec<TcpRepaired> {
        std::mem::take(&mut self.inet.tcp)
    }
}
