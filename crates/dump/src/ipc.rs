//! The SysV IPC objects of the tree's IPC namespace: shared memory segments (with their
//! contents), semaphore sets (values), message queues (messages, copied with `MSG_COPY`
//! so none is taken out), and the namespace's IPC sysctls, into `ipcns-{var,shm,sem,msg}-ID`
//! images.
//!
//! Only a namespace of the tree's own is saved (as CRIU does): the objects of the host's
//! namespace belong to everyone. `/proc/sysvipc/*` and the IPC sysctls show the namespace
//! of the reading thread, so a thread of ours enters it (`setns`) to read them.

use std::os::fd::AsFd;
use std::path::PathBuf;

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, fs, ipc, proc};

use crate::error::{DumpError, Result, SysContext};

/// The id the tree's IPC namespace gets in the images (`ids-PID.img` `ipc_ns_id`).
pub const IPC_NS_ID: u32 = 1;

/// The messages of a queue: type and bytes each.
type Messages = Vec<(i64, Vec<u8>)>;

/// What the IPC namespace holds.
#[derive(Debug, Default)]
struct Objects {
    var: Option<pb::IpcVarEntry>,
    shm: Vec<(pb::IpcShmEntry, Vec<u8>)>,
    sem: Vec<(pb::IpcSemEntry, Vec<u16>)>,
    msg: Vec<(pb::IpcMsgEntry, Messages)>,
}

/// The namespace link of `pid`.
fn ns_of(pid: Pid) -> Result<PathBuf> {
    proc::read_link(proc::path(pid, "ns/ipc")).map_err(|source| DumpError::Proc { pid, source })
}

/// What the rest of the dump needs to know of the tree's own IPC namespace.
#[derive(Debug, Default)]
pub struct Namespace {
    /// Semaphore sets: id and values, for finding each process's adjustments.
    pub sem_sets: Vec<(i32, Vec<u16>)>,
    /// The last pid of each semaphore of each set, to make it so again after the probes.
    pub sem_pids: Vec<(i32, Vec<i32>)>,
}

/// Whether the tree has an IPC namespace of its own (all its processes share it), and if
/// so saves its objects.
pub fn dump(dir: &ImageDir, root: Pid, live: &[Pid]) -> Result<Option<Namespace>> {
    let ns = ns_of(root)?;
    for &pid in live {
        let other = ns_of(pid)?;
        if other != ns {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("IPC namespace {}", other.display()),
                reason: format!(
                    "it is not the root's ({}): processes of one tree in several IPC \
                     namespaces are not supported",
                    ns.display()
                ),
            });
        }
    }
    let ours = proc::read_link(PathBuf::from("/proc/self/ns/ipc"))
        .map_err(|source| DumpError::Proc { pid: root, source })?;
    if ns == ours {
        return Ok(None);
    }
    // The keys segments were created with, as their attaches show them ("/SYSV%08x").
    let mut creation_keys = std::collections::HashMap::new();
    for &pid in live {
        for v in proc::read_maps(pid).map_err(|source| DumpError::Proc { pid, source })? {
            if let proc::VmaPath::File { path, .. } = &v.path
                && let Some(key) = path.strip_prefix("/SYSV")
                && let Ok(key) = u32::from_str_radix(key, 16)
            {
                creation_keys.insert(v.inode, key);
            }
        }
    }
    let mut objects = in_namespace(root, || collect(root))?;
    for (e, _) in &mut objects.shm {
        if let Some(d) = &e.desc
            && d.key == 0
        {
            e.stasis_creation_key = creation_keys.get(&u64::from(d.id)).copied();
        }
    }
    write(dir, &objects)?;
    Ok(Some(Namespace {
        sem_sets: objects
            .sem
            .iter()
            .filter_map(|(e, v)| Some((e.desc.as_ref()?.id as i32, v.clone())))
            .collect(),
        sem_pids: objects
            .sem
            .iter()
            .filter_map(|(e, _)| Some((e.desc.as_ref()?.id as i32, e.stasis_pids.clone())))
            .collect(),
    }))
}

/// Runs `f` in a thread of ours that has entered the IPC namespace of `root` (a thread's
/// namespace is its own: the rest of stasis stays where it is).
pub(crate) fn in_namespace<T: Send>(root: Pid, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = fs::open(
                &proc::path(root, "ns/ipc"),
                libc::O_RDONLY | libc::O_CLOEXEC,
                0,
            )
            .ctx(root, || "open its IPC namespace".into())?;
            ipc::setns(ns.as_fd(), libc::CLONE_NEWIPC)
                .ctx(root, || "enter its IPC namespace".into())?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(DumpError::Invalid("an IPC namespace thread failed".into())))
    })
}

/// The rows of `/proc/sysvipc/NAME` (of our thread's namespace), as numbers.
fn rows(pid: Pid, name: &str) -> Result<Vec<Vec<i64>>> {
    let path = PathBuf::from(format!("/proc/sysvipc/{name}"));
    let text = proc::read_text(path.clone()).map_err(|source| DumpError::Proc { pid, source })?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut row = Vec::new();
        for (i, w) in line.split_whitespace().enumerate() {
            // The third column (perms) is octal.
            let v = if i == 2 {
                i64::from_str_radix(w, 8)
            } else {
                w.parse()
            };
            row.push(v.map_err(|_| DumpError::Proc {
                pid,
                source: proc::ProcError::Format {
                    path: path.clone(),
                    detail: format!("bad value {w:?}"),
                },
            })?);
        }
        out.push(row);
    }
    Ok(out)
}

fn sysctl(pid: Pid, name: &str) -> Result<Vec<u64>> {
    let path = PathBuf::from(format!("/proc/sys/{name}"));
    let text = proc::read_text(path.clone()).map_err(|source| DumpError::Proc { pid, source })?;
    // Values may be as big as u64 (shmmax) or -1 (the next_id ones).
    Ok(text
        .split_whitespace()
        .filter_map(|w| {
            w.parse::<u64>()
                .ok()
                .or_else(|| w.parse::<i64>().ok().map(|v| v as u64))
        })
        .collect())
}

fn one(pid: Pid, name: &str) -> Result<u64> {
    Ok(sysctl(pid, name)?.first().copied().unwrap_or(0))
}

fn desc(id: i64, key: i64, ids: [u32; 4], mode: u32) -> pb::IpcDescEntry {
    pb::IpcDescEntry {
        key: key as u32,
        uid: ids[0],
        gid: ids[1],
        cuid: ids[2],
        cgid: ids[3],
        mode,
        id: id as u32,
    }
}

/// Reads every object of the namespace our thread is in.
fn collect(pid: Pid) -> Result<Objects> {
    let mut o = Objects::default();
    let next = |name: &str| -> Result<Option<u32>> {
        Ok(Some(one(pid, &format!("kernel/{name}"))? as u32))
    };
    o.var = Some(pb::IpcVarEntry {
        sem_ctls: sysctl(pid, "kernel/sem")?
            .iter()
            .map(|v| *v as u32)
            .collect(),
        msg_ctlmax: one(pid, "kernel/msgmax")? as u32,
        msg_ctlmnb: one(pid, "kernel/msgmnb")? as u32,
        msg_ctlmni: one(pid, "kernel/msgmni")? as u32,
        auto_msgmni: 0,
        shm_ctlmax: one(pid, "kernel/shmmax")?,
        shm_ctlall: one(pid, "kernel/shmall")?,
        shm_ctlmni: one(pid, "kernel/shmmni")? as u32,
        shm_rmid_forced: one(pid, "kernel/shm_rmid_forced")? as u32,
        mq_queues_max: one(pid, "fs/mqueue/queues_max")? as u32,
        mq_msg_max: one(pid, "fs/mqueue/msg_max")? as u32,
        mq_msgsize_max: one(pid, "fs/mqueue/msgsize_max")? as u32,
        mq_msg_default: Some(one(pid, "fs/mqueue/msg_default")? as u32),
        mq_msgsize_default: Some(one(pid, "fs/mqueue/msgsize_default")? as u32),
        msg_next_id: next("msg_next_id")?,
        sem_next_id: next("sem_next_id")?,
        shm_next_id: next("shm_next_id")?,
    });
    // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime ...
    for row in rows(pid, "shm")? {
        let (key, id) = (row[0], row[1] as i32);
        let st = ipc::shm_stat(id).ctx(pid, || format!("SysV shm {id}: IPC_STAT"))?;
        let data = ipc::shm_read(id, st.size as usize)
            .ctx(pid, || format!("SysV shm {id}: read its contents"))?;
        o.shm.push((
            pb::IpcShmEntry {
                desc: Some(desc(i64::from(id), key, st.ids, st.mode)),
                size: st.size,
                in_pagemaps: None,
                hugetlb_flag: None,
                stasis_creation_key: None,
            },
            data,
        ));
    }
    // key semid perms nsems uid gid cuid cgid otime ctime
    for row in rows(pid, "sem")? {
        let (key, id) = (row[0], row[1] as i32);
        let (ids, mode, nsems) =
            ipc::sem_stat(id).ctx(pid, || format!("SysV semaphores {id}: IPC_STAT"))?;
        let values = ipc::sem_values(id, nsems as usize)
            .ctx(pid, || format!("SysV semaphores {id}: GETALL"))?;
        let mut pids = Vec::new();
        for n in 0..nsems as i32 {
            pids.push(ipc::sem_pid(id, n).ctx(pid, || format!("SysV semaphores {id}: GETPID"))?);
        }
        o.sem.push((
            pb::IpcSemEntry {
                desc: Some(desc(i64::from(id), key, ids, mode)),
                nsems,
                stasis_pids: pids,
            },
            values,
        ));
    }
    // key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime
    let max = one(pid, "kernel/msgmax")? as usize;
    for row in rows(pid, "msg")? {
        let (key, id) = (row[0], row[1] as i32);
        let (ids, mode, qbytes, qnum, _) =
            ipc::msg_stat(id).ctx(pid, || format!("SysV message queue {id}: IPC_STAT"))?;
        let mut msgs = Vec::new();
        for n in 0..qnum as usize {
            msgs.push(
                ipc::msg_copy(id, n, max)
                    .ctx(pid, || format!("SysV message queue {id}: copy message {n}"))?,
            );
        }
        o.msg.push((
            pb::IpcMsgEntry {
                desc: Some(desc(i64::from(id), key, ids, mode)),
                qbytes: qbytes as u32,
                qnum: qnum as u32,
            },
            msgs,
        ));
    }
    Ok(o)
}

fn padded(bytes: &[u8], to: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().next_multiple_of(to), 0);
    v
}

fn write(dir: &ImageDir, o: &Objects) -> Result<()> {
    let id = u64::from(IPC_NS_ID);
    if let Some(var) = &o.var {
        dir.write_all(ImageKind::IpcVar, id, [var])?;
    }
    let mut w = dir.create(ImageKind::IpcShm, id)?;
    for (e, data) in &o.shm {
        w.write(e)?;
        w.write_raw(&padded(data, 4))?;
    }
    w.finish()?;
    let mut w = dir.create(ImageKind::IpcSem, id)?;
    for (e, values) in &o.sem {
        w.write(e)?;
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_raw(&padded(&raw, 8))?;
    }
    w.finish()?;
    let mut w = dir.create(ImageKind::IpcMsg, id)?;
    for (e, msgs) in &o.msg {
        w.write(e)?;
        for (mtype, data) in msgs {
            w.write(&pb::IpcMsg {
                mtype: *mtype as u64,
                msize: data.len() as u32,
            })?;
            w.write_raw(&padded(data, 8))?;
        }
    }
    w.finish()?;
    Ok(())
}

/// Finds the process's SysV semaphore adjustments (`SEM_UNDO`), which the kernel shows
/// nowhere, by probing from inside it (calls injected through its stopped `leader`).
///
/// A `semop` of `+d` with `SEM_UNDO` fails with ERANGE exactly when the adjustment would
/// go below -32768, and one that succeeds is taken back by a `-d` with `SEM_UNDO`. With the
/// value brought to 0 first (an operation without `SEM_UNDO`, which leaves adjustments
/// alone), the largest `d` that succeeds is `adj + 32768`; adjustments from -1 up are
/// first shifted down by known `SEM_UNDO` operations of 16384. Everything is undone, the
/// value put back; only the semaphore's last pid and times are those of the probes (the
/// restore sets the last pid again).
pub fn sem_adjustments(
    leader: &crate::freeze::FrozenThread,
    syscall_ip: u64,
    sets: &[(i32, Vec<u16>)],
) -> Result<Vec<pb::SemUndoEntry>> {
    let pid = leader.pid;
    let mut out = Vec::new();
    if sets.is_empty() {
        return Ok(out);
    }
    let mut inj = stasis_sys::ptrace::Injector::new(&leader.tracee, leader.regs, syscall_ip);
    let mut found = Ok(());
    'sets: for (semid, values) in sets {
        for (n, &v0) in values.iter().enumerate() {
            match adjustment(&mut inj, *semid, n as u16, i32::from(v0)) {
                Ok(0) => {}
                Ok(adj) => out.push(pb::SemUndoEntry {
                    semid: *semid as u32,
                    num: n as u32,
                    adj,
                }),
                Err(errno) => {
                    found = Err(DumpError::Sys {
                        pid,
                        what: format!(
                            "find the SEM_UNDO adjustment of semaphore {n} of set {semid}"
                        ),
                        errno,
                    });
                    break 'sets;
                }
            }
        }
    }
    // Registers back even if a probe failed: the process must stay as it was.
    inj.finish().ctx(pid, || "restore registers".into())?;
    found.map(|()| out)
}

const SEMVMX: i32 = 32767;
const SHIFT: i32 = 16384;

/// One injected `semop` of `op` on semaphore `n`, with `SEM_UNDO` if `undo`; `Ok(false)`
/// for ERANGE (or EAGAIN).
fn semop(
    inj: &mut stasis_sys::ptrace::Injector<'_>,
    semid: i32,
    n: u16,
    op: i32,
    undo: bool,
) -> stasis_sys::Result<bool> {
    let flags = libc::IPC_NOWAIT as i16 | if undo { libc::SEM_UNDO as i16 } else { 0 };
    let mut sembuf = Vec::with_capacity(6);
    sembuf.extend_from_slice(&n.to_ne_bytes());
    sembuf.extend_from_slice(&(op as i16).to_ne_bytes());
    sembuf.extend_from_slice(&flags.to_ne_bytes());
    match inj.syscall_in(
        stasis_sys::abi::nr::SEMOP,
        [semid as u64, 0, 1, 0, 0, 0],
        1,
        &sembuf,
    ) {
        Ok(_) => Ok(true),
        Err(stasis_sys::Errno(libc::ERANGE | libc::EAGAIN)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `+d` with `SEM_UNDO` succeeds (value 0): taken back at once if it does.
fn fits(
    inj: &mut stasis_sys::ptrace::Injector<'_>,
    semid: i32,
    n: u16,
    d: i32,
) -> stasis_sys::Result<bool> {
    if !semop(inj, semid, n, d, true)? {
        return Ok(false);
    }
    semop(inj, semid, n, -d, true)?;
    Ok(true)
}

/// The largest `d` in `[0, SEMVMX]` that [`fits`].
fn largest_fit(
    inj: &mut stasis_sys::ptrace::Injector<'_>,
    semid: i32,
    n: u16,
    guess: i32,
) -> stasis_sys::Result<i32> {
    if fits(inj, semid, n, SEMVMX)? {
        return Ok(SEMVMX);
    }
    // The likely answer first (no adjustment), then bisection.
    if fits(inj, semid, n, guess)? && !fits(inj, semid, n, guess + 1)? {
        return Ok(guess);
    }
    let (mut lo, mut hi) = (0, SEMVMX); // fits(lo) (0 always does), !fits(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(inj, semid, n, mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The adjustment of semaphore `n` (value `v0`) of this process.
fn adjustment(
    inj: &mut stasis_sys::ptrace::Injector<'_>,
    semid: i32,
    n: u16,
    v0: i32,
) -> stasis_sys::Result<i32> {
    if v0 > 0 {
        semop(inj, semid, n, -v0, false)?;
    }
    let mut shifts = 0;
    let result = (|| -> stasis_sys::Result<i32> {
        loop {
            // After `shifts` shifts, the largest fit is adj - shifts * SHIFT + 32768 (at
            // most SEMVMX).
            // Without an adjustment, the largest fit would be this.
            let guess = (32768 - shifts * SHIFT).clamp(0, SEMVMX);
            let best = largest_fit(inj, semid, n, guess)?;
            // Two shifts bring every adjustment (at most 32767) below -1.
            if best < SEMVMX || shifts == 2 {
                return Ok(best - 32768);
            }
            // adj >= -1 + shifts * SHIFT: shift it down.
            semop(inj, semid, n, SHIFT, true)?;
            semop(inj, semid, n, -SHIFT, false)?;
            shifts += 1;
        }
    })();
    for _ in 0..shifts {
        let _ = semop(inj, semid, n, SHIFT, false);
        let _ = semop(inj, semid, n, -SHIFT, true);
    }
    if v0 > 0 {
        let _ = semop(inj, semid, n, v0, false);
    }
    result.map(|a| a + shifts * SHIFT)
}

/// After the probes of [`sem_adjustments`], makes each semaphore's last pid what it was
/// (for a tree that goes on running), with an operation that leaves the value, injected
/// into that process (if it is one of the tree).
pub fn give_back_last_pids(frozen: &crate::freeze::Frozen, ns: &Namespace) -> Result<()> {
    for ((semid, pids), (_, values)) in ns.sem_pids.iter().zip(&ns.sem_sets) {
        for (n, &owner) in pids.iter().enumerate() {
            let Some(leader) = frozen.threads_of(owner).next() else {
                continue;
            };
            let syscall_ip = crate::freeze::syscall_ip(owner)?;
            let mut inj =
                stasis_sys::ptrace::Injector::new(&leader.tracee, leader.regs, syscall_ip);
            let step: i16 = if values.get(n).copied().unwrap_or(0) >= SEMVMX as u16 {
                -1
            } else {
                1
            };
            let nowait = libc::IPC_NOWAIT as i16;
            let mut ops = Vec::with_capacity(12);
            for (op, flg) in [(step, nowait), (-step, nowait)] {
                ops.extend_from_slice(&(n as u16).to_ne_bytes());
                ops.extend_from_slice(&op.to_ne_bytes());
                ops.extend_from_slice(&flg.to_ne_bytes());
            }
            let done = inj.syscall_in(
                stasis_sys::abi::nr::SEMOP,
                [*semid as u64, 0, 2, 0, 0, 0],
                1,
                &ops,
            );
            inj.finish().ctx(owner, || "restore registers".into())?;
            done.ctx(owner, || {
                format!("semaphore {n} of set {semid}: become its last pid again")
            })?;
        }
    }
    Ok(())
}
