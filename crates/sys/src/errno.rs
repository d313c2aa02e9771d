//! The error of a failed system call.

use std::fmt;

/// An `errno` value from a failed system call.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// Result of a system call wrapper.
pub type Result<T> = std::result::Result<T, Errno>;

impl Errno {
    /// The calling thread's current `errno`.
    pub fn last() -> Errno {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// Converts a raw syscall return (negative errno convention of `libc::syscall`: -1 and
    /// errno set) to a result.
    pub fn result(ret: libc::c_long) -> Result<libc::c_long> {
        if ret == -1 {
            Err(Errno::last())
        } else {
            Ok(ret)
        }
    }

    /// Converts a value returned by the kernel in a register (negative errno in -4095..-1).
    pub fn from_kernel_return(ret: u64) -> Result<u64> {
        let signed = ret as i64;
        if (-4095..0).contains(&signed) {
            Err(Errno(-signed as i32))
        } else {
            Ok(ret)
        }
    }

    /// The symbolic name, such as `ENOENT`.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::ECHILD => "ECHILD",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::ENFILE => "ENFILE",
            libc::EMFILE => "EMFILE",
            libc::ENOTTY => "ENOTTY",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::ESPIPE => "ESPIPE",
            libc::EROFS => "EROFS",
            libc::EPIPE => "EPIPE",
            libc::ERANGE => "ERANGE",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::ENOSYS => "ENOSYS",
            libc::ELOOP => "ELOOP",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ETXTBSY => "ETXTBSY",
            libc::ENOTSOCK => "ENOTSOCK",
            libc::EMSGSIZE => "EMSGSIZE",
            libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
            libc::ENOPROTOOPT => "ENOPROTOOPT",
            libc::EAFNOSUPPORT => "EAFNOSUPPORT",
            libc::EADDRINUSE => "EADDRINUSE",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            libc::ENETUNREACH => "ENETUNREACH",
            libc::ECONNREFUSED => "ECONNREFUSED",
            libc::ECONNRESET => "ECONNRESET",
            libc::ENOTCONN => "ENOTCONN",
            libc::EISCONN => "EISCONN",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::EPROTO => "EPROTO",
            _ => "E?",
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.0).to_string();
        // std appends " (os error N)"; keep only the description.
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "{} ({})", text, self.name())
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_returns() {
        assert_eq!(
            Errno::from_kernel_return((-22i64) as u64),
            Err(Errno(libc::EINVAL))
        );
        assert_eq!(
            Errno::from_kernel_return(0x7fff_0000_0000),
            Ok(0x7fff_0000_0000)
        );
        // Addresses in the top of the address space are not errors unless in -4095..-1.
        assert_eq!(
            Errno::from_kernel_return((-4096i64) as u64),
            Ok((-4096i64) as u64)
        );
    }

    #[test]
    fn display_names_the_errno() {
        assert_eq!(Errno(libc::ESRCH).to_string(), "No such process (ESRCH)");
    }
}
