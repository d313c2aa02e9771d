//! An image directory: where image files are created and found by name.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{Error, ImageKind, ImageReader, ImageWriter, Result};

/// A directory of image files (CRIU's `-D`).
///
/// Every image is reached by kind and id through this type, so a later image store (a
/// socket, a compressing stream) replaces it without touching dump or restore.
#[derive(Debug, Clone)]
pub struct ImageDir {
    path: PathBuf,
}

impl ImageDir {
    /// Uses `path` as an image directory, creating it if `create` is set.
    pub fn open(path: impl Into<PathBuf>, create: bool) -> Result<Self> {
        let path = path.into();
        if create {
            std::fs::create_dir_all(&path).map_err(|source| Error::Io {
                file: path.display().to_string(),
                source,
            })?;
        }
        let meta = std::fs::metadata(&path).map_err(|source| Error::Io {
            file: path.display().to_string(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(Error::Invalid {
                file: path.display().to_string(),
                reason: "not a directory".into(),
            });
        }
        Ok(ImageDir { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of a file in the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates (truncating) the image `kind`/`id` and writes its magics.
    pub fn create(&self, kind: ImageKind, id: u64) -> Result<ImageWriter<BufWriter<File>>> {
        let name = kind.file_name(id);
        let file = self.create_raw(&name)?;
        ImageWriter::new(BufWriter::with_capacity(64 << 10, file), kind, name)
    }

    /// Creates (truncating) a file with no framing, such as `pages-N.img`.
    pub fn create_raw(&self, name: &str) -> Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.join(name))
            .map_err(|source| Error::Io {
                file: name.to_owned(),
                source,
            })
    }

    /// Opens a file with no framing for rewriting in place: it is not truncated, so pages
    /// the page cache still holds for it are reused rather than freed and allocated again
    /// (periodic dumps into one directory). The writer must `set_len` to what it wrote.
    pub fn rewrite_raw(&self, name: &str) -> Result<File> {
        // Readable too: writers may map it (a shared mapping needs read access).
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.join(name))
            .map_err(|source| Error::Io {
                file: name.to_owned(),
                source,
            })
    }

    /// Removes a file if it exists (e.g. the inventory of an earlier dump, so that a dump
    /// that fails halfway is never taken for a complete one).
    pub fn remove(&self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                file: name.to_owned(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Opens the image `kind`/`id` for reading; a missing file is [`Error::Missing`].
    pub fn open_image(&self, kind: ImageKind, id: u64) -> Result<ImageReader<BufReader<File>>> {
        let name = kind.file_name(id);
        let file = self.open_raw(&name)?;
        ImageReader::new(BufReader::with_capacity(64 << 10, file), kind, name)
    }

    /// Opens the image `kind`/`id` if it exists.
    pub fn open_optional(
        &self,
        kind: ImageKind,
        id: u64,
    ) -> Result<Option<ImageReader<BufReader<File>>>> {
        match self.open_image(kind, id) {
            Ok(r) => Ok(Some(r)),
            Err(Error::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens a file with no framing for reading.
    pub fn open_raw(&self, name: &str) -> Result<File> {
        File::open(self.join(name)).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::Missing {
                    file: name.to_owned(),
                    dir: self.path.display().to_string(),
                }
            } else {
                Error::Io {
                    file: name.to_owned(),
                    source,
                }
            }
        })
    }

    /// Reads every entry of the image `kind`/`id`.
    pub fn read_all<M: prost::Message + Default>(
        &self,
        kind: ImageKind,
        id: u64,
    ) -> Result<Vec<M>> {
        self.open_image(kind, id)?.collect_all()
    }

    /// Reads the single entry of the image `kind`/`id`.
    pub fn read_one<M: prost::Message + Default>(&self, kind: ImageKind, id: u64) -> Result<M> {
        self.open_image(kind, id)?.expect()
    }

    /// Writes `msgs` as the image `kind`/`id`.
    pub fn write_all<'a, M: prost::Message + 'a>(
        &self,
        kind: ImageKind,
        id: u64,
        msgs: impl IntoIterator<Item = &'a M>,
    ) -> Result<()> {
        let mut w = self.create(kind, id)?;
        for m in msgs {
            w.write(m)?;
        }
        w.finish().map(drop)
    }
}
