use prost::Message;

use super::*;
use crate::{Error, ImageKind, ImageReader, ImageWriter, MAX_ENTRY_SIZE};

fn fown() -> FownEntry {
    FownEntry {
        uid: 1000,
        euid: 1000,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}

fn core() -> CoreEntry {
    let gpregs = UserX86RegsEntry {
        r15: 15,
        r14: 14,
        r13: 13,
        r12: 12,
        bp: 0x7ffd_0000_1000,
        bx: 6,
        r11: 0x246,
        r10: 10,
        r9: 9,
        r8: 8,
        ax: u64::MAX - 37, // -ERESTARTSYS style values are large
        cx: 0x7f00_0000_1234,
        dx: 13,
        si: 14,
        di: 15,
        orig_ax: 230,
        ip: 0x7f00_0000_1234,
        cs: 0x33,
        flags: 0x246,
        sp: 0x7ffd_0000_0f00,
        ss: 0x2b,
        fs_base: 0x7f00_0001_0000,
        gs_base: 0,
        ds: 0,
        es: 0,
        fs: 0,
        gs: 0,
        mode: Some(UserX86RegsMode::Native as i32),
    };
    let xsave = UserX86XsaveEntry {
        xstate_bv: 0x2e7,
        ymmh_space: (0..64).collect(),
        bndreg_state: vec![0; 8],
        bndcsr_state: vec![0; 2],
        opmask_reg: (0..8).collect(),
        zmm_upper: (0..64).collect(),
        hi16_zmm: (0..128).collect(),
        pkru: vec![0x5555_5554, 0],
        cet: Some(UserX86CetEntry {
            cet: 1,
            ssp: 0x7ffd_dead_0000,
        }),
    };
    let fpregs = UserX86FpregsEntry {
        cwd: 0x37f,
        swd: 0,
        twd: 0,
        fop: 0,
        rip: 0,
        rdp: 0,
        mxcsr: 0x1f80,
        mxcsr_mask: 0xffff,
        st_space: (0..32).collect(),
        xmm_space: (100..164).collect(),
        padding: vec![],
        xsave: Some(xsave),
        stasis_xsave: Some((0..=255u8).cycle().take(11008).collect()),
    };
    let tls = (12..15)
        .map(|entry_number| UserDescT {
            entry_number,
            ..Default::default()
        })
        .collect();
    let itimer = |s| ItimerEntry {
        isec: s,
        iusec: 500,
        vsec: s,
        vusec: 250,
    };
    let siginfo = SiginfoEntry {
        siginfo: (0..128u8).collect(),
    };
    CoreEntry {
        mtype: core_entry::March::X8664 as i32,
        thread_info: Some(ThreadInfoX86 {
            clear_tid_addr: 0x7f00_0000_2000,
            gpregs: Some(gpregs),
            fpregs: Some(fpregs),
            tls,
        }),
        tc: Some(TaskCoreEntry {
            task_state: 1,
            exit_code: 0,
            personality: 0,
            flags: 0x40_0100,
            blk_sigset: 1 << 9,
            comm: "sleepy".into(),
            timers: Some(TaskTimersEntry {
                real: Some(itimer(1)),
                virt: Some(itimer(2)),
                prof: Some(itimer(3)),
                posix: vec![PosixTimerEntry {
                    it_id: 0,
                    clock_id: 1,
                    si_signo: 14,
                    it_sigev_notify: 0,
                    sival_ptr: 0xdead_beef,
                    overrun: 0,
                    isec: 1,
                    insec: 2,
                    vsec: 3,
                    vnsec: 4,
                    notify_thread_id: Some(42),
                    stasis_pending_overrun: None,
                }],
            }),
            rlimits: Some(TaskRlimitsEntry {
                rlimits: (0..16)
                    .map(|i| RlimitEntry {
                        cur: i,
                        max: u64::MAX,
                    })
                    .collect(),
            }),
            cg_set: Some(1),
            signals_s: Some(SignalQueueEntry {
                signals: vec![siginfo.clone()],
            }),
            old_seccomp_mode: None,
            old_seccomp_filter: None,
            loginuid: Some(u32::MAX),
            oom_score_adj: Some(-100),
            sigactions: (1..=64u64)
                .filter(|s| *s != 9 && *s != 19)
                .map(|s| SaEntry {
                    sigaction: s,
                    flags: 0x0400_0000,
                    restorer: 0x7f00_0000_3000,
                    mask: 1 << (s - 1),
                    compat_sigaction: Some(false),
                    mask_extended: None,
                })
                .collect(),
            child_subreaper: Some(true),
            blk_sigset_extended: None,
            stop_signo: None,
            membarrier_registration_mask: Some(0),
            stasis_xcomp_perm: Some(0x6_0002_02e7),
            stasis_sem_undo: Vec::new(),
        }),
        ids: None,
        thread_core: Some(ThreadCoreEntry {
            futex_rla: 0x7f00_0000_4000,
            futex_rla_len: 24,
            sched_nice: Some(-5),
            sched_policy: Some(0),
            sched_prio: Some(0),
            blk_sigset: Some(1 << 9),
            sas: Some(ThreadSasEntry {
                ss_sp: 0x1000,
                ss_size: 8192,
                ss_flags: 0,
            }),
            pdeath_sig: Some(9),
            signals_p: Some(SignalQueueEntry {
                signals: vec![siginfo],
            }),
            creds: Some(CredsEntry {
                uid: 1000,
                gid: 1000,
                euid: 1000,
                egid: 1000,
                suid: 1000,
                sgid: 1000,
                fsuid: 1000,
                fsgid: 1000,
                cap_inh: vec![0, 0],
                cap_prm: vec![0, 0],
                cap_eff: vec![0, 0],
                cap_bnd: vec![u32::MAX, 0x1ff],
                secbits: 0,
                groups: vec![4, 24, 27],
                lsm_profile: Some("unconfined".into()),
                lsm_sockcreate: None,
                apparmor_data: Some(vec![1, 2, 3]),
                no_new_privs: Some(1),
                cap_amb: vec![0, 0],
            }),
            seccomp_mode: Some(SeccompMode::Filter as i32),
            seccomp_filter: Some(0),
            comm: Some("worker".into()),
            blk_sigset_extended: None,
            rseq_entry: Some(RseqEntry {
                rseq_abi_pointer: 0x7f00_0000_5000,
                rseq_abi_size: 32,
                signature: 0x5305_3053,
                rseq_cs_pointer: Some(0),
            }),
            cg_set: Some(1),
            stasis_timerslack_ns: Some(50_000),
            stasis_ioprio: None,
        }),
    }
}

fn mm() -> MmEntry {
    let vma = |start: u64, end: u64, status| VmaEntry {
        start,
        end,
        pgoff: 0,
        shmid: 0,
        prot: 3,
        flags: 0x22,
        status,
        fd: -1,
        madv: Some(1 << 14),
        fdflags: None,
    };
    MmEntry {
        mm_start_code: 0x40_0000,
        mm_end_code: 0x40_1000,
        mm_start_data: 0x60_0000,
        mm_end_data: 0x60_1000,
        mm_start_stack: 0x7ffd_0000_0000,
        mm_start_brk: 0x80_0000,
        mm_brk: 0x82_1000,
        mm_arg_start: 0x7ffd_0000_1000,
        mm_arg_end: 0x7ffd_0000_1010,
        mm_env_start: 0x7ffd_0000_1010,
        mm_env_end: 0x7ffd_0000_1ff0,
        exe_file_id: 1,
        mm_saved_auxv: vec![6, 4096, 0, 0],
        vmas: vec![
            vma(0x40_0000, 0x40_1000, 0x41),
            vma(0x80_0000, 0x82_1000, 0x221),
            vma(0x7ffd_0000_0000, 0x7ffd_0002_1000, 0x203),
        ],
        dumpable: Some(1),
        aios: vec![AioRingEntry {
            id: 0x7f00_0000_0000,
            nr_req: 128,
            ring_len: 4096,
        }],
        thp_disabled: Some(false),
        stasis_vdso_size: Some(8192),
        stasis_vvar_size: Some(16384),
    }
}

fn reg_file() -> FileEntry {
    FileEntry {
        r#type: FdTypes::Reg as i32,
        id: 7,
        reg: Some(RegFileEntry {
            id: 7,
            flags: 0o102,
            pos: 1234,
            fown: Some(fown()),
            name: "/tmp/stasis test/file".into(),
            mnt_id: Some(25),
            size: Some(4096),
            ext: None,
            mode: Some(0o100_644),
            build_id: vec![0xdead_beef, 0x1234_5678],
            checksum: None,
            checksum_config: None,
            checksum_parameter: None,
            stasis_mtime: Some(1_700_000_000_123_456_789),
        }),
        ..Default::default()
    }
}

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
    let bytes = m.encode_to_vec();
    let back = M::decode(bytes.as_slice()).unwrap();
    assert_eq!(&back, m);
}

#[test]
fn core_round_trips() {
    let c = core();
    round_trip(&c);
    // Through the framing too.
    let mut w = ImageWriter::new(Vec::new(), ImageKind::Core, "core-1.img").unwrap();
    w.write(&c).unwrap();
    let bytes = w.finish().unwrap();
    let mut r = ImageReader::new(bytes.as_slice(), ImageKind::Core, "core-1.img").unwrap();
    let back: CoreEntry = r.expect().unwrap();
    assert_eq!(back, c);
    assert_eq!(back.mtype(), core_entry::March::X8664);
    let tc = back.tc.unwrap();
    assert_eq!(tc.sigactions.len(), 62);
    assert_eq!(tc.stasis_xcomp_perm, Some(0x6_0002_02e7));
    let fp = back.thread_info.unwrap().fpregs.unwrap();
    assert_eq!(fp.stasis_xsave.unwrap().len(), 11008);
}

#[test]
fn mm_and_files_round_trip() {
    round_trip(&mm());
    round_trip(&reg_file());
    round_trip(&PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![1, 2, 3],
    });
    round_trip(&FdinfoEntry {
        id: 7,
        flags: 1,
        r#type: FdTypes::Reg as i32,
        fd: 3,
        xattr_security_selinux: None,
    });
}

#[test]
fn proto_defaults_apply() {
    // Absent optional fields read back as the .proto default through the accessors.
    let reg = RegFileEntry::default();
    assert_eq!(reg.mnt_id, None);
    assert_eq!(reg.mnt_id(), -1);
    let regs = UserX86RegsEntry::default();
    assert_eq!(regs.mode(), UserX86RegsMode::Native);
    // Required fields with a default start at it.
    let d = UserDescT::default();
    assert!(d.read_exec_only && d.seg_not_present && !d.usable);
    assert_eq!(FdTypes::from_str_name("CTL_TTY"), Some(FdTypes::CtlTty));
    assert_eq!(core_entry::March::X8664.as_str_name(), "X86_64");
    assert_eq!(FdTypes::try_from(20), Ok(FdTypes::Pidfd));
}

#[test]
fn repeated_scalars_are_written_unpacked() {
    let p = PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![5, 6],
    };
    // Field 5, wire type 0 (varint), once per element: 0x28 value.
    let bytes = p.encode_to_vec();
    assert!(bytes.ends_with(&[0x28, 5, 0x28, 6]), "{bytes:02x?}");
    // A packed encoding (as another writer might produce) is still accepted.
    let mut packed = PstreeEntry {
        threads: vec![],
        ..p.clone()
    }
    .encode_to_vec();
    packed.extend_from_slice(&[0x2a, 2, 5, 6]);
    assert_eq!(PstreeEntry::decode(packed.as_slice()).unwrap(), p);
}

#[test]
fn unknown_fields_are_skipped() {
    // A core entry carrying another architecture's registers (tag 8) and a future field.
    let mut bytes = CoreEntry {
        mtype: 3,
        ..Default::default()
    }
    .encode_to_vec();
    bytes.extend_from_slice(&[0x42, 2, 0x08, 0x01]); // tag 8, 2-byte message {1: 1}
    bytes.extend_from_slice(&[0xb8, 0x3e, 0x07]); // tag 999, varint 7
    let c = CoreEntry::decode(bytes.as_slice()).unwrap();
    assert_eq!(c.mtype(), core_entry::March::Aarch64);
    assert!(c.thread_info.is_none());
}

#[test]
fn extensions_use_high_tags() {
    // Field 1000, wire type 0: key varint (1000 << 3) = 8000 = 0xc0 0x3e.
    let t = ThreadCoreEntry {
        stasis_timerslack_ns: Some(1),
        ..Default::default()
    };
    let bytes = t.encode_to_vec();
    assert!(
        bytes.windows(3).any(|w| w == [0xc0, 0x3e, 1]),
        "{bytes:02x?}"
    );
    // An entry decoded by a reader that does not know the extension is unchanged otherwise.
    let m = MmEntry {
        stasis_vdso_size: Some(8192),
        stasis_vvar_size: Some(4096),
        ..mm()
    };
    round_trip(&m);
}

#[test]
fn json_shows_bytes_as_hex() {
    let f = SeccompFilter {
        filter: vec![0x06, 0, 0, 0, 0, 0, 0xff, 0x7f],
        prev: None,
        flags: None,
    };
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(v["filter"], "060000000000ff7f");
    let c = CredsEntry {
        apparmor_data: Some(vec![0xab]),
        ..Default::default()
    };
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["apparmor_data"], "ab");
    let v = serde_json::to_value(reg_file()).unwrap();
    assert_eq!(v["type"], 1);
    assert_eq!(v["reg"]["name"], "/tmp/stasis test/file");
    let v = serde_json::to_value(mm()).unwrap();
    assert_eq!(v["mm_start_stack"], 0x7ffd_0000_0000u64);
}

/// A tiny deterministic PRNG (xorshift64*), so the mutation test needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn image<M: Message>(kind: ImageKind, msgs: &[M]) -> Vec<u8> {
    let mut w = ImageWriter::new(Vec::new(), kind, "x.img").unwrap();
    for m in msgs {
        w.write(m).unwrap();
    }
    w.finish().unwrap()
}

fn mutate(rng: &mut XorShift, orig: &[u8]) -> Vec<u8> {
    let mut b = orig.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            // Flip one bit.
            0 | 1 => {
                let i = rng.below(b.len());
                if let Some(byte) = b.get_mut(i) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            // Overwrite one byte.
            2 => {
                let i = rng.below(b.len());
                if let Some(byte) = b.get_mut(i) {
                    *byte = rng.next() as u8;
                }
            }
            // Truncate.
            3 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            // Insert a few random bytes.
            4 => {
                let i = rng.below(b.len() + 1);
                for _ in 0..=rng.below(8) {
                    b.insert(i, rng.next() as u8);
                }
            }
            // Insert a large varint (a lying length inside a message).
            _ => {
                let i = rng.below(b.len() + 1);
                for byte in [0xff, 0xff, 0xff, 0xff, 0x0f] {
                    b.insert(i, byte);
                }
            }
        }
    }
    b
}

fn fuzz<M: Message + Default>(kind: ImageKind, orig: &[u8], seed: u64, rounds: usize) -> usize {
    let mut rng = XorShift(seed);
    let mut ok = 0;
    for _ in 0..rounds {
        let bytes = mutate(&mut rng, orig);
        let res = ImageReader::new(bytes.as_slice(), kind, "x.img")
            .and_then(|mut r| r.collect_all::<M>());
        ok += usize::from(res.is_ok());
    }
    ok
}

#[test]
fn garbage_never_panics() {
    const ROUNDS: usize = 3000;
    let mut accepted = 0;
    accepted += fuzz::<CoreEntry>(
        ImageKind::Core,
        &image(ImageKind::Core, &[core()]),
        1,
        ROUNDS,
    );
    accepted += fuzz::<MmEntry>(ImageKind::Mm, &image(ImageKind::Mm, &[mm()]), 2, ROUNDS);
    accepted += fuzz::<FileEntry>(
        ImageKind::Files,
        &image(ImageKind::Files, &[reg_file(), reg_file()]),
        3,
        ROUNDS,
    );
    let ps = [PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![1, 2],
    }];
    accepted += fuzz::<PstreeEntry>(ImageKind::Pstree, &image(ImageKind::Pstree, &ps), 4, ROUNDS);
    let inv = InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(TaskKobjIdsEntry {
            vm_id: 1,
            files_id: 1,
            fs_id: 1,
            sighand_id: 1,
            ..Default::default()
        }),
        lsmtype: Some(Lsmtype::Apparmor as i32),
        ..Default::default()
    };
    accepted += fuzz::<InventoryEntry>(
        ImageKind::Inventory,
        &image(ImageKind::Inventory, &[inv]),
        5,
        ROUNDS,
    );
    // Mutations that keep the file valid protobuf (e.g. a flipped bit in a value) are fine;
    // this only checks the test really exercised both outcomes.
    assert!(accepted > 0 && accepted < 5 * ROUNDS, "accepted {accepted}");
}

#[test]
fn lying_lengths_fail_cleanly() {
    // A framing length at the limit over a tiny file: an error, and the buffer grows only
    // with the bytes actually present.
    let mut bytes = image::<PstreeEntry>(ImageKind::Pstree, &[]);
    bytes.extend_from_slice(&MAX_ENTRY_SIZE.to_le_bytes());
    bytes.extend_from_slice(&[0x08, 1]);
    let err = ImageReader::new(bytes.as_slice(), ImageKind::Pstree, "p")
        .and_then(|mut r| r.collect_all::<PstreeEntry>())
        .unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    // A length-delimited field claiming 2^32 bytes inside a small entry.
    let inner = [0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0];
    let mut bytes = image::<PstreeEntry>(ImageKind::Pstree, &[]);
    bytes.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&inner);
    let err = ImageReader::new(bytes.as_slice(), ImageKind::Pstree, "p")
        .and_then(|mut r| r.collect_all::<PstreeEntry>())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decode {
                message: "PstreeEntry",
                ..
            }
        ),
        "{err}"
    );
}
