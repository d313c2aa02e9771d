//! The dump of a whole tree: validation, freezing, collection, image writing, and the
//! final kill or resume.

use std::path::PathBuf;
use std::time::Instant;

use stasis_images::consts::IMG_VERSION;
use stasis_images::{ImageDir, ImageKind, PAGE_SIZE, pb};
use stasis_sys::{Pid, proc, process};

use crate::error::{DumpError, ProcContext, Result};
use crate::files::{FileOptions, FileTable};
use crate::freeze::Frozen;
use crate::{memory, pages, task};

/// What to dump and how.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// Root of the tree (`-t`).
    pub pid: Pid,
    /// Image directory (`-D`).
    pub dir: PathBuf,
    /// Keep the tree running after the dump (`-R`).
    pub leave_running: bool,
    /// The tree is a shell job: its session leader is outside (`-j`).
    pub shell_job: bool,
}

/// Counters and timings of a dump, also written to `stats-dump`.
#[derive(Clone, Debug, Default)]
pub struct DumpStats {
    /// Time to seize and stop the tree, in microseconds.
    pub freezing_us: u64,
    /// Time the tree was stopped, in microseconds.
    pub frozen_us: u64,
    /// Time spent copying memory, in microseconds.
    pub memdump_us: u64,
    /// Pages scanned (the total size of private vmas).
    pub pages_scanned: u64,
    /// Pages written to pages images.
    pub pages_written: u64,
}

fn elapsed_us(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}

/// Rejects roots we must not or cannot dump.
fn validate(opts: &DumpOptions) -> Result<proc::Stat> {
    let pid = opts.pid;
    if pid <= 0 {
        return Err(DumpError::Invalid(format!("invalid pid {pid}")));
    }
    let me = process::getpid();
    let stat = proc::read_stat(pid).map_err(|e| {
        if e.is_gone() {
            DumpError::Invalid(format!("process {pid} does not exist"))
        } else {
            DumpError::Proc { pid, source: e }
        }
    })?;
    // Freezing an ancestor of ours would freeze us too (our parent waits on us).
    let mut p = me;
    while p > 1 {
        if p == pid {
            return Err(DumpError::Invalid(format!(
                "process {pid} is stasis itself or one of its ancestors"
            )));
        }
        p = proc::read_stat(p).map(|s| s.ppid).unwrap_or(0);
    }
    if matches!(stat.state, b'Z' | b'X') {
        return Err(DumpError::Invalid(format!("process {pid} is a zombie")));
    }
    if stat.session != pid && !opts.shell_job {
        return Err(DumpError::Invalid(format!(
            "process {pid} is not a session leader (its session is {}); use --shell-job \
             (-j) to dump a job started from a shell",
            stat.session
        )));
    }
    Ok(stat)
}

/// Dumps the tree rooted at `opts.pid` into `opts.dir`.
pub fn dump(opts: &DumpOptions) -> Result<DumpStats> {
    let pid = opts.pid;
    let stat = validate(opts)?;
    let dir = ImageDir::open(&opts.dir, true)?;
    let mut stats = DumpStats::default();

    let t_freeze = Instant::now();
    let mut frozen = Frozen::default();
    frozen.freeze_process(pid)?;
    stats.freezing_us = elapsed_us(t_freeze);
    log::info!(
        "froze process {pid} ({} threads) in {} us",
        frozen.threads.len(),
        stats.freezing_us
    );

    // Everything below may fail; `frozen` resumes the tree on drop if it does.
    collect_and_write(&dir, opts, &stat, &frozen, &mut stats)?;

    if opts.leave_running {
        frozen.resume()?;
        log::info!("process {pid} resumed (--leave-running)");
    } else {
        let t_kill = Instant::now();
        frozen.kill()?;
        log::info!(
            "process {pid} killed after dump (gone after {} us)",
            elapsed_us(t_kill)
        );
    }
    stats.frozen_us = elapsed_us(t_freeze);
    Ok(stats)
}

fn check_single_process(pid: Pid, frozen: &Frozen) -> Result<()> {
    if frozen.threads.len() > 1 {
        return Err(DumpError::Unsupported {
            pid,
            resource: format!("{} threads", frozen.threads.len()),
            reason: "multi-threaded processes are not supported yet".into(),
        });
    }
    for t in &frozen.threads {
        let children = proc::children(pid, t.tracee.tid()).pctx(pid)?;
        if let Some(child) = children.first() {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("child process {child}"),
                reason: "process trees are not supported yet".into(),
            });
        }
    }
    Ok(())
}

fn collect_and_write(
    dir: &ImageDir,
    opts: &DumpOptions,
    stat: &proc::Stat,
    frozen: &Frozen,
    stats: &mut DumpStats,
) -> Result<()> {
    let pid = opts.pid;
    let t_collect = Instant::now();
    // An earlier dump's inventory must not make a half-written dump look complete.
    dir.remove(&ImageKind::Inventory.file_name(0))?;
    check_single_process(pid, frozen)?;
    task::check_posix_timers(pid)?;
    let leader = frozen
        .threads_of(pid)
        .next()
        .ok_or_else(|| DumpError::Invalid(format!("process {pid}: no thread was frozen")))?;

    let (inside, thread_inside) = task::look_inside(leader, true)?;
    let inside = inside.unwrap_or_default();
    let core = task::core_entry(leader, Some(&inside), &thread_inside)?;

    let mut files = FileTable::default();
    let fdinfos = files.dump_fds(
        pid,
        FileOptions {
            shell_job: opts.shell_job,
        },
    )?;
    let mut space = memory::collect(pid, &mut files)?;

    let link = |name: &str| -> Result<String> {
        Ok(proc::read_link(proc::path(pid, name))
            .pctx(pid)?
            .to_string_lossy()
            .into_owned())
    };
    let dir_flags = (libc::O_RDONLY | libc::O_DIRECTORY) as u32;
    let cwd_id = files.path_file(pid, &link("cwd")?, dir_flags)?;
    let root_id = files.path_file(pid, &link("root")?, dir_flags)?;
    let exe_id = files.path_file(pid, &link("exe")?, libc::O_RDONLY as u32)?;
    let status = proc::read_status(pid).pctx(pid)?;
    let auxv = proc::auxv(pid).pctx(pid)?;

    // One id per kernel object; with a single process every object is its own.
    let ids = pb::TaskKobjIdsEntry {
        vm_id: 1,
        files_id: 1,
        fs_id: 1,
        sighand_id: 1,
        ..Default::default()
    };

    log::debug!(
        "process {pid}: task state, {} fds and {} vmas ({} page runs) collected in {} us",
        fdinfos.len(),
        space.vmas.len(),
        space.runs.len(),
        elapsed_us(t_collect)
    );
    // Pages first: they are the bulk of the work and the likeliest to fail.
    let t_mem = Instant::now();
    let pages_id = 1u32;
    let pages_file = dir.rewrite_raw(&ImageKind::Pages.file_name(u64::from(pages_id)))?;
    let written = pages::copy_private_pages(pid, &space.runs, &pages_file)?;
    pages::write_pagemap(dir, pid, pages_id, &space.runs)?;
    let mut shmem_written = 0;
    for (i, obj) in space.shmem.iter_mut().enumerate() {
        shmem_written += pages::dump_shmem(dir, pid, obj, pages_id + 1 + i as u32)?;
    }
    stats.memdump_us = elapsed_us(t_mem);
    stats.pages_written = (written + shmem_written) / PAGE_SIZE;
    stats.pages_scanned = space
        .vmas
        .iter()
        .filter(|v| v.status & stasis_images::consts::vma_status::ANON_PRIVATE != 0)
        .map(|v| (v.end - v.start) / PAGE_SIZE)
        .sum();
    log::info!(
        "process {pid}: wrote {} MiB of pages in {} us",
        (written + shmem_written) >> 20,
        stats.memdump_us
    );

    let mm = pb::MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: inside.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id: exe_id,
        mm_saved_auxv: auxv,
        vmas: std::mem::take(&mut space.vmas),
        dumpable: Some(inside.dumpable),
        aios: Vec::new(),
        thp_disabled: Some(inside.thp_disabled),
        stasis_vdso_size: Some(space.vdso_size),
        stasis_vvar_size: Some(space.vvar_size),
    };

    let id = pid as u64;
    dir.write_all(ImageKind::Core, id, [&core])?;
    dir.write_all(ImageKind::Ids, id, [&ids])?;
    dir.write_all(ImageKind::Mm, id, [&mm])?;
    dir.write_all(ImageKind::Fdinfo, u64::from(ids.files_id), &fdinfos)?;
    dir.write_all(ImageKind::Files, 0, &files.entries)?;
    dir.write_all(
        ImageKind::Fs,
        id,
        [&pb::FsEntry {
            cwd_id,
            root_id,
            umask: Some(status.umask),
        }],
    )?;
    let pstree = pb::PstreeEntry {
        pid: pid as u32,
        ppid: 0,
        pgid: stat.pgrp as u32,
        sid: stat.session as u32,
        threads: frozen
            .threads_of(pid)
            .map(|t| t.tracee.tid() as u32)
            .collect(),
    };
    dir.write_all(ImageKind::Pstree, 0, [&pstree])?;
    let stats_entry = pb::StatsEntry {
        dump: Some(pb::DumpStatsEntry {
            freezing_time: stats.freezing_us as u32,
            frozen_time: 0,
            memdump_time: stats.memdump_us as u32,
            memwrite_time: stats.memdump_us as u32,
            pages_scanned: stats.pages_scanned,
            pages_skipped_parent: 0,
            pages_written: stats.pages_written,
            pages_lazy: 0,
            ..Default::default()
        }),
        restore: None,
    };
    dir.write_all(ImageKind::Stats, 0, [&stats_entry])?;
    // The inventory goes last: its presence marks a complete dump.
    let inventory = pb::InventoryEntry {
        img_version: IMG_VERSION,
        fdinfo_per_id: Some(true),
        root_ids: Some(ids),
        ns_per_id: Some(true),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        dump_uptime: Some(process::boottime_ns() / 1000),
        ..Default::default()
    };
    dir.write_all(ImageKind::Inventory, 0, [&inventory])?;
    Ok(())
}
