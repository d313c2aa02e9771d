//! POSIX message queues of the tree's own IPC namespace (stasis's own file kind: CRIU has
//! none).
//!
//! A queue's messages can only be read by taking them, so before any fd is dumped each
//! queue is emptied (from a thread of ours inside the namespace) and filled again in the
//! same order, which leaves it as it was. Its notification registration is not shown
//! anywhere but its kind, signal and process; the value it sends is learnt by letting it
//! fire: the first message put back into the empty queue makes the kernel send the
//! signal, which is read from the owner's pending signals and taken away again
//! (`rt_sigtimedwait` injected into it), and the registration is made again from inside
//! the owner (`mq_notify` injected, through one of its fds of the queue).

use std::collections::HashMap;
use std::os::fd::AsFd;

use stasis_images::pb;
use stasis_sys::ptrace::Injector;
use stasis_sys::{Pid, fds, fs, ipc, proc, process};

use super::FileTable;
use crate::error::{DumpError, Result, SysContext};
use crate::freeze::Frozen;

/// A queue found in the tree, saved before its fds are dumped.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Its name (with the leading slash).
    name: String,
    queue: pb::StasisMqueueQueue,
    /// Whether the queue data went with a description already.
    given: bool,
}

/// The queues of the dump, by inode.
pub(crate) type Queues = HashMap<u64, Queue>;

/// Messages: (priority, bytes) each.
type Messages = Vec<(u32, Vec<u8>)>;

/// A command to the namespace thread: put these messages in, or (`None`) take one out.
type Command = Option<Messages>;

const SI_MESGQ: i32 = -3;
const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;

/// The fields of a queue's status line (`QSIZE:.. NOTIFY:.. SIGNO:.. NOTIFY_PID:..`).
fn status_field(line: &str, key: &str) -> i64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl FileTable {
    /// Saves every message queue the tree's processes `live` have open (see the module).
    pub fn capture_mqueues(
        &mut self,
        live: &[Pid],
        frozen: &Frozen,
        private_ipc: bool,
    ) -> Result<()> {
        // Queue inode -> (name, the fds that have it: pid, fd).
        let mut found: HashMap<u64, (String, Vec<(Pid, i32)>)> = HashMap::new();
        for &pid in live {
            let Ok(list) = proc::fds(pid) else { continue };
            let pidfd = process::pidfd_open(pid).ctx(pid, || "pidfd_open".into())?;
            for fd in list {
                let link_path = proc::path(pid, &format!("fd/{fd}"));
                let Ok(st) = fs::stat(&link_path) else {
                    continue;
                };
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    continue;
                }
                let Ok(file) = process::pidfd_getfd(&pidfd, fd) else {
                    continue;
                };
                if !ipc::is_mqueue(file.as_fd()) {
                    continue;
                }
                let name = proc::read_link(link_path)
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                found
                    .entry(st.st_ino)
                    .or_insert_with(|| (name, Vec::new()))
                    .1
                    .push((pid, fd));
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        let root = live.first().copied().unwrap_or(0);
        if !private_ipc {
            let (pid, fd) = found
                .values()
                .next()
                .map(|(_, h)| h[0])
                .unwrap_or((root, -1));
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("fd {fd} (POSIX message queue)"),
                reason: "queues of the host's IPC namespace cannot be saved (they belong to every \
                         process there); run the tree in an IPC namespace of its own"
                    .into(),
            });
        }
        for (ino, (name, holders)) in found {
            let queue = capture_one(root, frozen, &name, &holders)?;
            self.mqueues.insert(
                ino,
                Queue {
                    name,
                    queue,
                    given: false,
                },
            );
        }
        Ok(())
    }
}

/// Empties queue `name`, fills it again, and finds its notification (see the module).
fn capture_one(
    root: Pid,
    frozen: &Frozen,
    name: &str,
    holders: &[(Pid, i32)],
) -> Result<pb::StasisMqueueQueue> {
    let what = |s: &str| format!("message queue {name}: {s}");
    let short = name.trim_start_matches('/').to_owned();
    // Our own description of the queue lives in the namespace thread; the work that
    // needs the frozen processes (ptrace) is done here, between its steps.
    let (tx_cmd, rx_cmd) = std::sync::mpsc::channel::<Command>();
    let (tx_res, rx_res) = std::sync::mpsc::channel::<Result<Step>>();
    let queue = std::thread::scope(|s| -> Result<pb::StasisMqueueQueue> {
        let worker = s.spawn(move || {
            crate::ipc::in_namespace(root, || queue_worker(root, &short, rx_cmd, tx_res))
        });
        let first = rx_res
            .recv()
            .map_err(|_| DumpError::Invalid(what("the namespace thread stopped")))??;
        let Step::Taken {
            status,
            attr,
            st,
            messages,
        } = first
        else {
            return Err(DumpError::Invalid(what("unexpected answer")));
        };
        let notify_pid = status_field(&status, "NOTIFY_PID") as Pid;
        let notify = status_field(&status, "NOTIFY") as i32;
        let signo = status_field(&status, "SIGNO") as i32;
        let mut registration = None;
        let mut put_back = messages.clone();
        let result = (|| -> Result<()> {
            if notify_pid == 0 {
                return Ok(());
            }
            let owner =
                frozen
                    .threads_of(notify_pid)
                    .next()
                    .ok_or_else(|| DumpError::Unsupported {
                        pid: notify_pid,
                        resource: format!("message queue {name}"),
                        reason: "its notification is registered by a process outside the tree"
                            .into(),
                    })?;
            let owner_fd = holders
                .iter()
                .find(|(p, _)| *p == notify_pid)
                .map(|(_, fd)| *fd)
                .ok_or_else(|| DumpError::Unsupported {
                    pid: notify_pid,
                    resource: format!("message queue {name}"),
                    reason: "the process registered for its notification holds no fd of it".into(),
                })?;
            if notify != SIGEV_SIGNAL && notify != SIGEV_NONE {
                return Err(DumpError::Unsupported {
                    pid: notify_pid,
                    resource: format!("fd {owner_fd} (message queue {name})"),
                    reason: "notification by thread (SIGEV_THREAD) is not supported".into(),
                });
            }
            let mut value = 0u64;
            if notify == SIGEV_SIGNAL {
                let pending = owner
                    .tracee
                    .pending_siginfo(true)
                    .ctx(notify_pid, || what("read pending signals"))?;
                if pending
                    .iter()
                    .any(|i| i32::from_le_bytes([i[0], i[1], i[2], i[3]]) == signo)
                {
                    return Err(DumpError::Unsupported {
                        pid: notify_pid,
                        resource: format!("message queue {name}"),
                        reason: format!(
                            "signal {signo} is pending already: the value its notification sends \
                             cannot be learnt"
                        ),
                    });
                }
                // One message into the empty queue fires the notification.
                let fire = put_back.first().cloned().unwrap_or((0, vec![0]));
                tx_cmd.send(Some(vec![fire.clone()])).ok();
                expect_done(&rx_res, &what)?;
                if put_back.first() == Some(&fire) {
                    put_back.remove(0);
                } else {
                    // The dummy comes out again before the real messages go back.
                    tx_cmd.send(None).ok();
                    expect_done(&rx_res, &what)?;
                }
                let pending = owner
                    .tracee
                    .pending_siginfo(true)
                    .ctx(notify_pid, || what("read pending signals"))?;
                let info = pending
                    .iter()
                    .find(|i| {
                        i32::from_le_bytes([i[0], i[1], i[2], i[3]]) == signo
                            && i32::from_le_bytes([i[8], i[9], i[10], i[11]]) == SI_MESGQ
                    })
                    .ok_or_else(|| DumpError::Unsupported {
                        pid: notify_pid,
                        resource: format!("message queue {name}"),
                        reason: "its notification did not fire (a process waits in mq_receive?)"
                            .into(),
                    })?;
                value = u64::from_le_bytes(info[24..32].try_into().unwrap_or([0; 8]));
                take_signal(owner, notify_pid, signo)?;
            }
            registration = Some((
                owner,
                owner_fd,
                pb::StasisMqNotify {
                    pid: notify_pid,
                    notify,
                    signo,
                    value,
                },
            ));
            Ok(())
        })();
        // Whatever happened, the messages go back, then the registration.
        tx_cmd.send(Some(put_back)).ok();
        let refilled = expect_done(&rx_res, &what);
        drop(tx_cmd);
        let joined = worker
            .join()
            .unwrap_or_else(|_| Err(DumpError::Invalid(what("thread failed"))));
        let mut notify_entry = None;
        if let Some((owner, fd, n)) = registration {
            register_again(owner, n.pid, fd, &n)?;
            notify_entry = Some(n);
        }
        result?;
        refilled?;
        joined?;
        Ok(pb::StasisMqueueQueue {
            mode: st.0,
            uid: st.1,
            gid: st.2,
            maxmsg: attr[1],
            msgsize: attr[2],
            messages: messages
                .into_iter()
                .map(|(prio, data)| pb::StasisMqMessage { prio, data })
                .collect(),
            notify: notify_entry,
        })
    })?;
    Ok(queue)
}

/// Answers of the namespace thread.
enum Step {
    /// The queue was emptied: its status line, attributes, (mode, uid, gid), messages.
    Taken {
        status: String,
        attr: [i64; 4],
        st: (u32, u32, u32),
        messages: Messages,
    },
    /// A command was carried out.
    Done,
}

fn expect_done(
    rx: &std::sync::mpsc::Receiver<Result<Step>>,
    what: &dyn Fn(&str) -> String,
) -> Result<()> {
    match rx.recv() {
        Ok(Ok(Step::Done)) => Ok(()),
        Ok(Err(e)) => Err(e),
        _ => Err(DumpError::Invalid(what("the namespace thread stopped"))),
    }
}

/// In the namespace: empties the queue, then carries out commands: `Some(messages)` puts
/// them into the queue, `None` takes one out.
fn queue_worker(
    root: Pid,
    short: &str,
    rx: std::sync::mpsc::Receiver<Command>,
    tx: std::sync::mpsc::Sender<Result<Step>>,
) -> Result<()> {
    let what = || format!("message queue /{short}");
    let first = (|| -> Result<(std::os::fd::OwnedFd, Step)> {
        let q = ipc::mq_open(
            short,
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            0,
            None,
        )
        .ctx(root, what)?;
        let mut buf = [0u8; 256];
        let n = fds::read_some(q.as_fd(), &mut buf).ctx(root, what)?;
        let status = String::from_utf8_lossy(&buf[..n]).into_owned();
        let attr = ipc::mq_attr(q.as_fd()).ctx(root, what)?;
        let st = fs::fstat(q.as_fd()).ctx(root, what)?;
        let mut messages = Vec::new();
        while let Some(m) = ipc::mq_take(q.as_fd(), attr[2] as usize).ctx(root, what)? {
            messages.push(m);
        }
        Ok((
            q,
            Step::Taken {
                status,
                attr,
                st: (st.st_mode, st.st_uid, st.st_gid),
                messages,
            },
        ))
    })();
    let q = match first {
        Ok((q, step)) => {
            let _ = tx.send(Ok(step));
            q
        }
        Err(e) => {
            let _ = tx.send(Err(e));
            return Ok(());
        }
    };
    for cmd in rx {
        let done = match cmd {
            Some(msgs) => msgs
                .iter()
                .try_for_each(|(prio, data)| ipc::mq_put(q.as_fd(), *prio, data))
                .ctx(root, what),
            None => ipc::mq_take(q.as_fd(), 1 << 20).map(drop).ctx(root, what),
        };
        let _ = tx.send(done.map(|()| Step::Done));
    }
    Ok(())
}

/// Takes the notification's signal out of the owner's pending signals (injected
/// `rt_sigtimedwait` with no wait).
fn take_signal(owner: &crate::freeze::FrozenThread, pid: Pid, signo: i32) -> Result<()> {
    let syscall_ip = crate::freeze::syscall_ip(pid)?;
    let mut inj = Injector::new(&owner.tracee, owner.regs, syscall_ip);
    // rt_sigtimedwait(set, NULL, &{0, 0}, 8): the set, then a zero timeout.
    let mut args = Vec::with_capacity(24);
    args.extend_from_slice(&(1u64 << (signo - 1)).to_le_bytes());
    args.extend_from_slice(&[0u8; 16]);
    let taken = inj.scratch(24).and_then(|addr| {
        stasis_sys::mem::write_process(owner.tracee.tid(), addr, &args)?;
        inj.syscall(
            stasis_sys::abi::nr::RT_SIGTIMEDWAIT,
            [addr, 0, addr + 8, 8, 0, 0],
        )
    });
    inj.finish().ctx(pid, || "restore registers".into())?;
    match taken {
        Ok(got) if got == signo as u64 => Ok(()),
        Ok(got) => Err(DumpError::Invalid(format!(
            "process {pid}: took signal {got} instead of the queue's {signo}"
        ))),
        Err(errno) => Err(DumpError::Sys {
            pid,
            what: format!("take back the queue notification's signal {signo}"),
            errno,
        }),
    }
}

/// Registers the notification again from inside its owner (injected `mq_notify`).
fn register_again(
    owner: &crate::freeze::FrozenThread,
    pid: Pid,
    fd: i32,
    n: &pb::StasisMqNotify,
) -> Result<()> {
    let syscall_ip = crate::freeze::syscall_ip(pid)?;
    let mut inj = Injector::new(&owner.tracee, owner.regs, syscall_ip);
    let ev = ipc::sigevent_bytes(n.notify, n.signo, n.value);
    let done = inj.syscall_in(
        stasis_sys::abi::nr::MQ_NOTIFY,
        [fd as u64, 0, 0, 0, 0, 0],
        1,
        &ev,
    );
    inj.finish().ctx(pid, || "restore registers".into())?;
    done.map(drop).ctx(pid, || {
        format!("fd {fd}: register the queue's notification again")
    })
}

/// A message queue description at `f`; returns its file id.
pub(crate) fn dump_mqueue(table: &mut FileTable, f: &super::Fd) -> Result<u32> {
    let q = table.mqueues.get_mut(&f.st.st_ino).ok_or_else(|| {
        f.unsupported("this message queue was not found before the fds were dumped")
    })?;
    let queue = (!q.given).then(|| q.queue.clone());
    q.given = true;
    let name = q.name.clone();
    let (flags, fown, queue_id) = (f.flags(), f.fown(), f.st.st_ino);
    Ok(table.add(pb::FdTypes::StasisMqueue, |id, e| {
        e.stasis_mqueue = Some(pb::StasisMqueueEntry {
            id,
            name,
            flags,
            fown: Some(fown),
            queue_id,
            queue,
        });
    }))
}
