//! Files, pipes, event fds, terminals and IPC (one self-verifying fixture each).

use crate::harness::{
    Scratch, Start, checkpoint_restore_fixture, checkpoint_restore_fixture_with,
    leave_running_then_restore, setup, start, stasis,
};

#[test]
fn pipes_with_data_in_flight() {
    checkpoint_restore_fixture("pipes", Start::new("pipes"));
}

/// The data in flight is copied, not consumed: the original tree still reads it all.
#[test]
fn leave_running_pipes() {
    leave_running_then_restore("leave_running_pipes", Start::new("pipes"));
}

#[test]
fn fifos_with_data_in_flight() {
    checkpoint_restore_fixture("fifo", Start::in_dir("fifo"));
}

#[test]
fn eventfds() {
    checkpoint_restore_fixture("eventfd", Start::new("eventfd"));
}

#[test]
fn epoll_targets() {
    checkpoint_restore_fixture("epoll", Start::new("epoll"));
}

#[test]
fn signalfd_with_pending_signals() {
    checkpoint_restore_fixture("signalfd", Start::new("signalfd"));
}

#[test]
fn timerfds() {
    checkpoint_restore_fixture("timerfd", Start::new("timerfd"));
}

#[test]
fn inotify_watches() {
    checkpoint_restore_fixture("inotify", Start::in_dir("inotify"));
}

#[test]
fn fanotify_marks() {
    checkpoint_restore_fixture("fanotify", Start::in_dir("fanotify"));
}

#[test]
fn pidfds_of_live_and_dead_processes() {
    checkpoint_restore_fixture("pidfd", Start::new("pidfd"));
}

#[test]
fn memfds_open_and_mapped() {
    checkpoint_restore_fixture("memfd", Start::new("memfd"));
}

#[test]
fn deleted_files_still_open() {
    checkpoint_restore_fixture("ghost", Start::in_dir("ghost"));
}

#[test]
fn renamed_proc_and_owned_files() {
    checkpoint_restore_fixture("files_more", Start::in_dir("files_more"));
}

#[test]
fn descriptions_shared_between_processes() {
    checkpoint_restore_fixture("shared_fds", Start::in_dir("shared_fds"));
}

#[test]
fn deleted_files_with_other_links_via_link_remap() {
    checkpoint_restore_fixture_with(
        "link_remap",
        Start::in_dir("link_remap"),
        &["--link-remap"],
        &[],
    );
}

#[test]
fn fd_tables_and_fs_shared_between_processes() {
    checkpoint_restore_fixture("shared_tables", Start::in_dir("shared_tables"));
}

#[test]
fn pseudo_terminals_inside_the_tree() {
    checkpoint_restore_fixture("pty", Start::new("pty"));
}

#[test]
fn leave_running_pseudo_terminals() {
    leave_running_then_restore("leave_running_pty", Start::new("pty"));
}

#[test]
fn file_locks_of_every_kind() {
    checkpoint_restore_fixture_with("locks", Start::in_dir("locks"), &["--file-locks"], &[]);
}

/// Without --file-locks, a tree holding locks is refused, and left running unharmed.
#[test]
fn file_locks_need_the_option() {
    let _serial = setup();
    let scratch = Scratch::new("locks_refused");
    let mut run = start(&scratch, Start::in_dir("locks"));
    let images = scratch.join("images");
    let out = stasis(&[
        "dump",
        "-t",
        &run.pid.to_string(),
        "-D",
        images.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a tree holding locks was dumped");
    assert!(
        err.contains("--file-locks") && err.contains(&format!("process {}", run.pid)),
        "unclear error: {err}"
    );
    run.assert_pass();
}

#[test]
fn sysv_ipc_in_a_namespace_of_its_own() {
    checkpoint_restore_fixture("ipc_sysv", Start::new("ipc_sysv"));
}

/// Saving the semaphores' adjustments probes them from inside the processes: the tree that
/// goes on running must find them (and the values) as they were.
#[test]
fn leave_running_sysv_ipc() {
    leave_running_then_restore("leave_running_ipc_sysv", Start::new("ipc_sysv"));
}

#[test]
fn posix_message_queues() {
    checkpoint_restore_fixture("mqueue", Start::new("mqueue"));
}

/// The messages are taken out and put back, and the notification fired and registered
/// again: the tree that goes on running finds the queue as it was.
#[test]
fn leave_running_posix_message_queues() {
    leave_running_then_restore("leave_running_mqueue", Start::new("mqueue"));
}
