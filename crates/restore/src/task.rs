//! The restorer ops for per-task state: mm fields, signal actions and queues, timers,
//! limits, prctl flags, rseq, credentials, and the thread's segment bases.
//!
//! Order matters and follows the kernel's rules: mm fields need the final mappings
//! (PR_SET_MM_MAP checks them); limits come after everything that allocates; credentials
//! come last because dropping privileges would forbid the rest.

use stasis_images::pb;
use stasis_sys::abi::{self, nr};
use stasis_sys::{Pid, proc};

use crate::error::{RestoreError, Result};
use crate::image::ProcessImage;
use crate::program::{Arena, Program};

fn u64_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// `prctl(PR_SET_MM, PR_SET_MM_MAP)`: code/data/brk/stack/args/env bounds, auxv and the
/// exe link, in one call validated by the kernel.
pub fn emit_mm(prog: &mut Program, arena: &mut Arena, p: &ProcessImage, exe_fd: Option<i32>) {
    let mm = &p.mm;
    let auxv = u64_bytes(&mm.mm_saved_auxv);
    let auxv_addr = arena.push(&auxv, 8);
    let map = abi::PrctlMmMap {
        start_code: mm.mm_start_code,
        end_code: mm.mm_end_code,
        start_data: mm.mm_start_data,
        end_data: mm.mm_end_data,
        start_brk: mm.mm_start_brk,
        brk: mm.mm_brk,
        start_stack: mm.mm_start_stack,
        arg_start: mm.mm_arg_start,
        arg_end: mm.mm_arg_end,
        env_start: mm.mm_env_start,
        env_end: mm.mm_env_end,
        auxv: auxv_addr,
        auxv_size: auxv.len() as u32,
        exe_fd: exe_fd.map_or(u32::MAX, |fd| fd as u32),
    };
    let words = [
        map.start_code,
        map.end_code,
        map.start_data,
        map.end_data,
        map.start_brk,
        map.brk,
        map.start_stack,
        map.arg_start,
        map.arg_end,
        map.env_start,
        map.env_end,
        map.auxv,
    ];
    let mut bytes = u64_bytes(&words);
    bytes.extend_from_slice(&map.auxv_size.to_le_bytes());
    bytes.extend_from_slice(&map.exe_fd.to_le_bytes());
    let map_addr = arena.push(&bytes, 8);
    prog.syscall(
        nr::PRCTL,
        [
            abi::PR_SET_MM as u64,
            abi::PR_SET_MM_MAP,
            map_addr,
            bytes.len() as u64,
            0,
            0,
        ],
        "prctl(PR_SET_MM_MAP): mm fields, auxv and exe link",
    );
    if let Some(fd) = exe_fd {
        prog.syscall(nr::CLOSE, [fd as u64, 0, 0, 0, 0, 0], "close the exe fd");
    }
    if let Some(d) = mm.dumpable {
        prog.syscall(
            nr::PRCTL,
            [libc::PR_SET_DUMPABLE as u64, d as u64, 0, 0, 0, 0],
            "prctl(PR_SET_DUMPABLE)",
        );
    }
    if mm.thp_disabled == Some(true) {
        prog.syscall(
            nr::PRCTL,
            [abi::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0],
            "prctl(PR_SET_THP_DISABLE)",
        );
    }
}

/// Signal actions, interval timers, limits, prctl flags, personality.
pub fn emit_process_state(prog: &mut Program, arena: &mut Arena, p: &ProcessImage) -> Result<()> {
    let pid = p.pid();
    let tc = p.tc();
    // Signal actions, 1..=64 without SIGKILL and SIGSTOP.
    let sigs = (1..=64u64).filter(|s| *s != libc::SIGKILL as u64 && *s != libc::SIGSTOP as u64);
    for (sig, sa) in sigs.zip(&tc.sigactions) {
        let act = arena.push(
            &u64_bytes(&[sa.sigaction, sa.flags, sa.restorer, sa.mask]),
            8,
        );
        prog.syscall(
            nr::RT_SIGACTION,
            [sig, act, 0, 8, 0, 0],
            format!("rt_sigaction({sig})"),
        );
    }
    if let Some(t) = &tc.timers {
        if !t.posix.is_empty() {
            return Err(RestoreError::Unsupported {
                pid,
                resource: "POSIX timers".into(),
                reason: "restoring POSIX timers is not supported yet".into(),
            });
        }
        for (which, it) in [(0u64, &t.real), (1, &t.virt), (2, &t.prof)] {
            let Some(it) = it else { continue };
            if it.vsec == 0 && it.vusec == 0 {
                continue;
            }
            let v = arena.push(&u64_bytes(&[it.isec, it.iusec, it.vsec, it.vusec]), 8);
            prog.syscall(
                nr::SETITIMER,
                [which, v, 0, 0, 0, 0],
                format!("setitimer({which})"),
            );
        }
    }
    if let Some(r) = &tc.rlimits {
        // Hard limits cannot be raised without CAP_SYS_RESOURCE: keep ours where the
        // image's are higher, and say so.
        let ours = proc::read_limits(stasis_sys::process::getpid()).unwrap_or_default();
        for (res, l) in r.rlimits.iter().enumerate() {
            let (mut cur, mut max) = (l.cur, l.max);
            if let Some(o) = ours.get(res)
                && max > o.max
            {
                log::warn!(
                    "process {pid}: resource limit {res} hard value {max} exceeds ours ({}); \
                     keeping {}",
                    o.max,
                    o.max
                );
                max = o.max;
                cur = cur.min(max);
            }
            let v = arena.push(&u64_bytes(&[cur, max]), 8);
            prog.syscall(
                nr::PRLIMIT64,
                [0, res as u64, v, 0, 0, 0],
                format!("setrlimit({res})"),
            );
        }
    }
    if tc.child_subreaper == Some(true) {
        prog.syscall(
            nr::PRCTL,
            [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0],
            "prctl(PR_SET_CHILD_SUBREAPER)",
        );
    }
    prog.syscall(
        nr::PERSONALITY,
        [u64::from(tc.personality), 0, 0, 0, 0, 0],
        "personality",
    );
    if let Some(perm) = tc.stasis_xcomp_perm {
        let tile = 1u64 << stasis_sys::cpu::XFEATURE_XTILEDATA;
        if perm & tile != 0 {
            prog.syscall(
                nr::ARCH_PRCTL,
                [
                    abi::ARCH_REQ_XCOMP_PERM,
                    u64::from(stasis_sys::cpu::XFEATURE_XTILEDATA),
                    0,
                    0,
                    0,
                    0,
                ],
                "arch_prctl(ARCH_REQ_XCOMP_PERM, AMX tile data)",
            );
        }
    }
    // Process-wide pending signals, queued to ourselves (allowed with any si_code).
    if let Some(q) = &tc.signals_s {
        for s in &q.signals {
            let signo = siginfo_signo(&s.siginfo, pid)?;
            let info = arena.push(&s.siginfo, 8);
            prog.syscall(
                nr::RT_SIGQUEUEINFO,
                [pid as u64, signo, info, 0, 0, 0],
                format!("queue process signal {signo}"),
            );
        }
    }
    Ok(())
}

fn siginfo_signo(info: &[u8], pid: Pid) -> Result<u64> {
    if info.len() != 128 {
        return Err(crate::error::invalid(
            format!("core-{pid}.img"),
            format!(
                "a pending signal's siginfo has {} bytes, not 128",
                info.len()
            ),
        ));
    }
    Ok(u64::from(u32::from_le_bytes([
        info[0], info[1], info[2], info[3],
    ])))
}

/// Per-thread state: tid address, robust list, rseq, timer slack, pdeath signal, thread
/// signals, segment bases, and finally credentials.
pub fn emit_thread_state(
    prog: &mut Program,
    arena: &mut Arena,
    pid: Pid,
    tid: Pid,
    core: &pb::CoreEntry,
) -> Result<()> {
    let ti = core.thread_info.as_ref().expect("validated at load");
    let tcore = core.thread_core.as_ref().expect("validated at load");
    prog.syscall(
        nr::SET_TID_ADDRESS,
        [ti.clear_tid_addr, 0, 0, 0, 0, 0],
        "set_tid_address",
    );
    if tcore.futex_rla != 0 {
        prog.syscall(
            nr::SET_ROBUST_LIST,
            [tcore.futex_rla, u64::from(tcore.futex_rla_len), 0, 0, 0, 0],
            "set_robust_list",
        );
    }
    if let Some(r) = &tcore.rseq_entry {
        prog.syscall(
            nr::RSEQ,
            [
                r.rseq_abi_pointer,
                u64::from(r.rseq_abi_size),
                0,
                u64::from(r.signature),
                0,
                0,
            ],
            "rseq registration",
        );
    }
    if let Some(slack) = tcore.stasis_timerslack_ns {
        prog.syscall(
            nr::PRCTL,
            [libc::PR_SET_TIMERSLACK as u64, slack, 0, 0, 0, 0],
            "prctl(PR_SET_TIMERSLACK)",
        );
    }
    if let Some(sig) = tcore.pdeath_sig
        && sig != 0
    {
        prog.syscall(
            nr::PRCTL,
            [libc::PR_SET_PDEATHSIG as u64, u64::from(sig), 0, 0, 0, 0],
            "prctl(PR_SET_PDEATHSIG)",
        );
    }
    if let Some(q) = &tcore.signals_p {
        for s in &q.signals {
            let signo = siginfo_signo(&s.siginfo, pid)?;
            let info = arena.push(&s.siginfo, 8);
            prog.syscall(
                nr::RT_TGSIGQUEUEINFO,
                [pid as u64, tid as u64, signo, info, 0, 0],
                format!("queue thread signal {signo}"),
            );
        }
    }
    let gp = ti.gpregs.as_ref().expect("validated at load");
    prog.syscall(
        nr::ARCH_PRCTL,
        [abi::ARCH_SET_FS, gp.fs_base, 0, 0, 0, 0],
        "arch_prctl(ARCH_SET_FS)",
    );
    prog.syscall(
        nr::ARCH_PRCTL,
        [abi::ARCH_SET_GS, gp.gs_base, 0, 0, 0, 0],
        "arch_prctl(ARCH_SET_GS)",
    );
    if let Some(c) = &tcore.creds {
        emit_creds(prog, arena, c);
    }
    Ok(())
}

fn caps64(words: &[u32]) -> u64 {
    u64::from(words.first().copied().unwrap_or(0))
        | (u64::from(words.get(1).copied().unwrap_or(0)) << 32)
}

/// Credentials, in the order the kernel allows: keep capabilities across the uid change,
/// groups and gids while still privileged, uids, then capability sets, ambient set,
/// no_new_privs, and the final securebits.
fn emit_creds(prog: &mut Program, arena: &mut Arena, c: &pb::CredsEntry) {
    const SECBIT_KEEP_CAPS: u64 = 1 << 4;
    prog.syscall(
        nr::PRCTL,
        [
            libc::PR_SET_SECUREBITS as u64,
            u64::from(c.secbits) | SECBIT_KEEP_CAPS,
            0,
            0,
            0,
            0,
        ],
        "prctl(PR_SET_SECUREBITS) keeping capabilities",
    );
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let groups_addr = arena.push(&groups, 8);
    prog.syscall(
        nr::SETGROUPS,
        [c.groups.len() as u64, groups_addr, 0, 0, 0, 0],
        "setgroups",
    );
    prog.syscall(
        nr::SETRESGID,
        [
            u64::from(c.gid),
            u64::from(c.egid),
            u64::from(c.sgid),
            0,
            0,
            0,
        ],
        "setresgid",
    );
    prog.syscall_any(
        nr::SETFSGID,
        [u64::from(c.fsgid), 0, 0, 0, 0, 0],
        "setfsgid",
    );
    prog.syscall(
        nr::SETRESUID,
        [
            u64::from(c.uid),
            u64::from(c.euid),
            u64::from(c.suid),
            0,
            0,
            0,
        ],
        "setresuid",
    );
    prog.syscall_any(
        nr::SETFSUID,
        [u64::from(c.fsuid), 0, 0, 0, 0, 0],
        "setfsuid",
    );
    // Drop bounding-set capabilities the image lacks.
    let bnd = caps64(&c.cap_bnd);
    for cap in 0..64u64 {
        if bnd & (1 << cap) == 0 {
            // Capabilities beyond the kernel's last one fail with EINVAL; that is fine.
            prog.syscall_any(
                nr::PRCTL,
                [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0],
                format!("drop bounding capability {cap}"),
            );
        }
    }
    // capset with _LINUX_CAPABILITY_VERSION_3 (two 32-bit words per set).
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut hdr = LINUX_CAPABILITY_VERSION_3.to_le_bytes().to_vec();
    hdr.extend_from_slice(&0u32.to_le_bytes()); // pid 0: ourselves
    let header = arena.push(&hdr, 8);
    let mut data = Vec::new();
    for i in 0..2 {
        for set in [&c.cap_eff, &c.cap_prm, &c.cap_inh] {
            data.extend_from_slice(&set.get(i).copied().unwrap_or(0).to_le_bytes());
        }
    }
    let data_addr = arena.push(&data, 8);
    prog.syscall(nr::CAPSET, [header, data_addr, 0, 0, 0, 0], "capset");
    let amb = caps64(&c.cap_amb);
    for cap in 0..64u64 {
        if amb & (1 << cap) != 0 {
            prog.syscall(
                nr::PRCTL,
                [
                    libc::PR_CAP_AMBIENT as u64,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    cap,
                    0,
                    0,
                    0,
                ],
                format!("raise ambient capability {cap}"),
            );
        }
    }
    if c.no_new_privs == Some(1) {
        prog.syscall(
            nr::PRCTL,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
            "prctl(PR_SET_NO_NEW_PRIVS)",
        );
    }
    prog.syscall(
        nr::PRCTL,
        [
            libc::PR_SET_SECUREBITS as u64,
            u64::from(c.secbits),
            0,
            0,
            0,
            0,
        ],
        "prctl(PR_SET_SECUREBITS)",
    );
}
