//! Address space messages: mm, vmas, pagemaps.

/// A kernel AIO ring (`io_setup(2)`) mapped in the address space.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct AioRingEntry {
    /// The ring's context id, which is also its address.
    #[prost(uint64, required, tag = "1")]
    pub id: u64,
    /// Number of requests it was set up for.
    #[prost(uint32, required, tag = "2")]
    pub nr_req: u32,
    /// Length of the ring mapping in bytes.
    #[prost(uint32, required, tag = "3")]
    pub ring_len: u32,
}

/// The single entry of `mm-ID.img`: an address space.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct MmEntry {
    /// Start of the text segment (`PR_SET_MM_START_CODE`).
    #[prost(uint64, required, tag = "1")]
    pub mm_start_code: u64,
    /// End of the text segment.
    #[prost(uint64, required, tag = "2")]
    pub mm_end_code: u64,
    /// Start of the data segment.
    #[prost(uint64, required, tag = "3")]
    pub mm_start_data: u64,
    /// End of the data segment.
    #[prost(uint64, required, tag = "4")]
    pub mm_end_data: u64,
    /// Start of the main stack.
    #[prost(uint64, required, tag = "5")]
    pub mm_start_stack: u64,
    /// Start of the heap.
    #[prost(uint64, required, tag = "6")]
    pub mm_start_brk: u64,
    /// Current program break.
    #[prost(uint64, required, tag = "7")]
    pub mm_brk: u64,
    /// Start of the argument strings.
    #[prost(uint64, required, tag = "8")]
    pub mm_arg_start: u64,
    /// End of the argument strings.
    #[prost(uint64, required, tag = "9")]
    pub mm_arg_end: u64,
    /// Start of the environment strings.
    #[prost(uint64, required, tag = "10")]
    pub mm_env_start: u64,
    /// End of the environment strings.
    #[prost(uint64, required, tag = "11")]
    pub mm_env_end: u64,
    /// Files id (in `files.img`) of the executable (`/proc/PID/exe`).
    #[prost(uint32, required, tag = "12")]
    pub exe_file_id: u32,
    /// The auxiliary vector as (type, value) word pairs, ending with AT_NULL.
    #[prost(uint64, repeated, packed = "false", tag = "13")]
    pub mm_saved_auxv: Vec<u64>,
    /// The mappings, sorted by address.
    #[prost(message, repeated, tag = "14")]
    pub vmas: Vec<VmaEntry>,
    /// `PR_GET_DUMPABLE` value.
    #[prost(int32, optional, tag = "15")]
    pub dumpable: Option<i32>,
    /// AIO rings.
    #[prost(message, repeated, tag = "16")]
    pub aios: Vec<AioRingEntry>,
    /// `PR_GET_THP_DISABLE` value.
    #[prost(bool, optional, tag = "17")]
    pub thp_disabled: Option<bool>,
    /// Stasis extension: size in bytes of the `[vdso]` mapping at dump time.
    #[prost(uint64, optional, tag = "1000")]
    pub stasis_vdso_size: Option<u64>,
    /// Stasis extension: total size in bytes of `[vvar]` and `[vvar_vclock]` at dump time.
    #[prost(uint64, optional, tag = "1001")]
    pub stasis_vvar_size: Option<u64>,
}

/// One mapping of an address space.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct VmaEntry {
    /// First address.
    #[prost(uint64, required, tag = "1")]
    pub start: u64,
    /// Address past the end.
    #[prost(uint64, required, tag = "2")]
    pub end: u64,
    /// File offset in bytes.
    #[prost(uint64, required, tag = "3")]
    pub pgoff: u64,
    /// Files id of the mapped file, or the shared-memory id of a shared anonymous mapping.
    #[prost(uint64, required, tag = "4")]
    pub shmid: u64,
    /// `PROT_*` bits.
    #[prost(uint32, required, tag = "5")]
    pub prot: u32,
    /// `MAP_*` bits.
    #[prost(uint32, required, tag = "6")]
    pub flags: u32,
    /// CRIU's `VMA_*` status bits (area kind: anon, file, vdso, stack...).
    #[prost(uint32, required, tag = "7")]
    pub status: u32,
    /// Unused; always -1.
    #[prost(sint64, required, tag = "8")]
    pub fd: i64,
    /// `madvise(2)` advice bits set on the mapping (bit N = advice N).
    #[prost(uint64, optional, tag = "9")]
    pub madv: Option<u64>,
    /// Open flags (`O_*`) of the mapped file.
    #[prost(uint32, optional, tag = "10")]
    pub fdflags: Option<u32>,
}

impl VmaEntry {
    /// Whether this private vma of a child is `parent`'s as inherited through fork,
    /// unchanged (same range, kind, backing, flags and advice; protections may differ):
    /// then pages the two still share can be restored shared by inheriting it again.
    pub fn inherited_unchanged(&self, parent: &VmaEntry) -> bool {
        let private =
            crate::consts::vma_status::ANON_PRIVATE | crate::consts::vma_status::FILE_PRIVATE;
        self.status & private != 0
            && (
                self.start,
                self.end,
                self.pgoff,
                self.shmid,
                self.flags,
                self.status,
                self.madv,
            ) == (
                parent.start,
                parent.end,
                parent.pgoff,
                parent.shmid,
                parent.flags,
                parent.status,
                parent.madv,
            )
    }
}

/// First entry of a pagemap image: which pages image holds the contents.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PagemapHead {
    /// N of `pages-N.img`.
    #[prost(uint32, required, tag = "1")]
    pub pages_id: u32,
}

/// A run of stored pages; runs appear in address order and their contents follow each
/// other in the pages image.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct PagemapEntry {
    /// Address of the first page.
    #[prost(uint64, required, tag = "1")]
    pub vaddr: u64,
    /// Number of pages as read by older CRIU and crit 3.17 (which call it `nr_pages`);
    /// current CRIU writes 0 here and uses `nr_pages` below.
    #[prost(uint32, required, tag = "2")]
    pub compat_nr_pages: u32,
    /// The pages are in the parent image (incremental dumps), not in ours.
    #[prost(bool, optional, tag = "3")]
    pub in_parent: Option<bool>,
    /// CRIU's `PE_*` flags (parent, lazy, present).
    #[prost(uint32, optional, tag = "4")]
    pub flags: Option<u32>,
    /// Number of pages; when absent, `compat_nr_pages` counts.
    #[prost(uint64, optional, tag = "5")]
    pub nr_pages: Option<u64>,
}
