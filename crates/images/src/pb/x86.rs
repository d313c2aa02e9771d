//! x86 register state of a thread (CRIU's `core-x86.proto`).

use super::proto_enum;

proto_enum! {
    /// Whether a register set is a 64-bit or a 32-bit (compat) one.
    pub enum UserX86RegsMode {
        /// 64-bit registers.
        Native = 1 => "NATIVE",
        /// 32-bit compat registers (only the low halves are meaningful).
        Compat = 2 => "COMPAT",
    }
}

/// General-purpose registers (`struct user_regs_struct`, for both 64- and 32-bit tasks).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserX86RegsEntry {
    /// r15.
    #[prost(uint64, required, tag = "1")]
    pub r15: u64,
    /// r14.
    #[prost(uint64, required, tag = "2")]
    pub r14: u64,
    /// r13.
    #[prost(uint64, required, tag = "3")]
    pub r13: u64,
    /// r12.
    #[prost(uint64, required, tag = "4")]
    pub r12: u64,
    /// rbp.
    #[prost(uint64, required, tag = "5")]
    pub bp: u64,
    /// rbx.
    #[prost(uint64, required, tag = "6")]
    pub bx: u64,
    /// r11.
    #[prost(uint64, required, tag = "7")]
    pub r11: u64,
    /// r10.
    #[prost(uint64, required, tag = "8")]
    pub r10: u64,
    /// r9.
    #[prost(uint64, required, tag = "9")]
    pub r9: u64,
    /// r8.
    #[prost(uint64, required, tag = "10")]
    pub r8: u64,
    /// rax.
    #[prost(uint64, required, tag = "11")]
    pub ax: u64,
    /// rcx.
    #[prost(uint64, required, tag = "12")]
    pub cx: u64,
    /// rdx.
    #[prost(uint64, required, tag = "13")]
    pub dx: u64,
    /// rsi.
    #[prost(uint64, required, tag = "14")]
    pub si: u64,
    /// rdi.
    #[prost(uint64, required, tag = "15")]
    pub di: u64,
    /// Syscall number the thread was in (or -1 as u64).
    #[prost(uint64, required, tag = "16")]
    pub orig_ax: u64,
    /// rip.
    #[prost(uint64, required, tag = "17")]
    pub ip: u64,
    /// Code segment selector.
    #[prost(uint64, required, tag = "18")]
    pub cs: u64,
    /// rflags.
    #[prost(uint64, required, tag = "19")]
    pub flags: u64,
    /// rsp.
    #[prost(uint64, required, tag = "20")]
    pub sp: u64,
    /// Stack segment selector.
    #[prost(uint64, required, tag = "21")]
    pub ss: u64,
    /// FS base address.
    #[prost(uint64, required, tag = "22")]
    pub fs_base: u64,
    /// GS base address.
    #[prost(uint64, required, tag = "23")]
    pub gs_base: u64,
    /// DS selector.
    #[prost(uint64, required, tag = "24")]
    pub ds: u64,
    /// ES selector.
    #[prost(uint64, required, tag = "25")]
    pub es: u64,
    /// FS selector.
    #[prost(uint64, required, tag = "26")]
    pub fs: u64,
    /// GS selector.
    #[prost(uint64, required, tag = "27")]
    pub gs: u64,
    /// 64-bit or compat register set; absent means native.
    #[prost(
        enumeration = "UserX86RegsMode",
        optional,
        tag = "28",
        default = "Native"
    )]
    pub mode: Option<i32>,
}

/// Control-flow enforcement (shadow stack) state.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserX86CetEntry {
    /// `MSR_IA32_U_CET` value.
    #[prost(uint64, required, tag = "1")]
    pub cet: u64,
    /// Shadow stack pointer.
    #[prost(uint64, required, tag = "2")]
    pub ssp: u64,
}

/// The XSAVE components beyond the legacy FXSAVE area, decomposed as CRIU stores them.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserX86XsaveEntry {
    /// XSTATE_BV: which components hold non-init state.
    #[prost(uint64, required, tag = "1")]
    pub xstate_bv: u64,
    /// Upper 128 bits of ymm0..ymm15 (64 words).
    #[prost(uint32, repeated, packed = "false", tag = "2")]
    pub ymmh_space: Vec<u32>,
    /// MPX bound registers bnd0..bnd3 (8 words).
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub bndreg_state: Vec<u64>,
    /// MPX BNDCFGU and BNDSTATUS (2 words).
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub bndcsr_state: Vec<u64>,
    /// AVX-512 opmask registers k0..k7 (8 words).
    #[prost(uint64, repeated, packed = "false", tag = "5")]
    pub opmask_reg: Vec<u64>,
    /// Upper 256 bits of zmm0..zmm15 (64 words).
    #[prost(uint64, repeated, packed = "false", tag = "6")]
    pub zmm_upper: Vec<u64>,
    /// zmm16..zmm31 in full (128 words).
    #[prost(uint64, repeated, packed = "false", tag = "7")]
    pub hi16_zmm: Vec<u64>,
    /// Protection-key rights register and padding (2 words).
    #[prost(uint32, repeated, packed = "false", tag = "8")]
    pub pkru: Vec<u32>,
    /// User CET state.
    #[prost(message, optional, tag = "9")]
    pub cet: Option<UserX86CetEntry>,
}

/// FPU/SSE state (the FXSAVE layout) plus the extended XSAVE state.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserX86FpregsEntry {
    /// x87 control word.
    #[prost(uint32, required, tag = "1")]
    pub cwd: u32,
    /// x87 status word.
    #[prost(uint32, required, tag = "2")]
    pub swd: u32,
    /// x87 tag word (abridged).
    #[prost(uint32, required, tag = "3")]
    pub twd: u32,
    /// Last x87 opcode.
    #[prost(uint32, required, tag = "4")]
    pub fop: u32,
    /// Last x87 instruction pointer.
    #[prost(uint64, required, tag = "5")]
    pub rip: u64,
    /// Last x87 data pointer.
    #[prost(uint64, required, tag = "6")]
    pub rdp: u64,
    /// MXCSR.
    #[prost(uint32, required, tag = "7")]
    pub mxcsr: u32,
    /// Supported MXCSR bits.
    #[prost(uint32, required, tag = "8")]
    pub mxcsr_mask: u32,
    /// st0..st7, 16 bytes each (32 words).
    #[prost(uint32, repeated, packed = "false", tag = "9")]
    pub st_space: Vec<u32>,
    /// xmm0..xmm15 (64 words).
    #[prost(uint32, repeated, packed = "false", tag = "10")]
    pub xmm_space: Vec<u32>,
    /// Unused, kept for old images; left empty.
    #[prost(uint32, repeated, packed = "false", tag = "11")]
    pub padding: Vec<u32>,
    /// Extended components, when the CPU has XSAVE.
    #[prost(message, optional, tag = "13")]
    pub xsave: Option<UserX86XsaveEntry>,
    /// Stasis extension: the complete XSAVE area exactly as `PTRACE_GETREGSET` with
    /// `NT_X86_XSTATE` returned it (standard, non-compacted format), so AMX and any future
    /// component survive. The decomposed fields above are still filled for crit and CRIU.
    #[prost(bytes = "vec", optional, tag = "1000")]
    #[serde(serialize_with = "crate::pb::serde_hex::opt_bytes")]
    pub stasis_xsave: Option<Vec<u8>>,
}

/// One TLS segment descriptor (`struct user_desc`, for `set_thread_area`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct UserDescT {
    /// GDT entry index.
    #[prost(uint32, required, tag = "1")]
    pub entry_number: u32,
    /// 32-bit segment base.
    #[prost(uint32, required, tag = "2")]
    pub base_addr: u32,
    /// Segment limit.
    #[prost(uint32, required, tag = "3")]
    pub limit: u32,
    /// 32-bit segment.
    #[prost(bool, required, tag = "4")]
    pub seg_32bit: bool,
    /// High bit of the contents type.
    #[prost(bool, required, tag = "5")]
    pub contents_h: bool,
    /// Low bit of the contents type.
    #[prost(bool, required, tag = "6")]
    pub contents_l: bool,
    /// Read-only data / execute-only code (an empty slot has it set).
    #[prost(bool, required, tag = "7", default = "true")]
    pub read_exec_only: bool,
    /// Limit counts pages rather than bytes.
    #[prost(bool, required, tag = "8")]
    pub limit_in_pages: bool,
    /// Segment not present (an empty slot has it set).
    #[prost(bool, required, tag = "9", default = "true")]
    pub seg_not_present: bool,
    /// Available for software use.
    #[prost(bool, required, tag = "10")]
    pub usable: bool,
}

/// All x86 register state of a thread.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct ThreadInfoX86 {
    /// `clear_child_tid` address (`set_tid_address(2)`).
    #[prost(uint64, required, tag = "1")]
    pub clear_tid_addr: u64,
    /// General-purpose registers (required).
    #[prost(message, optional, tag = "2")]
    pub gpregs: Option<UserX86RegsEntry>,
    /// FPU, SSE and XSAVE state (required).
    #[prost(message, optional, tag = "3")]
    pub fpregs: Option<UserX86FpregsEntry>,
    /// TLS descriptors of the GDT's TLS slots (3 on x86_64).
    #[prost(message, repeated, tag = "4")]
    pub tls: Vec<UserDescT>,
}
