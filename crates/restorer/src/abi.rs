//! The contract between the restore planner and the restorer blob.
//!
//! The planner (ordinary Rust, in the restore crate) lays out a [`Header`] followed by an
//! array of [`Op`]s in memory, then jumps to the blob with a pointer to the header. The
//! blob executes the ops in order. Everything here is `repr(C)` plain data; the blob is
//! compiled from the same source file, so both sides agree by construction.

/// First word of a [`Header`].
pub const HEADER_MAGIC: u64 = 0x7374_6173_6973_5253; // "SRsitsats" little-endian-ish tag

/// [`Header::status`] while ops run.
pub const STATUS_RUNNING: u64 = 0;
/// [`Header::status`] once every op before the final trap succeeded.
pub const STATUS_DONE: u64 = 1;
/// [`Header::status`] after an op failed; `failed_op` and `failed_result` say which.
pub const STATUS_FAILED: u64 = 2;

/// Op kind: run system call `nr` with `args` and check the result.
pub const OP_SYSCALL: u32 = 1;
/// Op kind: stop with `int3` so the tracer (stasis) can take over; `status` is set to
/// [`STATUS_DONE`] first.
pub const OP_TRAP: u32 = 2;
/// Op kind: load `args[0]` into the stack pointer and call `rt_sigreturn`, which loads
/// the task's registers, FPU state, signal mask and altstack from the frame there.
pub const OP_SIGRETURN: u32 = 3;

/// Check: the result must not be an error (-4095..-1). The default.
pub const CHECK_NO_ERROR: u32 = 0;
/// Check: the result must equal [`Op::expect`] (e.g. the address of a fixed mapping).
pub const CHECK_EQUALS: u32 = 1;
/// Check: any result is fine (cleanup that may find nothing to do).
pub const CHECK_NONE: u32 = 2;

/// One step of the restorer program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Op {
    /// `OP_*`.
    pub kind: u32,
    /// `CHECK_*`.
    pub check: u32,
    /// System call number for [`OP_SYSCALL`].
    pub nr: u64,
    /// Arguments.
    pub args: [u64; 6],
    /// Expected result for [`CHECK_EQUALS`].
    pub expect: u64,
}

/// The block the blob receives a pointer to. The ops follow at `ops_offset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// [`HEADER_MAGIC`].
    pub magic: u64,
    /// Number of ops.
    pub op_count: u64,
    /// Byte offset of the first op from the header.
    pub ops_offset: u64,
    /// `STATUS_*`, written by the blob.
    pub status: u64,
    /// Index of the op that failed.
    pub failed_op: u64,
    /// Raw result of the failed op.
    pub failed_result: u64,
}
