//! Restore: read images, plan, fork with the right pid, rebuild, hand over to the
//! restorer blob, and let the restored process go.
//!
//! The pipeline, in the order [`restore`] runs it:
//!
//! 1. [`image`]: load and check every image (nothing is created before they pass).
//! 2. Fork a child with the image's pid (`clone3` + `set_tid`); attach to it with ptrace.
//! 3. In the child ([`child`]): session, fd table ([`files`]), cwd/root, premapped and
//!    filled memory ([`layout`], [`memory`]); the restorer program ([`program`]: vma moves,
//!    [`task`] state, a [`sigframe`] per thread) written into the bootstrap region next to
//!    the [`blob`]; then a jump into the blob.
//! 4. The blob runs the program and traps; stasis ([`finalize`]) lets it `rt_sigreturn`
//!    into the restored registers, unmaps the bootstrap region with one injected system
//!    call, and detaches.
//!
//! A failure anywhere kills the child: no half-restored process is left behind.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blob;
mod child;
mod error;
mod files;
mod finalize;
pub mod image;
mod layout;
mod memory;
mod plan;
mod program;
mod sigframe;
mod task;
mod tree;

pub use error::{RestoreError, Result};
pub use tree::{RestoreOptions, RestoreOutcome, restore};
