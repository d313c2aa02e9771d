//! Sockets (one self-verifying fixture each).

use std::process::{Command, Stdio};

use crate::harness::{
    Scratch, Start, assert_crit_decodes, checkpoint_restore_fixture,
    checkpoint_restore_fixture_with, leave_running_then, leave_running_then_restore,
    leave_running_then_with, read_lossy, setup, start, stasis, stasis_bin,
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
    leave_running_then(
        "leave_running_sk_inet",
        Start::new("sk_inet"),
        restore_in_fresh_netns,
    );
}

/// Each member of a SO_REUSEPORT group gets back exactly the datagrams it held: the
/// group's hash would hand some of them to another member.
#[test]
fn udp_reuseport_group_members_keep_their_own_datagrams() {
    checkpoint_restore_fixture("sk_udp_reuseport", Start::new("sk_udp_reuseport"));
}

/// Restores `images` detached in a new network namespace with loopback up.
fn restore_in_fresh_netns(images: &std::path::Path) {
    let script = format!(
        "ip link set lo up && exec {} restore -D {} -d --tcp-established -v4 -o restore.log",
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
}

#[test]
fn tcp_connections_in_every_state_with_data_in_flight() {
    checkpoint_restore_fixture_with(
        "sk_tcp",
        Start::new("sk_tcp"),
        &["--tcp-established"],
        &["--tcp-established"],
    );
}

/// Without `--tcp-established` a tree with a TCP connection is refused, and goes on as it
/// was; a connection waiting in an accept queue is refused even with it (it has no fd and
/// no repair interface), after the other connections were locked and repaired: they must
/// come back from that too.
#[test]
fn tcp_refusals_leave_the_connections_working() {
    let _serial = setup();
    for (args, opts, needle) in [
        (&[][..], &[][..], "--tcp-established"),
        (
            &["accept-queue"][..],
            &["--tcp-established"][..],
            "accept queue",
        ),
    ] {
        let scratch = Scratch::new("sk_tcp_refused");
        let mut run = start(
            &scratch,
            Start {
                args,
                ..Start::new("sk_tcp")
            },
        );
        let images = scratch.join("images");
        let pid = run.pid.to_string();
        let mut cmd = vec!["dump", "-t", &pid, "-D", images.to_str().unwrap()];
        cmd.extend_from_slice(opts);
        let out = stasis(&cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "dump did not fail: {err}");
        assert!(
            err.trim().lines().count() == 1 && err.contains(needle),
            "unclear error: {err}"
        );
        run.assert_pass();
    }
}

/// The connections are put back out of repair mode and unlocked: the tree that goes on
/// running streams on; the images then restore in a network namespace of their own (the
/// original's closed connections linger in TIME_WAIT here).
#[test]
fn leave_running_tcp_connections_restored_in_a_fresh_network_namespace() {
    leave_running_then_with(
        "leave_running_sk_tcp",
        Start::new("sk_tcp"),
        &["--tcp-established"],
        restore_in_fresh_netns,
    );
}

/// Two hosts (network namespaces joined by a veth pair), removed when dropped.
struct TwoHosts {
    server: String,
    client: String,
}

const SERVER_ADDR: &str = "10.199.0.1";

impl TwoHosts {
    fn new() -> TwoHosts {
        let id = std::process::id();
        let hosts = TwoHosts {
            server: format!("stasis-s{id}"),
            client: format!("stasis-c{id}"),
        };
        let (vs, vc) = (format!("vs{id}"), format!("vc{id}"));
        let (s, c) = (hosts.server.as_str(), hosts.client.as_str());
        for cmd in [
            vec!["netns", "add", s],
            vec!["netns", "add", c],
            vec!["link", "add", &vs, "type", "veth", "peer", "name", &vc],
            vec!["link", "set", &vs, "netns", s],
            vec!["link", "set", &vc, "netns", c],
            vec!["-n", s, "addr", "add", "10.199.0.1/24", "dev", &vs],
            vec!["-n", c, "addr", "add", "10.199.0.2/24", "dev", &vc],
            vec!["-n", s, "link", "set", &vs, "up"],
            vec!["-n", c, "link", "set", &vc, "up"],
            vec!["-n", s, "link", "set", "lo", "up"],
            vec!["-n", c, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&cmd).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        hosts
    }

    /// Runs stasis inside the server's namespace, asserting success.
    fn stasis_on_server(&self, args: &[&str], log: &std::path::Path) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.server, stasis_bin()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run stasis");
        assert!(
            out.status.success(),
            "stasis {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            read_lossy(log)
        );
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A client on another host streams through a TCP connection to a server that is
/// checkpointed (killed) and restored meanwhile: it sees no reset and no byte lost,
/// repeated or reordered, and the stream flows on after the restore.
#[test]
fn tcp_client_on_another_host_streams_through_a_server_restore() {
    let _serial = setup();
    let hosts = TwoHosts::new();
    let scratch = Scratch::new("tcp_two_hosts_server");
    let client_scratch = Scratch::new("tcp_two_hosts_client");
    let mut server = start(
        &scratch,
        Start {
            args: &["server", SERVER_ADDR, "7411"],
            netns: Some(&hosts.server),
            ..Start::new("sk_tcp_peer")
        },
    );
    let mut client = start(
        &client_scratch,
        Start {
            args: &["client", SERVER_ADDR, "7411"],
            netns: Some(&hosts.client),
            ..Start::new("sk_tcp_peer")
        },
    );
    let images = scratch.join("images");
    let dir = images.to_str().unwrap();
    let pid = server.pid.to_string();
    hosts.stasis_on_server(
        &[
            "dump",
            "-t",
            &pid,
            "-D",
            dir,
            "--tcp-established",
            "-v4",
            "-o",
            "dump.log",
        ],
        &images.join("dump.log"),
    );
    assert_crit_decodes(&images);
    server.reap_killed();
    hosts.stasis_on_server(
        &[
            "restore",
            "-D",
            dir,
            "-d",
            "--tcp-established",
            "-v4",
            "-o",
            "restore.log",
        ],
        &images.join("restore.log"),
    );
    client.assert_pass();
    server.assert_pass();
}
