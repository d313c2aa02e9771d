//! Restore errors: each names the process, the resource and the reason.

use stasis_sys::{Errno, Pid};

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The images are unreadable, truncated or inconsistent.
    #[error("bad images: {0}")]
    Image(#[from] stasis_images::Error),
    /// The images are readable but describe something we cannot restore.
    #[error("process {pid}: {resource}: {reason}")]
    Unsupported {
        /// The process.
        pid: Pid,
        /// The resource.
        resource: String,
        /// Why.
        reason: String,
    },
    /// A system call failed while restoring a process.
    #[error("process {pid}: {what}: {errno}")]
    Sys {
        /// The process.
        pid: Pid,
        /// What we were doing.
        what: String,
        /// The error.
        errno: Errno,
    },
    /// The pid the image needs is taken by another process.
    #[error("process {pid}: cannot restore: pid {pid} is already in use by another process")]
    PidInUse {
        /// The pid.
        pid: Pid,
    },
    /// A restored process failed in its own setup, before running on its own.
    #[error("process {pid}: {message}")]
    Child {
        /// The process.
        pid: Pid,
        /// What it reported.
        message: String,
    },
    /// Anything else, already worded.
    #[error("{0}")]
    Other(String),
}

/// Result of restore operations.
pub type Result<T> = std::result::Result<T, RestoreError>;

/// Adds process and action context to errno results.
pub(crate) trait SysContext<T> {
    fn ctx(self, pid: Pid, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, Errno> {
    fn ctx(self, pid: Pid, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| RestoreError::Sys {
            pid,
            what: what(),
            errno,
        })
    }
}

/// Builds an image-consistency error.
pub(crate) fn invalid(file: impl Into<String>, reason: impl Into<String>) -> RestoreError {
    RestoreError::Image(stasis_images::Error::Invalid {
        file: file.into(),
        reason: reason.into(),
    })
}
