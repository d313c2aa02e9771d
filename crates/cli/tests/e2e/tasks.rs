//! Process trees, threads and per-task kernel state (one self-verifying fixture each).

use crate::harness::{
    Scratch, Start, checkpoint_restore_fixture, descendants, leave_running_then_restore, setup,
    start, stasis, status_field,
};

#[test]
fn threads_with_per_thread_state() {
    checkpoint_restore_fixture("threads", Start::new("threads"));
}

#[test]
fn a_thousand_threads_in_futex_wait() {
    checkpoint_restore_fixture("threads_many", Start::new("threads_many"));
}

#[test]
fn tree_with_groups_and_sessions() {
    checkpoint_restore_fixture("tree", Start::new("tree"));
}

#[test]
fn zombies_keep_their_exit_status() {
    checkpoint_restore_fixture("zombies", Start::new("zombies"));
}

#[test]
fn stopped_child_stays_stopped() {
    checkpoint_restore_fixture("stopped", Start::new("stopped"));
}

#[test]
fn interval_and_posix_timers() {
    checkpoint_restore_fixture("timers", Start::new("timers"));
}

#[test]
fn credentials_and_capabilities() {
    checkpoint_restore_fixture("creds", Start::new("creds"));
}

#[test]
fn personality_prctl_sched_rlimits() {
    checkpoint_restore_fixture("task_misc", Start::new("task_misc"));
}

#[test]
fn stacked_seccomp_filters() {
    checkpoint_restore_fixture("seccomp", Start::new("seccomp"));
}

#[test]
fn seccomp_filters_installed_with_tsync() {
    checkpoint_restore_fixture(
        "seccomp_tsync",
        Start {
            args: &["tsync"],
            ..Start::new("seccomp")
        },
    );
}

#[test]
fn seccomp_strict_mode() {
    checkpoint_restore_fixture("seccomp_strict", Start::new("seccomp_strict"));
}

// The same states must survive a dump that leaves the tree running.

#[test]
fn leave_running_threads() {
    leave_running_then_restore("leave_running_threads", Start::new("threads"));
}

#[test]
fn leave_running_tree() {
    leave_running_then_restore("leave_running_tree", Start::new("tree"));
}

#[test]
fn leave_running_zombies() {
    leave_running_then_restore("leave_running_zombies", Start::new("zombies"));
}

#[test]
fn leave_running_stopped_child() {
    leave_running_then_restore("leave_running_stopped", Start::new("stopped"));
}

#[test]
fn leave_running_timers() {
    leave_running_then_restore("leave_running_timers", Start::new("timers"));
}

#[test]
fn leave_running_seccomp_tsync() {
    leave_running_then_restore(
        "leave_running_seccomp_tsync",
        Start {
            args: &["tsync"],
            ..Start::new("seccomp")
        },
    );
}

#[test]
fn memory_shared_copy_on_write_stays_shared() {
    checkpoint_restore_fixture(
        "cow",
        Start {
            args: &["64"],
            ..Start::new("cow")
        },
    );
}

/// The dump must not unshare copy-on-write pages of the tree it leaves running (reading
/// them with a pinning copy would): the fixture checks Pss in the original tree too.
#[test]
fn leave_running_cow() {
    leave_running_then_restore(
        "leave_running_cow",
        Start {
            args: &["64"],
            ..Start::new("cow")
        },
    );
}

/// A thread suspended in vfork() never stops for ptrace (the wait ignores everything but
/// SIGKILL): the dump must say so instead of hanging, and leave the tree as it was: the
/// fixture checks that vfork had not returned before SIGTERM, then finishes normally.
#[test]
fn dump_during_vfork_fails_cleanly() {
    let _serial = setup();
    let scratch = Scratch::new("vfork");
    let mut run = start(&scratch, Start::new("vfork"));
    let images = scratch.join("images");
    let out = stasis(&[
        "dump",
        "-t",
        &run.pid.to_string(),
        "-D",
        images.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "a vfork in progress was dumped");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "error is not one line: {err}"
    );
    assert!(
        err.contains(&format!("process {}", run.pid)) && err.contains("vfork"),
        "unclear error: {err}"
    );
    for pid in descendants(run.pid).into_iter().chain([run.pid]) {
        assert_eq!(
            status_field(pid, "TracerPid").as_deref(),
            Some("0"),
            "process {pid} is still traced after the failed dump"
        );
    }
    run.assert_pass();
}

#[test]
fn sessions_and_groups_whose_leader_is_gone() {
    checkpoint_restore_fixture("gone_leaders", Start::new("gone_leaders"));
}
