//! Checkpoint: seize a process tree, collect its state, write images.
//!
//! The pipeline, in the order [`dump`] runs it:
//!
//! 1. [`freeze`]: seize every thread with `PTRACE_SEIZE` + `PTRACE_INTERRUPT` (no SIGSTOP,
//!    job control untouched) and block its signals while we work.
//! 2. [`task`]: registers, XSAVE, signal state, credentials, limits — from ptrace, /proc,
//!    and system calls injected into the stopped task.
//! 3. [`files`]: the fd table, through `/proc/PID/fd*` and `pidfd_getfd`.
//! 4. [`memory`]: vmas from smaps, private pages found with `PAGEMAP_SCAN`, copied by
//!    [`pages`] with `process_vm_readv`; shared anonymous memory through map_files.
//! 5. Images are written; the tree is killed, or resumed with `--leave-running`.
//!
//! Any failure before the end resumes the tree exactly as it was ([`freeze::Frozen`]
//! resumes on drop).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod files;
pub mod freeze;
pub mod ipc;
pub mod memory;
pub mod pages;
pub mod task;
mod tree;

pub use error::{DumpError, Result};
pub use tree::{DumpOptions, DumpStats, dump};
