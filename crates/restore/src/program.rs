//! The restorer's program: a flat list of system calls with their data, laid out in the
//! bootstrap region at addresses known before anything is copied there.

use stasis_restorer::abi::{self, Header, Op};

/// A growing byte area whose final address is known in advance, so data placed in it can
/// be pointed at by ops before it is copied into the restored process.
#[derive(Debug)]
pub struct Arena {
    base: u64,
    bytes: Vec<u8>,
}

impl Arena {
    /// An empty arena that will live at `base`.
    pub fn new(base: u64) -> Arena {
        Arena {
            base,
            bytes: Vec::new(),
        }
    }

    /// Where the arena lives.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Its contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends `data` at an `align`-aligned address and returns that address.
    pub fn push(&mut self, data: &[u8], align: u64) -> u64 {
        let addr = self.reserve(data.len() as u64, align);
        let off = (addr - self.base) as usize;
        self.bytes[off..off + data.len()].copy_from_slice(data);
        addr
    }

    /// Reserves `len` zeroed bytes at an `align`-aligned address.
    pub fn reserve(&mut self, len: u64, align: u64) -> u64 {
        let addr = (self.base + self.bytes.len() as u64).next_multiple_of(align.max(1));
        let end = (addr - self.base + len) as usize;
        self.bytes.resize(end, 0);
        addr
    }

    /// Overwrites bytes at `addr` (which must lie inside the arena).
    pub fn patch(&mut self, addr: u64, data: &[u8]) {
        let off = (addr - self.base) as usize;
        self.bytes[off..off + data.len()].copy_from_slice(data);
    }
}

/// The ops being built, each with a description for error reports. A thread's own ops
/// are a nested program, laid out after the main list; its clone op is pointed at them
/// when the program is emitted.
#[derive(Debug, Default)]
pub struct Program {
    ops: Vec<(Op, String)>,
    threads: Vec<Program>,
}

impl Program {
    fn push(&mut self, op: Op, desc: String) {
        self.ops.push((op, desc));
    }

    /// A system call that must not fail.
    pub fn syscall(&mut self, nr: u64, args: [u64; 6], desc: impl Into<String>) {
        self.push(
            Op {
                kind: abi::OP_SYSCALL,
                nr,
                args,
                ..Op::default()
            },
            desc.into(),
        );
    }

    /// A system call whose result must be `expect` (e.g. a fixed address).
    pub fn syscall_expect(
        &mut self,
        nr: u64,
        args: [u64; 6],
        expect: u64,
        desc: impl Into<String>,
    ) {
        self.push(
            Op {
                kind: abi::OP_SYSCALL,
                check: abi::CHECK_EQUALS,
                nr,
                args,
                expect,
                ..Op::default()
            },
            desc.into(),
        );
    }

    /// A system call whose failure does not matter.
    pub fn syscall_any(&mut self, nr: u64, args: [u64; 6], desc: impl Into<String>) {
        self.push(
            Op {
                kind: abi::OP_SYSCALL,
                check: abi::CHECK_NONE,
                nr,
                args,
                ..Op::default()
            },
            desc.into(),
        );
    }

    /// Stop for the tracer.
    pub fn trap(&mut self) {
        self.push(
            Op {
                kind: abi::OP_TRAP,
                ..Op::default()
            },
            "hand over to stasis".into(),
        );
    }

    /// Creates a thread (clone3 with the `struct clone_args` at `args`) that runs
    /// `thread`, a program of its own ending in its own trap and sigreturn.
    pub fn clone_thread(&mut self, args: u64, thread: Program, desc: impl Into<String>) {
        let index = self.threads.len() as u64;
        self.threads.push(thread);
        let clone_args_size = size_of::<stasis_sys::abi::CloneArgs>() as u64;
        self.push(
            Op {
                kind: abi::OP_CLONE_THREAD,
                args: [args, clone_args_size, index, 0, 0, 0],
                ..Op::default()
            },
            desc.into(),
        );
    }

    /// The main ops followed by every thread's, with clone ops pointing at their threads'
    /// first op.
    fn flatten(self) -> Vec<(Op, String)> {
        let mut starts = Vec::with_capacity(self.threads.len());
        let mut next = self.ops.len();
        let threads: Vec<Vec<(Op, String)>> =
            self.threads.into_iter().map(Program::flatten).collect();
        for t in &threads {
            starts.push(next as u64);
            next += t.len();
        }
        let base = 0u64;
        let mut out: Vec<(Op, String)> = self
            .ops
            .into_iter()
            .map(|(mut op, d)| {
                if op.kind == abi::OP_CLONE_THREAD {
                    op.args[2] = base + starts[op.args[2] as usize];
                }
                (op, d)
            })
            .collect();
        for (t, start) in threads.into_iter().zip(starts) {
            // A thread's own clone ops (none today) would be relative to its block.
            out.extend(t.into_iter().map(|(mut op, d)| {
                if op.kind == abi::OP_CLONE_THREAD {
                    op.args[2] += start;
                }
                (op, d)
            }));
        }
        out
    }

    /// rt_sigreturn with the frame whose `pretcode` word is at `frame`.
    pub fn sigreturn(&mut self, frame: u64) {
        let mut args = [0; 6];
        // rt_sigreturn expects the stack pointer just past pretcode.
        args[0] = frame + 8;
        self.push(
            Op {
                kind: abi::OP_SIGRETURN,
                args,
                ..Op::default()
            },
            "rt_sigreturn".into(),
        );
    }

    /// Writes descriptions, the header and the ops into `arena`; returns the header
    /// address.
    pub fn emit(self, arena: &mut Arena) -> u64 {
        let ops = self.flatten();
        let header_addr = arena.reserve((Header::SIZE + ops.len() * Op::SIZE) as u64, 64);
        let mut ops_bytes = Vec::with_capacity(ops.len() * Op::SIZE);
        for (mut op, desc) in ops {
            let addr = arena.push(desc.as_bytes(), 1);
            op.desc_offset = (addr - header_addr) as u32;
            op.desc_len = desc.len() as u32;
            ops_bytes.extend_from_slice(&op.to_bytes());
        }
        let header = Header {
            magic: abi::HEADER_MAGIC,
            op_count: (ops_bytes.len() / Op::SIZE) as u64,
            ops_offset: Header::SIZE as u64,
            ..Header::default()
        };
        arena.patch(header_addr, &header.to_bytes());
        arena.patch(header_addr + Header::SIZE as u64, &ops_bytes);
        header_addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_addresses_are_aligned_and_stable() {
        let mut a = Arena::new(0x1000);
        let x = a.push(b"abc", 1);
        let y = a.push(&[1; 10], 64);
        assert_eq!(x, 0x1000);
        assert_eq!(y % 64, 0);
        assert_eq!(&a.bytes()[(y - 0x1000) as usize..][..10], &[1; 10]);
    }

    #[test]
    fn emitted_program_reads_back() {
        let mut p = Program::default();
        p.syscall(9, [1, 2, 3, 4, 5, 6], "mmap something");
        p.trap();
        let mut a = Arena::new(0x10000);
        a.push(b"data before", 1);
        let h = p.emit(&mut a);
        let off = (h - 0x10000) as usize;
        let header = Header::from_bytes(a.bytes()[off..off + Header::SIZE].try_into().unwrap());
        assert_eq!(header.op_count, 2);
        let op_bytes = &a.bytes()[off + Header::SIZE..off + Header::SIZE + Op::SIZE];
        let op = Op::from_bytes(op_bytes.try_into().unwrap());
        assert_eq!(op.args, [1, 2, 3, 4, 5, 6]);
        let d = (h + u64::from(op.desc_offset) - 0x10000) as usize;
        assert_eq!(&a.bytes()[d..d + op.desc_len as usize], b"mmap something");
    }

    #[test]
    fn thread_programs_follow_the_main_list() {
        let mut t1 = Program::default();
        t1.syscall(1, [0; 6], "t1 a");
        t1.trap();
        let mut t2 = Program::default();
        t2.syscall(2, [0; 6], "t2 a");
        let mut p = Program::default();
        p.syscall(9, [0; 6], "main");
        p.clone_thread(0x1000, t1, "clone t1");
        p.clone_thread(0x2000, t2, "clone t2");
        p.trap();
        let ops = p.flatten();
        assert_eq!(ops.len(), 7);
        assert_eq!(ops[1].0.args[2], 4, "t1 starts after the 4 main ops");
        assert_eq!(ops[2].0.args[2], 6, "t2 after t1's 2 ops");
        assert_eq!(ops[4].1, "t1 a");
        assert_eq!(ops[6].1, "t2 a");
    }
}
