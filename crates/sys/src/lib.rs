//! Every kernel interface stasis uses, wrapped once.
//!
//! All `unsafe` code of stasis (besides the no_std restorer blob) lives in this crate; each
//! block carries a safety comment saying why it holds. The other crates are `#![forbid(unsafe_code)]` and reach
//! the kernel only through the safe functions here. Modules follow the kernel's vocabulary:
//!
//! - [`ptrace`]: seizing, interrupting, register sets, signal state, syscall injection.
//! - [`mem`]: local memory management, `process_vm_readv`, `PAGEMAP_SCAN`.
//! - [`process`]: `clone3` with `set_tid`, pidfds, waiting, `prctl`, credentials.
//! - [`signal`]: signal masks and actions of the calling process.
//! - [`fs`]: file descriptors: open, dup, fcntl, stat.
//! - [`fds`]: pipes, eventfd, signalfd, timerfd, epoll, inotify, fanotify, memfd.
//! - [`tty`]: pseudo-terminal pairs, termios, window size, controlling terminal.
//! - [`ipc`]: SysV shared memory, semaphores, message queues; setns.
//! - [`net`]: sockets: sock_diag, options, names, queued data peeked at.
//! - [`netlink`], [`packet`]: netlink and packet sockets: their sock_diag, addresses,
//!   memberships, rings, queues.
//! - [`proc`]: parsers for `/proc/PID/*` files (safe code, but kernel-format knowledge).
//! - [`uffd`]: userfaultfd, to fill memory with `UFFDIO_COPY`.
//! - [`restorer`]: the jump into the restorer blob and what must precede it.
//! - [`abi`]: kernel ABI constants and structures that the libc crate lacks.
//! - [`cpu`]: CPUID and XSAVE layout facts.

#![warn(missing_docs)]

pub mod abi;
pub mod cpu;
mod errno;
pub mod fds;
pub mod fs;
pub mod inet;
pub mod ipc;
pub mod mem;
pub mod net;
pub mod netlink;
pub mod netlock;
pub mod packet;
pub mod probe;
pub mod proc;
pub mod process;
pub mod ptrace;
pub mod restorer;
pub mod signal;
pub mod tty;
pub mod uffd;

pub use errno::{Errno, Result};

/// A process or thread id, as the kernel numbers it.
pub type Pid = i32;
