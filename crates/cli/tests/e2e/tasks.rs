//! Process trees, threads and per-task kernel state (one self-verifying fixture each).

use stasis_sys::process;

use crate::harness::{
    Scratch, Start, checkpoint_restore_fixture, descendants, dump, leave_running_then_restore,
    read_lossy, restore, setup, start, stasis, status_field,
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

/// `--new-pid-ns`: the images restore while the original tree still runs on their pids.
/// The restored tree sees its image pids inside a namespace of its own (the fixture checks
/// its pids, groups and sessions), and both trees pass.
#[test]
fn new_pid_ns_while_the_original_runs() {
    let _serial = setup();
    let scratch = Scratch::new("new_pid_ns");
    let mut run = start(&scratch, Start::new("tree"));
    let images = scratch.join("images");
    dump(run.pid, &images, &["--leave-running"]);
    let pidfile = scratch.join("restored.pid");
    restore(
        &images,
        &["--new-pid-ns", "--pidfile", pidfile.to_str().unwrap()],
    );
    let host: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid in the pidfile");
    assert_ne!(
        host, run.pid,
        "the restored root has the original's host pid"
    );
    let nspid = status_field(host, "NSpid").expect("restored root's status");
    let nspid: Vec<i32> = nspid
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        nspid,
        vec![host, run.pid],
        "the restored root's pids (host, namespace)"
    );
    // The namespace's init is the root's parent; it passes on the root's end.
    let init: i32 = status_field(host, "PPid").unwrap().parse().unwrap();
    let init_ns = status_field(init, "NSpid").unwrap();
    assert_eq!(
        init_ns.split_whitespace().last(),
        Some("1"),
        "init is pid 1"
    );
    process::kill(host, libc::SIGTERM).unwrap();
    let status = process::wait_exit(init).expect("wait for the namespace's init");
    let verdict = read_lossy(&run.verdict);
    assert!(
        verdict.starts_with("PASS") && status == process::ExitStatus::Code(0),
        "restored tree: {status:?}, verdict {verdict:?}"
    );
    let _ = std::fs::remove_file(&run.verdict);
    run.assert_pass();
}
