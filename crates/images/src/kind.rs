//! Image kinds: their file names and magic numbers (CRIU's values, so `crit` knows them).

/// Second word of every image except `inventory.img`, raw images and service files.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// Leading word of service files (`stats-dump`, `stats-restore`).
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;

/// The kinds of image file stasis reads or writes.
///
/// Only kinds we produce are listed; adding one is adding its file name and magic here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// `inventory.img`: format version, root ids, dump options.
    Inventory,
    /// `pstree.img`: every process with its pid, ppid, pgid, sid and threads.
    Pstree,
    /// `core-TID.img`: one per thread: registers, task and thread state.
    Core,
    /// `ids-PID.img`: which kernel objects (mm, files, fs, sighand, namespaces) a task uses.
    Ids,
    /// `mm-PID.img`: the address space: vmas, mm fields, auxv.
    Mm,
    /// `pagemap-PID.img`: which pages of the address space are in the pages image.
    Pagemap,
    /// `pagemap-shmem-SHMID.img`: which pages of a shared anonymous object are stored.
    ShmemPagemap,
    /// `pages-N.img`: raw page contents, no magic.
    Pages,
    /// `files.img`: every open file description of the tree, by id.
    Files,
    /// `fdinfo-N.img`: the fd table N: which fd number points to which file id.
    Fdinfo,
    /// `fs-PID.img`: cwd, root and umask.
    Fs,
    /// `tty-info.img`: terminals.
    TtyInfo,
    /// `seccomp.img`: seccomp filters.
    Seccomp,
    /// `stats-dump` / `stats-restore`: timing and counters (service file).
    Stats,
    /// `cgroup.img`: the cgroups the processes are members of.
    Cgroup,
    /// `pipes-data.img`: bytes in flight in pipes, each entry followed by its bytes.
    PipesData,
    /// `fifo-data.img`: bytes in flight in named pipes, as `pipes-data.img`.
    FifoData,
    /// `ghost-file-ID.img` (ID in hex): a deleted file's attributes and contents.
    GhostFile,
    /// `remap-fpath.img`: files whose path is replaced by a ghost or a link.
    RemapFpath,
    /// `memfd.img`: the inodes behind memfd descriptions and mappings.
    MemfdInode,
    /// `filelocks.img`: file locks held by the tree.
    FileLocks,
    /// `tty-data.img`: bytes in flight in terminals.
    TtyData,
    /// `ipcns-var-ID.img`: the IPC sysctls of IPC namespace ID.
    IpcVar,
    /// `ipcns-shm-ID.img`: SysV shared memory segments with their contents.
    IpcShm,
    /// `ipcns-sem-ID.img`: SysV semaphore sets with their values.
    IpcSem,
    /// `ipcns-msg-ID.img`: SysV message queues with their messages.
    IpcMsg,
    /// `sk-queues.img`: messages queued on sockets, each entry followed by its bytes.
    SkQueues,
    /// `tcp-stream-INO.img` (INO in hex): a TCP connection's repair state, then its receive
    /// and send queues.
    TcpStream,
}

impl ImageKind {
    /// Every kind, for decoders that identify a file by its magic.
    pub const ALL: [ImageKind; 28] = [
        ImageKind::Inventory,
        ImageKind::Pstree,
        ImageKind::Core,
        ImageKind::Ids,
        ImageKind::Mm,
        ImageKind::Pagemap,
        ImageKind::ShmemPagemap,
        ImageKind::Pages,
        ImageKind::Files,
        ImageKind::Fdinfo,
        ImageKind::Fs,
        ImageKind::TtyInfo,
        ImageKind::Seccomp,
        ImageKind::Stats,
        ImageKind::Cgroup,
        ImageKind::PipesData,
        ImageKind::FifoData,
        ImageKind::GhostFile,
        ImageKind::RemapFpath,
        ImageKind::MemfdInode,
        ImageKind::FileLocks,
        ImageKind::TtyData,
        ImageKind::IpcVar,
        ImageKind::IpcShm,
        ImageKind::IpcSem,
        ImageKind::IpcMsg,
        ImageKind::SkQueues,
        ImageKind::TcpStream,
    ];

    /// The kind's own magic (the second word of the file, or the first for inventory).
    /// Raw images have none (0).
    pub const fn magic(self) -> u32 {
        match self {
            ImageKind::Inventory => 0x5831_3116,
            ImageKind::Pstree => 0x5027_3030,
            ImageKind::Core => 0x5505_3847,
            ImageKind::Ids => 0x5443_2030,
            ImageKind::Mm => 0x5749_2820,
            ImageKind::Pagemap | ImageKind::ShmemPagemap => 0x5608_4025,
            ImageKind::Pages => 0,
            ImageKind::Files => 0x5630_3138,
            ImageKind::Fdinfo => 0x5621_3732,
            ImageKind::Fs => 0x5140_3912,
            ImageKind::TtyInfo => 0x5945_3036,
            ImageKind::Seccomp => 0x6441_3049,
            ImageKind::Stats => 0x5709_3306,
            ImageKind::Cgroup => 0x5938_3330,
            ImageKind::PipesData => 0x5645_3709,
            ImageKind::FifoData => 0x5933_3054,
            ImageKind::GhostFile => 0x5258_3605,
            ImageKind::RemapFpath => 0x5913_3954,
            ImageKind::MemfdInode => 0x4845_3499,
            ImageKind::FileLocks => 0x5432_3616,
            ImageKind::TtyData => 0x5941_3026,
            ImageKind::IpcVar => 0x5311_5007,
            ImageKind::IpcShm => 0x4628_3044,
            ImageKind::IpcSem => 0x5957_3019,
            ImageKind::IpcMsg => 0x5545_3737,
            ImageKind::SkQueues => 0x5626_4026,
            ImageKind::TcpStream => 0x5146_5506,
        }
    }

    /// The word that precedes the kind's magic, if any.
    pub const fn leading_magic(self) -> Option<u32> {
        match self {
            ImageKind::Inventory | ImageKind::Pages => None,
            ImageKind::Stats => Some(IMG_SERVICE_MAGIC),
            _ => Some(IMG_COMMON_MAGIC),
        }
    }

    /// A short upper-case name, as `crit` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            ImageKind::Inventory => "INVENTORY",
            ImageKind::Pstree => "PSTREE",
            ImageKind::Core => "CORE",
            ImageKind::Ids => "IDS",
            ImageKind::Mm => "MM",
            ImageKind::Pagemap | ImageKind::ShmemPagemap => "PAGEMAP",
            ImageKind::Pages => "PAGES",
            ImageKind::Files => "FILES",
            ImageKind::Fdinfo => "FDINFO",
            ImageKind::Fs => "FS",
            ImageKind::TtyInfo => "TTY_INFO",
            ImageKind::Seccomp => "SECCOMP",
            ImageKind::Stats => "STATS",
            ImageKind::Cgroup => "CGROUP",
            ImageKind::PipesData => "PIPES_DATA",
            ImageKind::FifoData => "FIFO_DATA",
            ImageKind::GhostFile => "GHOST_FILE",
            ImageKind::RemapFpath => "REMAP_FPATH",
            ImageKind::MemfdInode => "MEMFD_INODE",
            ImageKind::FileLocks => "FILE_LOCKS",
            ImageKind::TtyData => "TTY_DATA",
            ImageKind::IpcVar => "IPC_VAR",
            ImageKind::IpcShm => "IPCNS_SHM",
            ImageKind::IpcSem => "IPCNS_SEM",
            ImageKind::IpcMsg => "IPCNS_MSG",
            ImageKind::SkQueues => "SK_QUEUES",
            ImageKind::TcpStream => "TCP_STREAM",
        }
    }

    /// Whether the file name carries a number (`core-1234.img`) or not (`pstree.img`).
    pub const fn is_per_id(self) -> bool {
        matches!(
            self,
            ImageKind::Core
                | ImageKind::Ids
                | ImageKind::Mm
                | ImageKind::Pagemap
                | ImageKind::ShmemPagemap
                | ImageKind::Pages
                | ImageKind::Fdinfo
                | ImageKind::Fs
                | ImageKind::GhostFile
                | ImageKind::IpcVar
                | ImageKind::IpcShm
                | ImageKind::IpcSem
                | ImageKind::IpcMsg
                | ImageKind::TcpStream
        )
    }

    /// The file name of this kind for `id` (ignored by kinds that are not per id).
    pub fn file_name(self, id: u64) -> String {
        match self {
            ImageKind::Inventory => "inventory.img".into(),
            ImageKind::Pstree => "pstree.img".into(),
            ImageKind::Core => format!("core-{id}.img"),
            ImageKind::Ids => format!("ids-{id}.img"),
            ImageKind::Mm => format!("mm-{id}.img"),
            ImageKind::Pagemap => format!("pagemap-{id}.img"),
            ImageKind::ShmemPagemap => format!("pagemap-shmem-{id}.img"),
            ImageKind::Pages => format!("pages-{id}.img"),
            ImageKind::Files => "files.img".into(),
            ImageKind::Fdinfo => format!("fdinfo-{id}.img"),
            ImageKind::Fs => format!("fs-{id}.img"),
            ImageKind::TtyInfo => "tty-info.img".into(),
            ImageKind::Seccomp => "seccomp.img".into(),
            // Service files have no .img suffix; the dump one is the one we write.
            ImageKind::Stats => "stats-dump".into(),
            ImageKind::Cgroup => "cgroup.img".into(),
            ImageKind::PipesData => "pipes-data.img".into(),
            ImageKind::FifoData => "fifo-data.img".into(),
            ImageKind::GhostFile => format!("ghost-file-{id:x}.img"),
            ImageKind::RemapFpath => "remap-fpath.img".into(),
            ImageKind::MemfdInode => "memfd.img".into(),
            ImageKind::FileLocks => "filelocks.img".into(),
            ImageKind::TtyData => "tty-data.img".into(),
            ImageKind::IpcVar => format!("ipcns-var-{id}.img"),
            ImageKind::IpcShm => format!("ipcns-shm-{id}.img"),
            ImageKind::IpcSem => format!("ipcns-sem-{id}.img"),
            ImageKind::IpcMsg => format!("ipcns-msg-{id}.img"),
            ImageKind::SkQueues => "sk-queues.img".into(),
            ImageKind::TcpStream => format!("tcp-stream-{id:x}.img"),
        }
    }

    /// Identifies a kind from the first two words of a file (for `stasis show`).
    pub fn from_magics(first: u32, second: Option<u32>) -> Option<ImageKind> {
        if first == ImageKind::Inventory.magic() {
            return Some(ImageKind::Inventory);
        }
        let lead = first;
        let own = second?;
        ImageKind::ALL.into_iter().find(|k| {
            k.leading_magic() == Some(lead) && k.magic() == own && *k != ImageKind::ShmemPagemap
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_identify_kinds() {
        for kind in ImageKind::ALL {
            let Some(lead) = kind.leading_magic() else {
                continue;
            };
            let found = ImageKind::from_magics(lead, Some(kind.magic()));
            // Both pagemap kinds share one magic, as in CRIU.
            let expected = if kind == ImageKind::ShmemPagemap {
                ImageKind::Pagemap
            } else {
                kind
            };
            assert_eq!(found, Some(expected), "{kind:?}");
        }
        assert_eq!(
            ImageKind::from_magics(0x5831_3116, None),
            Some(ImageKind::Inventory)
        );
        assert_eq!(
            ImageKind::from_magics(IMG_COMMON_MAGIC, Some(0xdead_beef)),
            None
        );
    }

    #[test]
    fn file_names_follow_criu() {
        assert_eq!(ImageKind::Core.file_name(42), "core-42.img");
        assert_eq!(ImageKind::ShmemPagemap.file_name(7), "pagemap-shmem-7.img");
        assert_eq!(ImageKind::Pstree.file_name(0), "pstree.img");
        assert_eq!(ImageKind::Stats.file_name(0), "stats-dump");
    }
}
