//! Restoring into a new pid namespace (`--new-pid-ns`, beyond CRIU): the tree gets its
//! image pids inside a namespace of its own, so a dump can be restored while its pids
//! are taken on the host (by the original, still running, for instance).
//!
//! stasis forks an **init** with `CLONE_NEWPID | CLONE_NEWNS`: pid 1 of the new namespace,
//! in a copy of our mount namespace made private, where it mounts a procfs of the new
//! namespace on `/proc` (so the tree, and the restore processes, see their own pids
//! there). Init forks the root with its image pid and then only reaps: orphans of the
//! tree, and at last the root, whose exit status it passes on (the namespace ends with
//! it). stasis, outside, knows the tree by host pids: [`PidSpace`] translates through
//! `NSpid` in `/proc/PID/status`.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::path::Path;

use stasis_sys::process::{self, ExitStatus, Forked, RestoreChild};
use stasis_sys::{Pid, fs, proc};

use crate::child::{self, Context, MSG_ERROR, send};

/// The namespaces the init of a new pid namespace is forked with.
pub(crate) const INIT_FLAGS: u64 = (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64;

/// Runs the namespace's init (pid 1): never returns.
pub(crate) fn run_init(token: RestoreChild, ctx: &Context<'_>, root: Pid) -> ! {
    log::set_max_level(log::LevelFilter::Off);
    let fail = |what: String| -> ! {
        send(ctx, root, MSG_ERROR, what.as_bytes());
        process::exit_now(1);
    };
    if let Err(e) = fs::make_mounts_private() {
        fail(format!("new pid namespace: make mounts private: {e}"));
    }
    if let Err(e) = fs::mount_proc(Path::new("/proc")) {
        fail(format!("new pid namespace: mount /proc: {e}"));
    }
    let flags = crate::ipc::root_clone_flags(ctx.images);
    match process::fork_with_pid(root, flags, libc::SIGCHLD) {
        Ok(Forked::Child(token)) => child::run(token, ctx, root, &Default::default()),
        Ok(Forked::Parent(_)) => {}
        Err(e) => fail(format!(
            "process {root}: cannot restore: clone3 with the image's pid in the new pid \
             namespace: {e}"
        )),
    }
    // Init keeps nothing open: the pipes to stasis are the restore processes' business,
    // and stasis's stdio may be a caller's pipe that must see end of file once stasis
    // exits, while init lives on with the tree.
    let _ = fs::close_all_except(&token, &[], RawFd::MAX);
    loop {
        match process::wait_any_status() {
            Ok(Some((pid, status))) if pid == root => {
                // A pid namespace's init cannot die of a signal sent from inside it; a
                // shell's convention stands in for death by signal.
                process::exit_now(match status {
                    ExitStatus::Code(c) => c,
                    ExitStatus::Signal(s) => 128 + s,
                });
            }
            Ok(Some(_)) => continue,
            _ => process::exit_now(1),
        }
    }
}

/// Where the restored tree's pids live, as seen by stasis.
#[derive(Debug)]
pub(crate) enum PidSpace {
    /// In our own pid namespace: image pids are host pids.
    Host,
    /// In a new namespace whose init is `init` (a host pid).
    Namespace {
        init: Pid,
        /// The namespace's `/proc/PID/ns/pid` link, to recognise its members.
        ns: std::path::PathBuf,
        /// Image (namespace) pid -> host pid, filled as processes are found.
        map: HashMap<Pid, Pid>,
    },
}

impl PidSpace {
    /// The pid space of a tree whose init is `init`, if any.
    pub fn new(init: Option<Pid>) -> PidSpace {
        match init {
            None => PidSpace::Host,
            Some(init) => PidSpace::Namespace {
                init,
                ns: proc::read_link(proc::path(init, "ns/pid")).unwrap_or_default(),
                map: HashMap::new(),
            },
        }
    }

    /// The host pid of the tree's process (or thread) `pid`; `None` if it does not exist
    /// (any more).
    pub fn host(&mut self, pid: Pid) -> Option<Pid> {
        let PidSpace::Namespace { ns, map, .. } = self else {
            return Some(pid);
        };
        if let Some(h) = map.get(&pid) {
            return Some(*h);
        }
        // Look through every process of the host once for the namespace's members.
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(host) = entry.file_name().to_string_lossy().parse::<Pid>() else {
                continue;
            };
            if proc::read_link(proc::path(host, "ns/pid")).ok().as_ref() != Some(&*ns) {
                continue;
            }
            if let Some(inner) = proc::read_status(host)
                .ok()
                .and_then(|s| s.ns_pid.last().copied())
            {
                map.insert(inner, host);
            }
        }
        map.get(&pid).copied()
    }

    /// The namespace's init, if there is one.
    pub fn init(&self) -> Option<Pid> {
        match self {
            PidSpace::Host => None,
            PidSpace::Namespace { init, .. } => Some(*init),
        }
    }
}

/// The pid of host task `tid` inside its innermost pid namespace.
pub(crate) fn inner_pid(tid: Pid) -> Pid {
    proc::read_status(tid)
        .ok()
        .and_then(|s| s.ns_pid.last().copied())
        .unwrap_or(tid)
}
