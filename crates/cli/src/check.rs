//! `stasis check`: are the kernel features we rely on present?

use std::process::ExitCode;

use stasis_sys::{Errno, probe, proc};

struct Item {
    name: &'static str,
    required: bool,
    result: Result<String, String>,
}

fn errno(r: Result<(), Errno>) -> Result<String, String> {
    r.map(|()| "ok".into()).map_err(|e| e.to_string())
}

/// Prints one line per feature and "Looks good." if everything required is there.
pub fn run() -> ExitCode {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    let me = stasis_sys::process::getpid();
    let vdso = proc::read_smaps(me)
        .map(|v| {
            v.iter()
                .filter(|v| {
                    !matches!(
                        v.path,
                        proc::VmaPath::Anonymous | proc::VmaPath::File { .. }
                    )
                })
                .filter_map(|v| match &v.path {
                    proc::VmaPath::Vdso => Some(format!("[vdso] {} KiB", v.len() >> 10)),
                    proc::VmaPath::Vvar => Some(format!("[vvar] {} KiB", v.len() >> 10)),
                    proc::VmaPath::VvarVclock => {
                        Some(format!("[vvar_vclock] {} KiB", v.len() >> 10))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .map_err(|e| e.to_string());
    let items = [
        Item {
            name: "capabilities for clone3(set_tid) and PR_SET_MM_MAP",
            required: true,
            result: if probe::has_capability(CAP_CHECKPOINT_RESTORE)
                || probe::has_capability(CAP_SYS_ADMIN)
            {
                Ok("ok".into())
            } else {
                Err("need CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN (run as root)".into())
            },
        },
        Item {
            name: "PAGEMAP_SCAN ioctl (6.7+)",
            required: true,
            result: errno(probe::pagemap_scan()),
        },
        Item {
            name: "pidfd_open / pidfd_getfd",
            required: true,
            result: errno(probe::pidfd()),
        },
        Item {
            name: "prctl(PR_SET_MM_MAP)",
            required: true,
            result: errno(probe::prctl_mm_map()),
        },
        Item {
            name: "kcmp",
            required: true,
            result: errno(probe::kcmp()),
        },
        Item {
            name: "userfaultfd (lazy restore)",
            required: false,
            result: errno(probe::userfaultfd()),
        },
        Item {
            name: "vDSO layout",
            required: false,
            result: vdso,
        },
        Item {
            name: "soft-dirty tracking (not needed: PAGEMAP_SCAN is used)",
            required: false,
            // The kernel marks vmas with the "sd" VmFlag only when it tracks soft-dirty bits.
            result: Ok(
                if proc::read_smaps(me).is_ok_and(|v| v.iter().any(|v| v.has_flag(b"sd"))) {
                    "present (unused)"
                } else {
                    "absent"
                }
                .into(),
            ),
        },
    ];
    let mut ok = true;
    for item in &items {
        match &item.result {
            Ok(v) => println!("{:<55} {v}", item.name),
            Err(e) => {
                println!("{:<55} MISSING: {e}", item.name);
                ok &= !item.required;
            }
        }
    }
    if ok {
        println!("Looks good.");
        ExitCode::SUCCESS
    } else {
        println!("Some required features are missing.");
        ExitCode::from(1)
    }
}
