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

/// Op kind: create a thread with `clone3`: `args[0]` is the address of its
/// `struct clone_args` (with `set_tid` and a stack of its own), `args[1]` that struct's
/// size, `args[2]` the index of the first op the new thread runs (its own list, which ends
/// in its own trap and `rt_sigreturn`). The creating thread goes on with the next op.
pub const OP_CLONE_THREAD: u32 = 4;

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
    /// Offset of a human-readable description of the op from the header (for errors).
    pub desc_offset: u32,
    /// Length of the description.
    pub desc_len: u32,
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

impl Op {
    /// Size of an op in memory.
    pub const SIZE: usize = 80;

    /// The op's bytes as the blob reads them (the `repr(C)` layout, little-endian).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.check.to_le_bytes());
        b[8..16].copy_from_slice(&self.nr.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + i * 8..24 + i * 8].copy_from_slice(&a.to_le_bytes());
        }
        b[64..72].copy_from_slice(&self.expect.to_le_bytes());
        b[72..76].copy_from_slice(&self.desc_offset.to_le_bytes());
        b[76..80].copy_from_slice(&self.desc_len.to_le_bytes());
        b
    }

    /// Parses an op (for error reports read back from a failed restore).
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Op {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        Op {
            kind: u32_at(0),
            check: u32_at(4),
            nr: u64_at(8),
            args: [
                u64_at(16),
                u64_at(24),
                u64_at(32),
                u64_at(40),
                u64_at(48),
                u64_at(56),
            ],
            expect: u64_at(64),
            desc_offset: u32_at(72),
            desc_len: u32_at(76),
        }
    }
}

impl Header {
    /// Size of the header in memory.
    pub const SIZE: usize = 48;

    /// The header's bytes as the blob reads them.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let words = [
            self.magic,
            self.op_count,
            self.ops_offset,
            self.status,
            self.failed_op,
            self.failed_result,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Parses a header read back from a restored process.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Header {
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(x)
        };
        Header {
            magic: w(0),
            op_count: w(1),
            ops_offset: w(2),
            status: w(3),
            failed_op: w(4),
            failed_result: w(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_layouts_match_repr_c() {
        assert_eq!(size_of::<Op>(), Op::SIZE);
        assert_eq!(size_of::<Header>(), Header::SIZE);
        let op = Op {
            kind: 1,
            check: 2,
            nr: 3,
            args: [4, 5, 6, 7, 8, 9],
            expect: 10,
            desc_offset: 11,
            desc_len: 12,
        };
        assert_eq!(Op::from_bytes(&op.to_bytes()), op);
        let h = Header {
            magic: HEADER_MAGIC,
            op_count: 2,
            ops_offset: 48,
            status: 1,
            failed_op: 5,
            failed_result: 6,
        };
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
    }
}
