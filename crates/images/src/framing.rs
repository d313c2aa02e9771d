//! Framing of image files: magics, then length-prefixed protobuf entries.

use std::io::{self, Read, Write};

use crate::{Error, ImageKind, Result};

/// The largest protobuf entry we accept when reading. CRIU's biggest entries (an mm with
/// tens of thousands of vmas) stay far below; anything larger is a corrupt length word.
pub const MAX_ENTRY_SIZE: u32 = 64 << 20;

/// Writes one image file: its magics, then entries.
#[derive(Debug)]
pub struct ImageWriter<W: Write> {
    out: W,
    file: String,
}

impl<W: Write> ImageWriter<W> {
    /// Starts an image of `kind` on `out`, writing its magic words. `file` names the image
    /// in error messages.
    pub fn new(mut out: W, kind: ImageKind, file: impl Into<String>) -> Result<Self> {
        let file = file.into();
        let mut head = Vec::with_capacity(8);
        if let Some(lead) = kind.leading_magic() {
            head.extend_from_slice(&lead.to_le_bytes());
        }
        if kind.magic() != 0 {
            head.extend_from_slice(&kind.magic().to_le_bytes());
        }
        out.write_all(&head).map_err(|source| Error::Io {
            file: file.clone(),
            source,
        })?;
        Ok(ImageWriter { out, file })
    }

    /// Continues an image whose magics (and maybe entries) `out` already holds, as when
    /// appending to the file.
    pub fn appending(out: W, file: impl Into<String>) -> Self {
        ImageWriter {
            out,
            file: file.into(),
        }
    }

    /// Appends one length-prefixed protobuf entry.
    pub fn write<M: prost::Message>(&mut self, msg: &M) -> Result<()> {
        let len = msg.encoded_len();
        let mut buf = Vec::with_capacity(len + 4);
        let len32 = u32::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_ENTRY_SIZE)
            .ok_or_else(|| Error::EntryTooLarge {
                file: self.file.clone(),
                size: len as u64,
            })?;
        buf.extend_from_slice(&len32.to_le_bytes());
        msg.encode_raw(&mut buf);
        self.write_raw(&buf)
    }

    /// Appends raw bytes: the payload some entries carry after the message (pipe data,
    /// ghost file contents).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Io {
            file: self.file.clone(),
            source,
        })
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        self.out.flush().map_err(|source| Error::Io {
            file: self.file.clone(),
            source,
        })?;
        Ok(self.out)
    }
}

/// Reads one image file: checks its magics, then yields entries.
#[derive(Debug)]
pub struct ImageReader<R: Read> {
    input: R,
    file: String,
}

impl<R: Read> ImageReader<R> {
    /// Opens an image of `kind` from `input`, checking the magic words.
    pub fn new(mut input: R, kind: ImageKind, file: impl Into<String>) -> Result<Self> {
        let file = file.into();
        if let Some(lead) = kind.leading_magic() {
            let found = read_word(&mut input, &file, "magic")?;
            if found != lead {
                return Err(Error::BadMagic {
                    file,
                    expected: kind.name(),
                    found,
                });
            }
        }
        if kind.magic() != 0 {
            let found = read_word(&mut input, &file, "magic")?;
            if found != kind.magic() {
                return Err(Error::BadMagic {
                    file,
                    expected: kind.name(),
                    found,
                });
            }
        }
        Ok(ImageReader { input, file })
    }

    /// The next entry, or `None` at a clean end of file.
    // Not an Iterator: entries of one file may have different types.
    #[allow(clippy::should_implement_trait)]
    pub fn next<M: prost::Message + Default>(&mut self) -> Result<Option<M>> {
        let Some(len) = self.next_len()? else {
            return Ok(None);
        };
        // Grow the buffer as bytes arrive rather than trusting the length word up front, so a
        // corrupt length in a short file costs no more memory than the file itself.
        let mut buf = Vec::with_capacity((len as usize).min(64 << 10));
        let got = (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut buf)
            .map_err(|source| Error::Io {
                file: self.file.clone(),
                source,
            })?;
        if got != len as usize {
            return Err(Error::Truncated {
                file: self.file.clone(),
                what: "entry",
            });
        }
        M::decode(buf.as_slice())
            .map(Some)
            .map_err(|source| Error::Decode {
                file: self.file.clone(),
                message: short_type_name::<M>(),
                source,
            })
    }

    /// The next entry, which must exist.
    pub fn expect<M: prost::Message + Default>(&mut self) -> Result<M> {
        self.next()?.ok_or_else(|| Error::Truncated {
            file: self.file.clone(),
            what: "entry",
        })
    }

    /// Every remaining entry.
    pub fn collect_all<M: prost::Message + Default>(&mut self) -> Result<Vec<M>> {
        let mut all = Vec::new();
        while let Some(m) = self.next()? {
            all.push(m);
        }
        Ok(all)
    }

    /// Reads exactly `buf.len()` raw payload bytes.
    pub fn read_raw(&mut self, buf: &mut [u8]) -> Result<()> {
        self.read_exact_or_truncated(buf, "payload")
    }

    /// Reads `len` raw payload bytes that follow an entry (pipe data, ghost file chunks).
    /// The buffer grows as bytes arrive, so a corrupt length costs no more memory than the
    /// file holds.
    pub fn read_payload(&mut self, len: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(len.min(1 << 20) as usize);
        let got = (&mut self.input)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|source| Error::Io {
                file: self.file.clone(),
                source,
            })?;
        if got as u64 != len {
            return Err(Error::Truncated {
                file: self.file.clone(),
                what: "payload",
            });
        }
        Ok(buf)
    }

    /// Everything up to the end of the file, as raw payload.
    pub fn read_rest(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.input
            .read_to_end(&mut buf)
            .map_err(|source| Error::Io {
                file: self.file.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// The image file name, for error messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    fn next_len(&mut self) -> Result<Option<u32>> {
        let mut word = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.input.read(&mut word[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(Error::Truncated {
                        file: self.file.clone(),
                        what: "entry size",
                    });
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        file: self.file.clone(),
                        source,
                    });
                }
            }
        }
        let len = u32::from_le_bytes(word);
        if len > MAX_ENTRY_SIZE {
            return Err(Error::EntryTooLarge {
                file: self.file.clone(),
                size: u64::from(len),
            });
        }
        Ok(Some(len))
    }

    fn read_exact_or_truncated(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        self.input.read_exact(buf).map_err(|source| {
            if source.kind() == io::ErrorKind::UnexpectedEof {
                Error::Truncated {
                    file: self.file.clone(),
                    what,
                }
            } else {
                Error::Io {
                    file: self.file.clone(),
                    source,
                }
            }
        })
    }
}

fn read_word(input: &mut impl Read, file: &str, what: &'static str) -> Result<u32> {
    let mut word = [0u8; 4];
    input.read_exact(&mut word).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            Error::Truncated {
                file: file.to_owned(),
                what,
            }
        } else {
            Error::Io {
                file: file.to_owned(),
                source,
            }
        }
    })?;
    Ok(u32::from_le_bytes(word))
}

fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn sample() -> pb::PstreeEntry {
        pb::PstreeEntry {
            pid: 10,
            ppid: 1,
            pgid: 10,
            sid: 10,
            threads: vec![10, 11],
        }
    }

    #[test]
    fn round_trip() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pstree, "pstree.img").unwrap();
        w.write(&sample()).unwrap();
        w.write(&sample()).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(
            &bytes[..8],
            &[0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50]
        );
        let mut r = ImageReader::new(bytes.as_slice(), ImageKind::Pstree, "pstree.img").unwrap();
        let all: Vec<pb::PstreeEntry> = r.collect_all().unwrap();
        assert_eq!(all, vec![sample(), sample()]);
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let w = ImageWriter::new(Vec::new(), ImageKind::Core, "x").unwrap();
        let bytes = w.finish().unwrap();
        let err = ImageReader::new(bytes.as_slice(), ImageKind::Pstree, "x").unwrap_err();
        assert!(
            matches!(
                err,
                Error::BadMagic {
                    expected: "PSTREE",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pstree, "p").unwrap();
        w.write(&sample()).unwrap();
        let bytes = w.finish().unwrap();
        // Cutting anywhere but at an entry boundary must give an error.
        for cut in 0..bytes.len() {
            let res = ImageReader::new(&bytes[..cut], ImageKind::Pstree, "p")
                .and_then(|mut r| r.collect_all::<pb::PstreeEntry>());
            if cut == 8 {
                assert_eq!(res.unwrap(), vec![]);
            } else {
                assert!(res.is_err(), "cut at {cut} was accepted");
            }
        }
    }

    #[test]
    fn huge_length_is_rejected_without_allocating() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&crate::IMG_COMMON_MAGIC.to_le_bytes());
        bytes.extend_from_slice(&ImageKind::Pstree.magic().to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut r = ImageReader::new(bytes.as_slice(), ImageKind::Pstree, "p").unwrap();
        let err = r.next::<pb::PstreeEntry>().unwrap_err();
        assert!(matches!(err, Error::EntryTooLarge { .. }), "{err}");
    }
}
