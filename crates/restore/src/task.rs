//! The restorer ops for per-task state: mm fields, signal actions and queues, timers,
//! limits, prctl flags, rseq, credentials, and the thread's segment bases.
//!
//! Order matters and follows the kernel's rules: mm fields need the final mappings
//! (PR_SET_MM_MAP checks them); limits come after everything that allocates; credentials
//! come last because dropping privileges would forbid the rest.

use stasis_images::pb;
use stasis_sys::abi::{self, Itimerspec, nr};
use stasis_sys::{Pid, proc, process};

use crate::error::{Result, SysContext};
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
        let ours = proc::read_limits(process::getpid()).unwrap_or_default();
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
    // membarrier registrations: each set bit is the REGISTER_* command that made it.
    let registrations = tc.membarrier_registration_mask.unwrap_or(0);
    for bit in 0..32u32 {
        if registrations & (1 << bit) != 0 {
            let cmd = 1u64 << bit;
            prog.syscall(
                nr::MEMBARRIER,
                [cmd, 0, 0, 0, 0, 0],
                format!("membarrier({cmd:#x})"),
            );
        }
    }
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
    let regenerated = timers_regenerating_signals(p);
    if let Some(q) = &tc.signals_s {
        for s in q
            .signals
            .iter()
            .filter(|s| !is_regenerated(&s.siginfo, &regenerated))
        {
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

/// The timers that queue their own pending signal again when restored (they are armed in
/// the past, see [`emit_posix_timers`]).
pub fn timers_regenerating_signals(p: &ProcessImage) -> Vec<u32> {
    p.tc()
        .timers
        .iter()
        .flat_map(|t| &t.posix)
        .filter(|t| t.stasis_pending_overrun.is_some())
        .map(|t| t.it_id)
        .collect()
}

/// Whether a pending signal is the own signal of one of the `regenerated` timers.
fn is_regenerated(info: &[u8], regenerated: &[u32]) -> bool {
    const SI_TIMER: i32 = -2;
    let int = |at: usize| {
        info.get(at..at + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    int(8) == Some(SI_TIMER) && int(16).is_some_and(|id| regenerated.contains(&(id as u32)))
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
    filters: &[pb::SeccompFilter],
    regenerated: &[u32],
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
    if let Some(name) = &tcore.comm {
        // PR_SET_NAME names the calling thread.
        let mut bytes = name.as_bytes()[..name.len().min(15)].to_vec();
        bytes.push(0);
        let addr = arena.push(&bytes, 1);
        prog.syscall(
            nr::PRCTL,
            [libc::PR_SET_NAME as u64, addr, 0, 0, 0, 0],
            "prctl(PR_SET_NAME)",
        );
    }
    emit_sched(prog, arena, tcore);
    if let Some(slack) = tcore.stasis_timerslack_ns {
        prog.syscall(
            nr::PRCTL,
            [libc::PR_SET_TIMERSLACK as u64, slack, 0, 0, 0, 0],
            "prctl(PR_SET_TIMERSLACK)",
        );
    }
    if let Some(prio) = tcore.stasis_ioprio {
        const IOPRIO_WHO_PROCESS: u64 = 1;
        prog.syscall(
            nr::IOPRIO_SET,
            [IOPRIO_WHO_PROCESS, 0, u64::from(prio), 0, 0, 0],
            "ioprio_set",
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
        for s in q
            .signals
            .iter()
            .filter(|s| !is_regenerated(&s.siginfo, regenerated))
        {
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
    emit_seccomp(prog, arena, pid, tcore, filters)?;
    if let Some(c) = &tcore.creds {
        emit_creds(prog, arena, c);
    }
    Ok(())
}

/// Seccomp comes before credentials, while installing filters is still allowed; the ops
/// after it are not subject to the filters because stasis traces the task with
/// PTRACE_O_SUSPEND_SECCOMP until the end.
fn emit_seccomp(
    prog: &mut Program,
    arena: &mut Arena,
    pid: Pid,
    tcore: &pb::ThreadCoreEntry,
    filters: &[pb::SeccompFilter],
) -> Result<()> {
    const SECCOMP_MODE_STRICT: u64 = 1;
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    match tcore.seccomp_mode.unwrap_or(0) {
        0 => Ok(()),
        1 => {
            prog.syscall(
                nr::PRCTL,
                [libc::PR_SET_SECCOMP as u64, SECCOMP_MODE_STRICT, 0, 0, 0, 0],
                "seccomp strict mode",
            );
            Ok(())
        }
        2 => {
            // Follow the chain from the newest filter, then install oldest first.
            let mut chain = Vec::new();
            let mut next = tcore.seccomp_filter;
            while let Some(i) = next {
                let f = filters
                    .get(i as usize)
                    .filter(|_| chain.len() <= filters.len())
                    .ok_or_else(|| {
                        crate::error::invalid(
                            "seccomp.img",
                            format!("process {pid}: bad filter index {i}"),
                        )
                    })?;
                chain.push(f);
                next = f.prev;
            }
            for f in chain.into_iter().rev() {
                if f.filter.is_empty() || f.filter.len() % 8 != 0 || f.filter.len() / 8 > 4096 {
                    return Err(crate::error::invalid(
                        "seccomp.img",
                        format!("process {pid}: malformed filter"),
                    ));
                }
                let code = arena.push(&f.filter, 8);
                // struct sock_fprog: length in instructions, then the program pointer.
                let mut fprog = vec![0u8; 16];
                fprog[0..2].copy_from_slice(&((f.filter.len() / 8) as u16).to_le_bytes());
                fprog[8..16].copy_from_slice(&code.to_le_bytes());
                let fprog_addr = arena.push(&fprog, 8);
                prog.syscall(
                    nr::SECCOMP,
                    [
                        SECCOMP_SET_MODE_FILTER,
                        u64::from(f.flags.unwrap_or(0)),
                        fprog_addr,
                        0,
                        0,
                        0,
                    ],
                    "install a seccomp filter",
                );
            }
            Ok(())
        }
        mode => Err(crate::error::invalid(
            "core",
            format!("process {pid}: seccomp mode {mode}"),
        )),
    }
}

fn caps64(words: &[u32]) -> u64 {
    u64::from(words.first().copied().unwrap_or(0))
        | (u64::from(words.get(1).copied().unwrap_or(0)) << 32)
}

/// Credentials, in the order the kernel allows: no uid fixups (capabilities stay while
/// the uids change), groups, gids and uids while still privileged, the image's securebits
/// while CAP_SETPCAP is still effective, the bounding set, the capability sets, the
/// ambient set, and no_new_privs last.
fn emit_creds(prog: &mut Program, arena: &mut Arena, c: &pb::CredsEntry) {
    const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
    prog.syscall(
        nr::PRCTL,
        [
            libc::PR_SET_SECUREBITS as u64,
            SECBIT_NO_SETUID_FIXUP,
            0,
            0,
            0,
            0,
        ],
        "prctl(PR_SET_SECUREBITS) keeping capabilities across setresuid",
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
}

/// Scheduling policy, real-time priority and nice value of the calling thread, with one
/// sched_setattr (lowering nice needs privileges we still have: credentials come last).
fn emit_sched(prog: &mut Program, arena: &mut Arena, tcore: &pb::ThreadCoreEntry) {
    let (Some(policy), Some(prio), Some(nice)) =
        (tcore.sched_policy, tcore.sched_prio, tcore.sched_nice)
    else {
        return;
    };
    // struct sched_attr, version 0 (48 bytes): size, policy, flags, nice, priority, and
    // the deadline parameters (unused).
    let mut attr = Vec::with_capacity(48);
    attr.extend_from_slice(&48u32.to_le_bytes());
    attr.extend_from_slice(&policy.to_le_bytes());
    attr.extend_from_slice(&0u64.to_le_bytes());
    attr.extend_from_slice(&nice.to_le_bytes());
    attr.extend_from_slice(&prio.to_le_bytes());
    attr.extend_from_slice(&[0u8; 24]);
    let addr = arena.push(&attr, 8);
    prog.syscall(
        nr::SCHED_SETATTR,
        [0, addr, 0, 0, 0, 0],
        format!("sched_setattr(policy {policy}, priority {prio}, nice {nice})"),
    );
}

/// POSIX timers with their ids (PR_TIMER_CREATE_RESTORE_IDS makes timer_create take the
/// id it is given), notification, and remaining time and interval. They come after the
/// threads exist: a timer may signal a particular thread. The overrun count is the
/// kernel's own and cannot be set; it starts again from zero.
pub fn emit_posix_timers(prog: &mut Program, arena: &mut Arena, p: &ProcessImage) -> Result<()> {
    let Some(timers) = p.tc().timers.as_ref().filter(|t| !t.posix.is_empty()) else {
        return Ok(());
    };
    const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
    const TIMER_ABSTIME: u64 = 1;
    prog.syscall(
        nr::PRCTL,
        [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0],
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, on)",
    );
    for t in &timers.posix {
        // struct sigevent: value, signo, notify, then the target thread id.
        let mut sev = vec![0u8; 64];
        sev[0..8].copy_from_slice(&t.sival_ptr.to_le_bytes());
        sev[8..12].copy_from_slice(&t.si_signo.to_le_bytes());
        sev[12..16].copy_from_slice(&t.it_sigev_notify.to_le_bytes());
        sev[16..20].copy_from_slice(&t.notify_thread_id.unwrap_or(0).to_le_bytes());
        let sev_addr = arena.push(&sev, 8);
        let id_addr = arena.push(&t.it_id.to_le_bytes(), 4);
        prog.syscall(
            nr::TIMER_CREATE,
            [u64::from(t.clock_id), sev_addr, id_addr, 0, 0, 0],
            format!("timer_create(id {}, clock {})", t.it_id, t.clock_id),
        );
        let spec = Itimerspec {
            interval_sec: t.isec as i64,
            interval_nsec: t.insec as i64,
            value_sec: t.vsec as i64,
            value_nsec: t.vnsec as i64,
        };
        let (flags, spec) = match t.stasis_pending_overrun {
            // Its signal was pending with this overrun: armed in the past, the timer fires
            // at once and queues its signal, which counts the overrun again on delivery.
            Some(overrun) => {
                let now = process::clock_now(t.clock_id as i32).ctx(p.pid(), || {
                    format!("read clock {} for timer {}", t.clock_id, t.it_id)
                })?;
                let at = spec.past_expiry(now, overrun);
                let abs = Itimerspec {
                    value_sec: at[0],
                    value_nsec: at[1],
                    ..spec
                };
                (TIMER_ABSTIME, abs)
            }
            None if t.vsec == 0 && t.vnsec == 0 => continue,
            None => (0, spec),
        };
        let spec = arena.push(stasis_sys::mem::bytes_of(&spec), 8);
        prog.syscall(
            nr::TIMER_SETTIME,
            [u64::from(t.it_id), flags, spec, 0, 0, 0],
            format!("timer_settime({})", t.it_id),
        );
    }
    prog.syscall(
        nr::PRCTL,
        [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0],
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, off)",
    );
    Ok(())
}
