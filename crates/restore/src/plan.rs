//! The restore plan: who forks whom, and how each process gets its session and process
//! group.
//!
//! A session can only be created (`setsid`) or inherited, and a process group joined only
//! while a member of it exists in the same session, so the order is fixed: every process
//! is forked by its parent (keeping the parent/child links), creates its session or group
//! right after the fork if it leads one, and only when the whole tree exists (a barrier
//! run by stasis) joins a group led by someone else.
//!
//! A session or group whose leader is gone (its pid no longer in the tree) gets a
//! temporary **helper** process with the leader's pid, forked by the parent of its first
//! member: it calls `setsid` (a session's) or `setpgid(0, 0)` (a group's), forks the
//! members that must inherit its session with `CLONE_PARENT` (so their parent is still
//! the image's), and exits once the tree is rebuilt; its parent reaps it before running
//! on.

use std::collections::HashMap;

use stasis_sys::Pid;

use crate::error::{RestoreError, Result};
use crate::image::Images;

/// What one process does about its session and group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionPlan {
    /// `setsid()` right after the fork.
    pub setsid: bool,
    /// `setpgid(0, 0)` right after the fork (it leads its group, not its session).
    pub lead_group: bool,
    /// `setpgid(0, pgid)` once every process exists.
    pub join_group: Option<Pid>,
}

/// A child to fork.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child {
    /// Its pid.
    pub pid: Pid,
    /// Whether it is a zombie.
    pub zombie: bool,
}

/// A temporary process standing in for a session or group leader that is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helper {
    /// The leader's pid (so the session or group id comes out right).
    pub pid: Pid,
    /// `setsid()` (a session's leader), else `setpgid(0, 0)` (a group's).
    pub setsid: bool,
    /// Children of the helper's parent that it forks (with CLONE_PARENT) so that they
    /// inherit its session.
    pub forks: Vec<Pid>,
}

/// The plan for the whole tree.
#[derive(Debug, Default)]
pub struct Plan {
    /// Session and group actions by pid.
    pub sessions: HashMap<Pid, SessionPlan>,
    /// Children of each process, in image order (those a helper forks included).
    pub children: HashMap<Pid, Vec<Child>>,
    /// Helpers each process forks (before its children).
    pub helpers: HashMap<Pid, Vec<Helper>>,
    /// Every pid the restore creates (processes, zombies, threads).
    pub all_pids: Vec<Pid>,
    /// Processes (alive and zombie), the ones that report "created".
    pub processes: usize,
    /// Extra clone flags of each process: `CLONE_FILES` / `CLONE_FS` when it shares its
    /// parent's fd table or fs context (processes made with those flags, not threads).
    pub clone_flags: HashMap<Pid, u64>,
    /// Every address range any process of the tree will map, sorted. Restore zones avoid
    /// all of them: a child inherits its parent's zone along with the memory it shares,
    /// so no process's final placement may land on another's zone.
    pub targets: Vec<(u64, u64)>,
}

/// Builds the plan; sessions and groups that cannot be rebuilt are an error.
pub fn build(images: &Images, shell_job: bool) -> Result<Plan> {
    let mut plan = Plan::default();
    // (pid, ppid, pgid, sid) of every member, alive or zombie.
    let mut members: Vec<(Pid, Pid, Pid, Pid, bool)> = Vec::new();
    for p in &images.processes {
        let e = &p.pstree;
        members.push((
            e.pid as Pid,
            e.ppid as Pid,
            e.pgid as Pid,
            e.sid as Pid,
            false,
        ));
        plan.all_pids.extend(e.threads.iter().map(|t| *t as Pid));
    }
    for z in &images.zombies {
        let e = &z.pstree;
        members.push((
            e.pid as Pid,
            e.ppid as Pid,
            e.pgid as Pid,
            e.sid as Pid,
            true,
        ));
        plan.all_pids.push(e.pid as Pid);
    }
    plan.processes = members.len();
    let find = |pid: Pid| members.iter().find(|m| m.0 == pid).copied();
    let (root, _, root_pgid, root_sid, _) = members[0];
    if root_sid != root && !shell_job {
        return Err(RestoreError::Other(format!(
            "process {root} was not a session leader (session {root_sid}); restore it with \
             --shell-job"
        )));
    }
    for &(pid, ppid, pgid, sid, zombie) in &members {
        if pid != root {
            plan.children
                .entry(ppid)
                .or_default()
                .push(Child { pid, zombie });
        }
        let mut s = SessionPlan::default();
        // The root of a shell job joins our session and, unless it led one, our group.
        let external = |id: Pid, root_id: Pid| shell_job && id == root_id && root_id != root;
        if sid == pid {
            if pgid != pid {
                return Err(RestoreError::Other(format!(
                    "process {pid} leads session {sid} but is in group {pgid}"
                )));
            }
            s.setsid = true;
        } else {
            // The session is inherited from the parent: it must be the parent's.
            let parent_sid = if pid == root {
                sid
            } else {
                find(ppid).map_or(0, |p| p.3)
            };
            let inherited_ok = parent_sid == sid || external(sid, root_sid);
            // A session whose leader is gone comes from a helper the parent forks.
            let via_helper = !inherited_ok && pid != root && !members.iter().any(|m| m.0 == sid);
            if !inherited_ok && !via_helper {
                return Err(RestoreError::Unsupported {
                    pid,
                    resource: format!("session {sid}"),
                    reason: format!(
                        "its parent {ppid} is in session {parent_sid}, and its leader {sid} is \
                         alive elsewhere in the tree: a session can only be inherited"
                    ),
                });
            }
            if via_helper {
                let helpers = plan.helpers.entry(ppid).or_default();
                match helpers.iter_mut().find(|h| h.pid == sid) {
                    Some(h) => h.forks.push(pid),
                    None => helpers.push(Helper {
                        pid: sid,
                        setsid: true,
                        forks: vec![pid],
                    }),
                }
            }
            if pgid == pid {
                s.lead_group = true;
            } else if pid != root {
                let parent_pgid = if via_helper {
                    sid
                } else {
                    find(ppid).map_or(0, |p| p.2)
                };
                if pgid != parent_pgid && !external(pgid, root_pgid) {
                    // A zombie leader still holds its group until it is reaped.
                    if !members.iter().any(|m| m.0 == pgid) {
                        if via_helper {
                            return Err(RestoreError::Unsupported {
                                pid,
                                resource: format!("process group {pgid}"),
                                reason: format!(
                                    "its leader is gone, and so is the leader of its session \
                                     {sid}: helpers for both are not supported yet"
                                ),
                            });
                        }
                        let helpers = plan.helpers.entry(ppid).or_default();
                        if !helpers.iter().any(|h| h.pid == pgid) {
                            helpers.push(Helper {
                                pid: pgid,
                                setsid: false,
                                forks: Vec::new(),
                            });
                        }
                    }
                    s.join_group = Some(pgid);
                }
            }
        }
        plan.sessions.insert(pid, s);
    }
    plan.all_pids
        .extend(plan.helpers.values().flatten().map(|h| h.pid));
    for p in &images.processes {
        let Some(parent) = images
            .processes
            .iter()
            .find(|q| q.pstree.pid == p.pstree.ppid)
        else {
            continue;
        };
        let mut flags = 0u64;
        if p.ids.files_id == parent.ids.files_id {
            flags |= libc::CLONE_FILES as u64;
        }
        if p.ids.fs_id == parent.ids.fs_id {
            flags |= libc::CLONE_FS as u64;
        }
        if flags != 0 {
            plan.clone_flags.insert(p.pid(), flags);
        }
    }
    plan.targets = images
        .processes
        .iter()
        .flat_map(|p| p.mm.vmas.iter().map(|v| (v.start, v.end)))
        .collect();
    plan.targets.sort_unstable();
    plan.targets.dedup();
    Ok(plan)
}
