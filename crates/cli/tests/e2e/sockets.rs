//! Sockets (one self-verifying fixture each).

use std::process::{Command, Stdio};

use crate::harness::{
    Scratch, Start, checkpoint_restore_fixture, leave_running_then, leave_running_then_restore,
    read_lossy, setup, start, stasis, stasis_bin,
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

#[test]
fn inet_listeners_udp_queues_options_multicast() {
    checkpoint_restore_fixture("sk_inet", Start::new("sk_inet"));
}

/// The datagrams are peeked at, not taken: the tree that goes on running finds every one.
/// The images are then restored in a network namespace of their own (another host, as
/// far as the sockets can tell): the original's closed connections keep its ports in
/// TIME_WAIT here, which a listener without SO_REUSEADDR cannot bind over (nor could the
/// program itself).
#[test]
fn leave_running_inet_sockets_restored_in_a_fresh_network_namespace() {
    leave_running_then("leave_running_sk_inet", Start::new("sk_inet"), |images| {
        let script = format!(
            "ip link set lo up && exec {} restore -D {} -d -v4 -o restore.log",
            stasis_bin(),
            images.display()
        );
        let out = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .output()
            .expect("run unshare");
        assert!(
            out.status.success(),
            "restore in a new network namespace failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            read_lossy(&images.join("restore.log"))
        );
    });
}
