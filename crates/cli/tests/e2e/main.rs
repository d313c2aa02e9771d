//! End-to-end tests: real processes, real checkpoints, real restores. Each fixture checks
//! its own state after the restore and writes PASS or FAIL.

mod harness;

mod files;
mod fixtures;
mod programs;
mod safety;
mod servers;
mod sockets;
mod tasks;
