//! Kernel ABI facts (x86_64) that the libc crate does not carry, or carries only for some
//! libcs. Values are from the kernel's UAPI headers.

#![allow(missing_docs)]

/// Page size on x86_64.
pub const PAGE_SIZE: u64 = 4096;

// ptrace requests and options (linux/ptrace.h).
pub const PTRACE_GETREGSET: u32 = 0x4204;
pub const PTRACE_SETREGSET: u32 = 0x4205;
pub const PTRACE_SEIZE: u32 = 0x4206;
pub const PTRACE_INTERRUPT: u32 = 0x4207;
pub const PTRACE_PEEKSIGINFO: u32 = 0x4209;
pub const PTRACE_GETSIGMASK: u32 = 0x420a;
pub const PTRACE_SETSIGMASK: u32 = 0x420b;
pub const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
pub const PTRACE_SECCOMP_GET_METADATA: u32 = 0x420d;
pub const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
pub const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
pub const PTRACE_O_TRACESYSGOOD: u64 = 1;
pub const PTRACE_O_TRACECLONE: u64 = 8;
pub const PTRACE_O_EXITKILL: u64 = 0x0010_0000;
pub const PTRACE_O_SUSPEND_SECCOMP: u64 = 0x0020_0000;
pub const PTRACE_EVENT_STOP: i32 = 128;

// ELF note types for PTRACE_GETREGSET.
pub const NT_PRSTATUS: u32 = 1;
pub const NT_X86_XSTATE: u32 = 0x202;

// Syscall restart codes a task may be stopped with (kernel-internal, visible in rax).
pub const ERESTARTSYS: i64 = 512;
pub const ERESTARTNOINTR: i64 = 513;
pub const ERESTARTNOHAND: i64 = 514;
pub const ERESTART_RESTARTBLOCK: i64 = 516;

// fcntl commands glibc's headers have but the libc crate lacks.
pub const F_SETSIG: i32 = 10;
pub const F_GETSIG: i32 = 11;
pub const F_SETOWN_EX: i32 = 15;
pub const F_GETOWN_EX: i32 = 16;

/// `struct f_owner_ex`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FOwnerEx {
    pub kind: i32,
    pub pid: i32,
}

// prctl (linux/prctl.h).
pub const PR_SET_MM: i32 = 35;
pub const PR_SET_MM_MAP: u64 = 14;
pub const PR_SET_MM_MAP_SIZE: u64 = 15;
pub const PR_GET_TID_ADDRESS: i32 = 40;
pub const PR_GET_THP_DISABLE: i32 = 42;
pub const PR_SET_THP_DISABLE: i32 = 41;
pub const PR_GET_CHILD_SUBREAPER: i32 = 37;
pub const PR_GET_NO_NEW_PRIVS: i32 = 39;

// arch_prctl codes (asm/prctl.h).
pub const ARCH_SET_GS: u64 = 0x1001;
pub const ARCH_SET_FS: u64 = 0x1002;
pub const ARCH_GET_XCOMP_PERM: u64 = 0x1022;
pub const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
pub const ARCH_MAP_VDSO_64: u64 = 0x2003;

// clone3 (linux/sched.h).
pub const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

// PAGEMAP_SCAN (linux/fs.h).
pub const PAGEMAP_SCAN: u64 = 0xc060_6610;
pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
pub const PAGE_IS_HUGE: u64 = 1 << 6;

// madvise advice numbers that CRIU's vma_entry.madv bitmap is indexed by.
pub const MADV_DONTFORK: u32 = 10;
pub const MADV_MERGEABLE: u32 = 12;
pub const MADV_HUGEPAGE: u32 = 14;
pub const MADV_NOHUGEPAGE: u32 = 15;
pub const MADV_DONTDUMP: u32 = 16;
pub const MADV_WIPEONFORK: u32 = 18;
pub const MADV_POPULATE_WRITE: i32 = 23;

// Signal frame facts (asm/sigcontext.h, asm/ucontext.h).
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
pub const UC_FP_XSTATE: u64 = 0x1;
pub const UC_SIGCONTEXT_SS: u64 = 0x2;
pub const UC_STRICT_RESTORE_SS: u64 = 0x4;
/// The user code and stack segment selectors of 64-bit tasks.
pub const USER_CS: u64 = 0x33;
pub const USER_DS: u64 = 0x2b;

/// The general registers as `PTRACE_GETREGSET(NT_PRSTATUS)` returns them
/// (`struct user_regs_struct`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub bp: u64,
    pub bx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    pub orig_ax: u64,
    pub ip: u64,
    pub cs: u64,
    pub flags: u64,
    pub sp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// `struct ptrace_peeksiginfo_args`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PeeksiginfoArgs {
    pub off: u64,
    pub flags: u32,
    pub nr: i32,
}

/// The raw 128-byte `siginfo_t`.
pub type RawSiginfo = [u8; 128];

/// The kernel's `struct sigaction` on x86_64 (as `rt_sigaction` takes it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `stack_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackT {
    pub ss_sp: u64,
    pub ss_flags: i32,
    pub pad: i32,
    pub ss_size: u64,
}

/// `struct itimerval` as two (sec, usec) pairs: interval, then value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerval {
    pub interval_sec: i64,
    pub interval_usec: i64,
    pub value_sec: i64,
    pub value_usec: i64,
}

/// `struct itimerspec`: interval, then value (seconds and nanoseconds).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerspec {
    pub interval_sec: i64,
    pub interval_nsec: i64,
    pub value_sec: i64,
    pub value_nsec: i64,
}

impl Itimerspec {
    /// For a timer whose next expiry is `value` from `now` (on its clock): the absolute
    /// time `overrun + 1` periods before that expiry (at least 1 ns: zero would disarm).
    /// Armed there, the timer fires at once and counts `overrun` missed periods when its
    /// signal is delivered, as if it had been running all along.
    pub fn past_expiry(&self, now: [i64; 2], overrun: u32) -> [i64; 2] {
        const NS: i128 = 1_000_000_000;
        let ns = |s: i64, n: i64| i128::from(s) * NS + i128::from(n);
        let next = ns(now[0], now[1]) + ns(self.value_sec, self.value_nsec);
        let period = ns(self.interval_sec, self.interval_nsec);
        let at = (next - (i128::from(overrun) + 1) * period).max(1);
        [(at / NS) as i64, (at % NS) as i64]
    }
}

/// `struct clone_args` for clone3.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// `struct prctl_mm_map` for `prctl(PR_SET_MM, PR_SET_MM_MAP)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrctlMmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    pub exe_fd: u32,
}

/// `struct pm_scan_arg` for the PAGEMAP_SCAN ioctl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PmScanArg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// `struct page_region`, one run of pages with the same categories.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// x86_64 syscall numbers used by injected calls and the restorer.
pub mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const CLOSE: u64 = 3;
    pub const CLOSE_RANGE: u64 = 436;
    pub const MMAP: u64 = 9;
    pub const MPROTECT: u64 = 10;
    pub const MUNMAP: u64 = 11;
    pub const BRK: u64 = 12;
    pub const RT_SIGACTION: u64 = 13;
    pub const RT_SIGPROCMASK: u64 = 14;
    pub const RT_SIGRETURN: u64 = 15;
    pub const MREMAP: u64 = 25;
    pub const MADVISE: u64 = 28;
    pub const GETPID: u64 = 39;
    pub const SEMOP: u64 = 65;
    pub const MQ_NOTIFY: u64 = 244;
    pub const EXIT: u64 = 60;
    pub const GETITIMER: u64 = 36;
    pub const SETITIMER: u64 = 38;
    pub const UMASK: u64 = 95;
    pub const SETRLIMIT: u64 = 160;
    pub const PRCTL: u64 = 157;
    pub const ARCH_PRCTL: u64 = 158;
    pub const SIGALTSTACK: u64 = 131;
    pub const PERSONALITY: u64 = 135;
    pub const GETTID: u64 = 186;
    pub const SET_TID_ADDRESS: u64 = 218;
    pub const RESTART_SYSCALL: u64 = 219;
    pub const EXIT_GROUP: u64 = 231;
    pub const RT_SIGQUEUEINFO: u64 = 129;
    pub const RT_TGSIGQUEUEINFO: u64 = 297;
    pub const RT_SIGTIMEDWAIT: u64 = 128;
    pub const CLOCK_GETTIME: u64 = 228;
    pub const SET_ROBUST_LIST: u64 = 273;
    pub const GET_ROBUST_LIST: u64 = 274;
    pub const PRLIMIT64: u64 = 302;
    pub const SETRESUID: u64 = 117;
    pub const SETRESGID: u64 = 119;
    pub const SETGROUPS: u64 = 116;
    pub const SETFSUID: u64 = 122;
    pub const SETFSGID: u64 = 123;
    pub const CAPSET: u64 = 126;
    pub const RSEQ: u64 = 334;
    pub const CLONE3: u64 = 435;
    pub const SCHED_SETATTR: u64 = 314;
    pub const IOPRIO_SET: u64 = 251;
    pub const MEMBARRIER: u64 = 324;
    pub const TIMER_CREATE: u64 = 222;
    pub const TIMER_SETTIME: u64 = 223;
    pub const TIMER_GETTIME: u64 = 224;
    pub const TIMER_GETOVERRUN: u64 = 225;
    pub const SECCOMP: u64 = 317;
}
