//! The x86_64 `rt_sigframe` through which the restorer loads a thread's registers.
//!
//! `rt_sigreturn` reads, from the stack pointer minus 8: `pretcode`, then a `ucontext`
//! (flags, link, `uc_stack` = the altstack to install, `uc_mcontext` = the general
//! registers and a pointer to the FPU state, `uc_sigmask`), then a siginfo. The FPU state
//! is a 64-byte aligned XSAVE area whose software-reserved bytes carry FP_XSTATE_MAGIC1
//! and the area's size, followed by FP_XSTATE_MAGIC2; without them the kernel silently
//! restores only the legacy x87/SSE part.

use stasis_images::pb;
use stasis_sys::{abi, cpu};

use crate::program::Arena;

/// Offsets inside the frame (from `pretcode`).
const UC: usize = 8;
const UC_FLAGS: usize = UC;
const UC_STACK: usize = UC + 16;
const UC_MCONTEXT: usize = UC + 40;
const UC_SIGMASK: usize = UC + 296;
const FRAME_SIZE: usize = UC + 304 + 128;

/// Offset of the FPU-state pointer in `struct sigcontext`.
const SC_FPSTATE: usize = 184;

/// Where the software-reserved bytes sit in the legacy FXSAVE area.
const SW_RESERVED: usize = 464;

/// The XSAVE area to load: the saved complete area, or one rebuilt from CRIU's
/// decomposed fields (images written by CRIU).
fn xsave_area(fp: &pb::UserX86FpregsEntry) -> Vec<u8> {
    if let Some(raw) = &fp.stasis_xsave {
        return raw.clone();
    }
    let size = (cpu::xsave_size() as usize).max(576);
    let mut x = vec![0u8; size];
    x[0..2].copy_from_slice(&(fp.cwd as u16).to_le_bytes());
    x[2..4].copy_from_slice(&(fp.swd as u16).to_le_bytes());
    x[4..6].copy_from_slice(&(fp.twd as u16).to_le_bytes());
    x[6..8].copy_from_slice(&(fp.fop as u16).to_le_bytes());
    x[8..16].copy_from_slice(&fp.rip.to_le_bytes());
    x[16..24].copy_from_slice(&fp.rdp.to_le_bytes());
    x[24..28].copy_from_slice(&fp.mxcsr.to_le_bytes());
    x[28..32].copy_from_slice(&fp.mxcsr_mask.to_le_bytes());
    for (i, w) in fp.st_space.iter().take(32).enumerate() {
        x[32 + i * 4..36 + i * 4].copy_from_slice(&w.to_le_bytes());
    }
    for (i, w) in fp.xmm_space.iter().take(64).enumerate() {
        x[160 + i * 4..164 + i * 4].copy_from_slice(&w.to_le_bytes());
    }
    let mut bv = 0b11u64;
    if let Some(xs) = &fp.xsave {
        bv = xs.xstate_bv;
        let mut put = |feature: u32, words: Vec<u8>| {
            let (off, len) = cpu::xfeature_offset(feature);
            let (off, len) = (off as usize, len as usize);
            if off != 0 && off + len <= x.len() {
                let n = words.len().min(len);
                x[off..off + n].copy_from_slice(&words[..n]);
            }
        };
        put(
            2,
            xs.ymmh_space.iter().flat_map(|w| w.to_le_bytes()).collect(),
        );
        put(
            5,
            xs.opmask_reg.iter().flat_map(|w| w.to_le_bytes()).collect(),
        );
        put(
            6,
            xs.zmm_upper.iter().flat_map(|w| w.to_le_bytes()).collect(),
        );
        put(
            7,
            xs.hi16_zmm.iter().flat_map(|w| w.to_le_bytes()).collect(),
        );
        put(9, xs.pkru.iter().flat_map(|w| w.to_le_bytes()).collect());
    }
    x[512..520].copy_from_slice(&bv.to_le_bytes());
    x
}

/// The features the restored thread may load: what this CPU enables, less AMX tile data
/// unless the image's process had permission for it (then the restorer asks for it).
pub fn loadable_features(xcomp_perm: u64) -> u64 {
    let mut features = cpu::xcr0();
    let tile = 1u64 << cpu::XFEATURE_XTILEDATA;
    if xcomp_perm & tile == 0 {
        features &= !tile;
    }
    features
}

/// What goes into a thread's frame.
#[derive(Debug)]
pub struct FrameInput<'a> {
    /// General registers.
    pub regs: &'a pb::UserX86RegsEntry,
    /// FPU state.
    pub fpregs: &'a pb::UserX86FpregsEntry,
    /// Blocked signals to load.
    pub sigmask: u64,
    /// The alternate signal stack to install.
    pub altstack: Option<&'a pb::ThreadSasEntry>,
    /// The features the thread may load (see [`loadable_features`]).
    pub features: u64,
}

/// Builds the frame in `arena`; returns the address of its `pretcode` word.
pub fn build(arena: &mut Arena, input: &FrameInput<'_>) -> u64 {
    let mut area = xsave_area(input.fpregs);
    // Components the thread may not load are dropped from the header and the area.
    let features = input.features;
    let bv = u64::from_le_bytes(area[512..520].try_into().unwrap_or([0; 8])) & features;
    area[512..520].copy_from_slice(&bv.to_le_bytes());
    // The compacted-format word must be zero for the standard format.
    area[520..528].fill(0);
    let xstate_size = usable_size(&area, features);
    area.truncate(xstate_size);
    // Software-reserved bytes: magic1, extended size (area + magic2), features, size.
    let mut sw = [0u8; 48];
    sw[0..4].copy_from_slice(&abi::FP_XSTATE_MAGIC1.to_le_bytes());
    sw[4..8].copy_from_slice(&(xstate_size as u32 + 4).to_le_bytes());
    sw[8..16].copy_from_slice(&features.to_le_bytes());
    sw[16..20].copy_from_slice(&(xstate_size as u32).to_le_bytes());
    area[SW_RESERVED..SW_RESERVED + 48].copy_from_slice(&sw);
    area.extend_from_slice(&abi::FP_XSTATE_MAGIC2.to_le_bytes());
    let fpstate = arena.push(&area, 64);

    let r = input.regs;
    let mut f = vec![0u8; FRAME_SIZE];
    let put =
        |f: &mut Vec<u8>, off: usize, v: u64| f[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(
        &mut f,
        UC_FLAGS,
        abi::UC_FP_XSTATE | abi::UC_SIGCONTEXT_SS | abi::UC_STRICT_RESTORE_SS,
    );
    let (ss_sp, ss_flags, ss_size) = match input.altstack {
        Some(s) => (s.ss_sp, s.ss_flags, s.ss_size),
        None => (0, libc::SS_DISABLE as u32, 0),
    };
    // A thread stopped while running on its altstack reports SS_ONSTACK; installing the
    // stack is what matters, and the kernel accepts only 0 or SS_DISABLE (plus autodisarm).
    let ss_flags = ss_flags & !(libc::SS_ONSTACK as u32);
    put(&mut f, UC_STACK, ss_sp);
    f[UC_STACK + 8..UC_STACK + 12].copy_from_slice(&ss_flags.to_le_bytes());
    put(&mut f, UC_STACK + 16, ss_size);
    let mc = UC_MCONTEXT;
    let gp = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.di, r.si, r.bp, r.bx, r.dx, r.ax,
        r.cx, r.sp, r.ip, r.flags,
    ];
    for (i, v) in gp.iter().enumerate() {
        put(&mut f, mc + i * 8, *v);
    }
    // cs, gs, fs, ss as 16-bit fields.
    let seg = [r.cs as u16, 0u16, 0u16, r.ss as u16];
    for (i, v) in seg.iter().enumerate() {
        f[mc + 144 + i * 2..mc + 146 + i * 2].copy_from_slice(&v.to_le_bytes());
    }
    put(&mut f, mc + SC_FPSTATE, fpstate);
    put(&mut f, UC_SIGMASK, input.sigmask);
    // The frame's start is 16-byte aligned, like a real signal frame minus pretcode.
    arena.push(&f, 16)
}

/// The size of the XSAVE area to hand to the kernel: up to the end of the last component
/// among `features` (at least the legacy area and the header).
fn usable_size(area: &[u8], features: u64) -> usize {
    let mut end = 576usize;
    for feature in 2..64u32 {
        if features & (1 << feature) == 0 {
            continue;
        }
        let (off, len) = cpu::xfeature_offset(feature);
        if off != 0 {
            end = end.max((off + len) as usize);
        }
    }
    end.min(area.len().max(576))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let regs = pb::UserX86RegsEntry {
            ip: 0x1234,
            sp: 0x7000,
            ax: 42,
            cs: 0x33,
            ss: 0x2b,
            ..Default::default()
        };
        let fp = pb::UserX86FpregsEntry {
            stasis_xsave: Some(vec![0u8; 1024]),
            ..Default::default()
        };
        let mut arena = Arena::new(0x10000);
        let frame = build(
            &mut arena,
            &FrameInput {
                regs: &regs,
                fpregs: &fp,
                sigmask: 0xff,
                altstack: None,
                features: 0b111,
            },
        );
        let f = &arena.bytes()[(frame - 0x10000) as usize..];
        let word = |off: usize| u64::from_le_bytes(f[off..off + 8].try_into().unwrap());
        assert_eq!(word(UC_MCONTEXT + 16 * 8), 0x1234, "rip");
        assert_eq!(word(UC_MCONTEXT + 15 * 8), 0x7000, "rsp");
        assert_eq!(word(UC_MCONTEXT + 13 * 8), 42, "rax");
        assert_eq!(word(UC_SIGMASK), 0xff);
        let fpstate = word(UC_MCONTEXT + SC_FPSTATE);
        assert_eq!(fpstate % 64, 0);
        let x = &arena.bytes()[(fpstate - 0x10000) as usize..];
        assert_eq!(
            &x[SW_RESERVED..SW_RESERVED + 4],
            &abi::FP_XSTATE_MAGIC1.to_le_bytes()
        );
        let size = u32::from_le_bytes(x[SW_RESERVED + 16..SW_RESERVED + 20].try_into().unwrap());
        assert_eq!(
            &x[size as usize..size as usize + 4],
            &abi::FP_XSTATE_MAGIC2.to_le_bytes()
        );
    }
}
