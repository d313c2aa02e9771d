//! The human summary of an image directory: the process tree, then per process its
//! registers, signal state, memory map, files and filesystem context, then dump statistics,
//! images not covered above, and every problem found on the way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use stasis_images::consts::{FD_CLOEXEC, IMG_VERSION, pe_flags, task_state, vma_status as vs};
use stasis_images::decode::{Decoded, Entry};
use stasis_images::{PAGE_SIZE, pb};

use super::{ImageSet, names};

/// Renders the summary of `set`.
pub(crate) fn render(set: &ImageSet) -> String {
    let mut s = Summary::new(set);
    s.header();
    let procs = s.processes();
    s.tree(&procs);
    for p in &procs {
        s.process(p);
    }
    s.check_pages_images();
    s.stats();
    s.others();
    s.problems();
    s.out
}

/// A run of pages of a pagemap image.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    end: u64,
    /// The contents are in this dump's pages image...
    present: bool,
    /// ...or in a parent (pre-)dump's...
    parent: bool,
    /// ...or they are the parent process's, shared copy-on-write (stasis extension).
    cow: bool,
    /// Offset of the contents in the pages image, for present runs.
    offset: u64,
}

/// A decoded pagemap image.
#[derive(Debug)]
struct Pagemap {
    pages_id: u32,
    /// Sorted by start address (or offset, for shmem).
    runs: Vec<Run>,
}

impl Pagemap {
    fn from_entries(entries: &[Entry]) -> Option<Pagemap> {
        let Some(Entry::PagemapHead(head)) = entries.first() else {
            return None;
        };
        let mut offset = 0u64;
        let mut runs = Vec::new();
        for e in &entries[1..] {
            let Entry::Pagemap(p) = e else { continue };
            let pages = p.nr_pages.unwrap_or(u64::from(p.compat_nr_pages));
            let len = pages.saturating_mul(PAGE_SIZE);
            let flags = p.flags.unwrap_or(0);
            let parent = p.in_parent == Some(true) || flags & pe_flags::PARENT != 0;
            // Images from before the flags field mark only what is in the parent.
            let present = p.flags.map_or(!parent, |f| f & pe_flags::PRESENT != 0);
            runs.push(Run {
                start: p.vaddr,
                end: p.vaddr.saturating_add(len),
                present,
                parent,
                cow: !present && flags & pe_flags::STASIS_COW_PARENT != 0,
                offset,
            });
            if present {
                offset = offset.saturating_add(len);
            }
        }
        runs.sort_by_key(|r| r.start);
        Some(Pagemap {
            pages_id: head.pages_id,
            runs,
        })
    }

    fn total(&self, pick: impl Fn(&Run) -> bool) -> u64 {
        self.runs
            .iter()
            .filter(|r| pick(r))
            .fold(0, |acc, r| acc.saturating_add(r.end - r.start))
    }

    /// Bytes of this dump's pages within `[start, end)`.
    fn stored_in(&self, start: u64, end: u64) -> u64 {
        let first = self.runs.partition_point(|r| r.end <= start);
        self.runs[first..]
            .iter()
            .take_while(|r| r.start < end)
            .filter(|r| r.present)
            .fold(0, |acc, r| {
                acc.saturating_add(r.end.min(end).saturating_sub(r.start.max(start)))
            })
    }
}

fn as_inventory(e: &Entry) -> Option<&pb::InventoryEntry> {
    match e {
        Entry::Inventory(v) => Some(v),
        _ => None,
    }
}
fn as_core(e: &Entry) -> Option<&pb::CoreEntry> {
    match e {
        Entry::Core(v) => Some(v),
        _ => None,
    }
}
fn as_ids(e: &Entry) -> Option<&pb::TaskKobjIdsEntry> {
    match e {
        Entry::Ids(v) => Some(v),
        _ => None,
    }
}
fn as_mm(e: &Entry) -> Option<&pb::MmEntry> {
    match e {
        Entry::Mm(v) => Some(v),
        _ => None,
    }
}
fn as_fs(e: &Entry) -> Option<&pb::FsEntry> {
    match e {
        Entry::Fs(v) => Some(v),
        _ => None,
    }
}
fn as_stats(e: &Entry) -> Option<&pb::StatsEntry> {
    match e {
        Entry::Stats(v) => Some(v),
        _ => None,
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

struct Summary<'a> {
    set: &'a ImageSet,
    out: String,
    problems: Vec<String>,
    /// Images the summary covered; the rest are listed as other images.
    used: HashSet<String>,
    /// `files.img` by id.
    files: HashMap<u32, &'a pb::FileEntry>,
    /// Shmem pagemaps by shmid, loaded on first use.
    shmem: HashMap<u64, Option<Pagemap>>,
}

impl<'a> Summary<'a> {
    fn new(set: &'a ImageSet) -> Self {
        let mut s = Summary {
            set,
            out: String::new(),
            problems: Vec::new(),
            used: HashSet::new(),
            files: HashMap::new(),
            shmem: HashMap::new(),
        };
        for (name, res) in &set.images {
            match res {
                Err(e) => {
                    // Decode errors start with the file name already.
                    let e = e.to_string();
                    let why = e.strip_prefix(&format!("{name}: ")).unwrap_or(&e);
                    s.problem(format!("{name}: unreadable ({why})"));
                }
                Ok(Decoded::Unknown { magic }) => {
                    s.problem(format!("{name}: unknown magic {magic:#010x}"));
                }
                Ok(_) => {}
            }
        }
        if let Some(entries) = s.entries("files.img", None) {
            for e in entries {
                if let Entry::File(f) = e {
                    s.files.insert(f.id, f);
                }
            }
        }
        s
    }

    fn line(&mut self, text: impl AsRef<str>) {
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }

    fn problem(&mut self, text: String) {
        if !self.problems.contains(&text) {
            self.problems.push(text);
        }
    }

    /// The entries of image `name`, or `None` when it is missing or unreadable. A missing
    /// image is a problem when `needed_for` says what needs it.
    fn entries(&mut self, name: &str, needed_for: Option<&str>) -> Option<&'a [Entry]> {
        self.used.insert(name.to_owned());
        match self.set.images.get(name) {
            Some(Ok(d)) if d.kind().is_some() => Some(d.entries()),
            Some(_) => None,
            None => {
                if let Some(why) = needed_for {
                    self.problem(format!("{name}: missing ({why})"));
                }
                None
            }
        }
    }

    /// The first entry of `name` that `pick` accepts; an image without one is a problem.
    fn one<T: ?Sized>(
        &mut self,
        name: &str,
        needed_for: Option<&str>,
        what: &str,
        pick: impl Fn(&'a Entry) -> Option<&'a T>,
    ) -> Option<&'a T> {
        let entries = self.entries(name, needed_for)?;
        let found = entries.iter().find_map(pick);
        if found.is_none() {
            self.problem(format!("{name}: holds no {what} entry"));
        }
        found
    }

    /// Why image `name` cannot be shown, for inline notes.
    fn unavailable(&self, name: &str) -> String {
        let why = match self.set.images.get(name) {
            None => "missing",
            Some(Err(_)) => "unreadable",
            Some(Ok(Decoded::Unknown { .. })) => "of unknown kind",
            Some(Ok(_)) => "incomplete",
        };
        format!("unavailable ({name} is {why})")
    }

    /// The path of file `id` of `files.img`, or a placeholder.
    fn path(&mut self, id: u32) -> String {
        match self.files.get(&id) {
            Some(f) => {
                if let Some(reg) = &f.reg {
                    reg.name.clone()
                } else {
                    format!("<{} file {id}>", file_type_name(f.r#type))
                }
            }
            None => {
                self.problem(format!("files.img: no file with id {id}"));
                format!("<file {id}?>")
            }
        }
    }

    fn header(&mut self) {
        let inv = self.one(
            "inventory.img",
            Some("every complete dump has one"),
            "inventory",
            as_inventory,
        );
        let mut notes = Vec::new();
        if let Some(inv) = inv {
            notes.push(if inv.img_version == IMG_VERSION {
                "CRIU image format v1.1".to_owned()
            } else {
                format!("image format version {}", inv.img_version)
            });
            if let Some(up) = inv.dump_uptime {
                notes.push(format!("dumped {} after boot", names::duration_us(up)));
            }
        }
        let mut head = format!("Images in {}", self.set.dir.display());
        if !notes.is_empty() {
            head += &format!(" ({})", notes.join(", "));
        }
        self.line(head);
    }

    /// The processes of `pstree.img`, or (without one) one per core image.
    fn processes(&mut self) -> Vec<pb::PstreeEntry> {
        if let Some(entries) = self.entries("pstree.img", Some("it lists the processes")) {
            return entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Pstree(p) => Some(p.clone()),
                    _ => None,
                })
                .collect();
        }
        self.set
            .images
            .keys()
            .filter_map(|n| n.strip_prefix("core-")?.strip_suffix(".img")?.parse().ok())
            .map(|pid| pb::PstreeEntry {
                pid,
                threads: vec![pid],
                ..Default::default()
            })
            .collect()
    }

    /// The command name in a core image, without noting problems (the process section does).
    fn comm(&self, pid: u32) -> Option<&'a str> {
        let entries = self
            .set
            .images
            .get(&format!("core-{pid}.img"))?
            .as_ref()
            .ok()?;
        let core = entries.entries().iter().find_map(as_core)?;
        Some(core.tc.as_ref()?.comm.as_str())
    }

    fn tree(&mut self, procs: &[pb::PstreeEntry]) {
        if procs.is_empty() {
            self.line("No processes.");
            return;
        }
        self.line("Process tree:");
        let pids: HashSet<u32> = procs.iter().map(|p| p.pid).collect();
        let mut children: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut stack = Vec::new();
        for (i, p) in procs.iter().enumerate() {
            if p.ppid != 0 && pids.contains(&p.ppid) && p.ppid != p.pid {
                children.entry(p.ppid).or_default().push(i);
            } else {
                stack.push((i, 0usize));
            }
        }
        stack.reverse();
        let mut seen = vec![false; procs.len()];
        loop {
            let Some((i, depth)) = stack.pop() else {
                // Whatever was not reached hangs off a cycle of parents: show it flat.
                match seen.iter().position(|s| !s) {
                    Some(i) => {
                        self.problem(format!(
                            "pstree.img: process {} is in a cycle of parents",
                            procs[i].pid
                        ));
                        stack.push((i, 0));
                        continue;
                    }
                    None => break,
                }
            };
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            let p = &procs[i];
            let comm = self.comm(p.pid).unwrap_or("?");
            self.line(format!(
                "{}  {} {comm}  (ppid {}, pgid {}, sid {}, {})",
                "  ".repeat(depth),
                p.pid,
                p.ppid,
                p.pgid,
                p.sid,
                plural(p.threads.len(), "thread", "threads")
            ));
            if let Some(kids) = children.get(&p.pid) {
                stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
            }
        }
    }

    fn process(&mut self, p: &pb::PstreeEntry) {
        let pid = p.pid;
        let need = format!("process {pid} is in the tree");
        let core = self.one(&format!("core-{pid}.img"), Some(&need), "core", as_core);
        let tc = core.and_then(|c| c.tc.as_ref());
        let mm = self.one(&format!("mm-{pid}.img"), Some(&need), "mm", as_mm);
        let pagemap_name = format!("pagemap-{pid}.img");
        let pagemap = self
            .entries(&pagemap_name, Some(&need))
            .and_then(Pagemap::from_entries);

        let mut head = format!("\nProcess {pid} ({})", tc.map_or("?", |t| t.comm.as_str()));
        if let Some(tc) = tc {
            head += &format!(": {}", task_state_desc(tc));
        }
        if let Some(mm) = mm {
            head += &format!(", {}", self.path(mm.exe_file_id));
        }
        self.line(head);

        self.threads(p, core, mm, pagemap.as_ref());
        if let Some(tc) = tc {
            let sig = signals(tc, core.and_then(|c| c.thread_core.as_ref()));
            self.line(format!("  signals: {sig}"));
        }
        match mm {
            Some(mm) => self.memory(pid, mm, pagemap.as_ref(), &pagemap_name),
            None => {
                let u = self.unavailable(&format!("mm-{pid}.img"));
                self.line(format!("  memory: {u}"));
            }
        }
        let ids = self
            .one(&format!("ids-{pid}.img"), None, "ids", as_ids)
            .or_else(|| core.and_then(|c| c.ids.as_ref()));
        match ids {
            Some(ids) => self.files(pid, ids.files_id),
            None => {
                self.problem(format!(
                    "ids-{pid}.img: missing (it names the fd table of process {pid})"
                ));
                self.line("  files: unavailable (no ids image)");
            }
        }
        let fs_name = format!("fs-{pid}.img");
        match self.one(&fs_name, Some(&need), "fs", as_fs) {
            Some(fs) => {
                let cwd = self.path(fs.cwd_id);
                let root = self.path(fs.root_id);
                let umask = fs
                    .umask
                    .map_or(String::new(), |u| format!(", umask {u:03o}"));
                self.line(format!("  cwd {cwd}, root {root}{umask}"));
            }
            None => {
                let u = self.unavailable(&fs_name);
                self.line(format!("  cwd, root: {u}"));
            }
        }
        let thread_core = core.and_then(|c| c.thread_core.as_ref());
        if let Some(creds) = thread_core.and_then(|t| t.creds.as_ref()) {
            self.line(format!("  creds: {}", creds_desc(creds)));
        }
        let other = other_state(tc, thread_core, mm);
        if !other.is_empty() {
            self.line(format!("  other: {}", other.join(", ")));
        }
    }

    /// Registers (and the FPU of the main thread); one line per thread when there are
    /// several.
    fn threads(
        &mut self,
        p: &pb::PstreeEntry,
        core: Option<&'a pb::CoreEntry>,
        mm: Option<&pb::MmEntry>,
        pagemap: Option<&Pagemap>,
    ) {
        let many = p.threads.len() > 1;
        for &tid in &p.threads {
            let name = format!("core-{tid}.img");
            let c = if tid == p.pid {
                core
            } else {
                let need = format!("thread {tid} of process {}", p.pid);
                self.one(&name, Some(&need), "core", as_core)
            };
            let label = if many {
                format!("thread {tid}")
            } else {
                "registers".to_owned()
            };
            let Some(c) = c else {
                let u = self.unavailable(&name);
                self.line(format!("  {label}: {u}"));
                continue;
            };
            let Some(ti) = &c.thread_info else {
                self.problem(format!("{name}: no x86 registers"));
                self.line(format!("  {label}: no x86 registers"));
                continue;
            };
            let mut text = self.registers(ti, mm, pagemap);
            if many {
                let tcore = c.thread_core.as_ref();
                if let Some(name) = tcore.and_then(|t| t.comm.as_deref()) {
                    text = format!("({name}) {text}");
                }
                if let Some(mask) = tcore.and_then(|t| t.blk_sigset) {
                    text += &format!("; blocked: {}", names::sigset(mask));
                }
            }
            self.line(format!("  {label}: {text}"));
            if tid == p.pid
                && let Some(fpu) = fpu_desc(ti, c.tc.as_ref())
            {
                self.line(format!("  fpu: {fpu}"));
            }
        }
    }

    fn registers(
        &self,
        ti: &pb::ThreadInfoX86,
        mm: Option<&pb::MmEntry>,
        pagemap: Option<&Pagemap>,
    ) -> String {
        let Some(r) = &ti.gpregs else {
            return "no general registers".to_owned();
        };
        let mut s = format!("rip {:#x}  rsp {:#x}  rax {:#x}", r.ip, r.sp, r.ax);
        if r.mode == Some(pb::UserX86RegsMode::Compat as i32) {
            s += "  (32-bit)";
        }
        // -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK.
        let restarting = matches!(r.ax as i64, -516 | -514 | -513 | -512);
        if r.orig_ax != u64::MAX {
            // As CRIU saves it: inside the syscall, the restart left to the restore.
            let restart = if restarting { ", will restart" } else { "" };
            s += &format!(" (in syscall {}{restart})", syscall_desc(r.orig_ax));
        } else if self.code_at(mm, pagemap, r.ip) == Some([0x0f, 0x05]) {
            // As stasis saves it: rewound onto the `syscall` instruction, number in rax.
            s += &format!(" (in syscall {}, will restart)", syscall_desc(r.ax));
        }
        s
    }

    /// The two bytes of code at `ip`: from the pages image if stored, else from the mapped
    /// file (which restore maps again, so it must not have changed).
    fn code_at(
        &self,
        mm: Option<&pb::MmEntry>,
        pagemap: Option<&Pagemap>,
        ip: u64,
    ) -> Option<[u8; 2]> {
        let end = ip.checked_add(2)?;
        let read = |path: std::path::PathBuf, off: u64| {
            let mut buf = [0u8; 2];
            File::open(path).ok()?.read_exact_at(&mut buf, off).ok()?;
            Some(buf)
        };
        if let Some(pm) = pagemap
            && let Some(run) = pm
                .runs
                .iter()
                .find(|r| r.present && r.start <= ip && end <= r.end)
        {
            let name = format!("pages-{}.img", pm.pages_id);
            return read(
                self.set.dir.join(name),
                run.offset.saturating_add(ip - run.start),
            );
        }
        let vma = mm?.vmas.iter().find(|v| v.start <= ip && end <= v.end)?;
        if vma.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) == 0 {
            return None;
        }
        let reg = self
            .files
            .get(&u32::try_from(vma.shmid).ok()?)?
            .reg
            .as_ref()?;
        read(
            reg.name.clone().into(),
            vma.pgoff.checked_add(ip - vma.start)?,
        )
    }

    fn shmem_pagemap(&mut self, shmid: u64, pid: u32) -> Option<&Pagemap> {
        if !self.shmem.contains_key(&shmid) {
            let name = format!("pagemap-shmem-{shmid}.img");
            let need = format!("process {pid} maps shared memory {shmid}");
            let pm = self
                .entries(&name, Some(&need))
                .and_then(Pagemap::from_entries);
            self.shmem.insert(shmid, pm);
        }
        self.shmem.get(&shmid)?.as_ref()
    }

    fn memory(&mut self, pid: u32, mm: &pb::MmEntry, pagemap: Option<&Pagemap>, pm_name: &str) {
        let mapped = mm
            .vmas
            .iter()
            .fold(0u64, |a, v| a.saturating_add(v.end.saturating_sub(v.start)));
        let mut head = format!(
            "  memory: {}, {} mapped",
            plural(mm.vmas.len(), "vma", "vmas"),
            names::size(mapped)
        );
        match pagemap {
            Some(pm) => {
                head += &format!(
                    ", {} stored in pages-{}.img",
                    names::size(pm.total(|r| r.present)),
                    pm.pages_id
                );
                let parent = pm.total(|r| r.parent);
                if parent > 0 {
                    head += &format!(", {} in the parent dump", names::size(parent));
                }
                let cow = pm.total(|r| r.cow);
                if cow > 0 {
                    head += &format!(", {} shared with the parent process", names::size(cow));
                }
            }
            None => head += &format!(", pages {}", self.unavailable(pm_name)),
        }
        let mut shmids: Vec<u64> = mm
            .vmas
            .iter()
            .filter(|v| v.status & vs::ANON_SHARED != 0)
            .map(|v| v.shmid)
            .collect();
        shmids.sort_unstable();
        shmids.dedup();
        if !shmids.is_empty() {
            let stored = shmids.iter().fold(0u64, |a, id| {
                let s = self
                    .shmem_pagemap(*id, pid)
                    .map_or(0, |pm| pm.total(|r| r.present));
                a.saturating_add(s)
            });
            head += &format!(
                ", {} of shared memory in {}",
                names::size(stored),
                plural(shmids.len(), "shmem image", "shmem images")
            );
        }
        self.line(head);
        if mm.vmas.is_empty() {
            return;
        }

        // Columns fit user-space addresses; the vsyscall page, far up in the kernel half,
        // would double the width of every line for one, so it sticks out instead.
        let digits = |a: u64| format!("{a:x}").len();
        let aw = mm
            .vmas
            .iter()
            .filter(|v| v.end <= 1 << 47)
            .map(|v| digits(v.end))
            .max()
            .unwrap_or(12)
            .max(12);
        self.line(format!(
            "    {:<w$}  PERM  {:<12}  {:>8}  {:>8}  FILE",
            "START-END",
            "KIND",
            "SIZE",
            "STORED",
            w = 2 * aw + 1
        ));
        let mut in_vmas = 0u64;
        for v in &mm.vmas {
            let len = v.end.saturating_sub(v.start);
            let (stored, file) = if v.status & vs::ANON_SHARED != 0 {
                let stored = self
                    .shmem_pagemap(v.shmid, pid)
                    .map_or(0, |pm| pm.stored_in(v.pgoff, v.pgoff.saturating_add(len)));
                (stored, format!("shmem {}", v.shmid))
            } else {
                let stored = pagemap.map_or(0, |pm| pm.stored_in(v.start, v.end));
                in_vmas = in_vmas.saturating_add(stored);
                let file = if v.status & (vs::FILE_PRIVATE | vs::FILE_SHARED) != 0 {
                    match u32::try_from(v.shmid) {
                        Ok(id) => self.path(id),
                        Err(_) => format!("<file {}?>", v.shmid),
                    }
                } else {
                    String::new()
                };
                (stored, file)
            };
            let stored = if stored == 0 {
                "-".to_owned()
            } else {
                names::size(stored)
            };
            self.line(
                format!(
                    "    {:0aw$x}-{:0aw$x}  {}  {:<12}  {:>8}  {:>8}  {file}",
                    v.start,
                    v.end,
                    names::perms(v.prot, v.flags),
                    names::vma_kind(v.status),
                    names::size(len),
                    stored,
                )
                .trim_end(),
            );
        }
        if let Some(pm) = pagemap {
            let outside = pm.total(|r| r.present).saturating_sub(in_vmas);
            if outside > 0 {
                self.problem(format!(
                    "{pm_name}: {} of stored pages lie outside every vma of mm-{pid}.img",
                    names::size(outside)
                ));
            }
        }
    }

    fn files(&mut self, pid: u32, files_id: u32) {
        let name = format!("fdinfo-{files_id}.img");
        let need = format!("the fd table of process {pid}");
        let Some(entries) = self.entries(&name, Some(&need)) else {
            let u = self.unavailable(&name);
            self.line(format!("  files: {u}"));
            return;
        };
        let mut fds: Vec<&pb::FdinfoEntry> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Fdinfo(f) => Some(f),
                _ => None,
            })
            .collect();
        if fds.is_empty() {
            self.line("  files: none open");
            return;
        }
        fds.sort_by_key(|f| f.fd);
        self.line("  files:");
        let w = fds
            .iter()
            .map(|f| f.fd.to_string().len())
            .max()
            .unwrap_or(1);
        for fd in fds {
            let (what, mut details) = match self.files.get(&fd.id).copied() {
                Some(f) => self.describe_file(f),
                None => {
                    self.problem(format!(
                        "{name}: fd {} refers to file id {}, which files.img lacks",
                        fd.fd, fd.id
                    ));
                    (format!("<file {}?>", fd.id), Vec::new())
                }
            };
            if fd.flags & FD_CLOEXEC != 0 {
                details.push("cloexec".to_owned());
            }
            let details = if details.is_empty() {
                String::new()
            } else {
                format!(" ({})", details.join(", "))
            };
            self.line(format!("    fd {:<w$}  {what}{details}", fd.fd));
        }
    }

    /// What a file is, and details worth knowing about it.
    fn describe_file(&mut self, f: &pb::FileEntry) -> (String, Vec<String>) {
        use pb::FdTypes as T;
        let flags = names::open_flags;
        let Ok(ty) = T::try_from(f.r#type) else {
            return (format!("file of type {}", f.r#type), Vec::new());
        };
        let missing = || {
            (
                format!("<{}>", ty.as_str_name()),
                vec!["no details in files.img".to_owned()],
            )
        };
        match ty {
            T::Reg => match &f.reg {
                Some(r) => {
                    let mut d = vec![flags(r.flags), format!("pos {}", r.pos)];
                    if r.ext == Some(true) {
                        d.push("external".into());
                    }
                    (r.name.clone(), d)
                }
                None => missing(),
            },
            T::Pipe => match &f.pipe {
                Some(p) => (format!("pipe:[{}]", p.pipe_id), vec![flags(p.flags)]),
                None => missing(),
            },
            T::Fifo => match &f.fifo {
                Some(p) => {
                    let path = match p.regf_id {
                        Some(id) => self.path(id),
                        None => format!("fifo:[{}]", p.pipe_id),
                    };
                    (path, vec!["fifo".into()])
                }
                None => missing(),
            },
            T::Eventfd => match &f.efd {
                Some(e) => (
                    "eventfd".into(),
                    vec![flags(e.flags), format!("counter {}", e.counter)],
                ),
                None => missing(),
            },
            T::Eventpoll => match &f.epfd {
                Some(e) => (
                    "epoll".into(),
                    vec![flags(e.flags), plural(e.tfd.len(), "target", "targets")],
                ),
                None => missing(),
            },
            T::Signalfd => match &f.sgfd {
                Some(s) => (
                    "signalfd".into(),
                    vec![
                        flags(s.flags),
                        format!("signals {}", names::sigset(s.sigmask)),
                    ],
                ),
                None => missing(),
            },
            T::Timerfd => match &f.tfd {
                Some(t) => (
                    "timerfd".into(),
                    vec![
                        flags(t.flags),
                        format!("clock {}", t.clockid),
                        format!("{} ticks", t.ticks),
                    ],
                ),
                None => missing(),
            },
            T::Inotify => match &f.ify {
                Some(i) => (
                    "inotify".into(),
                    vec![flags(i.flags), plural(i.wd.len(), "watch", "watches")],
                ),
                None => missing(),
            },
            T::Fanotify => match &f.ffy {
                Some(i) => (
                    "fanotify".into(),
                    vec![flags(i.flags), plural(i.mark.len(), "mark", "marks")],
                ),
                None => missing(),
            },
            T::Tty => match &f.tty {
                Some(t) => {
                    let what = match t.regf_id {
                        Some(id) => self.path(id),
                        None => "tty".into(),
                    };
                    (
                        what,
                        vec![flags(t.flags), format!("tty-info id {}", t.tty_info_id)],
                    )
                }
                None => missing(),
            },
            T::Memfd => match &f.memfd {
                Some(m) => (
                    format!("memfd (inode {})", m.inode_id),
                    vec![flags(m.flags), format!("pos {}", m.pos)],
                ),
                None => missing(),
            },
            T::Pidfd => match &f.pidfd {
                Some(p) => (
                    "pidfd".into(),
                    vec![flags(p.flags), format!("pid {}", p.nspid)],
                ),
                None => missing(),
            },
            T::StasisMqueue => match &f.stasis_mqueue {
                Some(m) => {
                    let mut d = vec![flags(m.flags)];
                    if let Some(q) = &m.queue {
                        d.push(plural(q.messages.len(), "message", "messages"));
                        if let Some(n) = &q.notify {
                            d.push(format!("notifies process {} (signal {})", n.pid, n.signo));
                        }
                    }
                    (format!("message queue {}", m.name), d)
                }
                None => missing(),
            },
            T::Unixsk => match &f.usk {
                Some(u) => names::unix_socket(u),
                None => missing(),
            },
            T::Inetsk => match &f.isk {
                Some(i) => names::inet_socket(i),
                None => missing(),
            },
            T::Netlinksk => match &f.nlsk {
                Some(n) => {
                    let mut d = vec![format!("port id {}", n.portid)];
                    if !n.groups.is_empty() {
                        d.push(format!("groups {:?}", n.groups));
                    }
                    if n.dst_portid != 0 || n.dst_group != 0 {
                        d.push(format!(
                            "connected to port id {} group {}",
                            n.dst_portid, n.dst_group
                        ));
                    }
                    (format!("netlink socket, protocol {}", n.protocol), d)
                }
                None => missing(),
            },
            T::Packetsk => match &f.psk {
                Some(k) => (
                    format!("packet socket, {}", names::socket_type(k.r#type as i32)),
                    vec![
                        format!("protocol {:#06x}", k.protocol),
                        format!("interface {}", k.ifindex),
                    ],
                ),
                None => missing(),
            },
            T::Ext => ("external file".into(), Vec::new()),
            other => (
                format!("<{}>", other.as_str_name()),
                vec!["not decoded by stasis".into()],
            ),
        }
    }

    /// Pages images must hold exactly what the pagemaps that name them describe.
    fn check_pages_images(&mut self) {
        let mut described: BTreeMap<u32, (u64, String)> = BTreeMap::new();
        for (name, res) in &self.set.images {
            let Ok(d) = res else { continue };
            let Some(pm) = Pagemap::from_entries(d.entries()) else {
                continue;
            };
            let e = described
                .entry(pm.pages_id)
                .or_insert_with(|| (0, name.clone()));
            e.0 = e.0.saturating_add(pm.total(|r| r.present));
        }
        for (id, (bytes, pagemap)) in described {
            let name = format!("pages-{id}.img");
            self.used.insert(name.clone());
            match self.set.images.get(&name) {
                Some(Ok(Decoded::Raw { size, .. })) if *size != bytes => {
                    self.problem(format!(
                        "{name}: holds {size} bytes, but the pagemaps describe {bytes}"
                    ));
                }
                None if bytes > 0 => {
                    self.problem(format!("{name}: missing ({pagemap} refers to it)"));
                }
                _ => {}
            }
        }
    }

    fn stats(&mut self) {
        let Some(stats) = self.one("stats-dump", None, "stats", as_stats) else {
            return;
        };
        if let Some(d) = &stats.dump {
            let t = |us: u32| names::duration_us(u64::from(us));
            let mut parts = vec![format!("froze in {}", t(d.freezing_time))];
            if d.frozen_time != 0 {
                parts.push(format!("frozen for {}", t(d.frozen_time)));
            }
            parts.push(format!("memory dumped in {}", t(d.memdump_time)));
            // Written counts shared pages too, scanned only private ones: not a ratio.
            parts.push(format!(
                "{} pages written ({} scanned)",
                d.pages_written, d.pages_scanned
            ));
            if d.pages_skipped_parent != 0 {
                parts.push(format!("{} in the parent", d.pages_skipped_parent));
            }
            if d.pages_lazy != 0 {
                parts.push(format!("{} lazy", d.pages_lazy));
            }
            if let Some(sh) = d.shpages_written.filter(|n| *n != 0) {
                parts.push(format!("{sh} shared pages written"));
            }
            self.line(format!("\nStats: {}", parts.join(", ")));
        }
        if let Some(r) = self
            .one("stats-restore", None, "stats", as_stats)
            .and_then(|s| s.restore.as_ref())
        {
            self.line(format!(
                "Restore stats: restored in {}, forking {}, {} pages restored",
                names::duration_us(u64::from(r.restore_time)),
                names::duration_us(u64::from(r.forking_time)),
                r.pages_restored.unwrap_or(0)
            ));
        }
    }

    /// Images nothing above covered (other kinds, leftovers of other dumps).
    fn others(&mut self) {
        let mut rest = Vec::new();
        for (name, res) in &self.set.images {
            let Ok(d) = res else { continue };
            let Some(kind) = d.kind() else { continue };
            if self.used.contains(name) {
                continue;
            }
            let what = match d {
                Decoded::Raw { size, .. } => names::size(*size),
                _ => plural(d.entries().len(), "entry", "entries"),
            };
            rest.push(format!("{name} ({}, {what})", kind.name()));
        }
        if !rest.is_empty() {
            self.line(format!("\nOther images: {}", rest.join(", ")));
        }
    }

    fn problems(&mut self) {
        if self.problems.is_empty() {
            return;
        }
        self.line("\nProblems:");
        for p in std::mem::take(&mut self.problems) {
            self.line(format!("  {p}"));
        }
    }
}

fn file_type_name(t: i32) -> String {
    pb::FdTypes::try_from(t).map_or_else(|_| format!("type {t}"), |t| t.as_str_name().into())
}

fn syscall_desc(nr: u64) -> String {
    names::syscall(nr).map_or_else(|| format!("#{nr}"), str::to_owned)
}

fn task_state_desc(tc: &pb::TaskCoreEntry) -> String {
    match tc.task_state {
        task_state::ALIVE => "alive".into(),
        task_state::STOPPED => match tc.stop_signo {
            Some(s) => format!("stopped by {}", names::signal(s)),
            None => "stopped".into(),
        },
        task_state::ZOMBIE => format!("zombie, exit code {}", tc.exit_code),
        task_state::DEAD => "dead".into(),
        s => format!("task state {s}"),
    }
}

/// The signal numbers of a queue of pending signals, from each raw `siginfo_t`.
fn pending(q: Option<&pb::SignalQueueEntry>) -> Vec<u32> {
    q.map_or(Vec::new(), |q| {
        q.signals
            .iter()
            .map(|s| match s.siginfo.get(..4) {
                Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                None => 0,
            })
            .collect()
    })
}

/// Pending signals as names, repeats counted (`SIGRTMIN+1 x3`).
fn pending_list(sigs: &[u32]) -> String {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for s in sigs {
        *counts.entry(*s).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(s, n)| {
            if n == 1 {
                names::signal(s)
            } else {
                format!("{} x{n}", names::signal(s))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Blocked mask, dispositions and pending signals of a process (its main thread's view).
fn signals(tc: &pb::TaskCoreEntry, main: Option<&pb::ThreadCoreEntry>) -> String {
    let blocked = main.and_then(|t| t.blk_sigset).unwrap_or(tc.blk_sigset);
    let mut handled = 0u64;
    let mut ignored = 0u64;
    // Dispositions are stored for signals 1..=64 without SIGKILL and SIGSTOP.
    let numbers = (1..=64u32).filter(|s| *s != 9 && *s != 19);
    for (sig, sa) in numbers.zip(&tc.sigactions) {
        match sa.sigaction {
            0 => {}
            1 => ignored |= 1 << (sig - 1),
            _ => handled |= 1 << (sig - 1),
        }
    }
    let mut parts = vec![
        format!("blocked: {}", names::sigset(blocked)),
        format!("handled: {}", names::sigset(handled)),
    ];
    if ignored != 0 {
        parts.push(format!("ignored: {}", names::sigset(ignored)));
    }
    let process = pending(tc.signals_s.as_ref());
    let thread = pending(main.and_then(|t| t.signals_p.as_ref()));
    let mut queued = Vec::new();
    if !process.is_empty() {
        queued.push(format!("{} (process)", pending_list(&process)));
    }
    if !thread.is_empty() {
        queued.push(format!("{} (thread)", pending_list(&thread)));
    }
    parts.push(if queued.is_empty() {
        "pending: none".to_owned()
    } else {
        format!("pending: {}", queued.join(", "))
    });
    parts.join("; ")
}

fn fpu_desc(ti: &pb::ThreadInfoX86, tc: Option<&pb::TaskCoreEntry>) -> Option<String> {
    let fp = ti.fpregs.as_ref()?;
    let mut s = match &fp.stasis_xsave {
        Some(area) => format!("XSAVE {} bytes", area.len()),
        None if fp.xsave.is_some() => "FXSAVE + XSAVE components".to_owned(),
        None => "FXSAVE".to_owned(),
    };
    if let Some(x) = &fp.xsave {
        s += &format!(
            ", in use {:#x} ({})",
            x.xstate_bv,
            names::xfeatures(x.xstate_bv)
        );
    }
    // AMX tile data must be requested per process; say when it was.
    if tc
        .and_then(|t| t.stasis_xcomp_perm)
        .is_some_and(|p| p & (1 << 18) != 0)
    {
        s += ", AMX permitted";
    }
    Some(s)
}

fn caps(words: &[u32]) -> u64 {
    words
        .iter()
        .take(2)
        .enumerate()
        .fold(0, |a, (i, w)| a | u64::from(*w) << (32 * i))
}

fn creds_desc(c: &pb::CredsEntry) -> String {
    let mut s = format!("uid {} gid {}", c.uid, c.gid);
    for (name, v, base) in [
        ("euid", c.euid, c.uid),
        ("suid", c.suid, c.uid),
        ("fsuid", c.fsuid, c.euid),
        ("egid", c.egid, c.gid),
        ("sgid", c.sgid, c.gid),
        ("fsgid", c.fsgid, c.egid),
    ] {
        if v != base {
            s += &format!(" {name} {v}");
        }
    }
    if !c.groups.is_empty() {
        let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
        s += &format!(", groups {}", groups.join(" "));
    }
    let eff = caps(&c.cap_eff);
    let bnd = caps(&c.cap_bnd);
    s += &if eff == 0 {
        ", no capabilities".to_owned()
    } else if eff == bnd {
        ", all capabilities".to_owned()
    } else {
        format!(", capabilities {eff:#x}")
    };
    s
}

fn usec(sec: u64, usec: u64) -> u64 {
    sec.saturating_mul(1_000_000).saturating_add(usec)
}

/// Anything unusual about a process that the lines above do not show.
fn other_state(
    tc: Option<&pb::TaskCoreEntry>,
    thread: Option<&pb::ThreadCoreEntry>,
    mm: Option<&pb::MmEntry>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(tc) = tc {
        if tc.personality != 0 {
            out.push(format!("personality {:#x}", tc.personality));
        }
        if let Some(adj) = tc.oom_score_adj.filter(|a| *a != 0) {
            out.push(format!("oom_score_adj {adj}"));
        }
        if tc.child_subreaper == Some(true) {
            out.push("child subreaper".into());
        }
        if let Some(t) = &tc.timers {
            for (name, it) in [
                ("ITIMER_REAL", &t.real),
                ("ITIMER_VIRTUAL", &t.virt),
                ("ITIMER_PROF", &t.prof),
            ] {
                let Some(it) = it else { continue };
                let next = usec(it.vsec, it.vusec);
                if next == 0 {
                    continue;
                }
                let mut s = format!("{name} in {}", names::duration_us(next));
                let every = usec(it.isec, it.iusec);
                if every != 0 {
                    s += &format!(" every {}", names::duration_us(every));
                }
                out.push(s);
            }
            if !t.posix.is_empty() {
                out.push(plural(t.posix.len(), "POSIX timer", "POSIX timers"));
            }
        }
    }
    if let Some(t) = thread {
        if let Some(mode) = t.seccomp_mode.filter(|m| *m != 0) {
            let name = pb::SeccompMode::try_from(mode)
                .map_or_else(|_| mode.to_string(), |m| m.as_str_name().to_owned());
            out.push(format!("seccomp {name}"));
        }
        if t.creds.as_ref().and_then(|c| c.no_new_privs) == Some(1) {
            out.push("no_new_privs".into());
        }
        const SS_DISABLE: u32 = 2;
        if let Some(sas) = t
            .sas
            .as_ref()
            .filter(|s| s.ss_flags & SS_DISABLE == 0 && s.ss_size != 0)
        {
            out.push(format!(
                "sigaltstack {:#x} ({})",
                sas.ss_sp,
                names::size(sas.ss_size)
            ));
        }
        if let Some(sig) = t.pdeath_sig.filter(|s| *s != 0) {
            out.push(format!("parent death signal {}", names::signal(sig)));
        }
        if let Some(p) = t.sched_policy.filter(|p| *p != 0) {
            out.push(format!("scheduling policy {p}"));
        }
        if let Some(n) = t.sched_nice.filter(|n| *n != 0) {
            out.push(format!("nice {n}"));
        }
    }
    if let Some(mm) = mm {
        if let Some(d) = mm.dumpable.filter(|d| *d != 1) {
            out.push(format!("dumpable {d}"));
        }
        if mm.thp_disabled == Some(true) {
            out.push("THP disabled".into());
        }
    }
    out
}
