//! inotify and fanotify instances: their watches and marks, from the `inotify wd:` and
//! `fanotify ...` lines of `/proc/PID/fdinfo/N`.
//!
//! The kernel names a watched inode by a file handle; stasis opens it
//! (`open_by_handle_at` on the filesystem of its device) to learn its path now, which is
//! what the restore watches again. Events queued but not yet read are not saved (CRIU does
//! not either).

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use stasis_images::pb;
use stasis_sys::fds::FileHandle;
use stasis_sys::{fds, fs, proc};

use super::{Fd, FileTable, fdinfo_fields, fdinfo_lines};
use crate::error::Result;

/// The kernel's `dev_t` as fdinfo prints it (`MKDEV`: major in the top 12 bits).
fn split_kernel_dev(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xf_ffff)
}

/// Decodes the `f_handle:` hex bytes.
fn handle_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The path of the inode `handle` names on the filesystem of kernel device `sdev`.
fn handle_path(sdev: u32, handle: &FileHandle) -> std::result::Result<String, String> {
    let (major, minor) = split_kernel_dev(sdev);
    let mounts = proc::read_mounts().map_err(|e| e.to_string())?;
    let mount = mounts
        .iter()
        .filter(|m| m.dev == (major, minor))
        // The whole filesystem mounted somewhere resolves every path.
        .min_by_key(|m| m.root.len())
        .ok_or_else(|| format!("no mount of device {major}:{minor} is visible to stasis"))?;
    let dir = fs::open(
        &mount.mount_point,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
    )
    .map_err(|e| format!("open {}: {e}", mount.mount_point.display()))?;
    let file = fds::open_by_handle(dir.as_fd(), handle, libc::O_PATH | libc::O_CLOEXEC)
        .map_err(|e| format!("open_by_handle_at: {e}"))?;
    let link = proc::read_link(PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())))
        .map_err(|e| e.to_string())?;
    let path = link.to_string_lossy().into_owned();
    if path.ends_with(" (deleted)") && !Path::new(&path).exists() {
        return Err(format!("the watched file {path} was deleted"));
    }
    Ok(path)
}

/// An `FhEntry` for a handle: its bytes packed into little-endian words, at least
/// `FhEntrySizes::MinEntries` of them (as CRIU stores it), and the path found for it.
fn fh_entry(handle: &FileHandle, path: String, mnt_id: Option<u32>) -> pb::FhEntry {
    let mut words: Vec<u64> = handle
        .bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    let min = pb::FhEntrySizes::MinEntries as usize;
    if words.len() < min {
        words.resize(min, 0);
    }
    pb::FhEntry {
        bytes: handle.bytes.len() as u32,
        r#type: handle.kind as u32,
        handle: words,
        path: Some(path),
        mnt_id,
    }
}

/// The handle of an fdinfo mark line, and the path it resolves to.
fn watched(f: &Fd, fields: &[(&str, &str)]) -> Result<(u64, u32, pb::FhEntry)> {
    let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let hexu = |name: &str| get(name).and_then(|v| u64::from_str_radix(v, 16).ok());
    let bad = || f.unsupported("cannot parse a watch line of its fdinfo");
    let ino = hexu("ino").ok_or_else(bad)?;
    let sdev = hexu("sdev").ok_or_else(bad)? as u32;
    let kind = hexu("fhandle-type").ok_or_else(bad)? as i32;
    let bytes = get("f_handle").and_then(handle_bytes).ok_or_else(bad)?;
    let handle = FileHandle { kind, bytes };
    let path = handle_path(sdev, &handle)
        .map_err(|e| f.unsupported(format!("a watched inode cannot be found: {e}")))?;
    Ok((ino, sdev, fh_entry(&handle, path, None)))
}

pub(crate) fn dump_inotify(table: &mut FileTable, f: &Fd) -> Result<u32> {
    let mut wds = Vec::new();
    for line in fdinfo_lines(f, "inotify wd") {
        let fields = fdinfo_fields(&line);
        let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let hex32 = |name: &str| get(name).and_then(|v| u32::from_str_radix(v, 16).ok());
        let (wd, mask) = match (hex32("wd"), hex32("mask")) {
            (Some(w), Some(m)) => (w, m),
            _ => return Err(f.unsupported(format!("cannot parse {line:?}"))),
        };
        let (i_ino, s_dev, handle) = watched(f, &fields)?;
        wds.push(pb::InotifyWdEntry {
            id: 0,
            i_ino,
            mask,
            ignored_mask: hex32("ignored_mask").unwrap_or(0),
            s_dev,
            wd,
            f_handle: Some(handle),
        });
    }
    wds.sort_by_key(|w| w.wd);
    let (flags, fown) = (f.flags(), f.fown());
    Ok(table.add(pb::FdTypes::Inotify, |id, e| {
        for w in &mut wds {
            w.id = id;
        }
        e.ify = Some(pb::InotifyFileEntry {
            id,
            flags,
            fown: Some(fown),
            wd: wds,
        });
    }))
}

pub(crate) fn dump_fanotify(table: &mut FileTable, f: &Fd) -> Result<u32> {
    let bad = |line: &str| f.unsupported(format!("cannot parse {line:?}"));
    let mut faflags = None;
    let mut marks = Vec::new();
    for (key, value) in &f.info.extra {
        let line = format!("{key}:{value}");
        let fields = fdinfo_fields(&line);
        let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let hex32 = |name: &str| get(name).and_then(|v| u32::from_str_radix(v, 16).ok());
        match key.as_str() {
            "fanotify flags" => {
                faflags = Some((
                    hex32("flags").ok_or_else(|| bad(&line))?,
                    hex32("event-flags").ok_or_else(|| bad(&line))?,
                ));
            }
            "fanotify ino" => {
                let (i_ino, s_dev, handle) = watched(f, &fields)?;
                marks.push(pb::FanotifyMarkEntry {
                    id: 0,
                    r#type: pb::MarkType::Inode as i32,
                    mflags: hex32("mflags").ok_or_else(|| bad(&line))?,
                    mask: hex32("mask").ok_or_else(|| bad(&line))?,
                    ignored_mask: hex32("ignored_mask").unwrap_or(0),
                    s_dev,
                    ie: Some(pb::FanotifyInodeMarkEntry {
                        i_ino,
                        f_handle: Some(handle),
                    }),
                    me: None,
                });
            }
            "fanotify mnt_id" => {
                let mnt_id = hex32("mnt_id").ok_or_else(|| bad(&line))?;
                let mounts = proc::read_mounts().map_err(|e| crate::error::DumpError::Proc {
                    pid: f.pid,
                    source: e,
                })?;
                let path = mounts
                    .iter()
                    .find(|m| m.id as u32 == mnt_id)
                    .map(|m| m.mount_point.to_string_lossy().into_owned())
                    .ok_or_else(|| {
                        f.unsupported(format!("its mark on mount {mnt_id} names no mount of ours"))
                    })?;
                marks.push(pb::FanotifyMarkEntry {
                    id: 0,
                    r#type: pb::MarkType::Mount as i32,
                    mflags: hex32("mflags").ok_or_else(|| bad(&line))?,
                    mask: hex32("mask").ok_or_else(|| bad(&line))?,
                    ignored_mask: hex32("ignored_mask").unwrap_or(0),
                    s_dev: 0,
                    ie: None,
                    me: Some(pb::FanotifyMountMarkEntry {
                        mnt_id,
                        path: Some(path),
                    }),
                });
            }
            "fanotify sdev" => {
                return Err(f.unsupported("fanotify filesystem marks are not supported"));
            }
            _ => {}
        }
    }
    let (faflags, evflags) =
        faflags.ok_or_else(|| f.unsupported("its fdinfo has no \"fanotify flags\" line"))?;
    let (flags, fown) = (f.flags(), f.fown());
    Ok(table.add(pb::FdTypes::Fanotify, |id, e| {
        for m in &mut marks {
            m.id = id;
        }
        e.ffy = Some(pb::FanotifyFileEntry {
            id,
            flags,
            fown: Some(fown),
            faflags,
            evflags,
            mark: marks,
        });
    }))
}
