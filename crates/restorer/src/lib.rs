//! The restorer: the last code to run in a process being restored.
//!
//! Restoring an address space means unmapping every byte of stasis from the new process
//! and moving the premapped memory of the image into place; no ordinary Rust code can run
//! while its own text and stack disappear. The restorer is a tiny position-independent
//! `no_std` program ([`blob.rs`](../src/blob.rs)) that the restore crate embeds, copies
//! into a hole of the address space and jumps to. It executes a flat list of system calls
//! prepared by the planner ([`abi`]), traps to let stasis check it, and ends with
//! `rt_sigreturn` into the restored registers.
//!
//! This library half holds only the shared [`abi`] types.

#![no_std]
#![warn(missing_docs)]

pub mod abi;
