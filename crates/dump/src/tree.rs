//! The dump of a whole tree: validation, freezing every process and thread, collection,
//! image writing, and the final kill or resume.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use stasis_images::consts::{IMG_VERSION, task_state, vma_status};
use stasis_images::{ImageDir, ImageKind, PAGE_SIZE, pb};
use stasis_sys::{Pid, proc, process};

use crate::error::{DumpError, ProcContext, Result};
use crate::files::{FileOptions, FileTable};
use crate::freeze::{Frozen, FrozenThread};
use crate::{memory, pages, task};

/// What to dump and how.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// Root of the tree (`-t`).
    pub pid: Pid,
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// Keep the tree running after the dump (`-R`).
    pub leave_running: bool,
    /// The tree is a shell job: its session leader is outside (`-j`).
    pub shell_job: bool,
    /// The largest deleted file whose contents are saved (`--ghost-limit`).
    pub ghost_limit: u64,
    /// Reopen deleted files that still have links through a link made now
    /// (`--link-remap`).
    pub link_remap: bool,
    /// Save file locks (`--file-locks`); without it a tree holding locks is refused.
    pub file_locks: bool,
    /// Save TCP connections (`--tcp-established`).
    pub tcp_established: bool,
    /// Save TCP connections to be restored closed (`--tcp-close`).
    pub tcp_close: bool,
    /// Leave connections waiting to be accepted behind (`--skip-in-flight`).
    pub skip_in_flight: bool,
    /// How TCP connections are locked while saved (`--network-lock`).
    pub network_lock: stasis_sys::netlock::Method,
    /// Datagram unix sockets may be connected to named sockets outside the tree
    /// (`--ext-unix-sk`).
    pub ext_unix_sk: bool,
}

impl DumpOptions {
    fn file_options(&self) -> FileOptions {
        FileOptions {
            shell_job: self.shell_job,
            ghost_limit: self.ghost_limit,
            link_remap: self.link_remap,
            file_locks: self.file_locks,
            private_ipc: false,
            tcp_established: self.tcp_established,
            tcp_close: self.tcp_close,
            skip_in_flight: self.skip_in_flight,
            network_lock: self.network_lock,
            root: self.pid,
            ext_unix_sk: self.ext_unix_sk,
            leave_running: self.leave_running,
        }
    }
}

/// Counters and timings of a dump, also written to `stats-dump`.
#[derive(Clone, Debug, Default)]
pub struct DumpStats {
    /// Processes dumped (zombies included).
    pub processes: usize,
    /// Threads dumped.
    pub threads: usize,
    /// Time to seize and stop the tree, in microseconds.
    pub freezing_us: u64,
    /// Time the tree was stopped, in microseconds.
    pub frozen_us: u64,
    /// Time spent copying memory, in microseconds.
    pub memdump_us: u64,
    /// Pages scanned (the total size of private anonymous vmas).
    pub pages_scanned: u64,
    /// Pages written to pages images.
    pub pages_written: u64,
    /// Pages not written because they are the parent's (shared copy-on-write).
    pub pages_shared: u64,
}

fn elapsed_us(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}

/// A process of the tree.
#[derive(Debug)]
struct Member {
    pid: Pid,
    /// Parent in the tree (0 for the root).
    ppid: Pid,
    stat: proc::Stat,
    zombie: bool,
}

/// Rejects roots we must not or cannot dump.
fn validate(opts: &DumpOptions) -> Result<proc::Stat> {
    let pid = opts.pid;
    if pid <= 0 {
        return Err(DumpError::Invalid(format!("invalid pid {pid}")));
    }
    let me = process::getpid();
    let stat = proc::read_stat(pid).map_err(|e| {
        if e.is_gone() {
            DumpError::Invalid(format!("process {pid} does not exist"))
        } else {
            DumpError::Proc { pid, source: e }
        }
    })?;
    // Freezing an ancestor of ours would freeze us too (our parent waits on us).
    let mut p = me;
    while p > 1 {
        if p == pid {
            return Err(DumpError::Invalid(format!(
                "process {pid} is stasis itself or one of its ancestors"
            )));
        }
        p = proc::read_stat(p).map(|s| s.ppid).unwrap_or(0);
    }
    if matches!(stat.state, b'Z' | b'X') {
        return Err(DumpError::Invalid(format!("process {pid} is a zombie")));
    }
    if stat.session != pid && !opts.shell_job {
        return Err(DumpError::Invalid(format!(
            "process {pid} is not a session leader (its session is {}); use --shell-job \
             (-j) to dump a job started from a shell",
            stat.session
        )));
    }
    Ok(stat)
}

/// Seizes the root, then every child of every frozen thread, breadth first. A frozen
/// process cannot fork, so once it is frozen its children list is final.
fn freeze_tree(root: Pid, frozen: &mut Frozen) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    let mut queue = VecDeque::from([(root, 0)]);
    while let Some((pid, ppid)) = queue.pop_front() {
        let stat = proc::read_stat(pid).pctx(pid)?;
        if matches!(stat.state, b'Z' | b'X') {
            members.push(Member {
                pid,
                ppid,
                stat,
                zombie: true,
            });
            continue;
        }
        if let Err(e) = frozen.freeze_process(pid) {
            // It may have died between the children list and our seize: then it is a
            // zombie its frozen parent cannot reap.
            match proc::read_stat(pid) {
                Ok(stat) if stat.state == b'Z' => {
                    members.push(Member {
                        pid,
                        ppid,
                        stat,
                        zombie: true,
                    });
                    continue;
                }
                _ => return Err(e),
            }
        }
        let tids: Vec<Pid> = frozen.threads_of(pid).map(|t| t.tracee.tid()).collect();
        for tid in tids {
            for child in proc::children(pid, tid).pctx(pid)? {
                queue.push_back((child, pid));
            }
        }
        // Read again now that it is stopped: state and ids are final.
        let stat = proc::read_stat(pid).pctx(pid)?;
        members.push(Member {
            pid,
            ppid,
            stat,
            zombie: false,
        });
    }
    Ok(members)
}

/// Dumps the tree rooted at `opts.pid` into `opts.dir`.
pub fn dump(opts: &DumpOptions) -> Result<DumpStats> {
    let root = opts.pid;
    let root_stat = validate(opts)?;
    let dir = ImageDir::open(&opts.dir, true)?;
    let mut stats = DumpStats::default();

    let t_freeze = Instant::now();
    let mut frozen = Frozen::default();
    // Everything below may fail; `frozen` resumes the tree on drop if it does.
    let members = freeze_tree(root, &mut frozen)?;
    stats.freezing_us = elapsed_us(t_freeze);
    stats.processes = members.len();
    stats.threads = frozen.threads.len();
    log::info!(
        "froze {} processes ({} threads) in {} us",
        members.len(),
        frozen.threads.len(),
        stats.freezing_us
    );

    let mut files = FileTable::default();
    let written = collect_and_write(
        &dir, opts, &root_stat, &members, &frozen, &mut files, &mut stats,
    );
    if let Err(e) = written {
        // Nobody will restore through the links this dump made; the terminals get back
        // what was read out of them.
        files.undo();
        return Err(e);
    }

    if opts.leave_running {
        files.put_back();
        frozen.resume()?;
        log::info!("tree of {root} resumed (--leave-running)");
    } else {
        let t_kill = Instant::now();
        frozen.kill()?;
        log::info!(
            "tree of {root} killed after dump (gone after {} us)",
            elapsed_us(t_kill)
        );
    }
    stats.frozen_us = elapsed_us(t_freeze);
    Ok(stats)
}

/// Sessions and process groups must be restorable: their leaders are in the tree (alive
/// or zombie), or gone (the restore stands in a helper process for them), or, for a shell
/// job, they are the root's own session and group, which the restore joins. A leader alive
/// outside the tree cannot be recreated.
fn check_sessions(opts: &DumpOptions, root: &proc::Stat, members: &[Member]) -> Result<()> {
    let in_tree = |pid: Pid| members.iter().any(|m| m.pid == pid);
    // Whether the process `id` still leads that session (or group) outside the tree.
    let alive_outside = |id: Pid, session: bool| {
        !in_tree(id)
            && proc::read_stat(id).is_ok_and(|st| {
                st.state != b'Z'
                    && if session {
                        st.session == id
                    } else {
                        st.pgrp == id
                    }
            })
    };
    for m in members {
        let external_ok = |id: Pid, root_id: Pid| opts.shell_job && id == root_id;
        let (sid, pgid) = (m.stat.session, m.stat.pgrp);
        if !external_ok(sid, root.session) && alive_outside(sid, true) {
            return Err(DumpError::Unsupported {
                pid: m.pid,
                resource: format!("session {sid}"),
                reason: format!(
                    "its leader {sid} runs outside the dumped tree{}",
                    if m.pid == root.pid {
                        " (dump it as a shell job with --shell-job?)"
                    } else {
                        ""
                    }
                ),
            });
        }
        if !external_ok(pgid, root.pgrp) && alive_outside(pgid, false) {
            return Err(DumpError::Unsupported {
                pid: m.pid,
                resource: format!("process group {pgid}"),
                reason: format!("its leader {pgid} runs outside the dumped tree"),
            });
        }
        let gone = |id: Pid| {
            !in_tree(id) && !external_ok(id, if id == sid { root.session } else { root.pgrp })
        };
        if pgid != sid && gone(pgid) && gone(sid) {
            return Err(DumpError::Unsupported {
                pid: m.pid,
                resource: format!("process group {pgid}"),
                reason: format!(
                    "its leader is gone and so is the leader of its session {sid}: helper \
                     processes for both are not supported yet"
                ),
            });
        }
    }
    Ok(())
}

/// Ids of kernel objects a process may share with others (kcmp).
#[derive(Debug, Default)]
struct ObjectIds {
    next: u32,
    seen: Vec<(Pid, i32, u32)>,
}

const KCMP_FILES: i32 = 2;
const KCMP_FS: i32 = 3;
const KCMP_SIGHAND: i32 = 4;
const KCMP_VM: i32 = 1;

impl ObjectIds {
    /// The id of `pid`'s object of `kind`, shared with any earlier process that has the
    /// same one.
    fn id(&mut self, pid: Pid, kind: i32) -> (u32, Option<Pid>) {
        for &(other, k, id) in &self.seen {
            if k == kind && process::kcmp(pid, other, kind, 0, 0) == Ok(0) {
                return (id, Some(other));
            }
        }
        self.next += 1;
        self.seen.push((pid, kind, self.next));
        (self.next, None)
    }
}

fn collect_and_write(
    dir: &ImageDir,
    opts: &DumpOptions,
    root_stat: &proc::Stat,
    members: &[Member],
    frozen: &Frozen,
    files: &mut FileTable,
    stats: &mut DumpStats,
) -> Result<()> {
    let t_collect = Instant::now();
    // An earlier dump's inventory must not make a half-written dump look complete.
    dir.remove(&ImageKind::Inventory.file_name(0))?;
    check_sessions(opts, root_stat, members)?;

    let live: Vec<Pid> = members
        .iter()
        .filter(|m| !m.zombie)
        .map(|m| m.pid)
        .collect();
    files.find_ptys(&live)?;
    if opts.tcp_established && !opts.tcp_close {
        files.lock_connections(&live, opts.file_options())?;
    }
    let ipc_ns = crate::ipc::dump(dir, opts.pid, &live)?;
    let private_ipc = ipc_ns.is_some();
    files.capture_mqueues(&live, frozen, private_ipc)?;
    let no_sets = Vec::new();
    let sem_sets = ipc_ns.as_ref().map_or(&no_sets, |n| &n.sem_sets);
    let mut seccomp = task::SeccompTable::default();
    let mut cgroups = CgroupSets::default();
    let mut objects = ObjectIds::default();
    let mut pstree = Vec::new();
    let mut root_ids = None;
    let mut pages = PageImages {
        next_id: 1,
        shmem_dumped: HashSet::new(),
        private_vmas: HashMap::new(),
    };
    for m in members {
        let threads: Vec<u32> = if m.zombie {
            vec![m.pid as u32]
        } else {
            frozen
                .threads_of(m.pid)
                .map(|t| t.tracee.tid() as u32)
                .collect()
        };
        pstree.push(pb::PstreeEntry {
            pid: m.pid as u32,
            ppid: m.ppid as u32,
            pgid: m.stat.pgrp as u32,
            sid: m.stat.session as u32,
            threads,
        });
        if m.zombie {
            dump_zombie(dir, m)?;
            continue;
        }
        if m.pid == opts.pid
            && m.stat.ppid > 0
            && process::kcmp(m.pid, m.stat.ppid, KCMP_VM, 0, 0) == Ok(0)
        {
            // A vfork child runs on its parent's memory until it execs or exits.
            return Err(DumpError::Unsupported {
                pid: m.pid,
                resource: format!("address space shared with its parent {}", m.stat.ppid),
                reason: "the parent is outside the dumped tree (a vfork child before its exec?)"
                    .into(),
            });
        }
        let mut ids = process_ids(m.pid, m.ppid, &mut objects)?;
        if private_ipc {
            ids.ipc_ns_id = Some(crate::ipc::IPC_NS_ID);
        }
        if m.pid == opts.pid {
            root_ids = Some(ids.clone());
        }
        let collect = Collect {
            cgroups: &mut cgroups,
            files: &mut *files,
            seccomp: &mut seccomp,
            pages: &mut pages,
            sem_sets,
        };
        dump_process(dir, opts, m, frozen, collect, ids, stats)?;
    }
    if let Some(ns) = &ipc_ns {
        crate::ipc::give_back_last_pids(frozen, ns)?;
    }
    log::debug!("tree collected and written in {} us", elapsed_us(t_collect));

    let in_tree: Vec<Pid> = members.iter().map(|m| m.pid).collect();
    files.check_pidfds(&in_tree)?;
    for (pid, mut obj) in files.memfds.take_contents() {
        let written = pages::dump_shmem(dir, pid, &mut obj, pages.next())?;
        stats.pages_written += written / PAGE_SIZE;
    }
    files.write_data(dir)?;
    dir.write_all(ImageKind::Files, 0, &files.entries)?;
    dir.write_all(
        ImageKind::Cgroup,
        0,
        [&pb::CgroupEntry { sets: cgroups.sets }],
    )?;
    if !seccomp.filters.is_empty() {
        dir.write_all(
            ImageKind::Seccomp,
            0,
            [&pb::SeccompEntry {
                seccomp_filters: seccomp.filters,
            }],
        )?;
    }
    dir.write_all(ImageKind::Pstree, 0, &pstree)?;
    let stats_entry = pb::StatsEntry {
        dump: Some(pb::DumpStatsEntry {
            freezing_time: stats.freezing_us as u32,
            frozen_time: 0,
            memdump_time: stats.memdump_us as u32,
            memwrite_time: stats.memdump_us as u32,
            pages_scanned: stats.pages_scanned,
            pages_skipped_parent: 0,
            pages_written: stats.pages_written,
            pages_lazy: 0,
            ..Default::default()
        }),
        restore: None,
    };
    dir.write_all(ImageKind::Stats, 0, [&stats_entry])?;
    // The inventory goes last: its presence marks a complete dump.
    let inventory = pb::InventoryEntry {
        img_version: IMG_VERSION,
        fdinfo_per_id: Some(true),
        root_ids,
        ns_per_id: Some(true),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        dump_uptime: Some(process::boottime_ns() / 1000),
        tcp_close: opts.tcp_close.then_some(true),
        network_lock_method: Some(opts.network_lock.criu_code()),
        ..Default::default()
    };
    // What clients of connections waiting to be accepted sent can only be read by
    // accepting them, which the tree would notice: only done for a tree killed after
    // the dump (the dump refuses such connections with --leave-running), once every other
    // image is written.
    if files.takes_connections() {
        log::info!("accepting waiting unix connections to read what their clients sent");
    }
    files.write_socket_queues_and_inventory(dir, &inventory)?;
    Ok(())
}

/// The object ids of a process. An fd table or fs context shared with the parent (a
/// child made with CLONE_FILES / CLONE_FS) is rebuilt the same way; any other sharing
/// cannot be.
fn process_ids(pid: Pid, ppid: Pid, objects: &mut ObjectIds) -> Result<pb::TaskKobjIdsEntry> {
    let shared = |what: &str, other: Pid, reason: &str| DumpError::Unsupported {
        pid,
        resource: format!("{what} shared with process {other}"),
        reason: reason.into(),
    };
    let (vm_id, vm_other) = objects.id(pid, KCMP_VM);
    if let Some(o) = vm_other {
        return Err(shared(
            "address space",
            o,
            "processes sharing memory without being threads (CLONE_VM, as after vfork) are \
             not supported",
        ));
    }
    let with_parent = |kind: i32| ppid > 0 && process::kcmp(pid, ppid, kind, 0, 0) == Ok(0);
    let (files_id, files_other) = objects.id(pid, KCMP_FILES);
    if let Some(o) = files_other
        && !with_parent(KCMP_FILES)
    {
        return Err(shared(
            "fd table",
            o,
            "it is shared with a process that is not its parent (CLONE_FILES); only a table \
             shared with the parent can be rebuilt",
        ));
    }
    let (fs_id, fs_other) = objects.id(pid, KCMP_FS);
    if let Some(o) = fs_other
        && !with_parent(KCMP_FS)
    {
        return Err(shared(
            "cwd/root (fs)",
            o,
            "it is shared with a process that is not its parent (CLONE_FS); only an fs \
             context shared with the parent can be rebuilt",
        ));
    }
    let (sighand_id, _) = objects.id(pid, KCMP_SIGHAND);
    Ok(pb::TaskKobjIdsEntry {
        vm_id,
        files_id,
        fs_id,
        sighand_id,
        ..Default::default()
    })
}

/// A zombie keeps its pid, its place in the tree and its exit status until reaped.
fn dump_zombie(dir: &ImageDir, m: &Member) -> Result<()> {
    let core = pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        tc: Some(pb::TaskCoreEntry {
            task_state: task_state::ZOMBIE,
            exit_code: m.stat.exit_code as u32,
            comm: m.stat.comm.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    dir.write_all(ImageKind::Core, m.pid as u64, [&core])?;
    Ok(())
}

/// The cgroup sets of the dump (`cgroup.img`), by id.
#[derive(Debug, Default)]
struct CgroupSets {
    sets: Vec<pb::CgSetEntry>,
}

impl CgroupSets {
    /// The id of the set `pid` is a member of.
    fn id_of(&mut self, pid: Pid) -> Result<u32> {
        let ctls: Vec<pb::CgMemberEntry> = proc::read_cgroups(pid)
            .pctx(pid)?
            .into_iter()
            .map(|(name, path)| pb::CgMemberEntry {
                name,
                path,
                cgns_prefix: None,
            })
            .collect();
        if let Some(s) = self.sets.iter().find(|s| s.ctls == ctls) {
            return Ok(s.id);
        }
        let id = self.sets.len() as u32 + 1;
        self.sets.push(pb::CgSetEntry { id, ctls });
        Ok(id)
    }
}

/// What injected calls tell about a process and each of its threads.
type Looked<'t> = (
    Option<task::ProcessInside>,
    task::ThreadInside,
    Vec<(&'t FrozenThread, task::ThreadInside)>,
);

/// Looks inside the leader (process-wide state too) and every other thread.
fn look_inside_all<'t>(
    leader: &FrozenThread,
    others: Vec<&'t FrozenThread>,
    syscall_ip: u64,
    area: &stasis_sys::ptrace::RemoteArea,
) -> Result<Looked<'t>> {
    let t0 = Instant::now();
    let mut all = vec![leader];
    all.extend(others.iter().copied());
    let pending_overruns = task::capture_timer_overruns(&all, syscall_ip, area)?;
    let (mut inside, thread_inside) = task::look_inside(leader, true, syscall_ip, area)?;
    if let Some(inside) = inside.as_mut() {
        inside.pending_overruns = pending_overruns;
    }
    let mut out = Vec::with_capacity(others.len());
    for t in others {
        out.push((t, task::look_inside(t, false, syscall_ip, area)?.1));
    }
    log::debug!(
        "process {}: looked inside {} threads in {} us",
        leader.pid,
        out.len() + 1,
        elapsed_us(t0)
    );
    Ok((inside, thread_inside, out))
}

/// What the processes of a dump add to as they are collected.
struct Collect<'a> {
    cgroups: &'a mut CgroupSets,
    files: &'a mut FileTable,
    seccomp: &'a mut task::SeccompTable,
    pages: &'a mut PageImages,
    /// The semaphore sets of the tree's IPC namespace (id, values), for the processes'
    /// adjustments.
    sem_sets: &'a [(i32, Vec<u16>)],
}

/// The pages images of the whole dump.
struct PageImages {
    /// Id of the next pages image.
    next_id: u32,
    /// Shared memory objects already written (each once, whoever else maps it).
    shmem_dumped: HashSet<u64>,
    /// The private vmas of every process written so far (parents come before their
    /// children), to find the pages a child still shares with its parent.
    private_vmas: HashMap<Pid, Vec<pb::VmaEntry>>,
}

impl PageImages {
    fn next(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id - 1
    }
}

fn dump_process(
    dir: &ImageDir,
    opts: &DumpOptions,
    m: &Member,
    frozen: &Frozen,
    collect: Collect<'_>,
    ids: pb::TaskKobjIdsEntry,
    stats: &mut DumpStats,
) -> Result<()> {
    let file_opts = FileOptions {
        private_ipc: ids.ipc_ns_id.is_some(),
        ..opts.file_options()
    };
    let Collect {
        cgroups,
        files,
        seccomp,
        pages: page_images,
        sem_sets,
    } = collect;
    let pid = m.pid;
    let stat = &m.stat;
    let t_collect = Instant::now();
    let mut threads = frozen.threads_of(pid);
    let leader = threads
        .next()
        .ok_or_else(|| DumpError::Invalid(format!("process {pid}: no thread was frozen")))?;
    let syscall_ip = crate::freeze::syscall_ip(pid)?;
    let area = task::map_area(leader, syscall_ip)?;
    let looked = look_inside_all(leader, threads.by_ref().collect(), syscall_ip, &area);
    // Unmapped even if a look failed: a failed dump leaves the process as it was.
    task::unmap_area(leader, syscall_ip, area)?;
    let (inside, thread_inside, others) = looked?;
    let inside = inside.unwrap_or_default();
    let mut core = task::core_entry(leader, Some(&inside), &thread_inside, seccomp)?;
    if let Some(tc) = core.tc.as_mut() {
        if let Some(sig) = leader.group_stop {
            tc.task_state = task_state::STOPPED;
            tc.stop_signo = Some(sig as u32);
        }
        tc.cg_set = Some(cgroups.id_of(pid)?);
        tc.stasis_sem_undo = crate::ipc::sem_adjustments(leader, syscall_ip, sem_sets)?;
    }
    dir.write_all(ImageKind::Core, pid as u64, [&core])?;
    let (mut t_core, mut t_write) = (0, 0);
    for (t, thread_inside) in others {
        let t0 = Instant::now();
        let core = task::core_entry(t, None, &thread_inside, seccomp)?;
        t_core += elapsed_us(t0);
        let t0 = Instant::now();
        dir.write_all(ImageKind::Core, t.tracee.tid() as u64, [&core])?;
        t_write += elapsed_us(t0);
    }
    log::debug!(
        "process {pid}: other threads' cores: collected in {t_core} us, written in {t_write} us"
    );

    // A table shared with the parent (CLONE_FILES) was dumped with it.
    let fdinfos = if files.table_done(ids.files_id) {
        None
    } else {
        Some(files.dump_fds(dir, pid, ids.files_id, opts.file_options())?)
    };
    let parent = page_images
        .private_vmas
        .get(&m.ppid)
        .map(|vmas| memory::Parent { pid: m.ppid, vmas });
    let mut space = memory::collect(pid, files, file_opts, parent)?;
    let link = |name: &str| -> Result<String> {
        Ok(proc::read_link(proc::path(pid, name))
            .pctx(pid)?
            .to_string_lossy()
            .into_owned())
    };
    let dir_flags = (libc::O_RDONLY | libc::O_DIRECTORY) as u32;
    // A directory or program deleted while in use has no path: it is saved as a ghost.
    let mut linked_file = |name: &str, flags: u32| -> Result<u32> {
        let target = link(name)?;
        match target.strip_suffix(" (deleted)") {
            Some(gone) if !std::path::Path::new(&target).exists() => files.deleted_file(
                pid,
                proc::path(pid, name),
                gone,
                flags,
                format!("{name} ({target})"),
                opts.file_options(),
            ),
            _ => files.path_file(pid, &target, flags),
        }
    };
    let cwd_id = linked_file("cwd", dir_flags)?;
    let root_id = linked_file("root", dir_flags)?;
    let exe_id = linked_file("exe", libc::O_RDONLY as u32)?;
    let status = proc::read_status(pid).pctx(pid)?;
    let auxv = proc::auxv(pid).pctx(pid)?;
    log::debug!(
        "process {pid}: task state, {} fds and {} vmas ({} page runs) collected in {} us",
        fdinfos.as_ref().map_or(0, Vec::len),
        space.vmas.len(),
        space.runs.len(),
        elapsed_us(t_collect)
    );

    let t_mem = Instant::now();
    let pages_id = page_images.next();
    let pages_file = dir.rewrite_raw(&ImageKind::Pages.file_name(u64::from(pages_id)))?;
    let mut written = pages::copy_private_pages(pid, &space.runs, &pages_file)?;
    pages::write_pagemap(dir, pid, pages_id, &space.runs, &space.cow)?;
    let private = vma_status::ANON_PRIVATE | vma_status::FILE_PRIVATE;
    page_images.private_vmas.insert(
        pid,
        space
            .vmas
            .iter()
            .filter(|v| v.status & private != 0)
            .cloned()
            .collect(),
    );
    for obj in space.shmem.iter_mut() {
        if page_images.shmem_dumped.insert(obj.shmid) {
            written += pages::dump_shmem(dir, pid, obj, page_images.next())?;
        }
    }
    stats.memdump_us += elapsed_us(t_mem);
    stats.pages_written += written / PAGE_SIZE;
    stats.pages_scanned += space
        .vmas
        .iter()
        .filter(|v| v.status & vma_status::ANON_PRIVATE != 0)
        .map(|v| (v.end - v.start) / PAGE_SIZE)
        .sum::<u64>();
    let shared: u64 = space.cow.iter().map(memory::Run::len).sum();
    stats.pages_shared += shared / PAGE_SIZE;
    log::info!(
        "process {pid}: wrote {} MiB of pages in {} us ({} MiB shared with the parent)",
        written >> 20,
        elapsed_us(t_mem),
        shared >> 20
    );

    let mm = pb::MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: inside.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id: exe_id,
        mm_saved_auxv: auxv,
        vmas: std::mem::take(&mut space.vmas),
        dumpable: Some(inside.dumpable),
        aios: Vec::new(),
        thp_disabled: Some(inside.thp_disabled),
        stasis_vdso_size: Some(space.vdso_size),
        stasis_vvar_size: Some(space.vvar_size),
    };
    let id = pid as u64;
    dir.write_all(ImageKind::Ids, id, [&ids])?;
    dir.write_all(ImageKind::Mm, id, [&mm])?;
    if let Some(fdinfos) = &fdinfos {
        dir.write_all(ImageKind::Fdinfo, u64::from(ids.files_id), fdinfos)?;
    }
    dir.write_all(
        ImageKind::Fs,
        id,
        [&pb::FsEntry {
            cwd_id,
            root_id,
            umask: Some(status.umask),
        }],
    )?;
    Ok(())
}
