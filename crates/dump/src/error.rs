//! Dump errors: each names the process, the resource and the reason.

use stasis_sys::{Errno, Pid, proc::ProcError};

/// Why a dump failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A system call on behalf of a process failed.
    #[error("process {pid}: {what}: {errno}")]
    Sys {
        /// The process.
        pid: Pid,
        /// What we were doing.
        what: String,
        /// The error.
        errno: Errno,
    },
    /// A /proc file could not be read or parsed.
    #[error("process {pid}: {source}")]
    Proc {
        /// The process.
        pid: Pid,
        /// The error.
        source: ProcError,
    },
    /// The process holds state stasis cannot checkpoint (yet).
    #[error("process {pid}: {resource}: {reason}")]
    Unsupported {
        /// The process.
        pid: Pid,
        /// The resource, e.g. "fd 5 (socket:[1234])".
        resource: String,
        /// Why it is not supported.
        reason: String,
    },
    /// The request itself is wrong (no such process, bad options).
    #[error("{0}")]
    Invalid(String),
    /// Writing an image failed.
    #[error("writing images: {0}")]
    Image(#[from] stasis_images::Error),
}

/// Result of dump operations.
pub type Result<T> = std::result::Result<T, DumpError>;

/// Adds process and action context to errno results.
pub(crate) trait SysContext<T> {
    fn ctx(self, pid: Pid, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, Errno> {
    fn ctx(self, pid: Pid, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| DumpError::Sys {
            pid,
            what: what(),
            errno,
        })
    }
}

/// Adds process context to /proc results.
pub(crate) trait ProcContext<T> {
    fn pctx(self, pid: Pid) -> Result<T>;
}

impl<T> ProcContext<T> for std::result::Result<T, ProcError> {
    fn pctx(self, pid: Pid) -> Result<T> {
        self.map_err(|source| DumpError::Proc { pid, source })
    }
}
