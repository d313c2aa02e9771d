//! SysV IPC: shared memory segments, semaphore sets and message queues, read and made
//! again with their ids, and the namespace they live in.

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::{Errno, Result};

/// Moves the calling thread into the namespace `ns` (an fd of `/proc/PID/ns/...`) of
/// kind `nstype` (`CLONE_NEWIPC`, ...).
pub fn setns(ns: BorrowedFd<'_>, nstype: i32) -> Result<()> {
    // SAFETY: integer arguments.
    Errno::result(unsafe { libc::setns(ns.as_raw_fd(), nstype) }.into()).map(drop)
}

/// `IPC_STAT` of a shared memory segment: (uid, gid, cuid, cgid, mode, size, nattch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShmStat {
    /// Owner uid, gid; creator uid, gid.
    pub ids: [u32; 4],
    /// Mode, with `SHM_DEST` / `SHM_LOCKED`.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Attaches.
    pub nattch: u64,
}

/// `shmctl(id, IPC_STAT)`.
pub fn shm_stat(id: i32) -> Result<ShmStat> {
    // SAFETY: an all-zero shmid_ds is a valid value to be overwritten.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds.
    let r = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    Errno::result(r.into())?;
    let p = &ds.shm_perm;
    Ok(ShmStat {
        ids: [p.uid, p.gid, p.cuid, p.cgid],
        mode: u32::from(p.mode),
        size: ds.shm_segsz as u64,
        nattch: ds.shm_nattch,
    })
}

/// Copies `len` bytes of segment `id` (attached read-only for the moment, detached again).
pub fn shm_read(id: i32, len: usize) -> Result<Vec<u8>> {
    // SAFETY: shmat with a null address lets the kernel choose a free range.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
    if addr as isize == -1 {
        return Err(Errno::last());
    }
    let mut out = vec![0u8; len];
    // SAFETY: the segment is mapped at `addr` for at least `len` bytes (its size) until
    // the shmdt below; nothing else maps it in our process.
    unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), out.as_mut_ptr(), len) };
    // SAFETY: `addr` is the attach made above.
    unsafe { libc::shmdt(addr) };
    Ok(out)
}

/// Creates segment `key` of `size` bytes with `mode` (`IPC_CREAT | IPC_EXCL`, or a new
/// private one for key 0) and fills it with `data`; returns its id.
pub fn shm_create(key: i32, size: usize, mode: u32, data: &[u8]) -> Result<i32> {
    let flags = (mode & 0o777) as i32 | libc::IPC_CREAT | libc::IPC_EXCL;
    // SAFETY: integer arguments.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id < 0 {
        return Err(Errno::last());
    }
    if !data.is_empty() {
        // SAFETY: shmat with a null address lets the kernel choose a free range.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if addr as isize == -1 {
            return Err(Errno::last());
        }
        let n = data.len().min(size);
        // SAFETY: the new segment is mapped writable at `addr` for `size` bytes until the
        // shmdt below.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr.cast::<u8>(), n) };
        // SAFETY: `addr` is the attach made above.
        unsafe { libc::shmdt(addr) };
    }
    Ok(id)
}

/// `shmctl(id, IPC_SET)` of owner and mode, or `IPC_RMID` when `remove`.
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32, remove: bool) -> Result<()> {
    if remove {
        // SAFETY: IPC_RMID ignores the buffer.
        let r = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        return Errno::result(r.into()).map(drop);
    }
    // SAFETY: an all-zero shmid_ds is valid; IPC_SET reads uid, gid and mode.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as u16;
    // SAFETY: IPC_SET reads one shmid_ds.
    let r = unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) };
    Errno::result(r.into()).map(drop)
}

/// `IPC_STAT` of a semaphore set: (uid, gid, cuid, cgid), mode, nsems.
pub fn sem_stat(id: i32) -> Result<([u32; 4], u32, u32)> {
    // SAFETY: an all-zero semid_ds is a valid value to be overwritten.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one semid_ds through the pointer argument.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds) };
    Errno::result(r.into())?;
    let p = &ds.sem_perm;
    Ok((
        [p.uid, p.gid, p.cuid, p.cgid],
        u32::from(p.mode),
        ds.sem_nsems as u32,
    ))
}

/// The values of every semaphore of a set (`GETALL`).
pub fn sem_values(id: i32, nsems: usize) -> Result<Vec<u16>> {
    let mut v = vec![0u16; nsems];
    // SAFETY: GETALL writes nsems unsigned shorts.
    let r = unsafe { libc::semctl(id, 0, libc::GETALL, v.as_mut_ptr()) };
    Errno::result(r.into()).map(|_| v)
}

/// The pid of the last operation on semaphore `n` (`GETPID`).
pub fn sem_pid(id: i32, n: i32) -> Result<i32> {
    // SAFETY: GETPID takes no pointer.
    let r = unsafe { libc::semctl(id, n, libc::GETPID) };
    Errno::result(r.into()).map(|v| v as i32)
}

/// Creates semaphore set `key` with `values` and `mode`; returns its id.
pub fn sem_create(key: i32, mode: u32, values: &[u16]) -> Result<i32> {
    let flags = (mode & 0o777) as i32 | libc::IPC_CREAT | libc::IPC_EXCL;
    // SAFETY: integer arguments.
    let id = unsafe { libc::semget(key, values.len() as i32, flags) };
    if id < 0 {
        return Err(Errno::last());
    }
    // SAFETY: SETALL reads nsems unsigned shorts.
    let r = unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) };
    Errno::result(r.into())?;
    Ok(id)
}

/// `semctl(id, IPC_SET)` of owner and mode.
pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<()> {
    // SAFETY: an all-zero semid_ds is valid; IPC_SET reads uid, gid and mode.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = (mode & 0o777) as u16;
    // SAFETY: IPC_SET reads one semid_ds through the pointer argument.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds) };
    Errno::result(r.into()).map(drop)
}

/// `semop` of one operation on semaphore `n` with `flags` (`IPC_NOWAIT`, `SEM_UNDO`).
pub fn sem_op(id: i32, ops: &[(u16, i16, i16)]) -> Result<()> {
    let mut buf: Vec<libc::sembuf> = ops
        .iter()
        .map(|&(n, op, flg)| libc::sembuf {
            sem_num: n,
            sem_op: op,
            sem_flg: flg,
        })
        .collect();
    // SAFETY: semop reads the given number of sembufs.
    let r = unsafe { libc::semop(id, buf.as_mut_ptr(), buf.len()) };
    Errno::result(r.into()).map(drop)
}

/// `IPC_STAT` of a message queue: (uid, gid, cuid, cgid), mode, qbytes, qnum, lspid.
pub fn msg_stat(id: i32) -> Result<([u32; 4], u32, u64, u64, i32)> {
    // SAFETY: an all-zero msqid_ds is a valid value to be overwritten.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one msqid_ds.
    let r = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    Errno::result(r.into())?;
    let p = &ds.msg_perm;
    Ok((
        [p.uid, p.gid, p.cuid, p.cgid],
        u32::from(p.mode),
        ds.msg_qbytes,
        ds.msg_qnum,
        ds.msg_lspid,
    ))
}

/// A copy of message number `n` of a queue, not removed from it (`MSG_COPY`,
/// CONFIG_CHECKPOINT_RESTORE): (type, bytes).
pub fn msg_copy(id: i32, n: usize, max: usize) -> Result<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: msgrcv writes at most 8 + max bytes (mtype and the text) into buf.
    let r = unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr().cast(),
            max,
            n as i64,
            libc::IPC_NOWAIT | libc::MSG_COPY | libc::MSG_NOERROR,
        )
    };
    let len = Errno::result(r as libc::c_long)? as usize;
    let mtype = i64::from_ne_bytes(buf[..8].try_into().unwrap_or([0; 8]));
    Ok((mtype, buf[8..8 + len].to_vec()))
}

/// Creates message queue `key` with `mode`; returns its id.
pub fn msg_create(key: i32, mode: u32) -> Result<i32> {
    let flags = (mode & 0o777) as i32 | libc::IPC_CREAT | libc::IPC_EXCL;
    // SAFETY: integer arguments.
    let id = unsafe { libc::msgget(key, flags) };
    if id < 0 {
        return Err(Errno::last());
    }
    Ok(id)
}

/// `msgctl(id, IPC_SET)` of owner, mode and capacity.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> Result<()> {
    // SAFETY: an all-zero msqid_ds is valid; IPC_SET reads uid, gid, mode and qbytes.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as u16;
    ds.msg_qbytes = qbytes;
    // SAFETY: IPC_SET reads one msqid_ds.
    let r = unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) };
    Errno::result(r.into()).map(drop)
}

/// Sends a message (`IPC_NOWAIT`).
pub fn msg_send(id: i32, mtype: i64, data: &[u8]) -> Result<()> {
    let mut buf = Vec::with_capacity(8 + data.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(data);
    // SAFETY: msgsnd reads mtype and data.len() bytes of text from buf.
    let r = unsafe { libc::msgsnd(id, buf.as_ptr().cast(), data.len(), libc::IPC_NOWAIT) };
    Errno::result(r.into()).map(drop)
}

// ---- POSIX message queues ----

/// `mq_open(name, flags, mode, attr)` (`name` without the leading slash, as the system call
/// takes it); `attr` is (maxmsg, msgsize) for a queue to create.
pub fn mq_open(
    name: &str,
    flags: i32,
    mode: u32,
    attr: Option<(i64, i64)>,
) -> Result<std::os::fd::OwnedFd> {
    let c = std::ffi::CString::new(name).map_err(|_| Errno(libc::EINVAL))?;
    let a = attr.map(|(maxmsg, msgsize)| {
        // SAFETY: an all-zero mq_attr is valid.
        let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
        a.mq_maxmsg = maxmsg;
        a.mq_msgsize = msgsize;
        a
    });
    let ap = a
        .as_ref()
        .map_or(std::ptr::null(), |a| a as *const libc::mq_attr);
    // SAFETY: a NUL-terminated name and an mq_attr (or null) valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_mq_open, c.as_ptr(), flags, mode, ap) };
    let fd = Errno::result(r)? as i32;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The attributes of a queue (`mq_getsetattr`): (flags, maxmsg, msgsize, curmsgs).
pub fn mq_attr(fd: BorrowedFd<'_>) -> Result<[i64; 4]> {
    // SAFETY: an all-zero mq_attr is a valid value to be overwritten.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: mq_getsetattr writes one mq_attr (no new attributes given).
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_getsetattr,
            fd.as_raw_fd(),
            std::ptr::null::<libc::mq_attr>(),
            &mut a,
        )
    };
    Errno::result(r)?;
    Ok([a.mq_flags, a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs])
}

/// Takes the next message (highest priority first) without waiting: (priority, bytes), or
/// `None` if the queue is empty.
pub fn mq_take(fd: BorrowedFd<'_>, msgsize: usize) -> Result<Option<(u32, Vec<u8>)>> {
    let mut buf = vec![0u8; msgsize.max(1)];
    let mut prio: libc::c_uint = 0;
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: mq_timedreceive writes at most msgsize bytes and the priority.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedreceive,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut prio,
            &zero,
        )
    };
    match Errno::result(r) {
        Ok(n) => {
            buf.truncate(n as usize);
            Ok(Some((prio, buf)))
        }
        Err(Errno(libc::EAGAIN | libc::ETIMEDOUT)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends a message without waiting (`mq_timedsend`).
pub fn mq_put(fd: BorrowedFd<'_>, prio: u32, data: &[u8]) -> Result<()> {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: mq_timedsend reads data.len() bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mq_timedsend,
            fd.as_raw_fd(),
            data.as_ptr(),
            data.len(),
            prio,
            &zero,
        )
    };
    Errno::result(r).map(drop)
}

/// `struct sigevent` bytes for `mq_notify`: notification kind, signal, value.
pub fn sigevent_bytes(notify: i32, signo: i32, value: u64) -> [u8; 64] {
    let mut ev = [0u8; 64];
    ev[..8].copy_from_slice(&value.to_ne_bytes());
    ev[8..12].copy_from_slice(&signo.to_ne_bytes());
    ev[12..16].copy_from_slice(&notify.to_ne_bytes());
    ev
}

/// Registers the calling process for notification on the queue at fd number `fd`.
pub fn mq_notify_fd(fd: std::os::fd::RawFd, sigevent: &[u8; 64]) -> Result<()> {
    // SAFETY: mq_notify reads one struct sigevent; the fd is only a number.
    let r = unsafe { libc::syscall(libc::SYS_mq_notify, fd, sigevent.as_ptr()) };
    Errno::result(r).map(drop)
}

/// Whether `fd` is a file of the mqueue filesystem (a POSIX message queue).
pub fn is_mqueue(fd: BorrowedFd<'_>) -> bool {
    const MQUEUE_MAGIC: i64 = 0x1980_0202;
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one statfs.
    let r = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) };
    r == 0 && st.f_type == MQUEUE_MAGIC
}
