//! Reading a dump back: every image a process needs, checked for consistency before any
//! process is created, so bad or truncated images fail early with a clear message.

use std::collections::HashMap;

use stasis_images::consts::{IMG_VERSION, SIGACTION_COUNT, pe_flags, task_state, vma_status};
use stasis_images::{ImageDir, ImageKind, PAGE_SIZE, pb};
use stasis_sys::Pid;

use crate::error::{Result, invalid};

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
    /// Private pages that are the parent's very pages (shared copy-on-write since a
    /// fork): `[start, end)` ranges, in order, each inside a vma identical to one of the
    /// parent's. Not stored; the restored process inherits them from its restored parent.
    pub cow: Vec<(u64, u64)>,
    /// The fd table.
    pub fds: Vec<pb::FdinfoEntry>,
    /// cwd, root, umask.
    pub fs: pb::FsEntry,
    /// The other threads: tid and core.
    pub threads: Vec<(Pid, pb::CoreEntry)>,
}

/// A zombie: a pid in the tree with an exit status its parent has not collected.
#[derive(Debug)]
pub struct ZombieImage {
    /// Its pstree entry.
    pub pstree: pb::PstreeEntry,
    /// The wait status its parent will see.
    pub exit_code: u32,
}

impl ZombieImage {
    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pstree.pid as Pid
    }
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
    /// The live processes, root first, parents before children.
    pub processes: Vec<ProcessImage>,
    /// Zombies of the tree.
    pub zombies: Vec<ZombieImage>,
    /// `files.img` by id.
    pub files: HashMap<u32, pb::FileEntry>,
    /// Shared anonymous memory contents by shmid.
    pub shmem: HashMap<u64, ShmemImage>,
    /// Every seccomp filter (`seccomp.img`); threads point into the list.
    pub seccomp: Vec<pb::SeccompFilter>,
    /// Cgroup sets (`cgroup.img`), which processes point at by id.
    pub cgroups: Vec<pb::CgSetEntry>,
    /// Pipe contents, ghost files, remaps and memfd inodes.
    pub file_data: crate::files::FileData,
    /// Terminals (`tty-info.img`, `tty-data.img`).
    pub ttys: crate::files::TtyImages,
    /// The objects of the tree's own IPC namespace, if it had one.
    pub ipc: Option<crate::ipc::IpcImages>,
    /// TCP connections come back closed (`--tcp-close`; the dump had it, or the restore).
    pub tcp_close: bool,
    /// How the dump locked the network, as its inventory says (CRIU restores follow it).
    pub network_lock: Option<stasis_sys::netlock::Method>,
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
    check_tree(&pstree)?;
    let files: HashMap<u32, pb::FileEntry> = dir
        .read_all::<pb::FileEntry>(ImageKind::Files, 0)?
        .into_iter()
        .map(|f| (f.id, f))
        .collect();

    let mut processes = Vec::new();
    let mut zombies = Vec::new();
    let mut shmem = HashMap::new();
    for entry in pstree {
        let id = u64::from(entry.pid);
        let core: pb::CoreEntry = dir.read_one(ImageKind::Core, id)?;
        let state = core.tc.as_ref().map_or(0, |tc| tc.task_state);
        if state == task_state::ZOMBIE {
            let exit_code = core.tc.as_ref().map_or(0, |tc| tc.exit_code);
            zombies.push(ZombieImage {
                pstree: entry,
                exit_code,
            });
            continue;
        }
        let p = load_process(&dir, entry, core)?;
        for v in &p.mm.vmas {
            if v.status & vma_status::ANON_SHARED != 0
                && v.status & vma_status::SYSVIPC == 0
                && !shmem.contains_key(&v.shmid)
            {
                shmem.insert(v.shmid, load_shmem(&dir, v.shmid)?);
            }
        }
        processes.push(p);
    }
    if processes.first().is_none_or(|p| p.pstree.ppid != 0) {
        return Err(invalid(
            "pstree.img",
            "the root of the tree is not a live process",
        ));
    }
    check_inherited(&processes)?;
    for z in &zombies {
        if !processes.iter().any(|p| p.pstree.pid == z.pstree.ppid) {
            return Err(invalid(
                "pstree.img",
                format!("zombie {} has no live parent", z.pid()),
            ));
        }
    }
    let mut files = files;
    let relative = crate::files::absolute_unix_names(&mut files);
    let mut file_data = crate::files::load_data(&dir, &files)?;
    crate::files::absolute_unix_senders(&mut file_data.sk_queues, &relative);
    let ttys = crate::files::load_ttys(&dir)?;
    let ipc = match processes.first().and_then(|p| p.ids.ipc_ns_id) {
        Some(id)
            if dir
                .join(&ImageKind::IpcVar.file_name(u64::from(id)))
                .exists() =>
        {
            Some(crate::ipc::load(&dir, id)?)
        }
        _ => None,
    };
    for m in file_data.memfds.values() {
        let shmid = u64::from(m.shmid);
        if !shmem.contains_key(&shmid)
            && dir.join(&ImageKind::ShmemPagemap.file_name(shmid)).exists()
        {
            shmem.insert(shmid, load_shmem(&dir, shmid)?);
        }
    }
    let seccomp = match dir.open_optional(ImageKind::Seccomp, 0)? {
        Some(mut r) => r
            .next::<pb::SeccompEntry>()?
            .map(|e| e.seccomp_filters)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let cgroups = match dir.open_optional(ImageKind::Cgroup, 0)? {
        Some(mut r) => r
            .next::<pb::CgroupEntry>()?
            .map(|e| e.sets)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(Images {
        dir,
        processes,
        zombies,
        files,
        file_data,
        ttys,
        ipc,
        shmem,
        seccomp,
        cgroups,
        tcp_close: inventory.tcp_close == Some(true),
        network_lock: inventory
            .network_lock_method
            .and_then(stasis_sys::netlock::Method::from_criu_code),
    })
}

/// The tree must be a tree: unique pids, the root first with no parent, every other
/// process's parent listed before it.
fn check_tree(pstree: &[pb::PstreeEntry]) -> Result<()> {
    let file = "pstree.img";
    let Some(root) = pstree.first() else {
        return Err(invalid(file, "no processes"));
    };
    if root.ppid != 0 {
        return Err(invalid(
            file,
            format!("the root {} has a parent ({})", root.pid, root.ppid),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, e) in pstree.iter().enumerate() {
        if e.pid == 0 || e.pid > i32::MAX as u32 || !seen.insert(e.pid) {
            return Err(invalid(file, format!("bad or repeated pid {}", e.pid)));
        }
        if i > 0 && !pstree[..i].iter().any(|p| p.pid == e.ppid) {
            return Err(invalid(
                file,
                format!("parent {} of {} is not listed before it", e.ppid, e.pid),
            ));
        }
        if e.threads.first() != Some(&e.pid) {
            return Err(invalid(
                file,
                format!("process {}: its first thread is not itself", e.pid),
            ));
        }
        for t in &e.threads {
            if *t == 0 || *t > i32::MAX as u32 || (*t != e.pid && !seen.insert(*t)) {
                return Err(invalid(
                    file,
                    format!("process {}: bad or repeated tid {t}", e.pid),
                ));
            }
        }
    }
    Ok(())
}

fn load_process(
    dir: &ImageDir,
    pstree: pb::PstreeEntry,
    core: pb::CoreEntry,
) -> Result<ProcessImage> {
    let pid = pstree.pid as Pid;
    let id = u64::from(pstree.pid);
    check_core(&core, &ImageKind::Core.file_name(id), true)?;
    let mut threads = Vec::new();
    for &tid in pstree.threads.iter().skip(1) {
        let tcore: pb::CoreEntry = dir.read_one(ImageKind::Core, u64::from(tid))?;
        check_core(&tcore, &ImageKind::Core.file_name(u64::from(tid)), false)?;
        threads.push((tid as Pid, tcore));
    }
    let ids: pb::TaskKobjIdsEntry = dir.read_one(ImageKind::Ids, id)?;
    let mm: pb::MmEntry = dir.read_one(ImageKind::Mm, id)?;
    check_vmas(&mm, &ImageKind::Mm.file_name(id))?;
    let mut pm = dir.open_image(ImageKind::Pagemap, id)?;
    let head: pb::PagemapHead = pm.expect()?;
    let mut pagemap: Vec<pb::PagemapEntry> = pm.collect_all()?;
    check_pagemap(&pagemap, &mm, &ImageKind::Pagemap.file_name(id))?;
    let cow = pagemap
        .iter()
        .filter(|e| is_cow(e))
        .map(|e| (e.vaddr, e.vaddr + entry_pages(e) * PAGE_SIZE))
        .collect();
    pagemap.retain(|e| !is_cow(e));
    let fds: Vec<pb::FdinfoEntry> = dir.read_all(ImageKind::Fdinfo, u64::from(ids.files_id))?;
    let fs: pb::FsEntry = dir.read_one(ImageKind::Fs, id)?;
    let _ = pid;
    Ok(ProcessImage {
        pstree,
        core,
        ids,
        mm,
        pages_id: head.pages_id,
        pagemap,
        cow,
        fds,
        fs,
        threads,
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

fn check_core(core: &pb::CoreEntry, file: &str, leader: bool) -> Result<()> {
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
    if !leader {
        core.thread_core
            .as_ref()
            .ok_or_else(|| invalid(file, "no thread core"))?;
        return Ok(());
    }
    let tc = core
        .tc
        .as_ref()
        .ok_or_else(|| invalid(file, "no task core"))?;
    if tc.task_state != task_state::ALIVE && tc.task_state != task_state::STOPPED {
        return Err(invalid(
            file,
            format!("task state {} is not supported", tc.task_state),
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
        if flags & pe_flags::PRESENT == 0 && !is_cow(e) {
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

/// Whether a pagemap entry stands for the parent's pages (stored in the parent's images).
fn is_cow(e: &pb::PagemapEntry) -> bool {
    e.flags.unwrap_or(pe_flags::PRESENT) & (pe_flags::PRESENT | pe_flags::STASIS_COW_PARENT)
        == pe_flags::STASIS_COW_PARENT
}

/// Pages a process shares with its parent must lie in vmas it inherited unchanged from
/// a live parent in the tree, which is restored first and hands them down at the fork.
fn check_inherited(processes: &[ProcessImage]) -> Result<()> {
    for p in processes.iter().filter(|p| !p.cow.is_empty()) {
        let file = || ImageKind::Pagemap.file_name(u64::from(p.pstree.pid));
        let parent = processes
            .iter()
            .find(|q| q.pstree.pid == p.pstree.ppid)
            .ok_or_else(|| invalid(file(), "pages shared with a parent that is not restored"))?;
        for &(start, end) in &p.cow {
            let v = p
                .mm
                .vmas
                .iter()
                .find(|v| v.start <= start && end <= v.end)
                .ok_or_else(|| invalid(file(), format!("shared pages at {start:#x} span vmas")))?;
            if !parent.mm.vmas.iter().any(|pv| v.inherited_unchanged(pv)) {
                return Err(invalid(
                    file(),
                    format!(
                        "pages at {start:#x} are shared with parent {}, which has no such vma",
                        parent.pid()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The number of pages of a pagemap entry.
pub fn entry_pages(e: &pb::PagemapEntry) -> u64 {
    e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages))
}
