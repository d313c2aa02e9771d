//! Unmodified servers from Debian (redis-server, nginx) are checkpointed and restored
//! with a client connected: the client's connection goes on as if nothing happened, and
//! the server's data and processes are intact.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{
    Running, Scratch, descendants, dump, read_lossy, restore, setup, start_program, stasis,
};

/// Waits with a deadline until `cond` holds, checking at a modest rate.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A loopback port free right now (the kernel's pick, released again).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    l.local_addr().expect("probe address").port()
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Kills a restored (or original) server tree and reaps it.
/// The root is stopped first: a master that saw its workers die would start new ones.
fn stop_tree(run: &mut Running) {
    let _ = stasis_sys::process::kill(run.pid, libc::SIGSTOP);
    for pid in descendants(run.pid) {
        let _ = stasis_sys::process::kill(pid, libc::SIGKILL);
    }
    let _ = stasis_sys::process::kill(run.pid, libc::SIGKILL);
    run.wait_exit();
    // The killed processes are reparented to us (a subreaper) as they die; one still
    // there at the deadline was left behind.
    wait_until("the server's processes to be gone", || {
        let _ = stasis_sys::process::reap_terminated();
        group_members(run.pid).is_empty()
    });
}

/// The live processes of process group `pgid` (a server started with setsid leads its
/// own; restored processes keep theirs).
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After "(comm)": state, ppid, pgrp.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        if fields.get(2) == Some(&pgid.to_string().as_str()) && fields.first() != Some(&"Z") {
            out.push(pid);
        }
    }
    out
}

/// A minimal RESP client on one connection (TCP or unix).
struct Redis<S: Read + Write> {
    out: S,
    input: BufReader<S>,
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

impl Redis<TcpStream> {
    fn tcp(port: u16) -> std::io::Result<Self> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Redis {
            input: BufReader::new(s.try_clone()?),
            out: s,
        })
    }
}

impl Redis<UnixStream> {
    fn unix(path: &Path) -> std::io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Redis {
            input: BufReader::new(s.try_clone()?),
            out: s,
        })
    }
}

impl<S: Read + Write> Redis<S> {
    fn send(&mut self, bytes: &[u8]) {
        self.out.write_all(bytes).expect("send to redis");
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.input.read_line(&mut l).expect("read from redis");
        assert!(n > 0, "redis closed the connection");
        l.trim_end_matches("\r\n").to_owned()
    }

    fn reply(&mut self) -> Reply {
        let l = self.line();
        let (kind, rest) = l.split_at(1);
        match kind {
            "+" => Reply::Status(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse().expect("integer reply")),
            "$" => {
                let n: i64 = rest.parse().expect("bulk length");
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let mut b = vec![0; n as usize + 2];
                self.input.read_exact(&mut b).expect("bulk reply");
                b.truncate(n as usize);
                Reply::Bulk(Some(b))
            }
            "*" => {
                let n: i64 = rest.parse().expect("array length");
                Reply::Array((0..n.max(0)).map(|_| self.reply()).collect())
            }
            _ => panic!("unexpected redis reply {l:?}"),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Reply {
        self.send(&encode(args));
        self.reply()
    }
}

fn ok() -> Reply {
    Reply::Status("OK".into())
}

/// The value of key `i`: differs per key, and some are big (several segments).
fn value(i: usize) -> Vec<u8> {
    let len = if i % 100 == 7 { 300_000 } else { 20 + i % 50 };
    (0..len)
        .map(|j| b'a' + ((i * 31 + j * 7) % 26) as u8)
        .collect()
}

/// A redis-server started for a test, answering on its first client.
struct RedisServer {
    run: Running,
    port: u16,
    sock: std::path::PathBuf,
    log: std::path::PathBuf,
    client: Redis<TcpStream>,
}

fn start_redis(scratch: &Scratch) -> RedisServer {
    assert!(
        installed("redis-server"),
        "redis-server is not installed (Debian's redis-server; scripts/test installs it)"
    );
    let port = free_port();
    let sock = scratch.join("redis.sock");
    let port_s = port.to_string();
    let dir = scratch.path.to_str().unwrap().to_owned();
    let log = scratch.join("redis.log");
    let run = start_program(
        scratch,
        "redis-server",
        &[
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            sock.to_str().unwrap(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--logfile",
            log.to_str().unwrap(),
            "--daemonize",
            "no",
        ],
        true,
    );
    let mut c = None;
    wait_until("redis-server to accept connections", || {
        c = Redis::tcp(port).ok();
        c.is_some()
    });
    let mut client = c.unwrap();
    wait_until("redis-server to answer", || {
        client.call(&[b"PING"]) == Reply::Status("PONG".into())
    });
    RedisServer {
        run,
        port,
        sock,
        log,
        client,
    }
}

/// The number of clients redis knows.
fn redis_clients<S: Read + Write>(c: &mut Redis<S>) -> usize {
    match c.call(&[b"CLIENT", b"LIST"]) {
        Reply::Bulk(Some(list)) => list
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        other => panic!("CLIENT LIST: {other:?}"),
    }
}

/// Whether the peer ended the connection: end of file or a reset, on reading.
fn ended<S: Read + Write>(c: &mut Redis<S>) -> bool {
    let mut b = [0u8; 64];
    match c.input.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

const KEYS: usize = 2000;

/// redis-server with 2000 keys (some big), a client connected over TCP in the middle of
/// a transaction, another with a half-sent command and a subscriber:
/// after a checkpoint (the server killed) and a restore, every connection goes on where
/// it was, the data is intact, and new clients are served.
#[test]
fn redis_keeps_its_data_and_its_connected_clients() {
    let _serial = setup();
    let scratch = Scratch::new("redis");
    let redis = start_redis(&scratch);
    let (mut run, port, sock, logfile) = (redis.run, redis.port, redis.sock, redis.log);
    let mut c = redis.client;
    // The data, pipelined.
    let mut batch = Vec::new();
    for i in 0..KEYS {
        batch.extend(encode(&[b"SET", format!("key:{i}").as_bytes(), &value(i)]));
    }
    c.send(&batch);
    for i in 0..KEYS {
        assert_eq!(c.reply(), ok(), "SET key:{i}");
    }
    assert_eq!(
        c.call(&[b"RPUSH", b"list", b"x", b"y", b"z"]),
        Reply::Int(3)
    );
    // Connection c is inside a transaction at the checkpoint.
    assert_eq!(c.call(&[b"MULTI"]), ok());
    assert_eq!(
        c.call(&[b"INCRBY", b"counter", b"5"]),
        Reply::Status("QUEUED".into())
    );
    // Connection h has sent half of a command.
    let mut h = Redis::tcp(port).expect("second client");
    let half = encode(&[b"SET", b"half", b"written-across-the-restore"]);
    let (first, second) = half.split_at(half.len() / 2);
    assert_eq!(h.call(&[b"PING"]), Reply::Status("PONG".into()));
    h.send(first);
    // A subscriber.
    let mut sub = Redis::tcp(port).expect("subscriber");
    assert_eq!(
        sub.call(&[b"SUBSCRIBE", b"news"]),
        Reply::Array(vec![
            Reply::Bulk(Some(b"subscribe".to_vec())),
            Reply::Bulk(Some(b"news".to_vec())),
            Reply::Int(1)
        ])
    );
    // Every client is known to the server before the checkpoint.
    let mut probe = Redis::tcp(port).expect("probe client");
    wait_until("redis to see its 4 clients", || {
        redis_clients(&mut probe) == 4
    });
    drop(probe);
    let threads_before = std::fs::read_dir(format!("/proc/{}/task", run.pid))
        .map(|d| d.count())
        .unwrap_or(0);

    let images = scratch.join("images");
    dump(run.pid, &images, &["--tcp-established"]);
    run.reap_killed();
    restore(&images, &["--tcp-established"]);

    let threads_after = std::fs::read_dir(format!("/proc/{}/task", run.pid))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        threads_after, threads_before,
        "redis threads after the restore"
    );
    // The transaction goes on and commits.
    assert_eq!(
        c.call(&[b"INCRBY", b"counter", b"2"]),
        Reply::Status("QUEUED".into())
    );
    assert_eq!(
        c.call(&[b"EXEC"]),
        Reply::Array(vec![Reply::Int(5), Reply::Int(7)])
    );
    // The half-sent command completes.
    h.send(second);
    assert_eq!(h.reply(), ok(), "the half-sent SET");
    // Every key is intact.
    let mut batch = Vec::new();
    for i in 0..KEYS {
        batch.extend(encode(&[b"GET", format!("key:{i}").as_bytes()]));
    }
    c.send(&batch);
    for i in 0..KEYS {
        assert_eq!(c.reply(), Reply::Bulk(Some(value(i))), "GET key:{i}");
    }
    assert_eq!(
        c.call(&[b"LRANGE", b"list", b"0", b"-1"]),
        Reply::Array(
            ["x", "y", "z"]
                .iter()
                .map(|s| Reply::Bulk(Some(s.as_bytes().to_vec())))
                .collect()
        )
    );
    assert_eq!(
        c.call(&[b"DBSIZE"]),
        Reply::Int(KEYS as i64 + 3),
        "keys: {KEYS} + list + counter + half"
    );
    // The subscriber still gets what is published, from a new client (on the unix
    // socket: that listener is back too).
    let mut fresh = Redis::unix(&sock).expect("a new client after the restore");
    assert_eq!(
        fresh.call(&[b"PUBLISH", b"news", b"restored"]),
        Reply::Int(1)
    );
    assert_eq!(
        sub.reply(),
        Reply::Array(vec![
            Reply::Bulk(Some(b"message".to_vec())),
            Reply::Bulk(Some(b"news".to_vec())),
            Reply::Bulk(Some(b"restored".to_vec()))
        ])
    );
    assert_eq!(
        fresh.call(&[b"GET", b"half"]),
        Reply::Bulk(Some(b"written-across-the-restore".to_vec()))
    );
    let log = read_lossy(&logfile);
    stop_tree(&mut run);
    assert!(
        !log.contains("BUG REPORT") && !log.contains("crashed by signal"),
        "redis log:\n{log}"
    );
}

/// `--tcp-close`, as Podman uses it: a dump with it saves no connection state and needs no
/// lock (the clients see their connections end when the tree is killed); the images then
/// need `--tcp-close` to restore, and the restored server finds the connections closed,
/// drops those clients and serves new ones with its data intact. Images dumped with
/// `--tcp-established` restore closed with it too: the lock is lifted, so the old client
/// learns (a reset) that its connection is gone.
#[test]
fn redis_restored_with_tcp_close_drops_its_clients_and_serves_new_ones() {
    let _serial = setup();
    let scratch = Scratch::new("redis_tcp_close");
    let redis = start_redis(&scratch);
    let (mut run, port) = (redis.run, redis.port);
    let mut old = redis.client;
    assert_eq!(old.call(&[b"SET", b"kept", b"across"]), ok());
    let images = scratch.join("images");
    dump(run.pid, &images, &["--tcp-close"]);
    run.reap_killed();
    assert!(
        ended(&mut old),
        "the client's connection outlived the killed server"
    );
    let out = stasis(&["restore", "-D", images.to_str().unwrap(), "-d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--tcp-close"),
        "restore without --tcp-close: {err}"
    );
    restore(&images, &["--tcp-close"]);
    let mut fresh = Redis::tcp(port).expect("a new client after the restore");
    assert_eq!(
        fresh.call(&[b"GET", b"kept"]),
        Reply::Bulk(Some(b"across".to_vec()))
    );
    wait_until("redis to drop the closed connection", || {
        redis_clients(&mut fresh) == 1
    });

    // Saved with --tcp-established (locked), restored with --tcp-close.
    let images = scratch.join("images-established");
    dump(run.pid, &images, &["--tcp-established"]);
    // The restored server is not our child, but reparented to us (a subreaper).
    run.wait_exit();
    let _ = stasis_sys::process::reap_terminated();
    restore(&images, &["--tcp-close"]);
    fresh.send(&encode(&[b"PING"]));
    assert!(
        ended(&mut fresh),
        "the locked connection was not reset once the lock was lifted"
    );
    let mut again = Redis::tcp(port).expect("a new client after the second restore");
    assert_eq!(
        again.call(&[b"GET", b"kept"]),
        Reply::Bulk(Some(b"across".to_vec()))
    );
    wait_until("redis to drop the closed connection", || {
        redis_clients(&mut again) == 1
    });
    stop_tree(&mut run);
}

/// One HTTP/1.1 keep-alive connection.
struct Http {
    s: TcpStream,
    input: BufReader<TcpStream>,
}

impl Http {
    fn connect(port: u16) -> std::io::Result<Http> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Http {
            input: BufReader::new(s.try_clone()?),
            s,
        })
    }

    /// GET `path`; returns the status code, the Server header's worker pid (our config
    /// adds it) and the body.
    fn get(&mut self, path: &str) -> std::io::Result<(u32, String, Vec<u8>)> {
        write!(self.s, "GET {path} HTTP/1.1\r\nHost: stasis\r\n\r\n")?;
        let mut status = String::new();
        self.input.read_line(&mut status)?;
        let code = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let (mut len, mut worker) = (0usize, String::new());
        loop {
            let mut l = String::new();
            if self.input.read_line(&mut l)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if let Some(v) = lower.strip_prefix("x-worker:") {
                worker = v.trim().to_owned();
            }
        }
        let mut body = vec![0; len];
        self.input.read_exact(&mut body)?;
        Ok((code, worker, body))
    }
}

/// The worker processes of an nginx master.
fn workers(master: i32) -> Vec<i32> {
    let mut w: Vec<i32> = descendants(master)
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("worker process"))
        })
        .collect();
    w.sort_unstable();
    w
}

/// nginx, a master with two workers, serving a client over a keep-alive connection: after
/// a checkpoint (the tree killed) and a restore the same connection is served again, by
/// the same workers, new clients are served, and the restored master still manages its
/// workers (a reload through SIGHUP replaces them over its channels).
#[test]
fn nginx_master_and_workers_serve_on_through_a_restore() {
    let _serial = setup();
    assert!(
        installed("nginx"),
        "nginx is not installed (Debian's nginx; scripts/test installs it)"
    );
    let scratch = Scratch::new("nginx");
    let port = free_port();
    let root = scratch.join("html");
    std::fs::create_dir_all(&root).unwrap();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| b'A' + (i % 23) as u8).collect();
    std::fs::write(root.join("index.html"), b"hello from nginx\n").unwrap();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let d = scratch.path.to_str().unwrap();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\nevents {{ worker_connections 128; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp;\n\
         proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n\
         scgi_temp_path {d}/tmp;\n  keepalive_timeout 600;\n  keepalive_requests 100000;\n\
         server {{\n    listen 127.0.0.1:{port};\n    root {root};\n\
         add_header X-Worker $pid;\n  }}\n}}\n",
        root = root.display()
    );
    let conf_path = scratch.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    std::fs::create_dir_all(scratch.join("tmp")).unwrap();
    let errlog = scratch.join("error.log");
    let mut run = start_program(
        &scratch,
        "nginx",
        &[
            "-c",
            conf_path.to_str().unwrap(),
            "-p",
            d,
            "-e",
            errlog.to_str().unwrap(),
        ],
        true,
    );
    let master = run.pid;
    wait_until("nginx to start its 2 workers", || {
        workers(master).len() == 2
    });
    let mut conn = None;
    wait_until("nginx to accept connections", || {
        conn = Http::connect(port).ok();
        conn.is_some()
    });
    let mut conn = conn.unwrap();
    let (code, worker, body) = conn.get("/").expect("first request");
    assert_eq!((code, body.as_slice()), (200, &b"hello from nginx\n"[..]));
    let before = workers(master);
    assert!(
        before.iter().any(|w| w.to_string() == worker),
        "X-Worker {worker} is not one of {before:?}"
    );
    // A second connection has a big response only partly read: the rest is in flight
    // (the worker's send queue, our receive queue) at the checkpoint.
    let mut partial = Http::connect(port).expect("second connection");
    write!(partial.s, "GET /big.bin HTTP/1.1\r\nHost: stasis\r\n\r\n").unwrap();
    let mut head = [0u8; 64];
    partial
        .input
        .read_exact(&mut head)
        .expect("the response starts");

    let images = scratch.join("images");
    dump(master, &images, &["--tcp-established"]);
    run.reap_killed();
    restore(&images, &["--tcp-established"]);

    assert_eq!(workers(master), before, "the workers after the restore");
    let (code, worker_after, body) = conn.get("/").expect("request on the kept connection");
    assert_eq!((code, body.as_slice()), (200, &b"hello from nginx\n"[..]));
    assert_eq!(worker_after, worker, "the kept connection's worker");
    // The big response arrives whole after what was read before.
    let mut all = head.to_vec();
    let mut body_at = None;
    loop {
        if body_at.is_none()
            && let Some(p) = all.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let headers = String::from_utf8_lossy(&all[..p]).to_ascii_lowercase();
            let len: usize = headers
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("Content-Length of the big response");
            assert_eq!(len, big.len(), "Content-Length of the big response");
            body_at = Some(p + 4);
        }
        if body_at.is_some_and(|b| all.len() >= b + big.len()) {
            break;
        }
        let mut chunk = [0u8; 65536];
        let n = partial
            .input
            .read(&mut chunk)
            .expect("the rest of the big response");
        assert!(
            n > 0,
            "the connection closed before the whole response came"
        );
        all.extend_from_slice(&chunk[..n]);
    }
    let b = body_at.unwrap();
    assert_eq!(all.len() - b, big.len(), "body length");
    assert!(all[b..] == big[..], "the big body differs");
    // New clients are served.
    for i in 0..20 {
        let mut c = Http::connect(port).expect("a new connection");
        let (code, _, body) = c.get("/").expect("a new request");
        assert_eq!(
            (code, body.as_slice()),
            (200, &b"hello from nginx\n"[..]),
            "client {i}"
        );
    }
    // The master reloads: new workers replace the restored ones, which finish the kept
    // connection's keep-alive gracefully.
    stasis_sys::process::kill(master, libc::SIGHUP).unwrap();
    wait_until("the reload to replace the workers", || {
        let now = workers(master);
        now.len() == 2 && now.iter().all(|w| !before.contains(w))
    });
    let mut c = Http::connect(port).expect("a connection after the reload");
    let (code, worker_new, _) = c.get("/").expect("a request after the reload");
    assert_eq!(code, 200);
    assert!(
        !before.iter().any(|w| w.to_string() == worker_new),
        "served by an old worker {worker_new} after the reload"
    );
    let log = read_lossy(&errlog);
    stop_tree(&mut run);
    assert!(
        !log.contains("[emerg]") && !log.contains("[alert]") && !log.contains("[crit]"),
        "nginx error log:\n{log}"
    );
}
