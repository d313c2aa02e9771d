//! Restore: read images, plan, fork with the right pid, rebuild, hand over to the
//! restorer blob, and let the restored process go.
//!
//! The pipeline, in the order [`restore`] runs it:
//!
//! 1. [`image`]: load and check every image (nothing is created before they pass).
//! 2. [`plan`]: who forks whom, sessions and groups, helpers for gone leaders.
//! 3. Fork the root with the image's pid (`clone3` + `set_tid`), or the init of a new pid
//!    namespace that forks it ([`pidns`]).
//! 4. In each restore process ([`child`]): session, premapped and filled memory
//!    ([`layout`], [`memory`]), its children (which inherit what they share), fd table
//!    ([`files`]), cwd/root; the restorer program ([`program`]: vma moves, [`task`]
//!    state, a [`sigframe`] per thread) written into the bootstrap region next to the
//!    [`blob`]; then, once stasis is attached to every process, a jump into the blob.
//! 5. The blob runs the program and traps; stasis ([`finalize`]) lets every thread
//!    `rt_sigreturn` into its restored registers, unmaps the bootstrap region with one
//!    injected system call per process, and detaches.
//!
//! A failure anywhere kills the tree: no half-restored process is left behind.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blob;
mod child;
mod error;
mod files;
mod finalize;
pub mod image;
mod ipc;
mod layout;
mod memory;
mod pidns;
mod plan;
mod program;
mod sigframe;
mod task;
mod tree;

pub use error::{RestoreError, Result};
pub use tree::{RestoreOptions, RestoreOutcome, restore};
