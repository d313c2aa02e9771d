//! Sockets (one self-verifying fixture each).

use std::process::{Command, Stdio};

use crate::harness::{
    Scratch, Start, assert_crit_decodes, checkpoint_restore_fixture,
    checkpoint_restore_fixture_with, dump, dump_refused, leave_running_then,
    leave_running_then_restore, leave_running_then_with, read_lossy, restore, setup, start,
    stasis_bin, status_field,
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

/// Connections waiting in an accept queue with data their clients sent (which only
/// accepting them can read), accepted connections, path, abstract and unnamed sockets:
/// the dump, which kills the tree, reads the waiting data last; the restored listener has
/// the same connections waiting, in order, with their bytes.
#[test]
fn unix_accept_queues_with_data_and_multi_skb_queues() {
    checkpoint_restore_fixture("sk_unix", Start::in_dir("sk_unix"));
}

/// With --leave-running the waiting connections' data cannot be read (accepting them
/// would show): the dump is refused, after other sockets' queues were peeked at (and
/// their SO_PEEK_OFF moved), and leaves every socket as it was: the fixture still checks
/// every byte in flight, its peek offsets, options and its accept queue.
#[test]
fn refused_socket_dump_leaves_the_sockets_unharmed() {
    let _serial = setup();
    let scratch = Scratch::new("sk_refused");
    let mut run = start(&scratch, Start::in_dir("sk_unix"));
    dump_refused(
        run.pid,
        &scratch.join("images"),
        &["--leave-running"],
        "accept queue",
    );
    run.assert_pass();
}

/// Sockets across a tree: an accepted connection with data both ways, waiting
/// connections from two processes with data, a datagram socket bound to a path that was
/// unlinked (shared by two processes, its connected client in another), a listener whose
/// path now holds a regular file (which the restore leaves as it was).
#[test]
fn unix_sockets_across_a_tree_with_deleted_and_replaced_names() {
    checkpoint_restore_fixture("sk_unix_tree", Start::in_dir("sk_unix_tree"));
}

/// Names relative to the working directory the process bound them from: bound again
/// relative, from that directory, so the process sees the same names.
#[test]
fn unix_sockets_bound_to_relative_names() {
    checkpoint_restore_fixture("sk_unix_relative", Start::in_dir("sk_unix_relative"));
}

/// File descriptors in flight (SCM_RIGHTS: pipe ends with data, a file at an offset, one
/// description twice) and credentials naming processes of the tree (SCM_CREDENTIALS,
/// SO_PASSPIDFD), across two processes.
#[test]
fn unix_fds_and_credentials_in_flight() {
    checkpoint_restore_fixture("sk_unix_scm", Start::in_dir("sk_unix_scm"));
}

/// Sockets in flight, held by no process: one end of a socketpair with data both ways, a
/// TCP listener, a bound datagram socket with a datagram queued, a TCP connection.
#[test]
fn sockets_in_flight_inside_a_message() {
    checkpoint_restore_fixture_with(
        "sk_scm_sockets",
        Start::new("sk_scm_sockets"),
        &["--tcp-established"],
        &["--tcp-established"],
    );
}

/// Dumping the sockets in flight takes nothing from them: the tree that goes on running
/// receives them with their data; then the images restore, in a network namespace of
/// their own (the original's accepted connection keeps the listener's port in TIME_WAIT
/// here).
#[test]
fn leave_running_sockets_in_flight() {
    leave_running_then_with(
        "leave_running_sk_scm_sockets",
        Start::new("sk_scm_sockets"),
        &["--tcp-established"],
        restore_in_fresh_netns,
    );
}

/// Peeking at messages with fds in flight takes nothing: the tree that goes on running
/// receives every fd and credential. (It removes its files when it ends, so these images
/// cannot be restored afterwards.)
#[test]
fn leave_running_unix_fds_in_flight() {
    let _serial = setup();
    let scratch = Scratch::new("leave_running_sk_unix_scm");
    let mut run = start(&scratch, Start::in_dir("sk_unix_scm"));
    dump(run.pid, &scratch.join("images"), &["--leave-running"]);
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
        dump_refused(run.pid, &scratch.join("images"), opts, needle);
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

/// Runs stasis inside network namespace `ns` (`ip netns exec`), asserting success; `log`
/// is shown if it fails.
fn stasis_in_netns(ns: &str, args: &[&str], log: &std::path::Path) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, stasis_bin()])
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
        stasis_in_netns(&self.server, args, log);
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

/// A datagram socket connected to a name bound by a process outside the tree (here, the
/// test): without --ext-unix-sk the dump is refused with a one-line error and the tree
/// goes on; with it, the restored sockets are connected to the name again and their
/// datagrams reach the outside receiver (with the sender's name).
#[test]
fn ext_unix_sk_datagram_peer_outside_the_tree() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::UnixDatagram;
    let _serial = setup();
    let scratch = Scratch::new("sk_unix_ext");
    let path = scratch.join("outside.sock");
    let outside = UnixDatagram::bind(&path).expect("bind the outside receiver");
    outside
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let path_s = path.to_str().unwrap();
    let mut run = start(
        &scratch,
        Start {
            args: &[path_s],
            ..Start::new("sk_unix_ext")
        },
    );
    let mut buf = [0u8; 256];
    let n = outside
        .recv(&mut buf)
        .expect("the fixture's first datagram");
    assert_eq!(&buf[..n], b"before ready");

    let images = scratch.join("images");
    dump_refused(run.pid, &images, &[], "--ext-unix-sk");

    dump(run.pid, &images, &["--ext-unix-sk"]);
    run.reap_killed();
    restore(&images, &["--ext-unix-sk"]);
    run.assert_pass();
    let mut got = Vec::new();
    for _ in 0..2 {
        let (n, from) = outside
            .recv_from(&mut buf)
            .expect("a datagram after restore");
        got.push((
            buf[..n].to_vec(),
            from.as_abstract_name().map(<[u8]>::to_vec),
        ));
    }
    got.sort();
    let y_name = format!("stasis-sk_unix_ext-{}", run.pid).into_bytes();
    assert_eq!(
        got,
        [
            (b"after restore from X".to_vec(), None),
            (b"after restore from Y".to_vec(), Some(y_name)),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Netlink and packet sockets
// ---------------------------------------------------------------------------------------

/// A network namespace (`ip netns add`, lo up), removed when dropped. sk_netlink's route
/// socket is a member of the link and address groups, and events the kernel queued on
/// it are refused at dump time (as by CRIU): links other tests make in the host's
/// namespace (veth pairs) must not reach it.
struct QuietNetns(String);

impl QuietNetns {
    fn new(tag: &str) -> QuietNetns {
        let ns = QuietNetns(format!("stasis-{tag}{}", std::process::id()));
        for cmd in [
            vec!["netns", "add", &ns.0],
            vec!["-n", &ns.0, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&cmd).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }

    /// Runs stasis inside the namespace, asserting success.
    fn stasis(&self, args: &[&str], log: &std::path::Path) {
        stasis_in_netns(&self.0, args, log);
    }
}

impl Drop for QuietNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// sk_netlink dumped (killed, or left running and checked) and restored by stasis run in
/// a quiet network namespace.
fn netlink_cycle(test: &str, leave_running: bool) {
    let _serial = setup();
    let ns = QuietNetns::new("nl");
    let scratch = Scratch::new(test);
    let mut run = start(
        &scratch,
        Start {
            netns: Some(&ns.0),
            ..Start::new("sk_netlink")
        },
    );
    let images = scratch.join("images");
    let dir = images.to_str().unwrap();
    let pid = run.pid.to_string();
    let mut args = vec!["dump", "-t", &pid, "-D", dir, "-v4", "-o", "dump.log"];
    if leave_running {
        args.push("--leave-running");
    }
    ns.stasis(&args, &images.join("dump.log"));
    assert_crit_decodes(&images);
    if leave_running {
        assert!(
            status_field(run.pid, "TracerPid").as_deref() == Some("0"),
            "still traced after the dump"
        );
        run.assert_pass();
        stasis_sys::process::reap_terminated().expect("reap the original");
    } else {
        run.reap_killed();
    }
    ns.stasis(
        &["restore", "-D", dir, "-d", "-v4", "-o", "restore.log"],
        &images.join("restore.log"),
    );
    run.assert_pass();
}

#[test]
fn netlink_sockets_port_ids_groups_peers_options_and_queued_messages() {
    netlink_cycle("sk_netlink", false);
}

/// The USERSOCK queue is taken and put back at once, each message sent again by its
/// sender: the tree that goes on running finds both messages, in order, from the same
/// port id, with the same queue size.
#[test]
fn leave_running_netlink_sockets() {
    netlink_cycle("leave_running_sk_netlink", true);
}

/// A tree in a network namespace of its own: a dump from outside it is refused (one
/// line, the tree unharmed); stasis run inside it (`nsenter --net`) dumps it, and the
/// images restore in a fresh namespace, where an address added to lo must reach the
/// restored route socket through its group.
#[test]
fn netlink_sockets_of_a_private_network_namespace() {
    let _serial = setup();
    let scratch = Scratch::new("sk_netlink_netns");
    let mut run = start(
        &scratch,
        Start {
            args: &["netns"],
            ..Start::new("sk_netlink")
        },
    );
    let images = scratch.join("images");
    let dir = images.to_str().unwrap();
    let pid = run.pid.to_string();
    dump_refused(run.pid, &images, &[], "network namespace");
    let ns = format!("--net=/proc/{pid}/ns/net");
    let out = Command::new("nsenter")
        .args([&ns, stasis_bin(), "dump", "-t", &pid, "-D", dir])
        .args(["-v4", "-o", "dump.log"])
        .stdin(Stdio::null())
        .output()
        .expect("run nsenter");
    assert!(
        out.status.success(),
        "dump inside the namespace failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        read_lossy(&images.join("dump.log"))
    );
    assert_crit_decodes(&images);
    run.reap_killed();
    restore_in_fresh_netns(&images);
    run.assert_pass();
}

#[test]
fn packet_sockets_rings_fanout_memberships_filters_options() {
    checkpoint_restore_fixture("sk_packet", Start::new("sk_packet"));
}

/// The tree that goes on running keeps its rings, groups and memberships (the dump only
/// asks sock_diag and getsockopt); the images restore once it is gone.
#[test]
fn leave_running_packet_sockets() {
    leave_running_then_restore("leave_running_sk_packet", Start::new("sk_packet"));
}

/// The kernel's answers waiting in a netlink queue cannot be sent again by anyone else:
/// the dump is refused with one line, and the answer is still there, whole, for the
/// tree that goes on (a single reply; a dump whose rest the kernel still holds).
#[test]
fn netlink_kernel_answers_in_a_queue_are_refused_and_left_in_place() {
    let _serial = setup();
    for (mode, needle) in [
        ("reply", "bytes of messages are queued"),
        ("dump", "dump is in progress"),
    ] {
        let scratch = Scratch::new("sk_netlink_pending");
        let mut run = start(
            &scratch,
            Start {
                args: &[mode],
                ..Start::new("sk_netlink_pending")
            },
        );
        dump_refused(run.pid, &scratch.join("images"), &[], needle);
        run.assert_pass();
    }
}
