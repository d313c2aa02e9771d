//! One test per self-verifying fixture (fixtures/*.c): dump, kill, restore, verdict.

use crate::harness::{Start, checkpoint_restore_fixture};

#[test]
fn counter_loop() {
    checkpoint_restore_fixture("counter_loop", Start::new("counter"));
}

#[test]
fn memory_512mib_by_hash() {
    checkpoint_restore_fixture(
        "memory_512mib",
        Start {
            args: &["512"],
            ..Start::new("memory")
        },
    );
}

#[test]
fn fpu_sse_avx_avx512_registers() {
    checkpoint_restore_fixture("fpu", Start::new("fpu"));
}

#[test]
fn sleeping_in_nanosleep() {
    checkpoint_restore_fixture(
        "sleeper_nanosleep",
        Start {
            args: &["nanosleep"],
            ..Start::new("sleeper")
        },
    );
}

#[test]
fn sleeping_in_clock_nanosleep_absolute() {
    checkpoint_restore_fixture(
        "sleeper_clock_nanosleep_abs",
        Start {
            args: &["clock_nanosleep_abs"],
            ..Start::new("sleeper")
        },
    );
}

#[test]
fn sleeping_in_pause() {
    checkpoint_restore_fixture(
        "sleeper_pause",
        Start {
            args: &["pause"],
            ..Start::new("sleeper")
        },
    );
}

#[test]
fn sleeping_in_poll() {
    checkpoint_restore_fixture(
        "sleeper_poll",
        Start {
            args: &["poll"],
            ..Start::new("sleeper")
        },
    );
}

#[test]
fn sleeping_in_select() {
    checkpoint_restore_fixture(
        "sleeper_select",
        Start {
            args: &["select"],
            ..Start::new("sleeper")
        },
    );
}

#[test]
fn sleeping_in_futex_wait() {
    checkpoint_restore_fixture(
        "sleeper_futex",
        Start {
            args: &["futex"],
            ..Start::new("sleeper")
        },
    );
}

#[test]
fn sleeping_in_sigsuspend() {
    checkpoint_restore_fixture(
        "sleeper_sigsuspend",
        Start {
            args: &["sigsuspend"],
            ..Start::new("sleeper")
        },
    );
}

#[test]
fn files_offsets_and_flags() {
    checkpoint_restore_fixture(
        "files",
        Start {
            dir_arg: true,
            ..Start::new("files")
        },
    );
}

#[test]
fn private_and_shared_file_mappings() {
    checkpoint_restore_fixture(
        "mmap_file",
        Start {
            dir_arg: true,
            ..Start::new("mmap_file")
        },
    );
}

#[test]
fn shared_anonymous_memory() {
    checkpoint_restore_fixture("shmem", Start::new("shmem"));
}

#[test]
fn signal_handlers_blocked_and_pending() {
    checkpoint_restore_fixture("signals", Start::new("signals"));
}

#[test]
fn mprotect_and_guard_regions() {
    checkpoint_restore_fixture("mprotect", Start::new("mprotect"));
}

#[test]
fn big_brk_heap() {
    checkpoint_restore_fixture("brk", Start::new("brk"));
}

#[test]
fn madvise_flags() {
    checkpoint_restore_fixture("madvise", Start::new("madvise"));
}
