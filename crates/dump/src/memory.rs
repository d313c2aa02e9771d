//! The address space: vmas (`mm-PID.img`) and which of their pages carry data.
//!
//! Vmas come from `/proc/PID/smaps` (for the VmFlags line). Private memory is scanned with
//! the PAGEMAP_SCAN ioctl, which returns runs of pages that are present or swapped and are
//! neither the shared zero page nor untouched pages of a mapped file: exactly the pages
//! whose contents exist only in this process. Shared anonymous memory is a shmem object
//! read through `/proc/PID/map_files`.

use std::fs::File;
use std::os::fd::AsFd;

use stasis_images::consts::vma_status;
use stasis_images::{PAGE_SIZE, pb};
use stasis_sys::abi::{self, PageRegion};
use stasis_sys::mem::{self, ScanQuery};
use stasis_sys::proc::{self, Vma, VmaPath};
use stasis_sys::{Pid, fs};

use crate::error::{DumpError, ProcContext, Result, SysContext};
use crate::files::{FileOptions, FileTable};

/// A run of pages to copy: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Whether the pages may be copied with process_vm_readv: the vma is readable (it
    /// honours protections) and only this process maps them (it pins what it reads, and
    /// pinning a page shared copy-on-write unshares it: the dump would copy the
    /// process's memory). Other pages are read through /proc/PID/mem, which does neither.
    pub vm_readv: bool,
}

impl Run {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the run is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A shared anonymous memory object (shmem) mapped by the process.
#[derive(Debug)]
pub struct ShmemObject {
    /// Its inode number: the `shmid` of the vmas that map it.
    pub shmid: u64,
    /// The object opened through map_files.
    pub file: File,
    /// Size in bytes.
    pub size: u64,
}

/// What the address space of one process needs written.
#[derive(Debug, Default)]
pub struct AddressSpace {
    /// The vma entries of `mm-PID.img`.
    pub vmas: Vec<pb::VmaEntry>,
    /// Private pages with data, sorted, never crossing a vma boundary.
    pub runs: Vec<Run>,
    /// Private pages that are the very pages of the parent at the same address (shared
    /// copy-on-write since a fork), sorted: stored once, in the parent's image.
    pub cow: Vec<Run>,
    /// Shared anonymous objects.
    pub shmem: Vec<ShmemObject>,
    /// Size of `[vdso]` (0 if none).
    pub vdso_size: u64,
    /// Size of `[vvar]` plus `[vvar_vclock]`.
    pub vvar_size: u64,
}

fn madvise_bits(vma: &Vma) -> u64 {
    let table: [(&[u8; 2], u32); 6] = [
        (b"dc", abi::MADV_DONTFORK),
        (b"dd", abi::MADV_DONTDUMP),
        (b"mg", abi::MADV_MERGEABLE),
        (b"hg", abi::MADV_HUGEPAGE),
        (b"nh", abi::MADV_NOHUGEPAGE),
        (b"wf", abi::MADV_WIPEONFORK),
    ];
    let mut bits = 0u64;
    for (code, advice) in table {
        if vma.has_flag(code) {
            bits |= 1 << advice;
        }
    }
    if vma.has_flag(b"sr") {
        bits |= 1 << libc::MADV_SEQUENTIAL;
    }
    if vma.has_flag(b"rr") {
        bits |= 1 << libc::MADV_RANDOM;
    }
    bits
}

fn map_flags(vma: &Vma) -> u32 {
    let mut flags = if vma.shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    if vma.has_flag(b"gd") {
        flags |= libc::MAP_GROWSDOWN;
    }
    if vma.has_flag(b"lo") {
        flags |= libc::MAP_LOCKED;
    }
    if vma.has_flag(b"nr") {
        flags |= libc::MAP_NORESERVE;
    }
    flags as u32
}

/// The parent of a process being dumped, for pages the two still share.
#[derive(Clone, Copy, Debug)]
pub struct Parent<'a> {
    /// Its pid.
    pub pid: Pid,
    /// Its vmas as dumped.
    pub vmas: &'a [pb::VmaEntry],
}

/// Builds the vma list of process `pid` and finds the pages to dump; with its `parent`,
/// the pages both still share are told apart.
pub fn collect(
    pid: Pid,
    files: &mut FileTable,
    file_opts: FileOptions,
    parent: Option<Parent<'_>>,
) -> Result<AddressSpace> {
    let vmas = proc::read_smaps(pid).pctx(pid)?;
    let pagemap = open_pagemap(pid)?;
    // The parent's pagemap, read where a vma is inherited unchanged.
    let parent = match parent {
        Some(p) => Some((p, open_pagemap(p.pid)?)),
        None => None,
    };
    let mut space = AddressSpace::default();
    let mut scan_buf = Vec::new();
    let mut regions: Vec<PageRegion> = Vec::new();

    for vma in &vmas {
        let resource = || format!("vma {:x}-{:x} ({:?})", vma.start, vma.end, vma.path);
        let unsupported = |reason: &str| DumpError::Unsupported {
            pid,
            resource: resource(),
            reason: reason.to_owned(),
        };
        if (vma.has_flag(b"io") || vma.has_flag(b"pf"))
            && !matches!(vma.path, VmaPath::Vvar | VmaPath::VvarVclock)
        {
            return Err(unsupported(
                "device (VM_IO/VM_PFNMAP) mappings are not supported",
            ));
        }
        let anon = libc::MAP_ANONYMOUS as u32;
        let mut e = pb::VmaEntry {
            start: vma.start,
            end: vma.end,
            pgoff: vma.offset,
            shmid: 0,
            prot: vma.prot() as u32,
            flags: map_flags(vma),
            status: vma_status::REGULAR,
            fd: -1,
            madv: None,
            fdflags: None,
        };
        let mut private_pages = false;
        match &vma.path {
            VmaPath::Vsyscall => {
                e.status = vma_status::VSYSCALL;
                e.flags |= anon;
            }
            VmaPath::Vdso => {
                e.status |= vma_status::VDSO;
                e.flags |= anon;
                space.vdso_size += vma.len();
            }
            VmaPath::Vvar | VmaPath::VvarVclock => {
                e.status |= vma_status::VVAR;
                e.flags |= anon;
                space.vvar_size += vma.len();
            }
            VmaPath::Uprobes => {
                return Err(unsupported("uprobes are attached to the process"));
            }
            VmaPath::Anonymous | VmaPath::Heap | VmaPath::Stack | VmaPath::AnonNamed(_)
                if !vma.shared =>
            {
                e.status |= vma_status::ANON_PRIVATE;
                if vma.path == VmaPath::Heap {
                    e.status |= vma_status::HEAP;
                }
                if vma.path == VmaPath::Stack {
                    e.status |= vma_status::STACK;
                }
                e.flags |= anon;
                private_pages = true;
            }
            VmaPath::AnonNamed(_) | VmaPath::Anonymous => {
                // Named shared anonymous memory ([anon_shmem:x]).
                e.status |= vma_status::ANON_SHARED;
                e.flags |= anon;
                e.shmid = shmem_object(pid, vma, &mut space)?;
            }
            VmaPath::File { path, deleted } => {
                // Shared writable mappings need their file open for writing.
                let open_flags = if vma.shared && vma.has_flag(b"mw") {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                } as u32;
                if path == "/dev/zero" && *deleted && vma.shared {
                    e.status |= vma_status::ANON_SHARED;
                    e.flags |= anon;
                    e.shmid = shmem_object(pid, vma, &mut space)?;
                } else if path.starts_with("/SYSV") && *deleted {
                    if !file_opts.private_ipc {
                        return Err(unsupported(
                            "SysV shared memory of the host's IPC namespace cannot be saved \
                             (it belongs to every process there); run the tree in an IPC \
                             namespace of its own",
                        ));
                    }
                    // An attach: the segment (its id is the inode) is saved with the
                    // namespace.
                    e.status |= vma_status::ANON_SHARED | vma_status::SYSVIPC;
                    e.flags |= anon;
                    e.shmid = vma.inode;
                } else {
                    e.shmid = u64::from(if path.starts_with("/memfd:") {
                        e.status |= vma_status::MEMFD;
                        files.memfd_mapping(pid, vma.start, vma.end, path, open_flags)?
                    } else if *deleted {
                        files.deleted_mapping(
                            pid,
                            (vma.start, vma.end),
                            path,
                            open_flags,
                            file_opts,
                        )?
                    } else {
                        files.path_file(pid, path, open_flags)?
                    });
                    e.fdflags = Some(open_flags);
                    if vma.shared {
                        e.status |= vma_status::FILE_SHARED;
                    } else {
                        e.status |= vma_status::FILE_PRIVATE;
                        private_pages = true;
                    }
                }
            }
            VmaPath::Other(name) if name.starts_with("socket:[") && vma.shared => {
                // A packet socket's ring: made again from the restored socket.
                e.status |= vma_status::SOCKET;
                e.shmid = u64::from(files.socket_mapping(pid, vma)?);
            }
            VmaPath::Other(name) => {
                return Err(unsupported(&format!(
                    "special mapping {name:?} is not supported"
                )));
            }
            VmaPath::Heap | VmaPath::Stack => {
                return Err(unsupported("shared heap or stack mapping"));
            }
        }
        let madv = madvise_bits(vma);
        if madv != 0 {
            e.madv = Some(madv);
        }
        if private_pages && vma.rss_kb > 0 {
            regions.clear();
            mem::pagemap_scan(
                pagemap.as_fd(),
                vma.start,
                vma.end,
                ScanQuery::PRIVATE_DATA,
                &mut scan_buf,
                &mut regions,
            )
            .ctx(pid, || format!("PAGEMAP_SCAN {}", resource()))?;
            let from_parent = parent
                .as_ref()
                .filter(|(p, _)| p.vmas.iter().any(|pv| e.inherited_unchanged(pv)))
                .map(|(p, map)| (p.pid, map));
            for r in &regions {
                classify(pid, &pagemap, from_parent, r, vma, &mut space)?;
            }
        }
        space.vmas.push(e);
    }
    Ok(space)
}

fn open_pagemap(pid: Pid) -> Result<File> {
    File::open(proc::path(pid, "pagemap")).map_err(|e| DumpError::Sys {
        pid,
        what: "open /proc/PID/pagemap".into(),
        errno: stasis_sys::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    })
}

/// Sorts the pages of a region into the ones the parent maps too (the same frame at the
/// same address: shared copy-on-write since the fork, stored by the parent) and the
/// process's own, noting which of these may be copied with process_vm_readv. Frame
/// numbers are visible to CAP_SYS_ADMIN only; without them every page counts as the
/// process's own.
fn classify(
    pid: Pid,
    pagemap: &File,
    parent: Option<(Pid, &File)>,
    region: &PageRegion,
    vma: &Vma,
    space: &mut AddressSpace,
) -> Result<()> {
    let pages = (region.end - region.start) / PAGE_SIZE;
    let mine = mem::read_pagemap(pagemap.as_fd(), region.start, pages)
        .ctx(pid, || format!("read the pagemap at {:#x}", region.start))?;
    let theirs = match parent {
        Some((ppid, map)) => Some(
            mem::read_pagemap(map.as_fd(), region.start, pages)
                .ctx(ppid, || format!("read the pagemap at {:#x}", region.start))?,
        ),
        None => None,
    };
    let mut addr = region.start;
    for (i, m) in mine.iter().enumerate() {
        let t = theirs.as_ref().map(|t| t[i]);
        let shared =
            t.is_some_and(|t| m.present() && t.present() && m.pfn() != 0 && m.pfn() == t.pfn());
        let vm_readv = vma.read && m.present() && m.exclusive();
        // Runs never span vmas.
        let list = if shared {
            &mut space.cow
        } else {
            &mut space.runs
        };
        match list.last_mut() {
            Some(last)
                if last.end == addr
                    && addr != vma.start
                    && (last.vm_readv == vm_readv || shared) =>
            {
                last.end = addr + PAGE_SIZE;
            }
            _ => list.push(Run {
                start: addr,
                end: addr + PAGE_SIZE,
                vm_readv,
            }),
        }
        addr += PAGE_SIZE;
    }
    Ok(())
}

/// Opens the shmem object behind a shared anonymous vma (once per object).
fn shmem_object(pid: Pid, vma: &Vma, space: &mut AddressSpace) -> Result<u64> {
    let path = proc::path(pid, &format!("map_files/{:x}-{:x}", vma.start, vma.end));
    let file = File::open(&path).map_err(|e| DumpError::Sys {
        pid,
        what: format!("open {}", path.display()),
        errno: stasis_sys::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let st = fs::fstat(file.as_fd()).ctx(pid, || format!("fstat {}", path.display()))?;
    let shmid = st.st_ino;
    if !space.shmem.iter().any(|s| s.shmid == shmid) {
        space.shmem.push(ShmemObject {
            shmid,
            file,
            size: st.st_size as u64,
        });
    }
    Ok(shmid)
}
