//! The restore of a whole dump: load, plan, open the files, fork the root (which forks the
//! rest), supervise every restore process through its messages, finish, wait.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use stasis_images::ImageDir;
use stasis_sys::process::{self, ExitStatus, Forked};
use stasis_sys::{Pid, fs, signal};

use crate::child::{self, Context, MSG_CREATED, MSG_ERROR, MSG_LOG, MSG_READY, MSG_WARN, Ready};
use crate::error::{RestoreError, Result, SysContext};
use crate::files::OpenedFiles;
use crate::finalize;
use crate::image::{self, Images};
use crate::memory::SharedObjects;
use crate::pidns::{self, PidSpace};
use crate::plan::{self, Plan};

/// What to restore and how.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// Return once the tree runs (`-d`).
    pub detached: bool,
    /// The tree is a shell job (`-j`).
    pub shell_job: bool,
    /// How the dump locked TCP connections (`--network-lock`), for images whose inventory
    /// does not say: the lock lifted at the end.
    pub network_lock: stasis_sys::netlock::Method,
    /// TCP connections come back closed (`--tcp-close`).
    pub tcp_close: bool,
    /// Write the root pid here (`--pidfile`).
    pub pidfile: Option<PathBuf>,
    /// Restore into a new pid namespace (`--new-pid-ns`).
    pub new_pid_ns: bool,
    /// Refuse regular files whose size or mtime changed since the dump.
    pub validate_files: bool,
    /// Refuse files whose permission bits changed since the dump.
    pub check_file_rwx: bool,
}

/// How a restore ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The tree runs on its own (detached); its root pid.
    Detached(Pid),
    /// We waited for the root, which ended so.
    Exited(Pid, ExitStatus),
}

/// The pipes between stasis and the restore processes, all kept above the tree's fds.
struct Pipes {
    from_children: OwnedFd,
    to_stasis: OwnedFd,
    barrier_read: OwnedFd,
    barrier_write: OwnedFd,
    go_read: OwnedFd,
    go_write: OwnedFd,
}

fn pipes(high: RawFd) -> Result<Pipes> {
    let pair = || -> Result<(OwnedFd, OwnedFd)> {
        let (r, w) = std::io::pipe().map_err(|e| RestoreError::Other(format!("pipe: {e}")))?;
        let up = |fd: OwnedFd| {
            fs::move_above(fd, high).map_err(|e| RestoreError::Other(format!("pipe: {e}")))
        };
        Ok((up(r.into())?, up(w.into())?))
    };
    let (from_children, to_stasis) = pair()?;
    let (barrier_read, barrier_write) = pair()?;
    let (go_read, go_write) = pair()?;
    Ok(Pipes {
        from_children,
        to_stasis,
        barrier_read,
        barrier_write,
        go_read,
        go_write,
    })
}

/// Restores the dump in `opts.dir`.
pub fn restore(opts: &RestoreOptions) -> Result<RestoreOutcome> {
    let t0 = Instant::now();
    let mut images = image::load(ImageDir::open(&opts.dir, false)?)?;
    if images.tcp_close && !opts.tcp_close {
        return Err(RestoreError::Other(
            "the images were dumped with --tcp-close: restore with --tcp-close too".into(),
        ));
    }
    images.tcp_close |= opts.tcp_close;
    let plan = plan::build(&images, opts.shell_job)?;
    log::info!(
        "loaded images of {} processes and {} zombies in {} us",
        images.processes.len(),
        images.zombies.len(),
        t0.elapsed().as_micros()
    );
    let root = images.processes[0].pid();
    // In a new pid namespace every pid is free.
    for pid in plan.all_pids.iter().filter(|_| !opts.new_pid_ns) {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(RestoreError::PidInUse { pid: *pid });
        }
    }
    // Orphans of a failed restore are reparented to us, so we can reap them.
    process::set_child_subreaper().ctx(root, || "become a child subreaper".into())?;
    process::raise_nofile_limit().ctx(root, || "raise RLIMIT_NOFILE".into())?;
    let high = crate::files::highest_fd(&images) + 1;
    let validation = crate::files::Validation {
        contents: opts.validate_files,
        rwx: opts.check_file_rwx,
    };
    let mut files = OpenedFiles::open_all(&images, high, validation)?;
    let shared = SharedObjects::create_all(&images, high)?;
    let pipes = pipes(high)?;
    let private_fds = fs::max_open_fd() + 1;

    // Restore processes start with every signal blocked; the restored masks come from
    // their frames.
    let old_mask = signal::block_all().ctx(root, || "block signals".into())?;
    // The first process: the root, or the init of its new pid namespace (pid 1 there).
    let forked = if opts.new_pid_ns {
        process::fork_with_pid(1, pidns::INIT_FLAGS, libc::SIGCHLD)
    } else {
        process::fork_with_pid(root, crate::ipc::root_clone_flags(&images), libc::SIGCHLD)
    };
    if let Ok(Forked::Child(token)) = forked {
        let ctx = Context {
            images: &images,
            plan: &plan,
            files: &files,
            shared: &shared,
            high,
            private_fds,
            to_stasis: pipes.to_stasis.as_raw_fd(),
            barrier: pipes.barrier_read.as_raw_fd(),
            go: pipes.go_read.as_raw_fd(),
        };
        if opts.new_pid_ns {
            pidns::run_init(token, &ctx, root);
        }
        child::run(token, &ctx, root, &Default::default());
    }
    let _ = signal::set_mask(old_mask);
    let first = match forked {
        Err(e) if e.0 == libc::EEXIST => return Err(RestoreError::PidInUse { pid: root }),
        Err(errno) => {
            return Err(RestoreError::Sys {
                pid: root,
                what: if opts.new_pid_ns {
                    "clone3 into a new pid namespace".into()
                } else {
                    "clone3 with the image's pid".into()
                },
                errno,
            });
        }
        Ok(Forked::Parent(pid)) => pid,
        Ok(Forked::Child(_)) => unreachable_child(),
    };
    let mut pids = PidSpace::new(opts.new_pid_ns.then_some(first));
    // Our copies of the children's ends: gone, so a dead tree means end of file.
    let Pipes {
        from_children,
        barrier_write,
        go_write,
        ..
    } = pipes;
    let tcp = files.take_tcp();
    // The dump's method, as CRIU does; the option for images that do not say.
    let lock_method = images.network_lock.unwrap_or(opts.network_lock);
    let locked = images
        .files
        .values()
        .filter_map(|f| f.isk.as_ref())
        .any(|e| {
            e.r#type as i32 == libc::SOCK_STREAM && stasis_sys::inet::is_tcp_connection(e.state)
        });
    let mut unix_late = files.take_unix_late();
    let links = files.close();
    drop(shared);

    let result = supervise(
        &images,
        &plan,
        &mut pids,
        from_children,
        barrier_write,
        go_write,
        Hooks {
            created: |pids: &mut PidSpace| unix_late.refill(root, |p| pids.host(p)),
            before_detach: || release_tcp(root, &tcp, lock_method, locked),
        },
    );
    drop(unix_late);
    if let Err(e) = result {
        // Never leave a half-restored process behind.
        kill_all(&plan, &pids);
        return Err(e);
    }
    for link in links {
        let _ = std::fs::remove_file(link);
    }
    // The root as the host knows it (its pid outside a new namespace).
    let root_host = pids.host(root).unwrap_or(root);
    log::info!(
        "{} processes restored in {} us",
        plan.processes,
        t0.elapsed().as_micros()
    );
    if let Some(path) = &opts.pidfile {
        // CRIU writes the bare number.
        std::fs::write(path, root_host.to_string())
            .map_err(|e| RestoreError::Other(format!("write pidfile {}: {e}", path.display())))?;
    }
    if opts.detached {
        return Ok(RestoreOutcome::Detached(root_host));
    }
    // A namespace's init passes on the root's exit status.
    let status = process::wait_exit(pids.init().unwrap_or(root))
        .ctx(root, || "wait for the restored process".into())?;
    Ok(RestoreOutcome::Exited(root_host, status))
}

/// Kills every process the restore may have created and reaps what comes back to us.
fn kill_all(plan: &Plan, pids: &PidSpace) {
    if let Some(init) = pids.init() {
        // The namespace dies with its init.
        let _ = process::kill(init, libc::SIGKILL);
    } else {
        for pid in &plan.all_pids {
            let _ = process::kill(*pid, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match process::wait_any() {
            Ok(Some(_)) => continue,
            _ => break,
        }
    }
}

/// A message from a restore process.
struct Message {
    tag: u8,
    pid: Pid,
    payload: Vec<u8>,
}

/// Reads one message; `None` at end of file (every restore process is gone).
fn read_message(fd: RawFd) -> Option<Message> {
    let mut head = [0u8; 9];
    if !fs::read_exact_fd(fd, &mut head) {
        return None;
    }
    let pid = i32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
    let mut payload = vec![0u8; len.min(child::MAX_MESSAGE)];
    if !fs::read_exact_fd(fd, &mut payload) {
        return None;
    }
    Some(Message {
        tag: head[0],
        pid,
        payload,
    })
}

/// Whether a process we wait on has died (it is gone or a zombie).
fn died(pids: &mut PidSpace, pid: Pid) -> bool {
    pids.host(pid).is_none_or(|host| {
        stasis_sys::proc::read_stat(host).map_or(true, |s| matches!(s.state, b'Z' | b'X'))
    })
}

/// Waits for the next message, watching that the processes still expected to report are
/// alive: one that crashed without a word must not hang the restore.
fn next_message(fd: &OwnedFd, waiting_on: &[Pid], pids: &mut PidSpace) -> Result<Message> {
    loop {
        let ready = process::wait_readable(fd.as_fd(), Duration::from_millis(200))
            .map_err(|e| RestoreError::Other(format!("wait for restore processes: {e}")))?;
        if ready {
            return read_message(fd.as_raw_fd()).ok_or_else(|| {
                RestoreError::Other("every restore process died before finishing".into())
            });
        }
        if let Some(pid) = waiting_on.iter().find(|p| died(pids, **p)) {
            return Err(RestoreError::Child {
                pid: *pid,
                message: "died while being restored".into(),
            });
        }
    }
}

/// Lifts the dump's network lock and takes the TCP connections out of repair mode, with
/// every process restored and still held: they find them working from their first
/// instruction. `locked`: the images hold connections, which the dump may have locked
/// (also when they come back closed: their peers must learn it).
fn release_tcp(
    root: Pid,
    tcp: &[crate::files::TcpRepaired],
    lock: stasis_sys::netlock::Method,
    locked: bool,
) -> Result<()> {
    if !locked {
        return Ok(());
    }
    if lock == stasis_sys::netlock::Method::Nftables {
        stasis_sys::netlock::unlock_tree(root)
            .map_err(|e| RestoreError::Other(format!("network unlock: {e}")))?;
        log::info!("network lock of the tree of {root} lifted (if there was one here)");
    }
    for t in tcp {
        t.release()?;
    }
    Ok(())
}

/// What stasis does itself while the tree is made: once every process exists (before
/// any is let past the barrier), and before the processes are detached.
struct Hooks<C, D> {
    created: C,
    before_detach: D,
}

fn supervise(
    images: &Images,
    plan: &Plan,
    pids: &mut PidSpace,
    from_children: OwnedFd,
    barrier: OwnedFd,
    go: OwnedFd,
    hooks: Hooks<impl FnMut(&mut PidSpace) -> Result<()>, impl FnOnce() -> Result<()>>,
) -> Result<()> {
    let Hooks {
        created: mut on_created,
        before_detach,
    } = hooks;
    let alive: Vec<Pid> = images.processes.iter().map(|p| p.pid()).collect();
    let helpers: Vec<Pid> = plan.helpers.values().flatten().map(|h| h.pid).collect();
    // Processes and zombies wait at the barrier; helpers report "created" too.
    let at_barrier = alive.len() + images.zombies.len();
    let members: Vec<Pid> = alive
        .iter()
        .copied()
        .chain(images.zombies.iter().map(|z| z.pid()))
        .chain(helpers.iter().copied())
        .collect();
    let mut created: HashSet<Pid> = HashSet::new();
    let mut ready: HashMap<Pid, Ready> = HashMap::new();
    let mut attached = finalize::Attached::default();
    // Phase 1: every process and zombie exists; phase 2: every live one is prepared.
    while ready.len() < alive.len() {
        let waiting: Vec<Pid> = if created.len() < members.len() {
            // Before the barrier only the ones we have heard from are known to exist.
            created.iter().copied().collect()
        } else {
            alive
                .iter()
                .copied()
                .filter(|p| !ready.contains_key(p))
                .collect()
        };
        let m = next_message(&from_children, &waiting, pids)?;
        match m.tag {
            MSG_LOG => log::debug!("process {}: {}", m.pid, String::from_utf8_lossy(&m.payload)),
            MSG_WARN => log::warn!("{}", String::from_utf8_lossy(&m.payload)),
            MSG_ERROR => {
                return Err(RestoreError::Other(
                    String::from_utf8_lossy(&m.payload).into_owned(),
                ));
            }
            MSG_CREATED => {
                created.insert(m.pid);
                if created.len() == members.len() {
                    log::debug!(
                        "all {} processes exist ({} helpers)",
                        members.len(),
                        helpers.len()
                    );
                    // Every process exists and none runs its program yet.
                    on_created(pids)?;
                    release(&barrier, at_barrier)?;
                }
            }
            MSG_READY if m.payload.len() == 32 => {
                let w = |i: usize| {
                    u64::from_le_bytes(m.payload[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
                };
                let r = Ready {
                    header: w(0),
                    bootstrap: w(1),
                    syscall_insn: w(2),
                    close_from: w(3),
                };
                let host = pids.host(m.pid).ok_or(RestoreError::Child {
                    pid: m.pid,
                    message: "died while being restored".into(),
                })?;
                attached.attach(host, r)?;
                ready.insert(m.pid, r);
            }
            other => {
                return Err(RestoreError::Other(format!(
                    "process {}: unexpected message {other:#x}",
                    m.pid
                )));
            }
        }
    }
    drop(barrier);
    // Every process is attached: let them all jump, and the helpers end.
    release(&go, alive.len() + helpers.len())?;
    drop(go);
    attached.finish(images, before_detach)
}

/// Writes one byte per waiting process.
fn release(pipe: &OwnedFd, count: usize) -> Result<()> {
    let bytes = vec![b'g'; count];
    if fs::write_all_fd(pipe.as_raw_fd(), &bytes) {
        Ok(())
    } else {
        Err(RestoreError::Other("the restore processes are gone".into()))
    }
}

/// The parent's side of the first fork never sees a child token (the child branch runs
/// the restore and never returns).
fn unreachable_child() -> ! {
    process::exit_now(1)
}
