//! Files, pipes, event fds, terminals and IPC (one self-verifying fixture each).

use crate::harness::{Start, checkpoint_restore_fixture, leave_running_then_restore};

/// A fixture that takes the test's scratch directory as its last argument.
fn in_dir(fixture: &'static str) -> Start<'static> {
    Start {
        dir_arg: true,
        ..Start::new(fixture)
    }
}

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
    checkpoint_restore_fixture("fifo", in_dir("fifo"));
}
