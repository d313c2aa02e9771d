//! The tree's IPC namespace: made new for the root (`CLONE_NEWIPC`), which creates every
//! SysV object again with its id (the `*_next_id` sysctls name the id the next object
//! gets), key, owner, mode and contents before anything else, so its memory and its
//! children's can attach the segments. Segments that were removed while attached
//! (`SHM_DEST`) are removed again once every process has attached them, and the processes
//! that last operated on a semaphore do so again, so `GETPID` names them.

use std::path::PathBuf;

use stasis_images::{ImageDir, ImageKind, pb};
use stasis_sys::{Pid, ipc};

use crate::error::{RestoreError, Result, SysContext, invalid};
use crate::image::Images;

/// `SHM_DEST` in a segment's mode: removed, alive while attached.
const SHM_DEST: u32 = 0o1000;

/// The messages of a queue: type and bytes each.
type Messages = Vec<(u64, Vec<u8>)>;

/// The objects of the tree's IPC namespace.
#[derive(Debug, Default)]
pub struct IpcImages {
    var: Option<pb::IpcVarEntry>,
    shm: Vec<(pb::IpcShmEntry, Vec<u8>)>,
    sem: Vec<(pb::IpcSemEntry, Vec<u16>)>,
    msg: Vec<(pb::IpcMsgEntry, Messages)>,
}

fn desc<'a>(file: &str, d: Option<&'a pb::IpcDescEntry>) -> Result<&'a pb::IpcDescEntry> {
    d.ok_or_else(|| invalid(file.to_owned(), "an object without its description"))
}

/// The message queues of the tree, with their contents: the description entries that
/// carry them.
fn mqueues(
    images: &Images,
) -> impl Iterator<Item = (&pb::StasisMqueueEntry, &pb::StasisMqueueQueue)> {
    images
        .files
        .values()
        .filter_map(|f| f.stasis_mqueue.as_ref())
        .filter_map(|e| e.queue.as_ref().map(|q| (e, q)))
}

/// Registers the message queue notifications process `p` had (last of its setup: closing
/// any fd of a queue drops the closer's notification).
pub fn register_mq_notifications(images: &Images, p: &crate::image::ProcessImage) -> Result<()> {
    let pid = p.pid();
    for (e, q) in mqueues(images) {
        let Some(n) = q.notify.as_ref().filter(|n| n.pid == pid) else {
            continue;
        };
        let fd = p
            .fds
            .iter()
            .find(|f| {
                images
                    .files
                    .get(&f.id)
                    .and_then(|f| f.stasis_mqueue.as_ref())
                    .is_some_and(|m| m.queue_id == e.queue_id)
            })
            .ok_or_else(|| {
                invalid(
                    "files.img",
                    format!(
                        "process {pid} is registered on queue {} but has no fd of it",
                        e.name
                    ),
                )
            })?;
        let ev = ipc::sigevent_bytes(n.notify, n.signo, n.value);
        ipc::mq_notify_fd(fd.fd as i32, &ev).ctx(pid, || {
            format!(
                "fd {}: register the notification of queue {}",
                fd.fd, e.name
            )
        })?;
    }
    Ok(())
}

/// The flags the root is forked with for its IPC namespace.
pub fn root_clone_flags(images: &Images) -> u64 {
    if images.ipc.is_some() {
        libc::CLONE_NEWIPC as u64
    } else {
        0
    }
}

/// Reads the `ipcns-*-ID` images of namespace `id`.
pub fn load(dir: &ImageDir, id: u32) -> Result<IpcImages> {
    let id = u64::from(id);
    let mut out = IpcImages {
        var: dir.read_one(ImageKind::IpcVar, id).ok(),
        ..Default::default()
    };
    if let Some(mut r) = dir.open_optional(ImageKind::IpcShm, id)? {
        while let Some(e) = r.next::<pb::IpcShmEntry>()? {
            desc(r.file(), e.desc.as_ref())?;
            let mut data = r.read_payload(e.size.next_multiple_of(4))?;
            data.truncate(e.size as usize);
            out.shm.push((e, data));
        }
    }
    if let Some(mut r) = dir.open_optional(ImageKind::IpcSem, id)? {
        while let Some(e) = r.next::<pb::IpcSemEntry>()? {
            desc(r.file(), e.desc.as_ref())?;
            let raw = r.read_payload(e.payload_len())?;
            let values = e.values(&raw);
            out.sem.push((e, values));
        }
    }
    if let Some(mut r) = dir.open_optional(ImageKind::IpcMsg, id)? {
        while let Some(e) = r.next::<pb::IpcMsgEntry>()? {
            desc(r.file(), e.desc.as_ref())?;
            let mut msgs = Vec::new();
            for _ in 0..e.qnum {
                let m: pb::IpcMsg = r.expect()?;
                let mut data = r.read_payload(u64::from(m.msize).next_multiple_of(8))?;
                data.truncate(m.msize as usize);
                msgs.push((m.mtype, data));
            }
            out.msg.push((e, msgs));
        }
    }
    Ok(out)
}

fn write_sysctl(pid: Pid, name: &str, value: &str) -> Result<()> {
    std::fs::write(PathBuf::from(format!("/proc/sys/{name}")), value)
        .map_err(|e| RestoreError::Other(format!("process {pid}: set {name} to {value}: {e}")))
}

/// Creates every object of the namespace, from the root restore process, in the new
/// namespace it was forked into.
pub fn create(images: &Images, pid: Pid) -> Result<()> {
    let Some(ns) = &images.ipc else {
        return Ok(());
    };
    if let Some(v) = &ns.var {
        let limits = [
            ("kernel/msgmax", v.msg_ctlmax.to_string()),
            ("kernel/msgmnb", v.msg_ctlmnb.to_string()),
            ("kernel/msgmni", v.msg_ctlmni.to_string()),
            ("kernel/shmmax", v.shm_ctlmax.to_string()),
            ("kernel/shmall", v.shm_ctlall.to_string()),
            ("kernel/shmmni", v.shm_ctlmni.to_string()),
            ("kernel/shm_rmid_forced", v.shm_rmid_forced.to_string()),
            ("fs/mqueue/queues_max", v.mq_queues_max.to_string()),
            ("fs/mqueue/msg_max", v.mq_msg_max.to_string()),
            ("fs/mqueue/msgsize_max", v.mq_msgsize_max.to_string()),
        ];
        for (name, value) in &limits {
            write_sysctl(pid, name, value)?;
        }
        if v.sem_ctls.len() == 4 {
            let sem: Vec<String> = v.sem_ctls.iter().map(u32::to_string).collect();
            write_sysctl(pid, "kernel/sem", &sem.join(" "))?;
        }
    }
    for (e, data) in &ns.shm {
        let d = e.desc.as_ref().expect("checked at load");
        write_sysctl(pid, "kernel/shm_next_id", &d.id.to_string())?;
        // A segment removed while attached is made under the key it had, which its attaches
        // show, and removed again later.
        let key = if d.mode & SHM_DEST != 0 {
            e.stasis_creation_key.unwrap_or(d.key)
        } else {
            d.key
        };
        let what = || format!("create SysV shm {} (key {key:#x})", d.id);
        let got = ipc::shm_create(key as i32, e.size as usize, d.mode, data).ctx(pid, what)?;
        check_id(pid, "shm", d.id, got)?;
        ipc::shm_set(got, d.uid, d.gid, d.mode, false).ctx(pid, what)?;
    }
    for (e, values) in &ns.sem {
        let d = e.desc.as_ref().expect("checked at load");
        write_sysctl(pid, "kernel/sem_next_id", &d.id.to_string())?;
        let what = || format!("create SysV semaphores {} (key {:#x})", d.id, d.key);
        let got = ipc::sem_create(d.key as i32, d.mode, values).ctx(pid, what)?;
        check_id(pid, "semaphore set", d.id, got)?;
        ipc::sem_set(got, d.uid, d.gid, d.mode).ctx(pid, what)?;
    }
    for (e, msgs) in &ns.msg {
        let d = e.desc.as_ref().expect("checked at load");
        write_sysctl(pid, "kernel/msg_next_id", &d.id.to_string())?;
        let what = || format!("create SysV message queue {} (key {:#x})", d.id, d.key);
        let got = ipc::msg_create(d.key as i32, d.mode).ctx(pid, what)?;
        check_id(pid, "message queue", d.id, got)?;
        ipc::msg_set(got, d.uid, d.gid, d.mode, u64::from(e.qbytes)).ctx(pid, what)?;
        for (mtype, data) in msgs {
            ipc::msg_send(got, *mtype as i64, data).ctx(pid, what)?;
        }
    }
    for (e, q) in mqueues(images) {
        let what = || format!("create message queue {}", e.name);
        let fd = ipc::mq_open(
            e.name.trim_start_matches('/'),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            q.mode & 0o7777,
            Some((q.maxmsg, q.msgsize)),
        )
        .ctx(pid, what)?;
        for m in &q.messages {
            ipc::mq_put(std::os::fd::AsFd::as_fd(&fd), m.prio, &m.data).ctx(pid, what)?;
        }
        let _ = stasis_sys::fs::chown_fd(std::os::fd::AsFd::as_fd(&fd), q.uid, q.gid);
    }
    if let Some(v) = &ns.var {
        // Last: creating the objects used these up (each goes back to -1, "none", when
        // used, and cannot be written so).
        for (name, next) in [
            ("kernel/shm_next_id", v.shm_next_id),
            ("kernel/sem_next_id", v.sem_next_id),
            ("kernel/msg_next_id", v.msg_next_id),
        ] {
            if let Some(n) = next.filter(|n| *n as i32 >= 0) {
                write_sysctl(pid, name, &n.to_string())?;
            }
        }
    }
    Ok(())
}

fn check_id(pid: Pid, what: &str, want: u32, got: i32) -> Result<()> {
    if got as u32 == want {
        return Ok(());
    }
    Err(RestoreError::Unsupported {
        pid,
        resource: format!("SysV {what} {want}"),
        reason: format!("the kernel gave it id {got}"),
    })
}

/// The size a segment's attach spans (its size in whole pages), if `shmid` is one.
pub fn segment_len(images: &Images, shmid: u64) -> Option<u64> {
    images.ipc.as_ref()?.shm.iter().find_map(|(e, _)| {
        let d = e.desc.as_ref()?;
        (u64::from(d.id) == shmid).then(|| e.size.next_multiple_of(stasis_images::PAGE_SIZE))
    })
}

/// Once every process has attached its segments (after the barrier), removes those that
/// were removed while attached, from the root.
pub fn remove_destroyed(images: &Images, pid: Pid) -> Result<()> {
    let Some(ns) = &images.ipc else {
        return Ok(());
    };
    for (e, _) in &ns.shm {
        let d = e.desc.as_ref().expect("checked at load");
        if d.mode & SHM_DEST != 0 {
            ipc::shm_set(d.id as i32, 0, 0, 0, true)
                .ctx(pid, || format!("remove SysV shm {} again", d.id))?;
        }
    }
    Ok(())
}

/// Gives process `p` its semaphore adjustments (`SEM_UNDO`) back: an operation with
/// `SEM_UNDO` and its opposite without, at once, leaves the value and sets the adjustment.
pub fn restore_undo(images: &Images, p: &crate::image::ProcessImage) -> Result<()> {
    if images.ipc.is_none() {
        return Ok(());
    }
    let pid = p.pid();
    for u in &p.tc().stasis_sem_undo {
        let (n, adj) = (u.num as u16, u.adj as i16);
        let nowait = libc::IPC_NOWAIT as i16;
        let undo = nowait | libc::SEM_UNDO as i16;
        // The order keeps the value in range in between.
        let ops = if adj > 0 {
            [(n, adj, nowait), (n, -adj, undo)]
        } else {
            [(n, -adj, undo), (n, adj, nowait)]
        };
        ipc::sem_op(u.semid as i32, &ops).ctx(pid, || {
            format!("semaphore {n} of set {}: adjustment {adj}", u.semid)
        })?;
    }
    Ok(())
}

/// Makes `pid` the last to have operated on the semaphores it was the last on.
pub fn touch_semaphores(images: &Images, pid: Pid) -> Result<()> {
    let Some(ns) = &images.ipc else {
        return Ok(());
    };
    for (e, values) in &ns.sem {
        let d = e.desc.as_ref().expect("checked at load");
        for (n, _) in e.stasis_pids.iter().enumerate().filter(|(_, p)| **p == pid) {
            // Up and down (or down and up at the maximum), atomically: the value stays,
            // the last pid is ours.
            let step = if values.get(n).copied().unwrap_or(0) >= 32767 {
                -1
            } else {
                1
            };
            let n = n as u16;
            let nowait = libc::IPC_NOWAIT as i16;
            ipc::sem_op(d.id as i32, &[(n, step, nowait), (n, -step, nowait)]).ctx(pid, || {
                format!("semaphore {n} of set {}: become its last pid", d.id)
            })?;
        }
    }
    Ok(())
}
