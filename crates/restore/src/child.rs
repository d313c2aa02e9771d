//! A restore process: a fork of stasis with the image's pid that turns itself into the
//! restored process.
//!
//! Each one sets up its session or group, premaps and fills its memory, forks its own
//! children (so parent links are the image's, and memory a child shares copy-on-write
//! with its parent is inherited, shared again), reports to stasis and waits at a barrier
//! until the whole tree exists, joins its process group, and then rebuilds what an
//! ordinary process can do for itself (fd table, cwd, root). It writes the restorer's program into the
//! bootstrap region, tells stasis where it is, waits until stasis is attached to every
//! process, and jumps into the blob. It never returns: it becomes the restored process or
//! exits with an error message sent up first. A zombie of the image exits at once after the
//! barrier with its exit status.

use std::os::fd::{AsFd, RawFd};

use stasis_sys::mem::Reservation;
use stasis_sys::process::{Forked, RestoreChild};
use stasis_sys::{Pid, fs, proc, process, restorer, signal};

use crate::error::{RestoreError, Result, SysContext};
use crate::files::OpenedFiles;
use crate::image::{Images, ProcessImage, ZombieImage};
use crate::layout::{self, Layout};
use crate::plan::{Helper, Plan};
use crate::program::{Arena, Program};
use crate::{blob, memory, sigframe, task};

/// Stack for the blob, inside the bootstrap region.
const BLOB_STACK: u64 = 64 << 10;
/// Stack of each further thread while it runs its part of the program.
const THREAD_STACK: u64 = 16 << 10;

/// Messages to stasis: a tag, the sender's pid, and a payload.
pub(crate) const MSG_ERROR: u8 = b'E';
pub(crate) const MSG_READY: u8 = b'R';
pub(crate) const MSG_LOG: u8 = b'L';
pub(crate) const MSG_CREATED: u8 = b'C';
pub(crate) const MSG_WARN: u8 = b'W';

/// Longest message; writes of at most PIPE_BUF bytes to a pipe are atomic, so messages
/// of many processes sharing one pipe never interleave.
pub(crate) const MAX_MESSAGE: usize = 4000;

/// Where stasis finds a process's restorer state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    pub header: u64,
    pub bootstrap: u64,
    pub syscall_insn: u64,
    /// Fds from this number up are ours, left open for processes sharing the fd table:
    /// stasis closes them at the end (0: nothing to close).
    pub close_from: u64,
}

/// Whether `pid` shares its parent's fd table (was forked with CLONE_FILES).
fn shares_parent_table(ctx: &Context<'_>, pid: Pid) -> bool {
    ctx.plan
        .clone_flags
        .get(&pid)
        .is_some_and(|f| f & libc::CLONE_FILES as u64 != 0)
}

/// Whether `pid`'s fd table is shared with another process of the tree.
fn in_shared_table(ctx: &Context<'_>, pid: Pid) -> bool {
    shares_parent_table(ctx, pid)
        || ctx
            .plan
            .children
            .get(&pid)
            .is_some_and(|c| c.iter().any(|c| shares_parent_table(ctx, c.pid)))
}

struct Jump {
    zone: Reservation,
    entry: u64,
    header: u64,
    stack_top: u64,
    ready: Ready,
}

/// What every restore process inherits from stasis.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub images: &'a Images,
    pub plan: &'a Plan,
    pub files: &'a OpenedFiles,
    pub shared: &'a memory::SharedObjects,
    /// Every fd number the tree uses is below this; our own fds are at or above it.
    pub high: RawFd,
    /// Everything stasis opened for the restore is below this: fds a process needs for
    /// itself (cwd, executable) go above, out of reach of the cleanup of a shared table.
    pub private_fds: RawFd,
    /// Write end of the message pipe to stasis.
    pub to_stasis: RawFd,
    /// Read end of the barrier pipe (one byte per process when the tree exists).
    pub barrier: RawFd,
    /// Read end of the go pipe (one byte per process once stasis is attached to all).
    pub go: RawFd,
}

/// Sends a message to stasis (one atomic write).
pub(crate) fn send(ctx: &Context<'_>, pid: Pid, tag: u8, payload: &[u8]) {
    let payload = &payload[..payload.len().min(MAX_MESSAGE)];
    let mut msg = vec![tag];
    msg.extend_from_slice(&pid.to_le_bytes());
    msg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    msg.extend_from_slice(payload);
    // If stasis is gone there is nobody to tell.
    let _ = fs::write_all_fd(ctx.to_stasis, &msg);
}

/// Waits for one byte on an inherited pipe; stasis gone means give up.
fn wait_byte(fd: RawFd) {
    let mut b = [0u8; 1];
    if !fs::read_exact_fd(fd, &mut b) {
        process::exit_now(1);
    }
}

/// Runs a restore process for `pid`, forked by a restore process that hands down the
/// slots of its private memory (none for the root); never returns.
pub(crate) fn run(
    token: RestoreChild,
    ctx: &Context<'_>,
    pid: Pid,
    inherited: &memory::Inherited<'_>,
) -> ! {
    // stasis logs; restore processes only report through the pipe.
    log::set_max_level(log::LevelFilter::Off);
    if let Some(z) = ctx.images.zombies.iter().find(|z| z.pid() == pid) {
        run_zombie(ctx, z);
    }
    let Some(p) = ctx.images.processes.iter().find(|p| p.pid() == pid) else {
        send(
            ctx,
            pid,
            MSG_ERROR,
            format!("process {pid} is not in the images").as_bytes(),
        );
        process::exit_now(1);
    };
    match prepare(&token, ctx, p, inherited) {
        Err(e) => {
            send(ctx, pid, MSG_ERROR, e.to_string().as_bytes());
            process::exit_now(1);
        }
        Ok(jump) => {
            let mut payload = Vec::new();
            for w in [
                jump.ready.header,
                jump.ready.bootstrap,
                jump.ready.syscall_insn,
                jump.ready.close_from,
            ] {
                payload.extend_from_slice(&w.to_le_bytes());
            }
            send(ctx, pid, MSG_READY, &payload);
            // Wait until stasis is attached to every process (it must see our trap).
            wait_byte(ctx.go);
            if reap_helpers(ctx, pid).is_err() {
                // stasis sees this process die before its trap.
                process::exit_now(1);
            }
            // In an fd table shared with other processes, another may not have read its
            // go byte yet: stasis closes these for it at the end.
            if !in_shared_table(ctx, pid) {
                let _ = fs::close_fd(&token, ctx.to_stasis);
                let _ = fs::close_fd(&token, ctx.barrier);
                let _ = fs::close_fd(&token, ctx.go);
            }
            // Returns only if the addresses were not inside the zone (a planner bug);
            // stasis sees this process die.
            let _ = jump
                .zone
                .jump(token, jump.entry, jump.header, jump.stack_top);
            process::exit_now(1);
        }
    }
}

/// Cgroups, session and group, right after the fork.
fn enter_session(ctx: &Context<'_>, pid: Pid) -> Result<()> {
    // Into our cgroups first: memory allocated from here on is charged there, and our
    // children start there too.
    join_cgroups(ctx, pid);
    let s = ctx.plan.sessions.get(&pid).copied().unwrap_or_default();
    if s.setsid {
        process::setsid().ctx(pid, || "setsid".into())?;
        ctx.files.acquire_controlling(ctx.images, pid)?;
    } else if s.lead_group {
        process::setpgid(0, 0).ctx(pid, || "setpgid(0, 0)".into())?;
    }
    Ok(())
}

/// Forks `child` with its pid; it runs its own restore, handed `inherited`. A helper forks
/// the children it stands in for with `CLONE_PARENT` (their parent is the helper's).
fn fork_one(
    ctx: &Context<'_>,
    forker: Pid,
    child: Pid,
    flags: u64,
    inherited: &memory::Inherited<'_>,
) -> Result<()> {
    // A CLONE_PARENT child takes the forker's exit signal; clone3 wants none given.
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
        0
    } else {
        libc::SIGCHLD
    };
    match process::fork_with_pid(child, flags, exit_signal) {
        Ok(Forked::Child(token)) => run(token, ctx, child, inherited),
        Ok(Forked::Parent(_)) => Ok(()),
        Err(stasis_sys::Errno(libc::EEXIST)) => Err(RestoreError::PidInUse { pid: child }),
        Err(errno) => Err(RestoreError::Sys {
            pid: forker,
            what: format!("fork child {child}"),
            errno,
        }),
    }
}

/// The helpers, then the children (each handed `inherited`), then the barrier and the
/// group join. Shared by live processes and zombies.
fn fork_children(ctx: &Context<'_>, pid: Pid, inherited: &memory::Inherited<'_>) -> Result<()> {
    let helpers = ctx.plan.helpers.get(&pid).map(Vec::as_slice).unwrap_or(&[]);
    for h in helpers {
        match process::fork_with_pid(h.pid, 0, libc::SIGCHLD) {
            Ok(Forked::Child(_)) => run_helper(ctx, h, inherited),
            Ok(Forked::Parent(_)) => {}
            Err(stasis_sys::Errno(libc::EEXIST)) => {
                return Err(RestoreError::PidInUse { pid: h.pid });
            }
            Err(errno) => {
                return Err(RestoreError::Sys {
                    pid,
                    what: format!("fork helper {}", h.pid),
                    errno,
                });
            }
        }
    }
    for child in ctx
        .plan
        .children
        .get(&pid)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if !helpers.iter().any(|h| h.forks.contains(&child.pid)) {
            let flags = ctx.plan.clone_flags.get(&child.pid).copied().unwrap_or(0);
            fork_one(ctx, pid, child.pid, flags, inherited)?;
        }
    }
    send(ctx, pid, MSG_CREATED, &[]);
    wait_byte(ctx.barrier);
    let s = ctx.plan.sessions.get(&pid).copied().unwrap_or_default();
    if let Some(pgid) = s.join_group {
        process::setpgid(0, pgid).ctx(pid, || format!("join process group {pgid}"))?;
    }
    Ok(())
}

/// A helper: takes the gone leader's place (session or group), forks the children it
/// stands in for, and lives until every process is rebuilt (the go byte); its parent
/// reaps it.
fn run_helper(ctx: &Context<'_>, h: &Helper, inherited: &memory::Inherited<'_>) -> ! {
    log::set_max_level(log::LevelFilter::Off);
    let result = if h.setsid {
        process::setsid()
            .map(drop)
            .ctx(h.pid, || "setsid (helper)".into())
    } else {
        process::setpgid(0, 0).ctx(h.pid, || "setpgid(0, 0) (helper)".into())
    }
    .and_then(|()| {
        h.forks
            .iter()
            .try_for_each(|c| fork_one(ctx, h.pid, *c, libc::CLONE_PARENT as u64, inherited))
    });
    if let Err(e) = result {
        send(ctx, h.pid, MSG_ERROR, e.to_string().as_bytes());
        process::exit_now(1);
    }
    send(ctx, h.pid, MSG_CREATED, &[]);
    wait_byte(ctx.go);
    process::exit_now(0);
}

/// Reaps the helpers this process forked (they exit at the go byte) and drops the
/// SIGCHLD they sent, before the process runs its own code.
fn reap_helpers(ctx: &Context<'_>, pid: Pid) -> Result<()> {
    let helpers = ctx.plan.helpers.get(&pid).map(Vec::as_slice).unwrap_or(&[]);
    for h in helpers {
        process::wait_exit(h.pid).ctx(pid, || format!("reap helper {}", h.pid))?;
    }
    if !helpers.is_empty() {
        signal::drain_pending(libc::SIGCHLD).ctx(pid, || "drop SIGCHLD".into())?;
    }
    Ok(())
}

/// A zombie: take its place in the tree, then end with the image's exit status.
fn run_zombie(ctx: &Context<'_>, z: &ZombieImage) -> ! {
    let pid = z.pid();
    let created =
        enter_session(ctx, pid).and_then(|()| fork_children(ctx, pid, &Default::default()));
    if let Err(e) = created {
        send(ctx, pid, MSG_ERROR, e.to_string().as_bytes());
        process::exit_now(1);
    }
    process::end_with_status(z.exit_code as i32);
}

fn prepare(
    token: &RestoreChild,
    ctx: &Context<'_>,
    p: &ProcessImage,
    inherited: &memory::Inherited<'_>,
) -> Result<Jump> {
    let pid = p.pid();
    let images = ctx.images;
    if p.pstree.ppid == 0 {
        // The root is in the tree's new IPC namespace: its objects first, for everyone's
        // memory to attach.
        crate::ipc::create(images, pid)?;
    }
    enter_session(ctx, pid)?;
    let log = |what: &str, since: std::time::Instant| {
        send(
            ctx,
            pid,
            MSG_LOG,
            format!("{what} in {} us", since.elapsed().as_micros()).as_bytes(),
        );
    };

    // Memory first: the children forked next inherit what they share with us.
    let t = std::time::Instant::now();
    let adopted = inherited.adopt(p)?;
    let (layout, zone) = reserve_zone(pid, p, ctx.plan, &adopted)?;
    log(
        &format!(
            "zone {:#x}-{:#x} reserved",
            layout.zone_start, layout.zone_end
        ),
        t,
    );
    let t = std::time::Instant::now();
    memory::premap_and_fill(images, ctx.shared, ctx.files, p, &layout, &zone, &adopted)?;
    log(
        &format!(
            "memory premapped and filled ({} vmas inherited from the parent)",
            adopted.len()
        ),
        t,
    );
    fork_children(
        ctx,
        pid,
        &memory::Inherited::of(p, &layout, &zone, &adopted),
    )?;

    // Every process exists and has attached its segments.
    if p.pstree.ppid == 0 {
        crate::ipc::remove_destroyed(images, pid)?;
    }
    crate::ipc::restore_undo(images, p)?;
    crate::ipc::touch_semaphores(images, pid)?;
    let started = std::time::Instant::now();
    // Zombie children exit after the barrier; their SIGCHLD must not look like one of
    // the image's pending signals.
    settle_zombie_children(ctx, pid)?;
    proc_settings(ctx, p);

    // The fd table: our own fds are above every target number, so the targets can be
    // put in place directly; everything else inherited is then closed.
    let dir_flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let cwd = ctx
        .files
        .open_entry(pid, images, p.fs.cwd_id, dir_flags, "cwd")?;
    // Above everything inherited: a process sharing our fd table closes what is between.
    let cwd = fs::move_above(cwd, ctx.private_fds).ctx(pid, || "move the cwd fd".into())?;
    let root_reg = images.reg_file(p.fs.root_id, "root")?;
    let exe = ctx.files.open_entry(
        pid,
        images,
        p.mm.exe_file_id,
        libc::O_RDONLY | libc::O_CLOEXEC,
        "executable",
    )?;
    let exe = fs::move_above(exe, ctx.private_fds).ctx(pid, || "move the exe fd".into())?;
    // A table shared with the parent (CLONE_FILES) is the parent's to set up.
    if !shares_parent_table(ctx, pid) {
        ctx.files.install(p)?;
        ctx.files.install_late(token, images, p)?;
        let mut keep: Vec<RawFd> = p.fds.iter().map(|f| f.fd as RawFd).collect();
        keep.extend([ctx.to_stasis, ctx.barrier, ctx.go]);
        fs::close_all_except(token, &keep, ctx.private_fds)
            .ctx(pid, || "close inherited fds".into())?;
        ctx.files.take_locks(images, p)?;
    }

    // Where the process runs: cwd first (by fd), then the root.
    fs::fchdir(cwd.as_fd()).ctx(pid, || "fchdir to the cwd".into())?;
    drop(cwd);
    if root_reg.name != "/" {
        fs::chroot(std::path::Path::new(&root_reg.name))
            .ctx(pid, || format!("chroot to {}", root_reg.name))?;
    }
    if let Some(mask) = p.fs.umask {
        process::umask(mask);
    }
    process::set_name(&p.tc().comm).ctx(pid, || "set the process name".into())?;
    restorer::disable_sigaltstack().ctx(pid, || "disable our sigaltstack".into())?;

    log("fds, cwd and root set up", started);
    let t = std::time::Instant::now();

    // The restorer's program.
    let bootstrap = layout.bootstrap;
    let code_len = blob::code_len();
    let mut arena = Arena::new(bootstrap + code_len);
    let mut prog = Program::default();
    memory::emit_moves(&mut prog, p, &layout)?;
    // The kernel refuses to change the exe link while the old exe is mapped, which is
    // the case when the image's program is stasis itself (the built-in workload); then
    // the link is already right.
    let same_exe = match (
        fs::fstat(exe.as_fd()),
        fs::stat(std::path::Path::new("/proc/self/exe")),
    ) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    };
    let exe_fd = if same_exe { None } else { Some(fs::leak(exe)) };
    task::emit_mm(&mut prog, &mut arena, p, exe_fd);
    task::emit_process_state(&mut prog, &mut arena, p)?;
    let regenerated = task::timers_regenerating_signals(p);
    let features = sigframe::loadable_features(p.tc().stasis_xcomp_perm.unwrap_or(0));
    // Further threads, created with their tids once the process-wide state is in place;
    // each runs its own part of the program on a stack of its own and ends in its own
    // frame. They start with root's credentials and set their own, as the leader does.
    for (tid, tcore) in &p.threads {
        let mut tp = Program::default();
        task::emit_thread_state(
            &mut tp,
            &mut arena,
            pid,
            *tid,
            tcore,
            &images.seccomp,
            &regenerated,
        )?;
        let frame = thread_frame(&mut arena, tcore, 0, features);
        tp.trap();
        tp.sigreturn(frame);
        let stack = arena.reserve(THREAD_STACK, 64);
        let tid_array = arena.push(&tid.to_le_bytes(), 8);
        let args = clone_args_bytes(&stasis_sys::abi::CloneArgs {
            flags: THREAD_FLAGS,
            set_tid: tid_array,
            set_tid_size: 1,
            stack,
            stack_size: THREAD_STACK,
            ..Default::default()
        });
        let args_addr = arena.push(&args, 8);
        prog.clone_thread(args_addr, tp, format!("create thread {tid}"));
    }
    task::emit_posix_timers(&mut prog, &mut arena, p)?;
    task::emit_thread_state(
        &mut prog,
        &mut arena,
        pid,
        pid,
        &p.core,
        &images.seccomp,
        &regenerated,
    )?;
    let frame = thread_frame(&mut arena, &p.core, p.tc().blk_sigset, features);
    prog.trap();
    prog.sigreturn(frame);
    let stack = arena.reserve(BLOB_STACK, 4096);
    let header = prog.emit(&mut arena);

    // Copy blob and arena into the bootstrap region.
    let total = (code_len + arena.bytes().len() as u64).next_multiple_of(4096);
    if total > layout::BOOTSTRAP_RESERVE {
        return Err(RestoreError::Unsupported {
            pid,
            resource: "restorer program".into(),
            reason: format!(
                "needs {total} bytes, more than the {} reserved",
                layout::BOOTSTRAP_RESERVE
            ),
        });
    }
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    zone.map(
        bootstrap,
        total,
        rw,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        None,
        0,
    )
    .ctx(pid, || "map the bootstrap region".into())?;
    zone.write(bootstrap, &blob::image_at(bootstrap))
        .ctx(pid, || "copy the restorer".into())?;
    zone.write(arena.base(), arena.bytes())
        .ctx(pid, || "copy the restorer program".into())?;
    zone.protect(bootstrap, code_len, libc::PROT_READ | libc::PROT_EXEC)
        .ctx(pid, || "protect the restorer".into())?;

    log("restorer program built and copied", t);
    let syscall_insn = blob::syscall_insn(bootstrap).ok_or_else(|| {
        RestoreError::Other("the restorer blob has no syscall instruction".into())
    })?;
    restorer::unregister_own_rseq().ctx(pid, || "unregister our rseq area".into())?;
    Ok(Jump {
        zone,
        entry: blob::entry(bootstrap),
        header,
        stack_top: stack + BLOB_STACK,
        ready: Ready {
            header,
            bootstrap,
            syscall_insn,
            // The owner of a shared table (not a process that shares its parent's).
            close_from: if in_shared_table(ctx, pid) && !shares_parent_table(ctx, pid) {
                ctx.high as u64
            } else {
                0
            },
        },
    })
}

/// The flags of a thread as pthread_create makes it (TLS is set by the thread itself).
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// `struct clone_args` as the kernel reads it.
fn clone_args_bytes(a: &stasis_sys::abi::CloneArgs) -> Vec<u8> {
    [
        a.flags,
        a.pidfd,
        a.child_tid,
        a.parent_tid,
        a.exit_signal,
        a.stack,
        a.stack_size,
        a.tls,
        a.set_tid,
        a.set_tid_size,
        a.cgroup,
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect()
}

/// The rt_sigframe a thread returns through: its registers, FPU state, mask, altstack.
/// `fallback_mask` serves images that keep the mask only in the task core.
fn thread_frame(
    arena: &mut Arena,
    core: &stasis_images::pb::CoreEntry,
    fallback_mask: u64,
    features: u64,
) -> u64 {
    let ti = core.thread_info.as_ref().expect("validated at load");
    let tcore = core.thread_core.as_ref().expect("validated at load");
    sigframe::build(
        arena,
        &sigframe::FrameInput {
            regs: ti.gpregs.as_ref().expect("validated at load"),
            fpregs: ti.fpregs.as_ref().expect("validated at load"),
            sigmask: tcore.blk_sigset.unwrap_or(fallback_mask),
            altstack: tcore.sas.as_ref(),
            features,
        },
    )
}

/// Joins the cgroups the image says, where they exist (a missing cgroup or a refused move
/// is a warning: the process still runs, in ours).
fn join_cgroups(ctx: &Context<'_>, pid: Pid) {
    let Some(p) = ctx.images.processes.iter().find(|p| p.pid() == pid) else {
        return;
    };
    let Some(set) = p
        .tc()
        .cg_set
        .and_then(|id| ctx.images.cgroups.iter().find(|s| s.id == id))
    else {
        return;
    };
    let warn = |what: String| send(ctx, pid, MSG_WARN, what.as_bytes());
    let current = proc::read_cgroups(pid).unwrap_or_default();
    let mounts = proc::cgroup_mounts().unwrap_or_default();
    for m in &set.ctls {
        if current
            .iter()
            .any(|(n, path)| *n == m.name && *path == m.path)
        {
            continue;
        }
        let Some((_, mount)) = mounts.iter().find(|(n, _)| *n == m.name) else {
            warn(format!(
                "process {pid}: cgroup hierarchy {:?} is not mounted here",
                m.name
            ));
            continue;
        };
        let procs = mount
            .join(m.path.trim_start_matches('/'))
            .join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, pid.to_string()) {
            warn(format!(
                "process {pid}: cannot join cgroup {}: {e}",
                procs.display()
            ));
        }
    }
}

/// Values set through /proc: oom_score_adj and loginuid. Lowering oom_score_adj needs
/// CAP_SYS_RESOURCE, which stasis may lack: that is a warning, not a failed restore.
fn proc_settings(ctx: &Context<'_>, p: &ProcessImage) {
    let pid = p.pid();
    let tc = p.tc();
    let warn = |what: String| send(ctx, pid, MSG_WARN, what.as_bytes());
    if let Some(adj) = tc.oom_score_adj
        && let Err(e) = std::fs::write("/proc/self/oom_score_adj", adj.to_string())
    {
        warn(format!(
            "process {pid}: cannot set oom_score_adj to {adj}: {e}"
        ));
    }
    if let Some(uid) = tc.loginuid {
        let current = std::fs::read_to_string("/proc/self/loginuid").unwrap_or_default();
        if current.trim() != uid.to_string()
            && let Err(e) = std::fs::write("/proc/self/loginuid", uid.to_string())
        {
            warn(format!("process {pid}: cannot set loginuid to {uid}: {e}"));
        }
    }
}

/// Waits until every zombie child has exited (without reaping it) and drops the SIGCHLD
/// that produced.
fn settle_zombie_children(ctx: &Context<'_>, pid: Pid) -> Result<()> {
    let mut any = false;
    for c in ctx
        .plan
        .children
        .get(&pid)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if c.zombie {
            process::wait_exited_nowait(c.pid).ctx(pid, || format!("wait for zombie {}", c.pid))?;
            any = true;
        }
    }
    if any {
        signal::drain_pending(libc::SIGCHLD).ctx(pid, || "drop SIGCHLD".into())?;
    }
    Ok(())
}

/// Plans the zone against our current layout and reserves it; retries if something of
/// ours appeared in the chosen range meanwhile.
fn reserve_zone(
    pid: Pid,
    p: &ProcessImage,
    plan: &Plan,
    adopted: &[(usize, memory::InheritedSlot<'_>)],
) -> Result<(Layout, Reservation)> {
    let inherited: Vec<(usize, u64)> = adopted.iter().map(|(i, s)| (*i, s.slot)).collect();
    for _ in 0..4 {
        // maps, not smaps: the ranges are all the plan needs, and smaps would walk every
        // page (those inherited from the parent included).
        let current = proc::read_maps(process::getpid())
            .map_err(|e| RestoreError::Other(format!("process {pid}: {e}")))?;
        let layout =
            layout::plan(&current, &p.mm.vmas, &plan.targets, &inherited).ok_or_else(|| {
                RestoreError::Unsupported {
                    pid,
                    resource: "address space".into(),
                    reason: "no free range to build the image's memory in".into(),
                }
            })?;
        match Reservation::new(layout.zone_start, layout.zone_end - layout.zone_start) {
            Ok(zone) => return Ok((layout, zone)),
            Err(stasis_sys::Errno(libc::EEXIST)) => continue,
            Err(errno) => {
                return Err(RestoreError::Sys {
                    pid,
                    what: "reserve the restore zone".into(),
                    errno,
                });
            }
        }
    }
    Err(RestoreError::Other(format!(
        "process {pid}: could not reserve a restore zone"
    )))
}
