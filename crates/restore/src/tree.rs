//! The restore of a whole dump: load, fork, supervise the child, finish, wait.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use stasis_images::ImageDir;
use stasis_sys::abi;
use stasis_sys::process::{self, ExitStatus, Forked};
use stasis_sys::ptrace::Tracee;
use stasis_sys::{Pid, signal};

use crate::child::{self, ChildOptions, MSG_ERROR, MSG_LOG, MSG_READY, Ready};
use crate::error::{RestoreError, Result, SysContext};
use crate::finalize;
use crate::image::{self, Images};

/// What to restore and how.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// Return once the tree runs (`-d`).
    pub detached: bool,
    /// The tree is a shell job (`-j`).
    pub shell_job: bool,
    /// Write the root pid here (`--pidfile`).
    pub pidfile: Option<PathBuf>,
}

/// How a restore ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The tree runs on its own (detached); its root pid.
    Detached(Pid),
    /// We waited for the root, which ended so.
    Exited(Pid, ExitStatus),
}

/// Restores the dump in `opts.dir`.
pub fn restore(opts: &RestoreOptions) -> Result<RestoreOutcome> {
    let t0 = Instant::now();
    let images = image::load(ImageDir::open(&opts.dir, false)?)?;
    log::info!("loaded images in {} us", t0.elapsed().as_micros());
    let root = &images.processes[0];
    let pid = root.pid();
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(RestoreError::PidInUse { pid });
    }

    let (c2p_read, c2p_write) = pipe()?;
    let (p2c_read, p2c_write) = pipe()?;
    // The child starts with every signal blocked; the restored mask comes from its frame.
    let old_mask = signal::block_all().ctx(pid, || "block signals".into())?;
    let forked = process::fork_with_pid(pid, 0, libc::SIGCHLD);
    let forked = match forked {
        Ok(f) => f,
        Err(e) => {
            let _ = signal::set_mask(old_mask);
            return Err(if e.0 == libc::EEXIST {
                RestoreError::PidInUse { pid }
            } else {
                RestoreError::Sys {
                    pid,
                    what: "clone3 with the image's pid".into(),
                    errno: e,
                }
            });
        }
    };
    let child_pid = match forked {
        Forked::Child(token) => {
            drop(c2p_read);
            drop(p2c_write);
            child::run(
                token,
                &images,
                root,
                ChildOptions {
                    shell_job: opts.shell_job,
                },
                c2p_write,
                p2c_read,
            )
        }
        Forked::Parent(child) => child,
    };
    let _ = signal::set_mask(old_mask);
    drop(c2p_write);
    drop(p2c_read);

    let result = supervise(&images, child_pid, c2p_read, p2c_write);
    if let Err(e) = result {
        // Never leave a half-restored process behind.
        let _ = process::kill(child_pid, libc::SIGKILL);
        let _ = process::wait_exit(child_pid);
        return Err(e);
    }
    log::info!("process {pid} restored in {} us", t0.elapsed().as_micros());
    if let Some(path) = &opts.pidfile {
        std::fs::write(path, pid.to_string())
            .map_err(|e| RestoreError::Other(format!("write pidfile {}: {e}", path.display())))?;
    }
    if opts.detached {
        return Ok(RestoreOutcome::Detached(pid));
    }
    let status = process::wait_exit(pid).ctx(pid, || "wait for the restored process".into())?;
    Ok(RestoreOutcome::Exited(pid, status))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = std::io::pipe().map_err(|e| RestoreError::Other(format!("pipe: {e}")))?;
    Ok((r.into(), w.into()))
}

/// Reads one message from the child: tag and payload; `None` if it closed the pipe.
fn read_message(from_child: &mut std::fs::File) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    from_child.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut payload = vec![0u8; len.min(1 << 20)];
    from_child.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}

fn supervise(images: &Images, pid: Pid, from_child: OwnedFd, to_child: OwnedFd) -> Result<()> {
    let _ = images;
    // Attach first: the child waits for our go before it can reach its final trap.
    let options = abi::PTRACE_O_EXITKILL | abi::PTRACE_O_TRACESYSGOOD;
    let tracee = Tracee::seize(pid, options).ctx(pid, || "attach to the restore child".into())?;
    let mut from_child = std::fs::File::from(from_child);
    let mut to_child = std::fs::File::from(to_child);
    let mut message = read_message(&mut from_child);
    while let Some((MSG_LOG, text)) = &message {
        log::debug!("process {pid}: {}", String::from_utf8_lossy(text));
        message = read_message(&mut from_child);
    }
    let ready = match message {
        Some((MSG_READY, p)) if p.len() == 24 => {
            let w = |i: usize| u64::from_le_bytes(p[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            Ready {
                header: w(0),
                bootstrap: w(1),
                syscall_insn: w(2),
            }
        }
        // The child's errors already name the process.
        Some((MSG_ERROR, p)) => {
            return Err(RestoreError::Other(
                String::from_utf8_lossy(&p).into_owned(),
            ));
        }
        _ => {
            return Err(RestoreError::Child {
                pid,
                message: "the restore child died while preparing".into(),
            });
        }
    };
    to_child
        .write_all(b"g")
        .map_err(|e| RestoreError::Other(format!("process {pid}: {e}")))?;
    drop(to_child);
    let in_syscall = finalize::finish(&tracee, &ready)?;
    tracee.detach(0).ctx(pid, || "detach".into())?;
    if in_syscall {
        finalize::wait_asleep(pid);
    }
    Ok(())
}
