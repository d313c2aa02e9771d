//! The on-disk image format of stasis, compatible with CRIU's (image format version 1.1).
//!
//! An image file is a sequence of 32-bit little-endian words and protobuf messages:
//!
//! ```text
//! file    := [IMG_COMMON_MAGIC | IMG_SERVICE_MAGIC] kind_magic entry*
//! entry   := u32 length, protobuf message of that length, optional raw payload
//! ```
//!
//! `inventory.img` has no leading common magic; raw images (`pages-N.img`) have no magic at
//! all. Messages are declared by hand in [`pb`] with the field numbers CRIU uses, so CRIU's
//! `crit` decodes our images. Fields of our own (for state CRIU does not save) use tag
//! numbers from 1000 up, which older decoders skip as unknown fields.
//!
//! This crate is pure: no syscalls and no `unsafe`. Everything that reads an image treats it
//! as untrusted input: sizes are bounded, truncation and bad magics are errors, never panics.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod consts;
pub mod decode;
mod dir;
mod framing;
mod kind;
pub mod pb;

pub use dir::ImageDir;
pub use framing::{ImageReader, ImageWriter, MAX_ENTRY_SIZE};
pub use kind::{IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, ImageKind};

/// Size of a page on the only architecture we support (x86_64).
pub const PAGE_SIZE: u64 = 4096;

/// Errors from reading or writing images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on the named image file.
    #[error("{file}: {source}")]
    Io {
        /// Image file name.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the magic of the expected image kind.
    #[error("{file}: not a {expected} image (magic {found:#010x})")]
    BadMagic {
        /// Image file name.
        file: String,
        /// What we expected to read.
        expected: &'static str,
        /// The magic found in the file.
        found: u32,
    },
    /// The file ends in the middle of an entry.
    #[error("{file}: truncated ({what})")]
    Truncated {
        /// Image file name.
        file: String,
        /// Which part was cut off.
        what: &'static str,
    },
    /// An entry claims a size beyond [`MAX_ENTRY_SIZE`]: the file is corrupt.
    #[error("{file}: entry of {size} bytes is larger than the limit; the image is corrupt")]
    EntryTooLarge {
        /// Image file name.
        file: String,
        /// The claimed size.
        size: u64,
    },
    /// A protobuf message could not be decoded.
    #[error("{file}: bad {message} entry: {source}")]
    Decode {
        /// Image file name.
        file: String,
        /// Message type name.
        message: &'static str,
        /// The decoder's complaint.
        source: prost::DecodeError,
    },
    /// An image file that must exist is missing.
    #[error("{file}: image file is missing from {dir}")]
    Missing {
        /// Image file name.
        file: String,
        /// The image directory.
        dir: String,
    },
    /// The contents are well-formed but inconsistent (e.g. a pagemap that overlaps itself).
    #[error("{file}: {reason}")]
    Invalid {
        /// Image file name.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
