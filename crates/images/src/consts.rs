//! Numeric constants of the image format (CRIU's values).

/// `inventory_entry.img_version`: images with the common magic (CRIU's V1_1).
pub const IMG_VERSION: u32 = 2;

/// `vma_entry.status` bits.
pub mod vma_status {
    /// A memory area to dump and restore.
    pub const REGULAR: u32 = 1 << 0;
    /// The main stack.
    pub const STACK: u32 = 1 << 1;
    /// The legacy vsyscall page.
    pub const VSYSCALL: u32 = 1 << 2;
    /// The vDSO text.
    pub const VDSO: u32 = 1 << 3;
    /// The brk heap.
    pub const HEAP: u32 = 1 << 5;
    /// A private file mapping.
    pub const FILE_PRIVATE: u32 = 1 << 6;
    /// A shared file mapping.
    pub const FILE_SHARED: u32 = 1 << 7;
    /// Shared anonymous memory (shmem).
    pub const ANON_SHARED: u32 = 1 << 8;
    /// Private anonymous memory.
    pub const ANON_PRIVATE: u32 = 1 << 9;
    /// A SysV IPC shared memory attachment.
    pub const SYSVIPC: u32 = 1 << 10;
    /// A mapping of a socket (packet rings).
    pub const SOCKET: u32 = 1 << 11;
    /// The vDSO data pages (`[vvar]`, `[vvar_vclock]`).
    pub const VVAR: u32 = 1 << 12;
    /// An AIO ring.
    pub const AIORING: u32 = 1 << 13;
    /// A memfd mapping.
    pub const MEMFD: u32 = 1 << 14;
    /// `[uprobes]`.
    pub const UPROBES: u32 = 1 << 17;
}

/// `pagemap_entry.flags` bits.
pub mod pe_flags {
    /// The pages are in the parent (previous) dump.
    pub const PARENT: u32 = 1 << 0;
    /// The pages may be restored lazily.
    pub const LAZY: u32 = 1 << 1;
    /// The pages are in this dump's pages image.
    pub const PRESENT: u32 = 1 << 2;
    /// stasis extension: the pages are the very pages of the parent process (shared
    /// copy-on-write since a fork); the restore keeps them shared instead of storing them
    /// twice. CRIU's readers show it as an unknown flag (0x10000).
    pub const STASIS_COW_PARENT: u32 = 1 << 16;
}

/// `task_core_entry.task_state` values.
pub mod task_state {
    /// A running (or sleeping) task.
    pub const ALIVE: u32 = 0x01;
    /// A dead task (helper placeholder).
    pub const DEAD: u32 = 0x02;
    /// A stopped task (SIGSTOP).
    pub const STOPPED: u32 = 0x03;
    /// A zombie.
    pub const ZOMBIE: u32 = 0x06;
}

/// `fdinfo_entry.flags`: the fd's close-on-exec flag.
pub const FD_CLOEXEC: u32 = 1;

/// The number of signal actions in `task_core_entry.sigactions`: signals 1..=64 without
/// SIGKILL and SIGSTOP, in order.
pub const SIGACTION_COUNT: usize = 62;
