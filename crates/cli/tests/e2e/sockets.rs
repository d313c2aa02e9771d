//! Sockets (one self-verifying fixture each).

use crate::harness::{
    Scratch, Start, checkpoint_restore_fixture, leave_running_then_restore, setup, start, stasis,
};

#[test]
fn unix_socketpairs_bound_and_listening_sockets() {
    checkpoint_restore_fixture("sk_unix_basic", Start::in_dir("sk_unix_basic"));
}

/// The queues are read with MSG_PEEK only: the tree that goes on running finds every
/// byte and datagram still in flight.
#[test]
fn leave_running_unix_sockets() {
    leave_running_then_restore(
        "leave_running_sk_unix_basic",
        Start::in_dir("sk_unix_basic"),
    );
}

/// A dump refused after other sockets' queues were peeked at (and their SO_PEEK_OFF
/// moved) leaves every socket as it was: the fixture still checks every byte in flight,
/// its peek offsets and options.
#[test]
fn refused_socket_dump_leaves_the_sockets_unharmed() {
    let _serial = setup();
    let scratch = Scratch::new("sk_refused");
    let mut run = start(&scratch, Start::in_dir("sk_unix"));
    let images = scratch.join("images");
    let out = stasis(&[
        "dump",
        "-t",
        &run.pid.to_string(),
        "-D",
        images.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "dump did not fail: {err}");
    assert!(
        err.trim().lines().count() == 1
            && err.contains(&format!("process {}", run.pid))
            && err.contains("accept queue"),
        "unclear error: {err}"
    );
    run.assert_pass();
}
