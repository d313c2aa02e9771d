//! Summary and JSON output of small image sets written with the images crate.

use std::path::{Path, PathBuf};

use stasis_images::consts::{FD_CLOEXEC, IMG_VERSION, pe_flags, task_state, vma_status as vs};
use stasis_images::decode::decode_dir;
use stasis_images::{ImageDir, ImageKind, pb};

use super::{render_file, summary};

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("stasis-show-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PID: u32 = 42;
const CODE: u64 = 0x7f00_0000_0000;
const HEAP: u64 = 0x5600_0000_0000;
const STACK: u64 = 0x7ffd_0000_0000;

fn reg_file(id: u32, name: &str, flags: u32, pos: u64) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(pb::RegFileEntry {
            id,
            flags,
            pos,
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn vma(start: u64, end: u64, prot: u32, status: u32, shmid: u64) -> pb::VmaEntry {
    pb::VmaEntry {
        start,
        end,
        prot,
        flags: 0x02, // MAP_PRIVATE
        status: vs::REGULAR | status,
        shmid,
        fd: -1,
        ..Default::default()
    }
}

fn siginfo(signo: u32) -> pb::SiginfoEntry {
    let mut raw = vec![0u8; 128];
    raw[..4].copy_from_slice(&signo.to_le_bytes());
    pb::SiginfoEntry { siginfo: raw }
}

/// A one-process dump: a code mapping of a file, a heap with two stored pages (the first
/// holding a `syscall` instruction where rip points), a stack with one, two fds.
fn write_sample(dir: &Path) {
    let d = ImageDir::open(dir, true).unwrap();
    let id = u64::from(PID);
    let program = dir.join("program.bin");
    std::fs::write(&program, [0x90u8; 64]).unwrap();
    d.write_all(
        ImageKind::Inventory,
        0,
        [&pb::InventoryEntry {
            img_version: IMG_VERSION,
            dump_uptime: Some(12_300_000),
            ..Default::default()
        }],
    )
    .unwrap();
    d.write_all(
        ImageKind::Pstree,
        0,
        [&pb::PstreeEntry {
            pid: PID,
            ppid: 0,
            pgid: PID,
            sid: PID,
            threads: vec![PID],
        }],
    )
    .unwrap();
    let mut sigactions = vec![pb::SaEntry::default(); 62];
    // Dispositions skip SIGKILL (9): SIGPIPE (13) is at index 11, SIGTERM (15) at 13.
    sigactions[11].sigaction = 1;
    sigactions[13].sigaction = 0x401000;
    let core = pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            gpregs: Some(pb::UserX86RegsEntry {
                ip: HEAP + 0x10,
                sp: STACK + 0xf00,
                ax: 230,
                orig_ax: u64::MAX,
                ..Default::default()
            }),
            fpregs: Some(pb::UserX86FpregsEntry {
                xsave: Some(pb::UserX86XsaveEntry {
                    xstate_bv: 0x7,
                    ..Default::default()
                }),
                stasis_xsave: Some(vec![0; 2688]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        tc: Some(pb::TaskCoreEntry {
            task_state: task_state::ALIVE,
            comm: "demo".into(),
            blk_sigset: 1 << 9, // SIGUSR1
            sigactions,
            signals_s: Some(pb::SignalQueueEntry {
                signals: vec![siginfo(12), siginfo(40), siginfo(40)],
            }),
            oom_score_adj: Some(500),
            ..Default::default()
        }),
        thread_core: Some(pb::ThreadCoreEntry {
            creds: Some(pb::CredsEntry {
                uid: 1000,
                gid: 1000,
                euid: 1000,
                egid: 1000,
                suid: 1000,
                sgid: 1000,
                fsuid: 1000,
                fsgid: 1000,
                cap_bnd: vec![u32::MAX, 0x1ff],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ids: None,
    };
    d.write_all(ImageKind::Core, id, [&core]).unwrap();
    d.write_all(
        ImageKind::Ids,
        id,
        [&pb::TaskKobjIdsEntry {
            vm_id: 1,
            files_id: 7,
            fs_id: 1,
            sighand_id: 1,
            ..Default::default()
        }],
    )
    .unwrap();
    let mm = pb::MmEntry {
        exe_file_id: 1,
        vmas: vec![
            vma(CODE, CODE + 0x2000, 5, vs::FILE_PRIVATE, 1),
            vma(HEAP, HEAP + 0x3000, 7, vs::ANON_PRIVATE | vs::HEAP, 0),
            vma(STACK, STACK + 0x1000, 3, vs::ANON_PRIVATE | vs::STACK, 0),
        ],
        ..Default::default()
    };
    d.write_all(ImageKind::Mm, id, [&mm]).unwrap();
    let mut pm = d.create(ImageKind::Pagemap, id).unwrap();
    pm.write(&pb::PagemapHead { pages_id: 1 }).unwrap();
    for (vaddr, n) in [(HEAP, 2u64), (STACK, 1)] {
        pm.write(&pb::PagemapEntry {
            vaddr,
            compat_nr_pages: n as u32,
            in_parent: None,
            flags: Some(pe_flags::PRESENT),
            nr_pages: Some(n),
        })
        .unwrap();
    }
    pm.finish().unwrap();
    let mut pages = vec![0u8; 3 * 4096];
    pages[0x10..0x12].copy_from_slice(&[0x0f, 0x05]);
    std::fs::write(dir.join("pages-1.img"), pages).unwrap();
    let files = [
        reg_file(1, program.to_str().unwrap(), 0, 0),
        reg_file(2, "/dev/null", 0, 0),
        reg_file(3, "/tmp/x.log", 0o2001 | 0o100000, 1234),
        reg_file(4, "/home/demo", 0o200000, 0),
        reg_file(5, "/", 0o200000, 0),
    ];
    d.write_all(ImageKind::Files, 0, &files).unwrap();
    let fd = |fd: u32, id: u32, flags: u32| pb::FdinfoEntry {
        id,
        flags,
        r#type: pb::FdTypes::Reg as i32,
        fd,
        xattr_security_selinux: None,
    };
    d.write_all(ImageKind::Fdinfo, 7, [&fd(0, 2, 0), &fd(10, 3, FD_CLOEXEC)])
        .unwrap();
    d.write_all(
        ImageKind::Fs,
        id,
        [&pb::FsEntry {
            cwd_id: 4,
            root_id: 5,
            umask: Some(0o22),
        }],
    )
    .unwrap();
    d.write_all(
        ImageKind::Stats,
        0,
        [&pb::StatsEntry {
            dump: Some(pb::DumpStatsEntry {
                freezing_time: 1200,
                memdump_time: 1100,
                pages_scanned: 4,
                pages_written: 3,
                ..Default::default()
            }),
            restore: None,
        }],
    )
    .unwrap();
    std::fs::write(dir.join("dump.log"), "a log, not an image\n").unwrap();
}

fn summary_of(dir: &Path) -> String {
    summary::render(&decode_dir(dir).unwrap())
}

#[test]
fn summary_of_a_small_dump() {
    let tmp = TempDir::new("summary");
    write_sample(&tmp.0);
    let out = summary_of(&tmp.0);
    let program = tmp.0.join("program.bin");
    let program = program.display();
    let expected = format!(
        "\
Images in {dir} (CRIU image format v1.1, dumped 12.3 s after boot)
Process tree:
  42 demo  (ppid 0, pgid 42, sid 42, 1 thread)

Process 42 (demo): alive, {program}
  registers: rip 0x560000000010  rsp 0x7ffd00000f00  rax 0xe6 (in syscall clock_nanosleep, will restart)
  fpu: XSAVE 2688 bytes, in use 0x7 (x87 SSE AVX)
  signals: blocked: SIGUSR1; handled: SIGTERM; ignored: SIGPIPE; pending: SIGUSR2 SIGRTMIN+6 x2 (process)
  memory: 3 vmas, 24 KiB mapped, 12 KiB stored in pages-1.img
    START-END                  PERM  KIND              SIZE    STORED  FILE
    7f0000000000-7f0000002000  r-xp  file-private     8 KiB         -  {program}
    560000000000-560000003000  rwxp  heap            12 KiB     8 KiB
    7ffd00000000-7ffd00001000  rw-p  stack            4 KiB     4 KiB
  files:
    fd 0   /dev/null (O_RDONLY, pos 0)
    fd 10  /tmp/x.log (O_WRONLY|O_APPEND, pos 1234, cloexec)
  cwd /home/demo, root /, umask 022
  creds: uid 1000 gid 1000, no capabilities
  other: oom_score_adj 500

Stats: froze in 1.2 ms, memory dumped in 1.1 ms, 3 pages written (4 scanned)
",
        dir = tmp.0.display()
    );
    assert_eq!(out, expected, "\n{out}");
}

#[test]
fn json_has_every_image_but_no_logs() {
    let tmp = TempDir::new("json");
    write_sample(&tmp.0);
    let set = decode_dir(&tmp.0).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string_pretty(&set).unwrap()).unwrap();
    let images = v["images"].as_object().unwrap();
    let mut names: Vec<&str> = images.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "core-42.img",
            "fdinfo-7.img",
            "files.img",
            "fs-42.img",
            "ids-42.img",
            "inventory.img",
            "mm-42.img",
            "pagemap-42.img",
            "pages-1.img",
            "pstree.img",
            "stats-dump"
        ]
    );
    assert_eq!(v["dir"], tmp.0.display().to_string());
    assert_eq!(images["core-42.img"]["magic"], "CORE");
    assert_eq!(images["core-42.img"]["entries"][0]["tc"]["comm"], "demo");
    assert_eq!(images["pagemap-42.img"]["entries"][0]["pages_id"], 1);
    assert_eq!(images["pagemap-42.img"]["entries"][2]["vaddr"], STACK);
    assert_eq!(images["pages-1.img"]["size"], 3 * 4096);
    assert_eq!(images["stats-dump"]["magic"], "STATS");
}

#[test]
fn bad_images_are_reported_not_fatal() {
    let tmp = TempDir::new("bad");
    write_sample(&tmp.0);
    let core = tmp.0.join("core-42.img");
    let bytes = std::fs::read(&core).unwrap();
    std::fs::write(&core, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(tmp.0.join("junk.img"), [0x19, 0x43, 0x56, 0x54, 1, 2, 3, 4]).unwrap();
    std::fs::remove_file(tmp.0.join("fs-42.img")).unwrap();
    // One page fewer than the pagemap describes.
    std::fs::write(tmp.0.join("pages-1.img"), vec![0u8; 2 * 4096]).unwrap();

    let out = summary_of(&tmp.0);
    for line in [
        "Process 42 (?), {dir}/program.bin",
        "  registers: unavailable (core-42.img is unreadable)",
        "  cwd, root: unavailable (fs-42.img is missing)",
        "    fd 10  /tmp/x.log (O_WRONLY|O_APPEND, pos 1234, cloexec)",
        "Problems:",
        "  core-42.img: unreadable (truncated (entry))",
        "  junk.img: unknown magic 0x04030201",
        "  fs-42.img: missing (process 42 is in the tree)",
        "  pages-1.img: holds 8192 bytes, but the pagemaps describe 12288",
    ] {
        let line = line.replace("{dir}", &tmp.0.display().to_string());
        assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
    }
    assert!(!out.contains("dump.log"), "{out}");

    let v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&decode_dir(&tmp.0).unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        v["images"]["core-42.img"]["error"],
        "core-42.img: truncated (entry)"
    );
    assert_eq!(v["images"]["junk.img"]["error"], "unknown magic 0x04030201");
    assert_eq!(v["images"]["mm-42.img"]["magic"], "MM");
}

#[test]
fn any_truncation_or_bit_flip_gives_a_summary() {
    let tmp = TempDir::new("fuzz");
    write_sample(&tmp.0);
    let names: Vec<String> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".img") || n.starts_with("stats-"))
        .collect();
    for name in names {
        let path = tmp.0.join(&name);
        let good = std::fs::read(&path).unwrap();
        let cuts = [0, 1, 4, 7, 9, good.len() / 2, good.len().saturating_sub(1)];
        for cut in cuts.into_iter().filter(|c| *c < good.len()) {
            std::fs::write(&path, &good[..cut]).unwrap();
            let out = summary_of(&tmp.0);
            // Raw pages have no framing; a short one shows as a size mismatch instead.
            assert!(
                out.lines().any(|l| l.starts_with(&format!("  {name}: "))),
                "{name} cut at {cut}:\n{out}"
            );
        }
        // Flipped bytes must never panic, whatever they decode to.
        for i in (0..good.len()).step_by(good.len() / 16 + 1) {
            let mut bad = good.clone();
            bad[i] ^= 0xa5;
            std::fs::write(&path, &bad).unwrap();
            let _ = summary_of(&tmp.0);
        }
        std::fs::write(&path, &good).unwrap();
    }
}

#[test]
fn single_files() {
    let tmp = TempDir::new("single");
    write_sample(&tmp.0);
    let d = stasis_images::decode::decode_file(&tmp.0.join("pstree.img")).unwrap();
    assert_eq!(
        render_file("pstree.img", &d),
        "pstree.img: PSTREE image, 1 entry\nentry 0:\n  pid: 42\n  ppid: 0\n  pgid: 42\n  \
         sid: 42\n  threads: [42]\n"
    );
    let d = stasis_images::decode::decode_file(&tmp.0.join("pages-1.img")).unwrap();
    assert_eq!(
        render_file("pages-1.img", &d),
        "pages-1.img: raw page contents, 12 KiB (3 pages)\n"
    );
    assert!(super::run(&tmp.0.join("pstree.img"), true).is_ok());
    assert!(super::run(&tmp.0, false).is_ok());

    let core = tmp.0.join("core-42.img");
    let bytes = std::fs::read(&core).unwrap();
    std::fs::write(&core, &bytes[..20]).unwrap();
    let err = super::run(&core, false).unwrap_err();
    assert_eq!(err, "core-42.img: truncated (entry)");
    std::fs::write(&core, b"\x01\x02\x03\x04\x05\x06\x07\x08").unwrap();
    let err = super::run(&core, true).unwrap_err();
    assert_eq!(err, "core-42.img: unknown magic 0x04030201");
    let err = super::run(&tmp.0.join("nonexistent"), false).unwrap_err();
    assert!(err.contains("nonexistent"), "{err}");
    let empty = TempDir::new("empty");
    let err = super::run(&empty.0, false).unwrap_err();
    assert!(err.contains("no image files"), "{err}");
}

#[test]
fn threads_children_and_parent_cycles() {
    let tmp = TempDir::new("tree");
    write_sample(&tmp.0);
    let d = ImageDir::open(&tmp.0, false).unwrap();
    let p = |pid: u32, ppid: u32, threads: Vec<u32>| pb::PstreeEntry {
        pid,
        ppid,
        pgid: 42,
        sid: 42,
        threads,
    };
    d.write_all(
        ImageKind::Pstree,
        0,
        [
            &p(42, 0, vec![42, 43]),
            &p(50, 42, vec![50]),
            &p(60, 61, vec![60]),
            &p(61, 60, vec![61]),
        ],
    )
    .unwrap();
    let worker = pb::CoreEntry {
        mtype: 1,
        thread_info: Some(pb::ThreadInfoX86 {
            gpregs: Some(pb::UserX86RegsEntry {
                ip: 0x1234,
                sp: 0x5678,
                ax: (-512i64) as u64, // -ERESTARTSYS, as CRIU saves a sleeping thread
                orig_ax: 202,
                ..Default::default()
            }),
            ..Default::default()
        }),
        thread_core: Some(pb::ThreadCoreEntry {
            comm: Some("worker".into()),
            blk_sigset: Some(1 << 1),
            ..Default::default()
        }),
        ..Default::default()
    };
    d.write_all(ImageKind::Core, 43, [&worker]).unwrap();
    let out = summary_of(&tmp.0);
    for line in [
        "  42 demo  (ppid 0, pgid 42, sid 42, 2 threads)",
        "    50 ?  (ppid 42, pgid 42, sid 42, 1 thread)",
        "  60 ?  (ppid 61, pgid 42, sid 42, 1 thread)",
        "    61 ?  (ppid 60, pgid 42, sid 42, 1 thread)",
        "  thread 42: rip 0x560000000010  rsp 0x7ffd00000f00  rax 0xe6 (in syscall \
         clock_nanosleep, will restart)",
        "  thread 43: (worker) rip 0x1234  rsp 0x5678  rax 0xfffffffffffffe00 (in syscall \
         futex, will restart); blocked: SIGINT",
        "  pstree.img: process 60 is in a cycle of parents",
        "  core-50.img: missing (process 50 is in the tree)",
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
    }
}

#[test]
fn sockets_are_described() {
    use super::names::{inet_socket, unix_socket};
    let u = pb::UnixSkEntry {
        ino: 77,
        r#type: libc::SOCK_STREAM as u32,
        state: 10,
        name: b"/run/x.sock\0".to_vec(),
        stasis_icons: vec![5, 6],
        ..Default::default()
    };
    assert_eq!(
        unix_socket(&u),
        (
            "unix stream socket, listening /run/x.sock".to_owned(),
            vec![
                "socket:[77]".to_owned(),
                "2 waiting to be accepted".to_owned()
            ]
        )
    );
    let abs = pb::UnixSkEntry {
        ino: 8,
        r#type: libc::SOCK_DGRAM as u32,
        state: 7,
        name: b"\0abc".to_vec(),
        peer: 9,
        ..Default::default()
    };
    assert_eq!(unix_socket(&abs).0, "unix dgram socket, unconnected @abc");
    let word = |a: [u8; 4]| u32::from_ne_bytes(a);
    let t = pb::InetSkEntry {
        ino: 3,
        family: libc::AF_INET as u32,
        r#type: libc::SOCK_STREAM as u32,
        proto: libc::IPPROTO_TCP as u32,
        state: 1,
        src_port: 80,
        dst_port: 5555,
        src_addr: vec![word([10, 0, 0, 1])],
        dst_addr: vec![word([10, 0, 0, 2])],
        ..Default::default()
    };
    assert_eq!(
        inet_socket(&t),
        (
            "tcp 10.0.0.1:80 -> 10.0.0.2:5555".to_owned(),
            vec![
                "socket:[3]".to_owned(),
                "stream".to_owned(),
                "ESTABLISHED".to_owned()
            ]
        )
    );
    let mut v6 = [0u32; 4];
    v6[3] = word([0, 0, 0, 1]);
    let l = pb::InetSkEntry {
        family: libc::AF_INET6 as u32,
        r#type: libc::SOCK_DGRAM as u32,
        proto: libc::IPPROTO_UDP as u32,
        state: 7,
        src_port: 53,
        src_addr: v6.to_vec(),
        ..Default::default()
    };
    assert_eq!(inet_socket(&l).0, "udp6 [::1]:53");
}
