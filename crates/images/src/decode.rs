//! Decoding an image file without knowing its kind in advance (for `stasis show` and other
//! inspectors): the kind comes from the file's magic words (and, where the magic cannot tell,
//! from its name), then every entry is decoded with the message type of that kind.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::{Error, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, ImageKind, ImageReader, Result, pb};

/// What a file is, judging from its name and first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// An image kind we decode.
    Known(ImageKind),
    /// Not an image kind we know: `magic` is the unrecognised word (the kind's own magic
    /// after a common or service magic, else the first word).
    Unknown {
        /// The word that did not match any kind.
        magic: u32,
    },
}

/// Whether the file name is that of a raw pages image (`pages-N.img`), which has no magic
/// at all and can only be recognised by name.
fn is_pages_name(name: &str) -> bool {
    name.strip_prefix("pages-")
        .and_then(|rest| rest.strip_suffix(".img"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Identifies the image `name` from its first bytes (8 are enough; fewer is fine for raw
/// images and the inventory, which have less magic).
///
/// Both pagemap kinds share one magic, as in CRIU; the shmem one is told apart by name.
pub fn identify(name: &str, head: &[u8]) -> Result<Identity> {
    if is_pages_name(name) {
        return Ok(Identity::Known(ImageKind::Pages));
    }
    let word = |i: usize| {
        head.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| Error::Truncated {
                file: name.to_owned(),
                what: "magic",
            })
    };
    let first = word(0)?;
    let second = if first == IMG_COMMON_MAGIC || first == IMG_SERVICE_MAGIC {
        Some(word(1)?)
    } else {
        None
    };
    Ok(match ImageKind::from_magics(first, second) {
        Some(ImageKind::Pagemap) if name.starts_with("pagemap-shmem-") => {
            Identity::Known(ImageKind::ShmemPagemap)
        }
        Some(kind) => Identity::Known(kind),
        None => Identity::Unknown {
            magic: second.unwrap_or(first),
        },
    })
}

/// One entry of any image kind.
///
/// Serializes as the message itself (no variant tag), so a decoded image reads like
/// `crit show` output.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
#[allow(missing_docs)] // Each variant is the message of the image kind it is named after.
pub enum Entry {
    Inventory(Box<pb::InventoryEntry>),
    Pstree(pb::PstreeEntry),
    Core(Box<pb::CoreEntry>),
    Ids(pb::TaskKobjIdsEntry),
    Mm(Box<pb::MmEntry>),
    /// The first entry of a pagemap image.
    PagemapHead(pb::PagemapHead),
    /// The entries after the head of a pagemap image.
    Pagemap(pb::PagemapEntry),
    File(Box<pb::FileEntry>),
    Fdinfo(pb::FdinfoEntry),
    Fs(pb::FsEntry),
    TtyInfo(Box<pb::TtyInfoEntry>),
    Seccomp(pb::SeccompEntry),
    Stats(pb::StatsEntry),
    Cgroup(pb::CgroupEntry),
    /// An entry of `pipes-data.img` or `fifo-data.img` (its payload is not kept).
    PipeData(pb::PipeDataEntry),
    /// The head of a ghost file image (its contents are not kept).
    GhostFile(pb::GhostFileEntry),
    /// A data extent of a ghost file (its bytes are not kept).
    GhostChunk(pb::GhostChunkEntry),
    RemapFpath(pb::RemapFilePathEntry),
    MemfdInode(pb::MemfdInodeEntry),
    FileLock(pb::FileLockEntry),
    TtyData(pb::TtyDataEntry),
    IpcVar(pb::IpcVarEntry),
    /// A shared memory segment (its contents are not kept).
    IpcShm(pb::IpcShmEntry),
    /// A semaphore set with its values.
    IpcSem(pb::IpcSemEntry, Vec<u16>),
    /// A message queue (the messages' bytes are not kept).
    IpcMsg(pb::IpcMsgEntry, Vec<pb::IpcMsg>),
    /// A message queued on a socket (its bytes are not kept).
    SkPacket(pb::SkPacketEntry),
    /// A TCP connection's repair state (its queues' bytes follow it).
    TcpStream(pb::TcpStreamEntry),
}

/// A decoded image file.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// An image of a known kind with every entry.
    Image {
        /// Its kind.
        kind: ImageKind,
        /// Its entries in file order (for pagemaps, the head first).
        entries: Vec<Entry>,
    },
    /// A raw image (page contents): not decoded, only measured.
    Raw {
        /// Its kind.
        kind: ImageKind,
        /// Its size in bytes.
        size: u64,
    },
    /// A file whose magic is not that of any kind we know.
    Unknown {
        /// The unrecognised magic word.
        magic: u32,
    },
}

impl Decoded {
    /// The kind, if known.
    pub fn kind(&self) -> Option<ImageKind> {
        match self {
            Decoded::Image { kind, .. } | Decoded::Raw { kind, .. } => Some(*kind),
            Decoded::Unknown { .. } => None,
        }
    }

    /// The entries (none for raw and unknown images).
    pub fn entries(&self) -> &[Entry] {
        match self {
            Decoded::Image { entries, .. } => entries,
            _ => &[],
        }
    }
}

/// `{"magic": "CORE", "entries": [...]}` as `crit` writes it; raw images give their size
/// instead of entries, unknown ones an `error`.
impl Serialize for Decoded {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        match self {
            Decoded::Image { kind, entries } => {
                map.serialize_entry("magic", kind.name())?;
                map.serialize_entry("entries", entries)?;
            }
            Decoded::Raw { kind, size } => {
                map.serialize_entry("magic", kind.name())?;
                map.serialize_entry("size", size)?;
            }
            Decoded::Unknown { magic } => {
                map.serialize_entry("error", &format!("unknown magic {magic:#010x}"))?;
            }
        }
        map.end()
    }
}

/// Reads the first `buf.len()` bytes of `input`, or fewer at end of file.
fn read_head(input: &mut impl Read, buf: &mut [u8], name: &str) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::Io {
                    file: name.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(got)
}

/// Decodes the image `name` read from `input`. Raw images are read to the end to measure
/// them; [`decode_file`] avoids that.
pub fn decode(name: &str, mut input: impl Read) -> Result<Decoded> {
    let mut head = [0u8; 8];
    let got = read_head(&mut input, &mut head, name)?;
    match identify(name, &head[..got])? {
        Identity::Unknown { magic } => Ok(Decoded::Unknown { magic }),
        Identity::Known(kind) if kind.magic() == 0 => {
            let rest = io::copy(&mut input, &mut io::sink()).map_err(|source| Error::Io {
                file: name.to_owned(),
                source,
            })?;
            Ok(Decoded::Raw {
                kind,
                size: got as u64 + rest,
            })
        }
        Identity::Known(kind) => {
            // The reader checks the magics again, so give it the bytes already consumed.
            let reader = ImageReader::new(head[..got].chain(input), kind, name)?;
            Ok(Decoded::Image {
                kind,
                entries: entries(kind, reader)?,
            })
        }
    }
}

/// Decodes the image file at `path`, named in errors by its file name.
pub fn decode_file(path: &Path) -> Result<Decoded> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let io_err = |source| Error::Io {
        file: name.clone(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    if is_pages_name(&name) {
        // Page contents can be gigabytes; their size is all we show.
        let size = file.metadata().map_err(io_err)?.len();
        return Ok(Decoded::Raw {
            kind: ImageKind::Pages,
            size,
        });
    }
    decode(&name, BufReader::with_capacity(64 << 10, file))
}

/// Whether a directory entry named `name` is an image (or a service file such as
/// `stats-dump`) rather than a log or anything else kept next to images.
pub fn is_image_name(name: &str) -> bool {
    name.ends_with(".img") || name.starts_with("stats-")
}

/// Every image file of a directory, each decoded on its own so that one bad file does not
/// hide the others.
#[derive(Debug)]
pub struct DecodedDir {
    /// The directory.
    pub dir: PathBuf,
    /// File name to contents, or why they could not be read.
    pub images: BTreeMap<String, Result<Decoded>>,
}

/// `{"dir": ..., "images": {"core-1.img": {"magic": "CORE", "entries": [...]}, ...}}`, an
/// unreadable file being `{"error": "..."}`.
impl Serialize for DecodedDir {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Item<'a>(&'a Result<Decoded>);
        impl Serialize for Item<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                match self.0 {
                    Ok(d) => d.serialize(s),
                    Err(e) => {
                        let mut map = s.serialize_map(Some(1))?;
                        map.serialize_entry("error", &e.to_string())?;
                        map.end()
                    }
                }
            }
        }
        struct Images<'a>(&'a BTreeMap<String, Result<Decoded>>);
        impl Serialize for Images<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, Item(v))))
            }
        }
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("dir", &self.dir.display().to_string())?;
        map.serialize_entry("images", &Images(&self.images))?;
        map.end()
    }
}

/// Decodes every image file of `dir` ([`is_image_name`]; other files are skipped). Only
/// failing to list the directory is an error; a bad image is an `Err` in the map.
pub fn decode_dir(dir: &Path) -> Result<DecodedDir> {
    let io_err = |source| Error::Io {
        file: dir.display().to_string(),
        source,
    };
    let mut images = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !is_image_name(&name) || path.is_dir() {
            continue;
        }
        images.insert(name, decode_file(&path));
    }
    Ok(DecodedDir {
        dir: dir.to_path_buf(),
        images,
    })
}

/// Every entry of an image of `kind`, with that kind's message types.
fn entries<R: Read>(kind: ImageKind, mut r: ImageReader<R>) -> Result<Vec<Entry>> {
    fn all<R: Read, M: prost::Message + Default>(
        r: &mut ImageReader<R>,
        wrap: impl Fn(M) -> Entry,
    ) -> Result<Vec<Entry>> {
        Ok(r.collect_all::<M>()?.into_iter().map(wrap).collect())
    }
    match kind {
        ImageKind::Inventory => all(&mut r, |m| Entry::Inventory(Box::new(m))),
        ImageKind::Pstree => all(&mut r, Entry::Pstree),
        ImageKind::Core => all(&mut r, |m| Entry::Core(Box::new(m))),
        ImageKind::Ids => all(&mut r, Entry::Ids),
        ImageKind::Mm => all(&mut r, |m| Entry::Mm(Box::new(m))),
        ImageKind::Pagemap | ImageKind::ShmemPagemap => {
            let head: pb::PagemapHead = r.expect()?;
            let mut out = vec![Entry::PagemapHead(head)];
            out.extend(all(&mut r, Entry::Pagemap)?);
            Ok(out)
        }
        ImageKind::Files => all(&mut r, |m| Entry::File(Box::new(m))),
        ImageKind::Fdinfo => all(&mut r, Entry::Fdinfo),
        ImageKind::Fs => all(&mut r, Entry::Fs),
        ImageKind::TtyInfo => all(&mut r, |m| Entry::TtyInfo(Box::new(m))),
        ImageKind::Seccomp => all(&mut r, Entry::Seccomp),
        ImageKind::Stats => all(&mut r, Entry::Stats),
        ImageKind::Cgroup => all(&mut r, Entry::Cgroup),
        ImageKind::PipesData | ImageKind::FifoData => {
            let mut out = Vec::new();
            while let Some(e) = r.next::<pb::PipeDataEntry>()? {
                r.read_payload(u64::from(e.bytes))?;
                out.push(Entry::PipeData(e));
            }
            Ok(out)
        }
        ImageKind::GhostFile => {
            let head: pb::GhostFileEntry = r.expect()?;
            let chunks = head.chunks == Some(true);
            let mut out = vec![Entry::GhostFile(head)];
            if chunks {
                while let Some(c) = r.next::<pb::GhostChunkEntry>()? {
                    r.read_payload(c.len)?;
                    out.push(Entry::GhostChunk(c));
                }
            } else {
                r.read_rest()?;
            }
            Ok(out)
        }
        ImageKind::RemapFpath => all(&mut r, Entry::RemapFpath),
        ImageKind::MemfdInode => all(&mut r, Entry::MemfdInode),
        ImageKind::FileLocks => all(&mut r, Entry::FileLock),
        ImageKind::TtyData => all(&mut r, Entry::TtyData),
        ImageKind::IpcVar => all(&mut r, Entry::IpcVar),
        ImageKind::SkQueues => {
            let mut out = Vec::new();
            while let Some(e) = r.next::<pb::SkPacketEntry>()? {
                r.read_payload(u64::from(e.length))?;
                out.push(Entry::SkPacket(e));
            }
            Ok(out)
        }
        ImageKind::TcpStream => {
            let e: pb::TcpStreamEntry = r.expect()?;
            r.read_payload(u64::from(e.inq_len) + u64::from(e.outq_len))?;
            Ok(vec![Entry::TcpStream(e)])
        }
        ImageKind::IpcShm => {
            let mut out = Vec::new();
            while let Some(e) = r.next::<pb::IpcShmEntry>()? {
                r.read_payload(e.size.next_multiple_of(4))?;
                out.push(Entry::IpcShm(e));
            }
            Ok(out)
        }
        ImageKind::IpcSem => {
            let mut out = Vec::new();
            while let Some(e) = r.next::<pb::IpcSemEntry>()? {
                let raw = r.read_payload(e.payload_len())?;
                let values = e.values(&raw);
                out.push(Entry::IpcSem(e, values));
            }
            Ok(out)
        }
        ImageKind::IpcMsg => {
            let mut out = Vec::new();
            while let Some(e) = r.next::<pb::IpcMsgEntry>()? {
                let mut msgs = Vec::new();
                for _ in 0..e.qnum {
                    let m: pb::IpcMsg = r.expect()?;
                    r.read_payload(u64::from(m.msize).next_multiple_of(8))?;
                    msgs.push(m);
                }
                out.push(Entry::IpcMsg(e, msgs));
            }
            Ok(out)
        }
        // Raw images have no entries; `decode` never gets here with one.
        ImageKind::Pages => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageWriter;

    fn image<M: prost::Message>(kind: ImageKind, msgs: &[M]) -> Vec<u8> {
        let mut w = ImageWriter::new(Vec::new(), kind, "t").unwrap();
        for m in msgs {
            w.write(m).unwrap();
        }
        w.finish().unwrap()
    }

    fn pagemap() -> Vec<u8> {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pagemap, "t").unwrap();
        w.write(&pb::PagemapHead { pages_id: 3 }).unwrap();
        w.write(&pb::PagemapEntry {
            vaddr: 0x1000,
            compat_nr_pages: 2,
            in_parent: None,
            flags: Some(crate::consts::pe_flags::PRESENT),
            nr_pages: Some(2),
        })
        .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn every_kind_is_identified_by_its_magic() {
        for kind in ImageKind::ALL {
            let name = kind.file_name(7);
            let head = ImageWriter::new(Vec::new(), kind, "t")
                .unwrap()
                .finish()
                .unwrap();
            assert_eq!(
                identify(&name, &head).unwrap(),
                Identity::Known(kind),
                "{name}"
            );
        }
        // Content wins over a misleading name, except for the shared pagemap magic.
        let head = image::<pb::FsEntry>(ImageKind::Fs, &[]);
        assert_eq!(
            identify("core-1.img", &head).unwrap(),
            Identity::Known(ImageKind::Fs)
        );
        let head = image::<pb::FsEntry>(ImageKind::ShmemPagemap, &[]);
        assert_eq!(
            identify("pagemap-1.img", &head).unwrap(),
            Identity::Known(ImageKind::Pagemap)
        );
    }

    #[test]
    fn unknown_and_short_magics() {
        let mut head = IMG_COMMON_MAGIC.to_le_bytes().to_vec();
        head.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
        assert_eq!(
            identify("x.img", &head).unwrap(),
            Identity::Unknown { magic: 0xdead_beef }
        );
        assert_eq!(
            identify("x.img", b"garbage!").unwrap(),
            Identity::Unknown {
                magic: u32::from_le_bytes(*b"garb")
            }
        );
        for cut in [0, 3, 4, 7] {
            let err = identify("x.img", &head[..cut]);
            // Four bytes of the common magic still need the kind's own word.
            assert!(
                matches!(err, Err(Error::Truncated { .. })),
                "cut {cut}: {err:?}"
            );
        }
        assert!(!is_pages_name("pages-.img"));
        assert!(!is_pages_name("pages-1x.img"));
        assert!(is_pages_name("pages-12.img"));
    }

    #[test]
    fn pagemap_decodes_as_head_then_entries() {
        let d = decode("pagemap-5.img", pagemap().as_slice()).unwrap();
        assert_eq!(d.kind(), Some(ImageKind::Pagemap));
        assert!(matches!(
            d.entries(),
            [Entry::PagemapHead(h), Entry::Pagemap(e)] if h.pages_id == 3 && e.vaddr == 0x1000
        ));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["magic"], "PAGEMAP");
        assert_eq!(json["entries"][0]["pages_id"], 3);
        assert_eq!(json["entries"][1]["nr_pages"], 2);
    }

    #[test]
    fn raw_and_unknown_images() {
        let d = decode("pages-1.img", &[0u8; 8192][..]).unwrap();
        assert_eq!(
            d,
            Decoded::Raw {
                kind: ImageKind::Pages,
                size: 8192
            }
        );
        assert_eq!(serde_json::to_value(&d).unwrap()["size"], 8192);
        let d = decode("odd.img", &b"\x01\x02\x03\x04rest"[..]).unwrap();
        assert_eq!(d, Decoded::Unknown { magic: 0x0403_0201 });
        assert_eq!(
            serde_json::to_value(&d).unwrap()["error"],
            "unknown magic 0x04030201"
        );
    }

    #[test]
    fn a_directory_decodes_file_by_file() {
        let dir = std::env::temp_dir().join(format!("stasis-decode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub.img")).unwrap();
        std::fs::write(dir.join("pagemap-5.img"), pagemap()).unwrap();
        std::fs::write(dir.join("core-5.img"), &pagemap()[..10]).unwrap();
        std::fs::write(dir.join("dump.log"), "not an image").unwrap();
        let d = decode_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<&str> = d.images.keys().map(String::as_str).collect();
        assert_eq!(names, ["core-5.img", "pagemap-5.img"]);
        let json = serde_json::to_string(&d).unwrap();
        // Fields keep their declaration order, as crit prints them.
        assert!(
            json.contains(
                r#""pagemap-5.img":{"magic":"PAGEMAP","entries":[{"pages_id":3},{"vaddr":4096,"#
            ),
            "{json}"
        );
        assert!(
            json.contains(r#""core-5.img":{"error":"core-5.img: truncated (entry size)"}"#),
            "{json}"
        );
        assert!(decode_dir(Path::new("/nonexistent/stasis")).is_err());
    }

    #[test]
    fn corruption_is_an_error_naming_the_file() {
        let bytes = pagemap();
        for cut in 0..bytes.len() {
            // Cutting right after the head entry leaves a valid pagemap with no runs.
            if cut == 14 {
                continue;
            }
            let err = decode("pagemap-5.img", &bytes[..cut]).unwrap_err();
            assert!(err.to_string().starts_with("pagemap-5.img: "), "{err}");
        }
        // A length word promising bytes that are not protobuf.
        let mut bad = image::<pb::FsEntry>(ImageKind::Fs, &[]);
        bad.extend_from_slice(&[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        let err = decode("fs-1.img", bad.as_slice()).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
    }
}
