//! Process-level messages: inventory, process tree, per-thread core, credentials, signals,
//! timers, resource limits, rseq.

use super::proto_enum;
use super::*;

// ---- inventory.img ----

proto_enum! {
    /// Which Linux security module was active at dump time.
    pub enum Lsmtype {
        /// No LSM (or one we do not record).
        NoLsm = 0 => "NO_LSM",
        /// SELinux.
        Selinux = 1 => "SELINUX",
        /// AppArmor.
        Apparmor = 2 => "APPARMOR",
    }
}

/// Names of the CRIU plugins a dump needed.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PluginsEntry {
    /// Plugin names.
    #[prost(string, repeated, tag = "12")]
    pub plugins: Vec<String>,
}

/// The single entry of `inventory.img`: format version and dump-wide settings.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct InventoryEntry {
    /// Image format version (CRIU's `CRTOOLS_IMAGES_V1_1` = 2).
    #[prost(uint32, required, tag = "1")]
    pub img_version: u32,
    /// Whether `fdinfo-N.img` is numbered by files id rather than by pid (always true now).
    #[prost(bool, optional, tag = "2")]
    pub fdinfo_per_id: Option<bool>,
    /// Kernel object ids of the root task, to tell which namespaces are the host's.
    #[prost(message, optional, tag = "3")]
    pub root_ids: Option<TaskKobjIdsEntry>,
    /// Whether namespace images are numbered by namespace id.
    #[prost(bool, optional, tag = "4")]
    pub ns_per_id: Option<bool>,
    /// Cgroup set of the root task.
    #[prost(uint32, optional, tag = "5")]
    pub root_cg_set: Option<u32>,
    /// Active LSM at dump time.
    #[prost(enumeration = "Lsmtype", optional, tag = "6")]
    pub lsmtype: Option<i32>,
    /// Host uptime at dump time, in microseconds (for pre-dump chains).
    #[prost(uint64, optional, tag = "8")]
    pub dump_uptime: Option<u64>,
    /// How pre-dumps read memory (CRIU's PRE_DUMP_SPLICE = 1, PRE_DUMP_READ = 2).
    #[prost(uint32, optional, tag = "9")]
    pub pre_dump_mode: Option<u32>,
    /// Whether TCP connections were closed rather than dumped.
    #[prost(bool, optional, tag = "10")]
    pub tcp_close: Option<bool>,
    /// How the network was locked during the dump (iptables, nftables, skip).
    #[prost(uint32, optional, tag = "11")]
    pub network_lock_method: Option<u32>,
    /// Plugins the dump needed.
    #[prost(message, optional, tag = "12")]
    pub plugins_entry: Option<PluginsEntry>,
    /// Identifier of the dump run (used by plugins to match dump and restore).
    #[prost(string, optional, tag = "13")]
    pub dump_criu_run_id: Option<String>,
    /// Whether uprobes-installed vmas were allowed in the dump.
    #[prost(bool, optional, tag = "14")]
    pub allow_uprobes: Option<bool>,
}

// ---- pstree.img ----

/// One process of the dumped tree.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PstreeEntry {
    /// Process id.
    #[prost(uint32, required, tag = "1")]
    pub pid: u32,
    /// Parent's pid (0 for the root).
    #[prost(uint32, required, tag = "2")]
    pub ppid: u32,
    /// Process group id.
    #[prost(uint32, required, tag = "3")]
    pub pgid: u32,
    /// Session id.
    #[prost(uint32, required, tag = "4")]
    pub sid: u32,
    /// Thread ids, the main thread first.
    #[prost(uint32, repeated, packed = "false", tag = "5")]
    pub threads: Vec<u32>,
}

// ---- core-N.img ----

proto_enum! {
    /// Seccomp mode of a thread (the kernel's `SECCOMP_MODE_*`).
    pub enum SeccompMode {
        /// No seccomp.
        Disabled = 0 => "disabled",
        /// Strict mode: only read, write, exit, sigreturn.
        Strict = 1 => "strict",
        /// BPF filter mode.
        Filter = 2 => "filter",
    }
}

/// State shared by all threads of a process (stored in the main thread's core image).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TaskCoreEntry {
    /// CRIU's task state code (1 alive, 2 dead, 3 stopped, 6 zombie).
    #[prost(uint32, required, tag = "1")]
    pub task_state: u32,
    /// Exit code of a zombie.
    #[prost(uint32, required, tag = "2")]
    pub exit_code: u32,
    /// Execution domain (`personality(2)`).
    #[prost(uint32, required, tag = "3")]
    pub personality: u32,
    /// Kernel `PF_*` task flags.
    #[prost(uint32, required, tag = "4")]
    pub flags: u32,
    /// Blocked signal mask of the main thread (signals 1..=64).
    #[prost(uint64, required, tag = "5")]
    pub blk_sigset: u64,
    /// Command name (`/proc/PID/comm`).
    #[prost(string, required, tag = "6")]
    pub comm: String,
    /// Interval and POSIX timers.
    #[prost(message, optional, tag = "7")]
    pub timers: Option<TaskTimersEntry>,
    /// Resource limits.
    #[prost(message, optional, tag = "8")]
    pub rlimits: Option<TaskRlimitsEntry>,
    /// Cgroup set (deprecated here; see [`ThreadCoreEntry::cg_set`]).
    #[prost(uint32, optional, tag = "9")]
    pub cg_set: Option<u32>,
    /// Signals pending for the whole process.
    #[prost(message, optional, tag = "10")]
    pub signals_s: Option<SignalQueueEntry>,
    /// Seccomp mode (deprecated here; now per thread).
    #[prost(enumeration = "SeccompMode", optional, tag = "11")]
    pub old_seccomp_mode: Option<i32>,
    /// Seccomp filter id (deprecated here; now per thread).
    #[prost(uint32, optional, tag = "12")]
    pub old_seccomp_filter: Option<u32>,
    /// Audit login uid.
    #[prost(uint32, optional, tag = "13")]
    pub loginuid: Option<u32>,
    /// OOM killer score adjustment.
    #[prost(int32, optional, tag = "14")]
    pub oom_score_adj: Option<i32>,
    /// Signal dispositions of signals 1..=64 in order, skipping SIGKILL and SIGSTOP (62).
    #[prost(message, repeated, tag = "15")]
    pub sigactions: Vec<SaEntry>,
    /// Whether the process is a child subreaper (`PR_SET_CHILD_SUBREAPER`).
    #[prost(bool, optional, tag = "18")]
    pub child_subreaper: Option<bool>,
    /// Blocked signals above 64 (unused on x86_64).
    #[prost(uint64, optional, tag = "20")]
    pub blk_sigset_extended: Option<u64>,
    /// Signal that stopped a stopped task.
    #[prost(uint32, optional, tag = "21")]
    pub stop_signo: Option<u32>,
    /// `membarrier(2)` registrations of the process.
    #[prost(uint32, optional, tag = "22")]
    pub membarrier_registration_mask: Option<u32>,
    /// Stasis extension: the permitted XSAVE feature bitmap (`ARCH_GET_XCOMP_PERM`), so
    /// dynamically enabled components such as AMX tile data are requested again on restore.
    #[prost(uint64, optional, tag = "1000")]
    pub stasis_xcomp_perm: Option<u64>,
    /// Stasis extension: the process's SysV semaphore adjustments (`SEM_UNDO`), applied
    /// when it exits.
    #[prost(message, repeated, tag = "1001")]
    pub stasis_sem_undo: Vec<SemUndoEntry>,
}

/// One SysV semaphore adjustment of a process (stasis extension).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SemUndoEntry {
    /// Semaphore set id.
    #[prost(uint32, required, tag = "1")]
    pub semid: u32,
    /// Semaphore number in the set.
    #[prost(uint32, required, tag = "2")]
    pub num: u32,
    /// The adjustment (`semadj`).
    #[prost(sint32, required, tag = "3")]
    pub adj: i32,
}

/// Ids of the kernel objects a task uses; tasks sharing an object share its id.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TaskKobjIdsEntry {
    /// Address space (names `mm-ID.img`/`pagemap-ID.img` in CRIU when shared).
    #[prost(uint32, required, tag = "1")]
    pub vm_id: u32,
    /// File descriptor table (names `fdinfo-ID.img`).
    #[prost(uint32, required, tag = "2")]
    pub files_id: u32,
    /// Filesystem context: cwd, root, umask.
    #[prost(uint32, required, tag = "3")]
    pub fs_id: u32,
    /// Signal handler table.
    #[prost(uint32, required, tag = "4")]
    pub sighand_id: u32,
    /// PID namespace.
    #[prost(uint32, optional, tag = "5")]
    pub pid_ns_id: Option<u32>,
    /// Network namespace.
    #[prost(uint32, optional, tag = "6")]
    pub net_ns_id: Option<u32>,
    /// IPC namespace.
    #[prost(uint32, optional, tag = "7")]
    pub ipc_ns_id: Option<u32>,
    /// UTS namespace.
    #[prost(uint32, optional, tag = "8")]
    pub uts_ns_id: Option<u32>,
    /// Mount namespace.
    #[prost(uint32, optional, tag = "9")]
    pub mnt_ns_id: Option<u32>,
    /// User namespace.
    #[prost(uint32, optional, tag = "10")]
    pub user_ns_id: Option<u32>,
    /// Cgroup namespace.
    #[prost(uint32, optional, tag = "11")]
    pub cgroup_ns_id: Option<u32>,
    /// Time namespace.
    #[prost(uint32, optional, tag = "12")]
    pub time_ns_id: Option<u32>,
}

/// An alternate signal stack (`sigaltstack(2)`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ThreadSasEntry {
    /// Stack base.
    #[prost(uint64, required, tag = "1")]
    pub ss_sp: u64,
    /// Stack size.
    #[prost(uint64, required, tag = "2")]
    pub ss_size: u64,
    /// `SS_*` flags.
    #[prost(uint32, required, tag = "3")]
    pub ss_flags: u32,
}

/// Per-thread state other than registers.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ThreadCoreEntry {
    /// Robust futex list head (`get_robust_list(2)`).
    #[prost(uint64, required, tag = "1")]
    pub futex_rla: u64,
    /// Length of the robust futex list head.
    #[prost(uint32, required, tag = "2")]
    pub futex_rla_len: u32,
    /// Nice value.
    #[prost(sint32, optional, tag = "3")]
    pub sched_nice: Option<i32>,
    /// Scheduling policy (`SCHED_*`).
    #[prost(uint32, optional, tag = "4")]
    pub sched_policy: Option<u32>,
    /// Real-time priority.
    #[prost(uint32, optional, tag = "5")]
    pub sched_prio: Option<u32>,
    /// Blocked signal mask of this thread.
    #[prost(uint64, optional, tag = "6")]
    pub blk_sigset: Option<u64>,
    /// Alternate signal stack.
    #[prost(message, optional, tag = "7")]
    pub sas: Option<ThreadSasEntry>,
    /// Parent death signal (`PR_SET_PDEATHSIG`).
    #[prost(uint32, optional, tag = "8")]
    pub pdeath_sig: Option<u32>,
    /// Signals pending for this thread only.
    #[prost(message, optional, tag = "9")]
    pub signals_p: Option<SignalQueueEntry>,
    /// Credentials.
    #[prost(message, optional, tag = "10")]
    pub creds: Option<CredsEntry>,
    /// Seccomp mode.
    #[prost(enumeration = "SeccompMode", optional, tag = "11")]
    pub seccomp_mode: Option<i32>,
    /// Id of the innermost seccomp filter in `seccomp.img`.
    #[prost(uint32, optional, tag = "12")]
    pub seccomp_filter: Option<u32>,
    /// Thread name.
    #[prost(string, optional, tag = "13")]
    pub comm: Option<String>,
    /// Blocked signals above 64 (unused on x86_64).
    #[prost(uint64, optional, tag = "14")]
    pub blk_sigset_extended: Option<u64>,
    /// Registered restartable sequence area.
    #[prost(message, optional, tag = "15")]
    pub rseq_entry: Option<RseqEntry>,
    /// Cgroup set of the thread.
    #[prost(uint32, optional, tag = "16")]
    pub cg_set: Option<u32>,
    /// Stasis extension: timer slack in nanoseconds (`PR_GET_TIMERSLACK`).
    #[prost(uint64, optional, tag = "1000")]
    pub stasis_timerslack_ns: Option<u64>,
    /// Stasis extension: I/O priority (`ioprio_get`), when one was set.
    #[prost(uint32, optional, tag = "1001")]
    pub stasis_ioprio: Option<u32>,
}

/// Resource limits of a process, indexed by `RLIMIT_*`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TaskRlimitsEntry {
    /// One entry per resource, in `RLIMIT_*` order.
    #[prost(message, repeated, tag = "1")]
    pub rlimits: Vec<RlimitEntry>,
}

/// The single entry of `core-TID.img`: everything about one thread.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CoreEntry {
    /// Architecture of the registers below.
    #[prost(enumeration = "core_entry::March", required, tag = "1")]
    pub mtype: i32,
    /// x86 registers. Tags 6 and 8..=13 hold other architectures' registers; we do not
    /// declare them (decoding skips them).
    #[prost(message, optional, tag = "2")]
    pub thread_info: Option<ThreadInfoX86>,
    /// Process-wide state; only in the main thread's image.
    #[prost(message, optional, tag = "3")]
    pub tc: Option<TaskCoreEntry>,
    /// Kernel object ids (older images; now in `ids-PID.img`).
    #[prost(message, optional, tag = "4")]
    pub ids: Option<TaskKobjIdsEntry>,
    /// Per-thread state.
    #[prost(message, optional, tag = "5")]
    pub thread_core: Option<ThreadCoreEntry>,
}

/// Nested types of [`CoreEntry`].
pub mod core_entry {
    use super::proto_enum;

    proto_enum! {
        /// Machine architecture of a core image.
        pub enum March {
            /// Not set.
            Unknown = 0 => "UNKNOWN",
            /// x86_64 (also for 32-bit compat tasks).
            X8664 = 1 => "X86_64",
            /// 32-bit ARM.
            Arm = 2 => "ARM",
            /// 64-bit ARM.
            Aarch64 = 3 => "AARCH64",
            /// 64-bit POWER.
            Ppc64 = 4 => "PPC64",
            /// IBM Z.
            S390 = 5 => "S390",
            /// MIPS.
            Mips = 6 => "MIPS",
            /// LoongArch 64.
            Loongarch64 = 7 => "LOONGARCH64",
            /// RISC-V 64.
            Riscv64 = 8 => "RISCV64",
        }
    }
}

// ---- creds.proto ----

/// Credentials of a thread.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CredsEntry {
    /// Real uid.
    #[prost(uint32, required, tag = "1")]
    pub uid: u32,
    /// Real gid.
    #[prost(uint32, required, tag = "2")]
    pub gid: u32,
    /// Effective uid.
    #[prost(uint32, required, tag = "3")]
    pub euid: u32,
    /// Effective gid.
    #[prost(uint32, required, tag = "4")]
    pub egid: u32,
    /// Saved uid.
    #[prost(uint32, required, tag = "5")]
    pub suid: u32,
    /// Saved gid.
    #[prost(uint32, required, tag = "6")]
    pub sgid: u32,
    /// Filesystem uid.
    #[prost(uint32, required, tag = "7")]
    pub fsuid: u32,
    /// Filesystem gid.
    #[prost(uint32, required, tag = "8")]
    pub fsgid: u32,
    /// Inheritable capabilities, as 32-bit words (low word first).
    #[prost(uint32, repeated, packed = "false", tag = "9")]
    pub cap_inh: Vec<u32>,
    /// Permitted capabilities, as 32-bit words.
    #[prost(uint32, repeated, packed = "false", tag = "10")]
    pub cap_prm: Vec<u32>,
    /// Effective capabilities, as 32-bit words.
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub cap_eff: Vec<u32>,
    /// Bounding set, as 32-bit words.
    #[prost(uint32, repeated, packed = "false", tag = "12")]
    pub cap_bnd: Vec<u32>,
    /// Securebits (`PR_GET_SECUREBITS`).
    #[prost(uint32, required, tag = "13")]
    pub secbits: u32,
    /// Supplementary groups.
    #[prost(uint32, repeated, packed = "false", tag = "14")]
    pub groups: Vec<u32>,
    /// LSM label of the thread.
    #[prost(string, optional, tag = "15")]
    pub lsm_profile: Option<String>,
    /// LSM label for sockets the thread creates.
    #[prost(string, optional, tag = "16")]
    pub lsm_sockcreate: Option<String>,
    /// AppArmor policy blob.
    #[prost(bytes = "vec", optional, tag = "17")]
    #[serde(serialize_with = "crate::pb::serde_hex::opt_bytes")]
    pub apparmor_data: Option<Vec<u8>>,
    /// `PR_SET_NO_NEW_PRIVS` flag.
    #[prost(uint32, optional, tag = "18")]
    pub no_new_privs: Option<u32>,
    /// Ambient capabilities, as 32-bit words.
    #[prost(uint32, repeated, packed = "false", tag = "19")]
    pub cap_amb: Vec<u32>,
}

// ---- sa.proto ----

/// One signal's disposition (`struct sigaction` as the kernel sees it).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SaEntry {
    /// Handler address, or `SIG_DFL` (0) / `SIG_IGN` (1).
    #[prost(uint64, required, tag = "1")]
    pub sigaction: u64,
    /// `SA_*` flags.
    #[prost(uint64, required, tag = "2")]
    pub flags: u64,
    /// `sa_restorer` address.
    #[prost(uint64, required, tag = "3")]
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    #[prost(uint64, required, tag = "4")]
    pub mask: u64,
    /// Whether the handler was installed through the 32-bit compat syscall.
    #[prost(bool, optional, tag = "5")]
    pub compat_sigaction: Option<bool>,
    /// Mask bits above 64 (unused on x86_64).
    #[prost(uint64, optional, tag = "6")]
    pub mask_extended: Option<u64>,
}

// ---- rlimit.proto ----

/// One resource limit.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RlimitEntry {
    /// Soft limit (`u64::MAX` is infinity).
    #[prost(uint64, required, tag = "1")]
    pub cur: u64,
    /// Hard limit (`u64::MAX` is infinity).
    #[prost(uint64, required, tag = "2")]
    pub max: u64,
}

// ---- timer.proto ----

/// An interval timer (`getitimer(2)`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ItimerEntry {
    /// Interval, seconds.
    #[prost(uint64, required, tag = "1")]
    pub isec: u64,
    /// Interval, microseconds.
    #[prost(uint64, required, tag = "2")]
    pub iusec: u64,
    /// Time to next expiry, seconds.
    #[prost(uint64, required, tag = "3")]
    pub vsec: u64,
    /// Time to next expiry, microseconds.
    #[prost(uint64, required, tag = "4")]
    pub vusec: u64,
}

/// A POSIX timer (`timer_create(2)`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PosixTimerEntry {
    /// Timer id as the process knows it.
    #[prost(uint32, required, tag = "1")]
    pub it_id: u32,
    /// Clock the timer counts.
    #[prost(uint32, required, tag = "2")]
    pub clock_id: u32,
    /// Signal sent on expiry.
    #[prost(uint32, required, tag = "3")]
    pub si_signo: u32,
    /// `SIGEV_*` notification method.
    #[prost(uint32, required, tag = "4")]
    pub it_sigev_notify: u32,
    /// `sigev_value` passed with the signal.
    #[prost(uint64, required, tag = "5")]
    pub sival_ptr: u64,
    /// Overrun count.
    #[prost(uint32, required, tag = "6")]
    pub overrun: u32,
    /// Interval, seconds.
    #[prost(uint64, required, tag = "7")]
    pub isec: u64,
    /// Interval, nanoseconds.
    #[prost(uint64, required, tag = "8")]
    pub insec: u64,
    /// Time to next expiry, seconds.
    #[prost(uint64, required, tag = "9")]
    pub vsec: u64,
    /// Time to next expiry, nanoseconds.
    #[prost(uint64, required, tag = "10")]
    pub vnsec: u64,
    /// Thread notified with `SIGEV_THREAD_ID`.
    #[prost(int32, optional, tag = "11")]
    pub notify_thread_id: Option<i32>,
    /// Stasis extension: the timer's own signal is pending and will count this overrun
    /// when delivered (see the restore: the timer is armed in the past to fire again).
    #[prost(uint32, optional, tag = "1000")]
    pub stasis_pending_overrun: Option<u32>,
}

/// All timers of a process.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct TaskTimersEntry {
    /// `ITIMER_REAL` (required).
    #[prost(message, optional, tag = "1")]
    pub real: Option<ItimerEntry>,
    /// `ITIMER_VIRTUAL` (required).
    #[prost(message, optional, tag = "2")]
    pub virt: Option<ItimerEntry>,
    /// `ITIMER_PROF` (required).
    #[prost(message, optional, tag = "3")]
    pub prof: Option<ItimerEntry>,
    /// POSIX timers.
    #[prost(message, repeated, tag = "4")]
    pub posix: Vec<PosixTimerEntry>,
}

// ---- siginfo.proto ----

/// One pending signal.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SiginfoEntry {
    /// The raw 128-byte `siginfo_t` (as `PTRACE_PEEKSIGINFO` returns it).
    #[prost(bytes = "vec", required, tag = "1")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes")]
    pub siginfo: Vec<u8>,
}

/// A queue of pending signals.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SignalQueueEntry {
    /// The signals, oldest first.
    #[prost(message, repeated, tag = "1")]
    pub signals: Vec<SiginfoEntry>,
}

// ---- rseq.proto ----

/// A registered restartable-sequence area (`rseq(2)`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RseqEntry {
    /// Address of `struct rseq`.
    #[prost(uint64, required, tag = "1")]
    pub rseq_abi_pointer: u64,
    /// Registered size of `struct rseq`.
    #[prost(uint32, required, tag = "2")]
    pub rseq_abi_size: u32,
    /// Signature the kernel checks before aborting into a handler.
    #[prost(uint32, required, tag = "3")]
    pub signature: u32,
    /// `rseq_cs` pointer, if the thread was inside a critical section.
    #[prost(uint64, optional, tag = "4")]
    pub rseq_cs_pointer: Option<u64>,
}
