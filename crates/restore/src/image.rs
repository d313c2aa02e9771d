//! Reading a dump back: every image a process needs, checked for consistency before any
//! process is created, so bad or truncated images fail early with a clear message.

use std::collections::HashMap;

use stasis_images::consts::{IMG_VERSION, SIGACTION_COUNT, pe_flags, task_state, vma_status};
use stasis_images::{ImageDir, ImageKind, PAGE_SIZE, pb};
use stasis_sys::Pid;

use crate::error::{RestoreError, Result, invalid};

/// Highest user address on x86_64 with 4-level paging (TASK_SIZE).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// Everything about one process.
#[derive(Debug)]
pub struct ProcessImage {
    /// Its pstree entry (pid, ppid, pgid, sid, threads).
    pub pstree: pb::PstreeEntry,
    /// The leader thread's core.
    pub core: pb::CoreEntry,
    /// Kernel object ids.
    pub ids: pb::TaskKobjIdsEntry,
    /// The address space.
    pub mm: pb::MmEntry,
    /// The pages image holding the private pages.
    pub pages_id: u32,
    /// Which private pages are stored, in pages-image order.
    pub pagemap: Vec<pb::PagemapEntry>,
    /// The fd table.
    pub fds: Vec<pb::FdinfoEntry>,
    /// cwd, root, umask.
    pub fs: pb::FsEntry,
}

impl ProcessImage {
    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pstree.pid as Pid
    }

    /// The leader's task core (validated to exist).
    pub fn tc(&self) -> &pb::TaskCoreEntry {
        self.core.tc.as_ref().expect("validated at load")
    }

    /// The leader's thread core (validated to exist).
    pub fn thread_core(&self) -> &pb::ThreadCoreEntry {
        self.core.thread_core.as_ref().expect("validated at load")
    }

    /// The leader's x86 thread info (validated to exist).
    pub fn thread_info(&self) -> &pb::ThreadInfoX86 {
        self.core.thread_info.as_ref().expect("validated at load")
    }
}

/// The stored contents of one shared anonymous memory object.
#[derive(Debug)]
pub struct ShmemImage {
    /// Its pages image.
    pub pages_id: u32,
    /// Stored ranges, by offset in the object.
    pub pagemap: Vec<pb::PagemapEntry>,
}

/// A whole dump.
#[derive(Debug)]
pub struct Images {
    /// Where the images are.
    pub dir: ImageDir,
    /// The processes, root first.
    pub processes: Vec<ProcessImage>,
    /// `files.img` by id.
    pub files: HashMap<u32, pb::FileEntry>,
    /// Shared anonymous memory contents by shmid.
    pub shmem: HashMap<u64, ShmemImage>,
}

impl Images {
    /// A file entry by id, as a regular file.
    pub fn reg_file(&self, id: u32, user: &str) -> Result<&pb::RegFileEntry> {
        self.files
            .get(&id)
            .and_then(|f| f.reg.as_ref())
            .ok_or_else(|| {
                invalid(
                    "files.img",
                    format!("{user} refers to missing file id {id}"),
                )
            })
    }
}

/// Reads and checks every image of the dump in `dir`.
pub fn load(dir: ImageDir) -> Result<Images> {
    let inventory: pb::InventoryEntry = dir.read_one(ImageKind::Inventory, 0)?;
    if inventory.img_version != IMG_VERSION {
        return Err(invalid(
            "inventory.img",
            format!(
                "image version {} is not supported (expected {IMG_VERSION})",
                inventory.img_version
            ),
        ));
    }
    let pstree: Vec<pb::PstreeEntry> = dir.read_all(ImageKind::Pstree, 0)?;
    if pstree.is_empty() {
        return Err(invalid("pstree.img", "no processes"));
    }
    if pstree.len() > 1 {
        return Err(RestoreError::Unsupported {
            pid: pstree[0].pid as Pid,
            resource: format!("process tree of {} processes", pstree.len()),
            reason: "restoring process trees is not supported yet".into(),
        });
    }
    let files: HashMap<u32, pb::FileEntry> = dir
        .read_all::<pb::FileEntry>(ImageKind::Files, 0)?
        .into_iter()
        .map(|f| (f.id, f))
        .collect();

    let mut processes = Vec::new();
    let mut shmem = HashMap::new();
    for entry in pstree {
        let p = load_process(&dir, entry)?;
        for v in &p.mm.vmas {
            if v.status & vma_status::ANON_SHARED != 0 && !shmem.contains_key(&v.shmid) {
                shmem.insert(v.shmid, load_shmem(&dir, v.shmid)?);
            }
        }
        processes.push(p);
    }
    Ok(Images {
        dir,
        processes,
        files,
        shmem,
    })
}

fn load_process(dir: &ImageDir, pstree: pb::PstreeEntry) -> Result<ProcessImage> {
    let pid = pstree.pid as Pid;
    let id = u64::from(pstree.pid);
    if pid <= 0 {
        return Err(invalid("pstree.img", format!("bad pid {}", pstree.pid)));
    }
    if pstree.threads.len() != 1 || pstree.threads[0] != pstree.pid {
        return Err(RestoreError::Unsupported {
            pid,
            resource: format!("{} threads", pstree.threads.len()),
            reason: "restoring multi-threaded processes is not supported yet".into(),
        });
    }
    let core: pb::CoreEntry = dir.read_one(ImageKind::Core, id)?;
    let core_file = ImageKind::Core.file_name(id);
    check_core(&core, &core_file)?;
    let ids: pb::TaskKobjIdsEntry = dir.read_one(ImageKind::Ids, id)?;
    let mm: pb::MmEntry = dir.read_one(ImageKind::Mm, id)?;
    check_vmas(&mm, &ImageKind::Mm.file_name(id))?;
    let mut pm = dir.open_image(ImageKind::Pagemap, id)?;
    let head: pb::PagemapHead = pm.expect()?;
    let pagemap: Vec<pb::PagemapEntry> = pm.collect_all()?;
    check_pagemap(&pagemap, &mm, &ImageKind::Pagemap.file_name(id))?;
    let fds: Vec<pb::FdinfoEntry> = dir.read_all(ImageKind::Fdinfo, u64::from(ids.files_id))?;
    let fs: pb::FsEntry = dir.read_one(ImageKind::Fs, id)?;
    Ok(ProcessImage {
        pstree,
        core,
        ids,
        mm,
        pages_id: head.pages_id,
        pagemap,
        fds,
        fs,
    })
}

fn load_shmem(dir: &ImageDir, shmid: u64) -> Result<ShmemImage> {
    let mut r = dir.open_image(ImageKind::ShmemPagemap, shmid)?;
    let head: pb::PagemapHead = r.expect()?;
    let pagemap = r.collect_all()?;
    Ok(ShmemImage {
        pages_id: head.pages_id,
        pagemap,
    })
}

fn check_core(core: &pb::CoreEntry, file: &str) -> Result<()> {
    if core.mtype != pb::core_entry::March::X8664 as i32 {
        return Err(invalid(
            file,
            format!("architecture {} is not x86_64", core.mtype),
        ));
    }
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| invalid(file, "no x86 thread info"))?;
    ti.gpregs
        .as_ref()
        .ok_or_else(|| invalid(file, "no general registers"))?;
    let fp = ti
        .fpregs
        .as_ref()
        .ok_or_else(|| invalid(file, "no FPU registers"))?;
    if let Some(xsave) = &fp.stasis_xsave
        && xsave.len() < 576
    {
        return Err(invalid(
            file,
            format!("XSAVE area of {} bytes is too short", xsave.len()),
        ));
    }
    if fp.stasis_xsave.is_none() && (fp.st_space.len() != 32 || fp.xmm_space.len() != 64) {
        return Err(invalid(file, "FPU registers are incomplete"));
    }
    let tc = core
        .tc
        .as_ref()
        .ok_or_else(|| invalid(file, "no task core"))?;
    if tc.task_state != task_state::ALIVE {
        return Err(invalid(
            file,
            format!("task state {} is not supported yet", tc.task_state),
        ));
    }
    if !tc.sigactions.is_empty() && tc.sigactions.len() != SIGACTION_COUNT {
        return Err(invalid(
            file,
            format!(
                "{} signal actions, expected {SIGACTION_COUNT}",
                tc.sigactions.len()
            ),
        ));
    }
    core.thread_core
        .as_ref()
        .ok_or_else(|| invalid(file, "no thread core"))?;
    Ok(())
}

fn check_vmas(mm: &pb::MmEntry, file: &str) -> Result<()> {
    let mut prev_end = 0u64;
    for v in &mm.vmas {
        if v.status & vma_status::VSYSCALL != 0 {
            continue;
        }
        let where_ = || format!("vma {:#x}-{:#x}", v.start, v.end);
        if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 || v.end <= v.start {
            return Err(invalid(
                file,
                format!("{} is not a page-aligned range", where_()),
            ));
        }
        if v.end > TASK_SIZE {
            return Err(invalid(file, format!("{} is outside user space", where_())));
        }
        if v.start < prev_end {
            return Err(invalid(
                file,
                format!("{} overlaps the previous vma", where_()),
            ));
        }
        prev_end = v.end;
    }
    Ok(())
}

fn check_pagemap(pagemap: &[pb::PagemapEntry], mm: &pb::MmEntry, file: &str) -> Result<()> {
    let private = vma_status::ANON_PRIVATE | vma_status::FILE_PRIVATE;
    let mut prev_end = 0u64;
    for e in pagemap {
        let flags = e.flags.unwrap_or(pe_flags::PRESENT);
        if flags & pe_flags::PRESENT == 0 {
            return Err(invalid(
                file,
                format!(
                    "entry at {:#x} is not in this dump (incremental dumps are not supported yet)",
                    e.vaddr
                ),
            ));
        }
        let pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| e.vaddr.checked_add(len))
            .filter(|end| *end <= TASK_SIZE)
            .ok_or_else(|| invalid(file, format!("entry at {:#x} has a bad size", e.vaddr)))?;
        if e.vaddr % PAGE_SIZE != 0 || e.vaddr < prev_end {
            return Err(invalid(
                file,
                format!("entry at {:#x} is misaligned or out of order", e.vaddr),
            ));
        }
        // Every stored page must belong to a private vma.
        let mut addr = e.vaddr;
        while addr < end {
            let v = mm
                .vmas
                .iter()
                .find(|v| v.start <= addr && addr < v.end && v.status & private != 0)
                .ok_or_else(|| invalid(file, format!("page {addr:#x} is not in a private vma")))?;
            addr = v.end.min(end);
        }
        prev_end = end;
    }
    Ok(())
}

/// The number of pages of a pagemap entry.
pub fn entry_pages(e: &pb::PagemapEntry) -> u64 {
    e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages))
}
