//! Rebuilding the address space: premapping every vma in its slot, filling it from the
//! pages images, and the restorer ops that move everything into place.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use stasis_images::consts::vma_status;
use stasis_images::{ImageKind, PAGE_SIZE, pb};
use stasis_sys::abi::{self, nr};
use std::sync::atomic::{AtomicUsize, Ordering};

use stasis_sys::mem::{FileWindow, Reservation};
use stasis_sys::uffd::{ReadWindow, Userfault};
use stasis_sys::{Pid, fs};

use crate::error::{RestoreError, Result, SysContext, invalid};
use crate::files::OpenedFiles;
use crate::image::{Images, ProcessImage, entry_pages};
use crate::layout::Layout;
use crate::program::Program;

/// A chunk of pages to read: destination address, length, offset in the pages image.
#[derive(Clone, Copy, Debug)]
struct Chunk<'a> {
    dest: u64,
    len: u64,
    file_offset: u64,
    /// Private anonymous memory without huge pages: filled with UFFDIO_COPY.
    by_uffd: bool,
    /// The slot was inherited from the parent and lies in this reservation (it is
    /// populated already, so it is filled with `pread`, which breaks the sharing of
    /// exactly the pages written).
    inherited: Option<&'a Reservation>,
}

/// A private vma's slot as a forked child finds it: the vma as imaged, where the slot
/// is, and the reservation it lies in (the parent's zone, or an ancestor's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct InheritedSlot<'a> {
    pub vma: &'a pb::VmaEntry,
    pub slot: u64,
    pub zone: &'a Reservation,
}

/// What a restore process hands down to the children it forks once its memory is
/// built: the slots of its private vmas, with the pages in them.
#[derive(Debug, Default)]
pub(crate) struct Inherited<'a> {
    pub slots: Vec<InheritedSlot<'a>>,
}

impl<'a> Inherited<'a> {
    /// The private slots of `p` as laid out in `layout`, to hand down.
    pub fn of(
        p: &'a ProcessImage,
        layout: &Layout,
        zone: &'a Reservation,
        adopted: &[(usize, InheritedSlot<'a>)],
    ) -> Inherited<'a> {
        let private = vma_status::ANON_PRIVATE | vma_status::FILE_PRIVATE;
        let slots =
            p.mm.vmas
                .iter()
                .zip(&layout.slots)
                .enumerate()
                .filter(|(_, (v, _))| v.status & private != 0)
                .filter_map(|(i, (vma, slot))| {
                    let zone = adopted
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map_or(zone, |(_, s)| s.zone);
                    slot.map(|slot| InheritedSlot { vma, slot, zone })
                })
                .collect();
        Inherited { slots }
    }

    /// The vmas of `p` that share pages with the parent, each with the parent's slot
    /// (inherited at the fork) that it keeps.
    pub fn adopt(&self, p: &ProcessImage) -> Result<Vec<(usize, InheritedSlot<'a>)>> {
        let mut out = Vec::new();
        for (i, v) in p.mm.vmas.iter().enumerate() {
            if !p.cow.iter().any(|&(s, e)| v.start <= s && e <= v.end) {
                continue;
            }
            let slot = self
                .slots
                .iter()
                .find(|s| v.inherited_unchanged(s.vma))
                .ok_or_else(|| {
                    RestoreError::Other(format!(
                        "process {}: vma {:#x}-{:#x} shares pages with the parent, which did \
                         not hand it down",
                        p.pid(),
                        v.start,
                        v.end
                    ))
                })?;
            out.push((i, *slot));
        }
        Ok(out)
    }
}

/// Most bytes one fill task covers (work is shared between threads by task).
const FILL_TASK: u64 = 32 << 20;

/// Whether a vma is filled by UFFDIO_COPY: private anonymous memory, unless it should get
/// transparent huge pages (UFFDIO_COPY places small pages; `pread` into a MADV_HUGEPAGE
/// slot faults in huge ones).
fn fills_by_uffd(v: &pb::VmaEntry) -> bool {
    v.status & vma_status::ANON_PRIVATE != 0 && v.madv.unwrap_or(0) & (1 << abi::MADV_HUGEPAGE) == 0
}

fn open_image_file(images: &Images, pid: Pid, name: &str) -> Result<File> {
    images
        .dir
        .open_raw(name)
        .map_err(RestoreError::from)
        .map_err(|e| match e {
            RestoreError::Image(stasis_images::Error::Missing { .. }) => invalid(
                name.to_owned(),
                format!("missing, but process {pid} needs it"),
            ),
            other => other,
        })
}

fn open_mapped_file(pid: Pid, reg: &pb::RegFileEntry, flags: u32) -> Result<OwnedFd> {
    let path = std::path::Path::new(&reg.name);
    let mode = (flags as i32 & libc::O_ACCMODE) | libc::O_CLOEXEC;
    fs::open(path, mode, 0).ctx(pid, || format!("open mapped file {}", reg.name))
}

/// Every shared anonymous memory object of the tree, created and filled once by stasis
/// before it forks anything, at fd numbers above the tree's; each restore process maps
/// its vmas from the ones it inherits, so processes that shared an object share it again.
#[derive(Debug, Default)]
pub struct SharedObjects {
    by_id: HashMap<u64, OwnedFd>,
}

impl SharedObjects {
    /// Creates and fills every object any process maps, at fd numbers >= `high`.
    pub fn create_all(images: &Images, high: RawFd) -> Result<SharedObjects> {
        let mut sizes: HashMap<u64, (u64, Pid)> = HashMap::new();
        for p in &images.processes {
            for v in p.mm.vmas.iter().filter(|v| {
                v.status & vma_status::ANON_SHARED != 0 && v.status & vma_status::SYSVIPC == 0
            }) {
                let e = sizes.entry(v.shmid).or_insert((0, p.pid()));
                e.0 = e.0.max(v.pgoff + (v.end - v.start));
            }
        }
        let zero = fs::open(
            std::path::Path::new("/dev/zero"),
            libc::O_RDWR | libc::O_CLOEXEC,
            0,
        )
        .map_err(|errno| RestoreError::Sys {
            pid: images.processes.first().map_or(0, |p| p.pid()),
            what: "open /dev/zero".into(),
            errno,
        })?;
        let mut by_id = HashMap::new();
        let mut ids: Vec<_> = sizes.into_iter().collect();
        ids.sort_unstable();
        for (shmid, (size, pid)) in ids {
            let len = size.next_multiple_of(PAGE_SIZE);
            let what = || format!("create shared memory object {shmid}");
            // A shared mapping of /dev/zero is a new shared anonymous object, the same
            // kind MAP_SHARED|MAP_ANONYMOUS makes.
            let window = FileWindow::new(zero.as_fd(), len).ctx(pid, what)?;
            fill_object(images, pid, shmid, &window, len)?;
            let file = window.backing_file().ctx(pid, what)?;
            let file = fs::move_above(file, high).ctx(pid, what)?;
            by_id.insert(shmid, file);
        }
        Ok(SharedObjects { by_id })
    }

    /// The object with this shmid.
    pub fn get(&self, shmid: u64) -> Option<&OwnedFd> {
        self.by_id.get(&shmid)
    }
}

/// Fills a shared memory object mapped at `window` (`len` bytes) with its stored pages
/// (`pagemap-shmem-SHMID.img`); an object without stored pages stays zero.
pub(crate) fn fill_object(
    images: &Images,
    pid: Pid,
    shmid: u64,
    window: &FileWindow,
    len: u64,
) -> Result<()> {
    let Some(sh) = images.shmem.get(&shmid) else {
        return Ok(());
    };
    let pages = open_image_file(
        images,
        pid,
        &ImageKind::Pages.file_name(u64::from(sh.pages_id)),
    )?;
    let mut offset = 0u64;
    for e in &sh.pagemap {
        let bytes = entry_pages(e) * PAGE_SIZE;
        if e.vaddr.checked_add(bytes).is_none_or(|end| end > len) {
            return Err(invalid(
                ImageKind::ShmemPagemap.file_name(shmid),
                format!(
                    "entry at offset {:#x} is beyond the object's {len} bytes",
                    e.vaddr
                ),
            ));
        }
        window
            .read_file(pages.as_fd(), e.vaddr, bytes, offset)
            .ctx(pid, || {
                format!("read shared memory object {shmid} contents")
            })?;
        offset += bytes;
    }
    Ok(())
}

/// Premaps every vma of `p` into its slot (shared anonymous ones from the inherited
/// objects) and fills its private memory from the images. The `adopted` vmas are in
/// slots inherited from the parent: they get the process's own pages written over the
/// shared ones, and lose the parent's pages the process did not have.
pub fn premap_and_fill(
    images: &Images,
    shared: &SharedObjects,
    files: &OpenedFiles,
    p: &ProcessImage,
    layout: &Layout,
    zone: &Reservation,
    adopted: &[(usize, InheritedSlot<'_>)],
) -> Result<()> {
    let pid = p.pid();
    let rw = libc::PROT_READ | libc::PROT_WRITE;

    for (i, (v, slot)) in p.mm.vmas.iter().zip(&layout.slots).enumerate() {
        let Some(slot) = *slot else { continue };
        if let Some((_, inherited)) = adopted.iter().find(|(j, _)| *j == i) {
            drop_parent_only_pages(p, v, inherited)?;
            continue;
        }
        let len = v.end - v.start;
        let what = || format!("premap vma {:#x}-{:#x}", v.start, v.end);
        let growsdown = v.flags & libc::MAP_GROWSDOWN as u32;
        let norerserve = v.flags & libc::MAP_NORESERVE as u32;
        let extra = (growsdown | norerserve) as i32;
        if v.status & vma_status::ANON_PRIVATE != 0 {
            zone.map(
                slot,
                len,
                rw,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
                None,
                0,
            )
            .ctx(pid, what)?;
        } else if v.status & vma_status::SYSVIPC != 0 {
            // A SysV segment of the tree's IPC namespace, made by the root already.
            let seg = crate::ipc::segment_len(images, v.shmid);
            if seg != Some(len) || v.pgoff != 0 {
                return Err(RestoreError::Unsupported {
                    pid,
                    resource: format!("vma {:#x}-{:#x} (SysV shm {})", v.start, v.end, v.shmid),
                    reason: "only whole-segment attaches of the tree's segments are restored"
                        .into(),
                });
            }
            let read_only = v.prot & libc::PROT_WRITE as u32 == 0;
            zone.attach_shm(slot, len, v.shmid as i32, read_only)
                .ctx(pid, what)?;
        } else if v.status & vma_status::ANON_SHARED != 0 {
            let file = shared.get(v.shmid).ok_or_else(|| {
                invalid(
                    "mm",
                    format!("vma {:#x} uses unknown shared object {}", v.start, v.shmid),
                )
            })?;
            zone.map(
                slot,
                len,
                rw,
                libc::MAP_SHARED | extra,
                Some(file.as_fd()),
                v.pgoff,
            )
            .ctx(pid, what)?;
        } else if v.status & vma_status::SOCKET != 0 {
            // A packet socket's ring, mapped from the socket made again (empty).
            let fd = files.mapped(v.shmid as u32).ok_or_else(|| {
                invalid(
                    "mm",
                    format!(
                        "vma {:#x} maps socket file {}, which is not open",
                        v.start, v.shmid
                    ),
                )
            })?;
            zone.map(
                slot,
                len,
                v.prot as i32,
                libc::MAP_SHARED | extra,
                Some(fd.as_fd()),
                v.pgoff,
            )
            .ctx(pid, what)?;
        } else if v.status & (vma_status::FILE_PRIVATE | vma_status::FILE_SHARED) != 0 {
            // memfds, ghosts and linked files were opened by stasis; others by path here.
            let opened;
            let fd = match files.mapped(v.shmid as u32) {
                Some(fd) => fd.as_fd(),
                None => {
                    let reg = images.reg_file(v.shmid as u32, &format!("vma {:#x}", v.start))?;
                    let flags = v.fdflags.unwrap_or(libc::O_RDONLY as u32);
                    opened = open_mapped_file(pid, reg, flags)?;
                    opened.as_fd()
                }
            };
            let (prot, share) = if v.status & vma_status::FILE_SHARED != 0 {
                // Shared mappings get their final protection now: no filling happens.
                (v.prot as i32, libc::MAP_SHARED)
            } else {
                (rw, libc::MAP_PRIVATE)
            };
            zone.map(slot, len, prot, share | extra, Some(fd), v.pgoff)
                .ctx(pid, what)?;
        } else {
            return Err(RestoreError::Unsupported {
                pid,
                resource: format!("vma {:#x}-{:#x} (status {:#x})", v.start, v.end, v.status),
                reason: "this kind of memory area cannot be restored yet".into(),
            });
        }
        if let Some(madv) = v.madv
            && madv & (1 << abi::MADV_HUGEPAGE) != 0
        {
            // Fill with huge pages where the original had them asked for.
            zone.advise(slot, len, libc::MADV_HUGEPAGE)
                .ctx(pid, || "madvise(MADV_HUGEPAGE)".into())?;
        }
    }

    let chunks = private_chunks(p, layout, adopted)?;
    let pages_name = ImageKind::Pages.file_name(u64::from(p.pages_id));
    let pages = open_image_file(images, pid, &pages_name)?;
    let total: u64 = chunks.iter().map(|c| c.len).sum();
    let size = pages.metadata().map(|m| m.len()).unwrap_or(0);
    if size < total {
        return Err(invalid(
            pages_name,
            format!("{size} bytes, but the pagemap needs {total}"),
        ));
    }
    fill(pid, zone, layout, p, &pages, &chunks)
}

/// In a vma inherited from the parent, the pages neither stored for the process nor
/// shared with the parent were absent from it at the dump: drop the parent's there
/// (anonymous memory reads as zeros again, a private file mapping as the file).
fn drop_parent_only_pages(
    p: &ProcessImage,
    v: &pb::VmaEntry,
    inherited: &InheritedSlot<'_>,
) -> Result<()> {
    let mut present: Vec<(u64, u64)> = p
        .pagemap
        .iter()
        .map(|e| (e.vaddr, e.vaddr + entry_pages(e) * PAGE_SIZE))
        .chain(p.cow.iter().copied())
        .filter(|&(s, e)| s < v.end && v.start < e)
        .collect();
    present.sort_unstable();
    let mut at = v.start;
    for (s, e) in present.into_iter().chain([(v.end, v.end)]) {
        if s > at {
            let slot = inherited.slot + (at - v.start);
            inherited
                .zone
                .advise(slot, s - at, libc::MADV_DONTNEED)
                .ctx(p.pid(), || {
                    format!("drop the parent's pages at {at:#x} the process did not have")
                })?;
        }
        at = at.max(e);
    }
    Ok(())
}

/// Splits the pagemap into chunks within single vmas, with their slot addresses.
fn private_chunks<'a>(
    p: &ProcessImage,
    layout: &Layout,
    adopted: &[(usize, InheritedSlot<'a>)],
) -> Result<Vec<Chunk<'a>>> {
    let mut chunks = Vec::new();
    let mut file_offset = 0u64;
    let mut vi = 0usize;
    for e in &p.pagemap {
        let mut addr = e.vaddr;
        let end = e.vaddr + entry_pages(e) * PAGE_SIZE;
        while addr < end {
            while vi < p.mm.vmas.len() && p.mm.vmas[vi].end <= addr {
                vi += 1;
            }
            let v =
                p.mm.vmas
                    .get(vi)
                    .filter(|v| v.start <= addr)
                    .ok_or_else(|| {
                        invalid("pagemap", format!("page {addr:#x} is outside every vma"))
                    })?;
            let slot = layout.slots[vi]
                .ok_or_else(|| invalid("pagemap", format!("page {addr:#x} is in a kernel area")))?;
            let mut len = end.min(v.end) - addr;
            let inherited = adopted.iter().find(|(j, _)| *j == vi).map(|(_, s)| s.zone);
            let by_uffd = fills_by_uffd(v) && inherited.is_none();
            // Cut into tasks so two threads can share the work evenly.
            while len > 0 {
                let n = len.min(FILL_TASK);
                chunks.push(Chunk {
                    dest: slot + (addr - v.start),
                    len: n,
                    file_offset,
                    by_uffd,
                    inherited,
                });
                file_offset += n;
                addr += n;
                len -= n;
            }
        }
    }
    Ok(chunks)
}

/// Fills the chunks straight into place: UFFDIO_COPY from a mapping of the pages image
/// for private anonymous memory (allocate-and-copy in one step, no zeroing, no fault per
/// page), `pread` for the rest; two threads take tasks from a shared counter.
fn fill(
    pid: Pid,
    zone: &Reservation,
    layout: &Layout,
    p: &ProcessImage,
    pages: &File,
    chunks: &[Chunk<'_>],
) -> Result<()> {
    let uffd = if chunks.iter().any(|c| c.by_uffd) {
        let uffd = Userfault::new().ctx(pid, || "open a userfaultfd".into())?;
        for (v, slot) in p.mm.vmas.iter().zip(&layout.slots) {
            if let Some(slot) = slot
                && fills_by_uffd(v)
                && zone.contains(*slot, v.end - v.start).is_ok()
            {
                uffd.register(zone, *slot, v.end - v.start).ctx(pid, || {
                    format!("register vma {:#x} with userfaultfd", v.start)
                })?;
            }
        }
        let size = pages.metadata().map(|m| m.len()).unwrap_or(0);
        let window =
            ReadWindow::new(pages.as_fd(), size).ctx(pid, || "map the pages image".into())?;
        Some((uffd, window))
    } else {
        None
    };
    let next = AtomicUsize::new(0);
    let work = || -> Result<()> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(c) = chunks.get(i) else {
                return Ok(());
            };
            match (&uffd, c.inherited) {
                (Some((uffd, window)), None) if c.by_uffd => {
                    uffd.copy(zone, c.dest, window, c.file_offset, c.len)
                }
                (_, inherited) => {
                    inherited
                        .unwrap_or(zone)
                        .read_file(pages.as_fd(), c.dest, c.len, c.file_offset)
                }
            }
            .ctx(pid, || format!("fill pages at {:#x}", c.dest))?;
        }
    };
    let total: u64 = chunks.iter().map(|c| c.len).sum();
    if total < 2 * FILL_TASK {
        return work();
    }
    // The userfaultfd (and its registrations) go away when `uffd` is dropped, before any
    // code could touch a page that was not filled.
    std::thread::scope(|s| {
        let other = s.spawn(work);
        let mine = work();
        let theirs = other.join().unwrap_or_else(|_| {
            Err(RestoreError::Other(format!(
                "process {pid}: page filling thread panicked"
            )))
        });
        mine.and(theirs)
    })
}

/// The ops that move the premapped memory into place and give it its final shape.
pub fn emit_moves(prog: &mut Program, p: &ProcessImage, layout: &Layout) -> Result<()> {
    let pid = p.pid();
    let fixed = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    // 1. Park the kernel's vDSO pieces inside the zone.
    for (cur, len, slot) in &layout.vdso_slots {
        prog.syscall_expect(
            nr::MREMAP,
            [*cur, *len, *len, fixed, *slot, 0],
            *slot,
            format!("park vDSO piece {cur:#x}"),
        );
    }
    // 2. Unmap every byte of stasis (and of the parent's zone) outside the zone and the
    //    slots inherited from the parent.
    let mut keep = layout.inherited.clone();
    keep.push((layout.zone_start, layout.zone_end));
    keep.sort_unstable();
    let mut at = 0u64;
    for (start, end) in keep.into_iter().chain([(crate::image::TASK_SIZE, 0)]) {
        if start > at {
            prog.syscall(
                nr::MUNMAP,
                [at, start - at, 0, 0, 0, 0],
                format!("unmap {at:#x}-{start:#x} outside the zone"),
            );
        }
        at = at.max(end);
    }
    // 3. Move every vma to its address.
    for (v, slot) in p.mm.vmas.iter().zip(&layout.slots) {
        let Some(slot) = *slot else { continue };
        let len = v.end - v.start;
        prog.syscall_expect(
            nr::MREMAP,
            [slot, len, len, fixed, v.start, 0],
            v.start,
            format!("move vma {:#x}-{:#x} into place", v.start, v.end),
        );
    }
    // 4. The vDSO: the kernel's pieces go where the image had them, if the layouts match.
    let image_vdso: Vec<&pb::VmaEntry> =
        p.mm.vmas
            .iter()
            .filter(|v| v.status & (vma_status::VDSO | vma_status::VVAR) != 0)
            .collect();
    if !image_vdso.is_empty() {
        let sizes_match = image_vdso.len() == layout.vdso_slots.len()
            && image_vdso
                .iter()
                .zip(&layout.vdso_slots)
                .all(|(v, (_, len, _))| v.end - v.start == *len);
        if !sizes_match {
            return Err(RestoreError::Unsupported {
                pid,
                resource: "vDSO".into(),
                reason: format!(
                    "the image's vDSO layout ({}) differs from this kernel's ({}); restoring \
                     across kernels with different vDSOs is not supported yet",
                    image_vdso
                        .iter()
                        .map(|v| format!("{:#x}", v.end - v.start))
                        .collect::<Vec<_>>()
                        .join("+"),
                    layout
                        .vdso_slots
                        .iter()
                        .map(|(_, l, _)| format!("{l:#x}"))
                        .collect::<Vec<_>>()
                        .join("+"),
                ),
            });
        }
        for (v, (_, len, slot)) in image_vdso.iter().zip(&layout.vdso_slots) {
            prog.syscall_expect(
                nr::MREMAP,
                [*slot, *len, *len, fixed, v.start, 0],
                v.start,
                format!("move vDSO piece to {:#x}", v.start),
            );
        }
    }
    // 5. Unmap what is left of the zone around the bootstrap region.
    let bootstrap_end = layout.bootstrap + crate::layout::BOOTSTRAP_RESERVE;
    prog.syscall(
        nr::MUNMAP,
        [bootstrap_end, layout.zone_end - bootstrap_end, 0, 0, 0, 0],
        "unmap the zone",
    );
    // 6. Final protections and advice.
    for v in p.mm.vmas.iter().filter(|v| crate::layout::is_premapped(v)) {
        let len = v.end - v.start;
        if v.status & vma_status::FILE_SHARED == 0 {
            prog.syscall(
                nr::MPROTECT,
                [v.start, len, u64::from(v.prot), 0, 0, 0],
                format!("mprotect vma {:#x}", v.start),
            );
        }
        let madv = v.madv.unwrap_or(0);
        for advice in 0..64u64 {
            // MADV_HUGEPAGE was applied in the slot already and moved along.
            if madv & (1 << advice) != 0 && advice != u64::from(abi::MADV_HUGEPAGE) {
                prog.syscall(
                    nr::MADVISE,
                    [v.start, len, advice, 0, 0, 0],
                    format!("madvise({advice}) vma {:#x}", v.start),
                );
            }
        }
    }
    Ok(())
}
