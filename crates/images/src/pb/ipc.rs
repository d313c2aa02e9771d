//! SysV IPC messages (CRIU's `ipc-*.proto`): the objects of an IPC namespace.

/// What every SysV IPC object has: key, owner, creator, mode, id.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcDescEntry {
    /// Key (`IPC_PRIVATE` is 0).
    #[prost(uint32, required, tag = "1")]
    pub key: u32,
    /// Owner uid.
    #[prost(uint32, required, tag = "2")]
    pub uid: u32,
    /// Owner gid.
    #[prost(uint32, required, tag = "3")]
    pub gid: u32,
    /// Creator uid.
    #[prost(uint32, required, tag = "4")]
    pub cuid: u32,
    /// Creator gid.
    #[prost(uint32, required, tag = "5")]
    pub cgid: u32,
    /// Permission bits and state flags (`SHM_DEST`, `SHM_LOCKED`).
    #[prost(uint32, required, tag = "6")]
    pub mode: u32,
    /// Identifier (shmid, semid, msqid).
    #[prost(uint32, required, tag = "7")]
    pub id: u32,
}

/// A shared memory segment; its bytes follow the entry, padded to 4 bytes.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcShmEntry {
    /// Key, owner, mode, id (required).
    #[prost(message, optional, tag = "1")]
    pub desc: Option<IpcDescEntry>,
    /// Size in bytes.
    #[prost(uint64, required, tag = "2")]
    pub size: u64,
    /// Contents are in pagemaps rather than after the entry.
    #[prost(bool, optional, tag = "3")]
    pub in_pagemaps: Option<bool>,
    /// `SHM_HUGETLB` and page size flags.
    #[prost(uint32, optional, tag = "4")]
    pub hugetlb_flag: Option<u32>,
    /// stasis: the key the segment was created with, for one removed while attached (its
    /// key is 0 now, but its attaches still show the old one).
    #[prost(uint32, optional, tag = "1000")]
    pub stasis_creation_key: Option<u32>,
}

/// A semaphore set; the values follow as `nsems` u16s, padded to 8 bytes.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcSemEntry {
    /// Key, owner, mode, id (required).
    #[prost(message, optional, tag = "1")]
    pub desc: Option<IpcDescEntry>,
    /// Number of semaphores.
    #[prost(uint32, required, tag = "2")]
    pub nsems: u32,
    /// stasis: the pid of the last operation on each semaphore (`GETPID`).
    #[prost(int32, repeated, packed = "false", tag = "1000")]
    pub stasis_pids: Vec<i32>,
}

impl IpcSemEntry {
    /// The size of the values that follow the entry: `nsems` u16s, padded to 8 bytes.
    pub fn payload_len(&self) -> u64 {
        (u64::from(self.nsems) * 2).next_multiple_of(8)
    }

    /// The values in the payload that followed the entry.
    pub fn values(&self, payload: &[u8]) -> Vec<u16> {
        payload
            .chunks_exact(2)
            .take(self.nsems as usize)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }
}

/// One queued message; its bytes follow, padded to 8 bytes.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcMsg {
    /// Message type.
    #[prost(uint64, required, tag = "1")]
    pub mtype: u64,
    /// Size in bytes.
    #[prost(uint32, required, tag = "2")]
    pub msize: u32,
}

/// A message queue; `qnum` length-prefixed [`IpcMsg`]s with their bytes follow.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcMsgEntry {
    /// Key, owner, mode, id (required).
    #[prost(message, optional, tag = "1")]
    pub desc: Option<IpcDescEntry>,
    /// Capacity in bytes (`msg_qbytes`).
    #[prost(uint32, required, tag = "2")]
    pub qbytes: u32,
    /// Number of messages.
    #[prost(uint32, required, tag = "3")]
    pub qnum: u32,
}

/// The IPC sysctls of a namespace (`/proc/sys/kernel`, `/proc/sys/fs/mqueue`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct IpcVarEntry {
    /// `kernel.sem`: SEMMSL, SEMMNS, SEMOPM, SEMMNI.
    #[prost(uint32, repeated, packed = "false", tag = "1")]
    pub sem_ctls: Vec<u32>,
    /// `kernel.msgmax`.
    #[prost(uint32, required, tag = "2")]
    pub msg_ctlmax: u32,
    /// `kernel.msgmnb`.
    #[prost(uint32, required, tag = "3")]
    pub msg_ctlmnb: u32,
    /// `kernel.msgmni`.
    #[prost(uint32, required, tag = "4")]
    pub msg_ctlmni: u32,
    /// `kernel.auto_msgmni`.
    #[prost(uint32, required, tag = "5")]
    pub auto_msgmni: u32,
    /// `kernel.shmmax`.
    #[prost(uint64, required, tag = "6")]
    pub shm_ctlmax: u64,
    /// `kernel.shmall`.
    #[prost(uint64, required, tag = "7")]
    pub shm_ctlall: u64,
    /// `kernel.shmmni`.
    #[prost(uint32, required, tag = "8")]
    pub shm_ctlmni: u32,
    /// `kernel.shm_rmid_forced`.
    #[prost(uint32, required, tag = "9")]
    pub shm_rmid_forced: u32,
    /// `fs.mqueue.queues_max`.
    #[prost(uint32, required, tag = "10")]
    pub mq_queues_max: u32,
    /// `fs.mqueue.msg_max`.
    #[prost(uint32, required, tag = "11")]
    pub mq_msg_max: u32,
    /// `fs.mqueue.msgsize_max`.
    #[prost(uint32, required, tag = "12")]
    pub mq_msgsize_max: u32,
    /// `fs.mqueue.msg_default`.
    #[prost(uint32, optional, tag = "13")]
    pub mq_msg_default: Option<u32>,
    /// `fs.mqueue.msgsize_default`.
    #[prost(uint32, optional, tag = "14")]
    pub mq_msgsize_default: Option<u32>,
    /// `kernel.msg_next_id`.
    #[prost(uint32, optional, tag = "15")]
    pub msg_next_id: Option<u32>,
    /// `kernel.sem_next_id`.
    #[prost(uint32, optional, tag = "16")]
    pub sem_next_id: Option<u32>,
    /// `kernel.shm_next_id`.
    #[prost(uint32, optional, tag = "17")]
    pub shm_next_id: Option<u32>,
}
