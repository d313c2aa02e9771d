//! The restorer blob: a freestanding static-PIE program, built by the restore crate's
//! build script (not by cargo as part of this library) and embedded in stasis.
//!
//! It runs with stasis's whole address space being torn down around it, so it uses no
//! library code but `core`, no allocation, no globals that need relocation, and keeps its
//! stack in its own region. Its one input is the [`abi::Header`] pointer in `rdi`.

#![no_std]
#![no_main]
#![allow(clippy::missing_safety_doc, dead_code)]

#[path = "abi.rs"]
mod abi;

use abi::{Header, Op};

core::arch::global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    // The caller set rsp to the top of our stack; keep the ABI's 16-byte alignment.
    "and rsp, -16",
    "call {run}",
    "ud2",
    run = sym run,
);

/// A raw system call with six arguments.
#[inline(always)]
fn syscall6(nr: u64, a: &[u64; 6]) -> u64 {
    let ret: u64;
    // SAFETY: the blob's whole purpose is to run the planner's system calls; their
    // arguments were validated by the planner, and the kernel checks every pointer.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

fn is_error(ret: u64) -> bool {
    (ret as i64) < 0 && (ret as i64) >= -4095
}

#[inline(always)]
fn trap() {
    // SAFETY: int3 raises SIGTRAP, which our tracer (stasis) intercepts.
    unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
}

fn fail(header: *mut Header, index: u64, result: u64) -> ! {
    // SAFETY: the header lives in our own region for the whole run.
    unsafe {
        (*header).failed_op = index;
        (*header).failed_result = result;
        (*header).status = abi::STATUS_FAILED;
    }
    trap();
    // If the tracer let us go on, there is no sane way forward.
    loop {
        syscall6(231, &[127, 0, 0, 0, 0, 0]);
    }
}

extern "C" fn run(header: *mut Header) -> ! {
    run_from(header, 0)
}

/// Where a thread created by OP_CLONE_THREAD starts: on its own stack, with the header
/// and its first op index in rdi and rsi.
extern "C" fn thread_entry(header: *mut Header, start: u64) -> ! {
    run_from(header, start)
}

/// clone3 for a thread. The child comes back from the syscall on the stack named in its
/// clone_args with every other register as the parent had it, so it finds the header and
/// its start index in r12/r13 and calls `thread_entry` at once; nothing of the parent's
/// stack frame is used. Returns the new thread's id (or an error) in the parent.
fn clone_thread(args: u64, size: u64, header: *mut Header, start: u64) -> u64 {
    let ret: u64;
    // SAFETY: the planner's clone_args give the thread a stack of its own in our region;
    // the child path never returns into this function.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "mov rsi, r13",
            "and rsp, -16",
            "call {entry}",
            "ud2",
            "2:",
            entry = sym thread_entry,
            inlateout("rax") 435u64 => ret,
            in("rdi") args,
            in("rsi") size,
            in("r12") header,
            in("r13") start,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

fn run_from(header: *mut Header, start: u64) -> ! {
    // SAFETY: the planner placed a valid header and `op_count` ops in our region.
    let (count, ops) = unsafe {
        if (*header).magic != abi::HEADER_MAGIC {
            fail(header, u64::MAX, 0);
        }
        let ops = (header as *const u8).add((*header).ops_offset as usize) as *const Op;
        ((*header).op_count, ops)
    };
    let mut i = start;
    while i < count {
        // SAFETY: i < op_count, within the array the planner wrote.
        let op = unsafe { *ops.add(i as usize) };
        match op.kind {
            abi::OP_SYSCALL => {
                let ret = syscall6(op.nr, &op.args);
                let ok = match op.check {
                    abi::CHECK_EQUALS => ret == op.expect,
                    abi::CHECK_NONE => true,
                    _ => !is_error(ret),
                };
                if !ok {
                    fail(header, i, ret);
                }
            }
            abi::OP_CLONE_THREAD => {
                let ret = clone_thread(op.args[0], op.args[1], header, op.args[2]);
                if is_error(ret) {
                    fail(header, i, ret);
                }
            }
            abi::OP_TRAP => {
                // SAFETY: as above, the header is ours.
                unsafe { (*header).status = abi::STATUS_DONE };
                trap();
            }
            abi::OP_SIGRETURN => {
                // SAFETY: the planner built an rt_sigframe at args[0] - 8; rt_sigreturn
                // replaces every register, so nothing of ours is used afterwards.
                unsafe {
                    core::arch::asm!(
                        "mov rsp, {frame}",
                        "mov eax, 15",
                        "syscall",
                        frame = in(reg) op.args[0],
                        options(noreturn),
                    );
                }
            }
            _ => fail(header, i, 0),
        }
        i += 1;
    }
    fail(header, count, 0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        syscall6(231, &[126, 0, 0, 0, 0, 0]);
    }
}

// The compiler may emit calls to these; core provides no definitions in a freestanding
// build. Written with `rep` string instructions so they cannot recurse into themselves.

#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract is memcpy's: both ranges valid and disjoint.
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _,
            inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dst
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is correct when dst does not start inside src.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: copy backwards (direction flag set, then cleared as the ABI requires).
    unsafe {
        core::arch::asm!("std", "rep movsb", "cld",
            inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _, options(nostack));
    }
    dst
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract is memset's: the range is valid.
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _,
            in("al") c as u8, options(nostack, preserves_flags));
    }
    dst
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and both ranges are valid for n bytes (memcmp's contract).
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}
