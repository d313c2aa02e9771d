//! The restore child: a fork of stasis with the image's pid that turns itself into the
//! restored process.
//!
//! It rebuilds what an ordinary process can do for itself (session, fd table, cwd, premapped
//! and filled memory), writes the restorer's program into the bootstrap region, tells the
//! parent where it is, waits for the parent to be attached, and jumps into the blob. It never
//! returns: it becomes the restored process or exits with an error message sent up first.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use stasis_sys::mem::Reservation;
use stasis_sys::process::RestoreChild;
use stasis_sys::{Pid, fs, proc, process, restorer};

use crate::error::{RestoreError, Result, SysContext};
use crate::image::{Images, ProcessImage};
use crate::layout::{self, Layout};
use crate::program::{Arena, Program};
use crate::{blob, files, memory, sigframe, task};

/// Stack for the blob, inside the bootstrap region.
const BLOB_STACK: u64 = 64 << 10;

/// Messages from the child to the parent.
pub(crate) const MSG_ERROR: u8 = b'E';
pub(crate) const MSG_READY: u8 = b'R';
pub(crate) const MSG_LOG: u8 = b'L';

/// Where the parent finds the restorer's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    pub header: u64,
    pub bootstrap: u64,
    pub syscall_insn: u64,
}

struct Jump {
    zone: Reservation,
    entry: u64,
    header: u64,
    stack_top: u64,
    ready: Ready,
}

/// What the restore needs from the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildOptions {
    pub shell_job: bool,
}

fn send(to_parent: &mut impl Write, tag: u8, payload: &[u8]) {
    let mut msg = vec![tag];
    msg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    msg.extend_from_slice(payload);
    // If the parent is gone there is nobody to tell.
    let _ = to_parent.write_all(&msg);
}

/// Runs in the child; never returns.
pub(crate) fn run(
    token: RestoreChild,
    images: &Images,
    p: &ProcessImage,
    opts: ChildOptions,
    to_parent: OwnedFd,
    from_parent: OwnedFd,
) -> ! {
    // The parent logs; the child only reports through the pipe.
    log::set_max_level(log::LevelFilter::Off);
    let mut to_parent = std::fs::File::from(to_parent);
    let mut from_parent = std::fs::File::from(from_parent);
    match prepare(&token, images, p, opts, &mut to_parent, &mut from_parent) {
        Err(e) => {
            send(&mut to_parent, MSG_ERROR, e.to_string().as_bytes());
            process::exit_now(1);
        }
        Ok(jump) => {
            let mut payload = Vec::new();
            for w in [
                jump.ready.header,
                jump.ready.bootstrap,
                jump.ready.syscall_insn,
            ] {
                payload.extend_from_slice(&w.to_le_bytes());
            }
            send(&mut to_parent, MSG_READY, &payload);
            // Wait until the parent has attached (it must see our final trap).
            let mut go = [0u8; 1];
            if from_parent.read_exact(&mut go).is_err() {
                process::exit_now(1);
            }
            drop(to_parent);
            drop(from_parent);
            let err = jump
                .zone
                .jump(token, jump.entry, jump.header, jump.stack_top);
            send(&mut std::io::sink(), MSG_ERROR, err.to_string().as_bytes());
            process::exit_now(1);
        }
    }
}

fn prepare(
    token: &RestoreChild,
    images: &Images,
    p: &ProcessImage,
    opts: ChildOptions,
    to_parent: &mut std::fs::File,
    from_parent: &mut std::fs::File,
) -> Result<Jump> {
    let pid = p.pid();
    let started = std::time::Instant::now();
    process::raise_nofile_limit().ctx(pid, || "raise RLIMIT_NOFILE".into())?;
    session(pid, p, opts)?;

    // The fd table: service fds (pipes) and the opened files go above every target fd,
    // everything else is closed, then the files are put at their numbers.
    let max_target = p
        .fds
        .iter()
        .map(|f| f.fd as RawFd)
        .max()
        .unwrap_or(2)
        .max(2);
    let high = max_target + 1;
    let moved_to = fs::move_above(
        to_parent
            .try_clone()
            .map_err(|e| RestoreError::Other(e.to_string()))?
            .into(),
        high,
    )
    .ctx(pid, || "move the status pipe".into())?;
    let moved_from = fs::move_above(
        from_parent
            .try_clone()
            .map_err(|e| RestoreError::Other(e.to_string()))?
            .into(),
        high,
    )
    .ctx(pid, || "move the control pipe".into())?;
    *to_parent = std::fs::File::from(moved_to);
    *from_parent = std::fs::File::from(moved_from);
    let (opened, installs) = files::open_all(images, p, high)?;
    let cwd = open_dir(pid, images, p.fs.cwd_id, "cwd")?;
    let cwd = fs::move_above(cwd, high).ctx(pid, || "move the cwd fd".into())?;
    let root_reg = images.reg_file(p.fs.root_id, "root")?;
    let exe_reg = images.reg_file(p.mm.exe_file_id, "exe")?;
    let exe = fs::open(
        std::path::Path::new(&exe_reg.name),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
    )
    .ctx(pid, || format!("open executable {}", exe_reg.name))?;
    let exe = fs::move_above(exe, high).ctx(pid, || "move the exe fd".into())?;
    let mut keep: Vec<RawFd> = opened.iter().map(|f| f.as_raw_fd()).collect();
    keep.extend([
        to_parent.as_raw_fd(),
        from_parent.as_raw_fd(),
        cwd.as_raw_fd(),
        exe.as_raw_fd(),
    ]);
    fs::close_all_except(token, &keep).ctx(pid, || "close inherited fds".into())?;
    files::install(pid, &opened, &installs)?;
    drop(opened);

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

    let log = |to: &mut std::fs::File, what: &str, since: std::time::Instant| {
        send(
            to,
            MSG_LOG,
            format!("{what} in {} us", since.elapsed().as_micros()).as_bytes(),
        );
    };
    log(to_parent, "session, fds, cwd and root set up", started);

    // Memory.
    let t = std::time::Instant::now();
    let (layout, zone) = reserve_zone(pid, p)?;
    log(
        to_parent,
        &format!(
            "zone {:#x}-{:#x} reserved",
            layout.zone_start, layout.zone_end
        ),
        t,
    );
    let t = std::time::Instant::now();
    memory::premap_and_fill(images, p, &layout, &zone)?;
    log(to_parent, "memory premapped and filled", t);
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
    task::emit_thread_state(&mut prog, &mut arena, pid, pid, &p.core)?;
    let ti = p.thread_info();
    let tc = p.tc();
    let frame = sigframe::build(
        &mut arena,
        &sigframe::FrameInput {
            regs: ti.gpregs.as_ref().expect("validated at load"),
            fpregs: ti.fpregs.as_ref().expect("validated at load"),
            sigmask: p.thread_core().blk_sigset.unwrap_or(tc.blk_sigset),
            altstack: p.thread_core().sas.as_ref(),
            features: sigframe::loadable_features(tc.stasis_xcomp_perm.unwrap_or(0)),
        },
    );
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

    log(to_parent, "restorer program built and copied", t);
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
        },
    })
}

fn open_dir(pid: Pid, images: &Images, id: u32, what: &str) -> Result<OwnedFd> {
    let reg = images.reg_file(id, what)?;
    fs::open(
        std::path::Path::new(&reg.name),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .ctx(pid, || format!("open {what} {}", reg.name))
}

/// Session and process group: a session leader creates its session; a shell job joins
/// ours, keeping a group of its own if it led one.
fn session(pid: Pid, p: &ProcessImage, opts: ChildOptions) -> Result<()> {
    let sid = p.pstree.sid as Pid;
    let pgid = p.pstree.pgid as Pid;
    if sid == pid {
        process::setsid().ctx(pid, || "setsid".into())?;
        return Ok(());
    }
    if !opts.shell_job {
        return Err(RestoreError::Other(format!(
            "process {pid} was not a session leader (session {sid}); restore it with --shell-job"
        )));
    }
    if pgid == pid {
        process::setpgid(0, 0).ctx(pid, || "setpgid".into())?;
    }
    Ok(())
}

/// Plans the zone against our current layout and reserves it; retries if something of
/// ours appeared in the chosen range meanwhile.
fn reserve_zone(pid: Pid, p: &ProcessImage) -> Result<(Layout, Reservation)> {
    for _ in 0..4 {
        let current = proc::read_smaps(process::getpid())
            .map_err(|e| RestoreError::Other(format!("process {pid}: {e}")))?;
        let layout =
            layout::plan(&current, &p.mm.vmas).ok_or_else(|| RestoreError::Unsupported {
                pid,
                resource: "address space".into(),
                reason: "no free range to build the image's memory in".into(),
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
