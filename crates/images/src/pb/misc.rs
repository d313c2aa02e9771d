//! Seccomp filters and dump/restore statistics.

// ---- seccomp.proto ----

/// One seccomp BPF program.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SeccompFilter {
    /// The program: `struct sock_filter` instructions, 8 bytes each.
    #[prost(bytes = "vec", required, tag = "1")]
    #[serde(serialize_with = "crate::pb::serde_hex::bytes")]
    pub filter: Vec<u8>,
    /// Index in the list of the filter installed before this one; absent at a chain's end.
    #[prost(uint32, optional, tag = "2")]
    pub prev: Option<u32>,
    /// `SECCOMP_FILTER_FLAG_*` flags it was installed with.
    #[prost(uint32, optional, tag = "3")]
    pub flags: Option<u32>,
}

/// The single entry of `seccomp.img`: every filter of the tree, as chains through `prev`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct SeccompEntry {
    /// The filters; threads point into this list.
    #[prost(message, repeated, tag = "1")]
    pub seccomp_filters: Vec<SeccompFilter>,
}

// ---- stats.proto ----

/// Counters and timings of a dump.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct DumpStatsEntry {
    /// Time to freeze the tree, microseconds.
    #[prost(uint32, required, tag = "1")]
    pub freezing_time: u32,
    /// Time the tree stayed frozen, microseconds.
    #[prost(uint32, required, tag = "2")]
    pub frozen_time: u32,
    /// Time to collect memory, microseconds.
    #[prost(uint32, required, tag = "3")]
    pub memdump_time: u32,
    /// Time to write memory, microseconds.
    #[prost(uint32, required, tag = "4")]
    pub memwrite_time: u32,
    /// Private pages looked at.
    #[prost(uint64, required, tag = "5")]
    pub pages_scanned: u64,
    /// Private pages found unchanged in the parent image.
    #[prost(uint64, required, tag = "6")]
    pub pages_skipped_parent: u64,
    /// Private pages written.
    #[prost(uint64, required, tag = "7")]
    pub pages_written: u64,
    /// Time spent resolving inode paths, microseconds.
    #[prost(uint32, optional, tag = "8")]
    pub irmap_resolve: Option<u32>,
    /// Pages left for lazy restore.
    #[prost(uint64, required, tag = "9")]
    pub pages_lazy: u64,
    /// Page pipes used.
    #[prost(uint64, optional, tag = "10")]
    pub page_pipes: Option<u64>,
    /// Page pipe buffers used.
    #[prost(uint64, optional, tag = "11")]
    pub page_pipe_bufs: Option<u64>,
    /// Shared pages looked at.
    #[prost(uint64, optional, tag = "12")]
    pub shpages_scanned: Option<u64>,
    /// Shared pages found unchanged in the parent image.
    #[prost(uint64, optional, tag = "13")]
    pub shpages_skipped_parent: Option<u64>,
    /// Shared pages written.
    #[prost(uint64, optional, tag = "14")]
    pub shpages_written: Option<u64>,
}

/// Counters and timings of a restore.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RestoreStatsEntry {
    /// Pages compared with the parent's.
    #[prost(uint64, required, tag = "1")]
    pub pages_compared: u64,
    /// Pages shared copy-on-write instead of restored.
    #[prost(uint64, required, tag = "2")]
    pub pages_skipped_cow: u64,
    /// Time to create the tree, microseconds.
    #[prost(uint32, required, tag = "3")]
    pub forking_time: u32,
    /// Total restore time, microseconds.
    #[prost(uint32, required, tag = "4")]
    pub restore_time: u32,
    /// Pages restored.
    #[prost(uint64, optional, tag = "5")]
    pub pages_restored: Option<u64>,
}

/// The single entry of `stats-dump` or `stats-restore`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct StatsEntry {
    /// Dump statistics.
    #[prost(message, optional, tag = "1")]
    pub dump: Option<DumpStatsEntry>,
    /// Restore statistics.
    #[prost(message, optional, tag = "2")]
    pub restore: Option<RestoreStatsEntry>,
}

// ---- cgroup.proto (the membership part; directory trees and properties are for a later
// --manage-cgroups) ----

/// A process's place in one cgroup hierarchy.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgMemberEntry {
    /// The hierarchy's controllers as /proc/PID/cgroup names them ("memory",
    /// "name=systemd", "" for the unified hierarchy).
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// The cgroup's path in that hierarchy.
    #[prost(string, required, tag = "2")]
    pub path: String,
    /// Length of the cgroup namespace prefix of `path`, if any.
    #[prost(uint32, optional, tag = "3")]
    pub cgns_prefix: Option<u32>,
}

/// A set of cgroups processes are members of; tasks point at it by id.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgSetEntry {
    /// Its id (task_core_entry.cg_set / thread_core_entry.cg_set).
    #[prost(uint32, required, tag = "1")]
    pub id: u32,
    /// One member entry per hierarchy.
    #[prost(message, repeated, tag = "2")]
    pub ctls: Vec<CgMemberEntry>,
}

/// The single entry of `cgroup.img`.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct CgroupEntry {
    /// The sets.
    #[prost(message, repeated, tag = "1")]
    pub sets: Vec<CgSetEntry>,
}
