//! Turning the numbers in images into names: signals, open flags, protections, vma kinds,
//! XSAVE components, syscalls, sizes and durations.

use stasis_images::consts::vma_status as vs;

/// Names of signals 1..=31 (x86_64).
const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The name of signal `sig`. Real-time signals are numbered from glibc's SIGRTMIN (34), as
/// `kill -l` does; 32 and 33 are reserved by glibc and have no name.
pub fn signal(sig: u32) -> String {
    match sig {
        1..=31 => SIGNALS[sig as usize - 1].to_owned(),
        34 => "SIGRTMIN".to_owned(),
        35..=63 => format!("SIGRTMIN+{}", sig - 34),
        64 => "SIGRTMAX".to_owned(),
        _ => format!("SIG{sig}"),
    }
}

/// The signal numbers whose bit is set in `mask` (bit N-1 is signal N).
pub fn sigset_members(mask: u64) -> Vec<u32> {
    (1..=64).filter(|s| mask & (1u64 << (s - 1)) != 0).collect()
}

/// A signal list: names, with runs of three or more consecutive real-time signals folded
/// (`SIGRTMIN..SIGRTMIN+5`), since masks often cover whole ranges of them.
pub fn signal_list(sigs: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sigs.len() {
        let mut j = i;
        while j + 1 < sigs.len() && sigs[j + 1] == sigs[j] + 1 && sigs[i] >= 32 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}..{}", signal(sigs[i]), signal(sigs[j])));
            i = j + 1;
        } else {
            parts.push(signal(sigs[i]));
            i += 1;
        }
    }
    parts.join(" ")
}

/// A signal mask: `none`, the members, or (for masks covering most signals) what it leaves
/// out. SIGKILL and SIGSTOP cannot be blocked or handled, so they never count as missing.
pub fn sigset(mask: u64) -> String {
    let members = sigset_members(mask);
    if members.is_empty() {
        return "none".to_owned();
    }
    if members.len() > 40 {
        let missing: Vec<u32> = (1..=64)
            .filter(|s| mask & (1u64 << (s - 1)) == 0 && *s != 9 && *s != 19)
            .collect();
        if missing.is_empty() {
            return "all".to_owned();
        }
        return format!("all but {}", signal_list(&missing));
    }
    signal_list(&members)
}

/// `open(2)` flags as `O_WRONLY|O_APPEND|...`; unknown bits stay as hex.
///
/// O_LARGEFILE is left out: the kernel sets it on every file of a 64-bit process, so it
/// says nothing about the program.
pub fn open_flags(flags: u32) -> String {
    const O_SYNC_BIT: u32 = 0o4000000; // __O_SYNC; O_SYNC is __O_SYNC|O_DSYNC.
    const O_LARGEFILE: u32 = 0o100000;
    // Composite flags (O_SYNC, O_TMPFILE) come first, to take all their bits.
    const NAMED: [(u32, &str); 16] = [
        (0o4010000, "O_SYNC"),
        (0o20200000, "O_TMPFILE"),
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o20000, "O_ASYNC"),
        (0o40000, "O_DIRECT"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
    ];
    let mut parts = vec![
        match flags & 3 {
            0 => "O_RDONLY",
            1 => "O_WRONLY",
            2 => "O_RDWR",
            _ => "O_ACCMODE",
        }
        .to_owned(),
    ];
    let mut rest = flags & !3 & !O_LARGEFILE;
    for (bits, name) in NAMED {
        if rest & bits == bits {
            parts.push(name.to_owned());
            rest &= !bits;
        }
    }
    if rest & O_SYNC_BIT != 0 {
        parts.push("__O_SYNC".to_owned());
        rest &= !O_SYNC_BIT;
    }
    if rest != 0 {
        parts.push(format!("{rest:#o}"));
    }
    parts.join("|")
}

/// Protection and sharing as in `/proc/PID/maps`: `r-xp`, `rw-s`.
pub fn perms(prot: u32, map_flags: u32) -> String {
    const MAP_SHARED: u32 = 0x01;
    let bit = |b: u32, c: char| if prot & b != 0 { c } else { '-' };
    let share = if map_flags & MAP_SHARED != 0 {
        's'
    } else {
        'p'
    };
    [bit(1, 'r'), bit(2, 'w'), bit(4, 'x'), share]
        .into_iter()
        .collect()
}

/// What kind of area a vma is, from its status bits (most specific first).
pub fn vma_kind(status: u32) -> String {
    const KINDS: [(u32, &str); 14] = [
        (vs::VSYSCALL, "vsyscall"),
        (vs::VDSO, "vdso"),
        (vs::VVAR, "vvar"),
        (vs::UPROBES, "uprobes"),
        (vs::STACK, "stack"),
        (vs::HEAP, "heap"),
        (vs::SYSVIPC, "sysvipc"),
        (vs::SOCKET, "socket"),
        (vs::AIORING, "aio-ring"),
        (vs::MEMFD, "memfd"),
        (vs::ANON_SHARED, "shmem"),
        (vs::FILE_SHARED, "file-shared"),
        (vs::FILE_PRIVATE, "file-private"),
        (vs::ANON_PRIVATE, "anon"),
    ];
    KINDS
        .iter()
        .find(|(bit, _)| status & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| format!("status {status:#x}"))
}

/// Names of the XSAVE state components set in `mask`, related components merged
/// (`AVX-512` for opmask, ZMM_Hi256 and Hi16_ZMM).
pub fn xfeatures(mask: u64) -> String {
    let name = |bit: u32| -> String {
        match bit {
            0 => "x87".into(),
            1 => "SSE".into(),
            2 => "AVX".into(),
            3 | 4 => "MPX".into(),
            5..=7 => "AVX-512".into(),
            8 => "PT".into(),
            9 => "PKRU".into(),
            10 => "PASID".into(),
            11 => "CET-U".into(),
            12 => "CET-S".into(),
            13 => "HDC".into(),
            14 => "UINTR".into(),
            15 => "LBR".into(),
            16 => "HWP".into(),
            17 | 18 => "AMX".into(),
            19 => "APX".into(),
            _ => format!("bit{bit}"),
        }
    };
    let mut names: Vec<String> = Vec::new();
    for bit in 0..64 {
        if mask & (1u64 << bit) != 0 {
            let n = name(bit);
            if names.last() != Some(&n) {
                names.push(n);
            }
        }
    }
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(" ")
    }
}

/// The name of x86_64 system call `nr`, for the calls a stopped process is usually in.
pub fn syscall(nr: u64) -> Option<&'static str> {
    Some(match nr {
        0 => "read",
        1 => "write",
        7 => "poll",
        16 => "ioctl",
        17 => "pread64",
        19 => "readv",
        20 => "writev",
        23 => "select",
        34 => "pause",
        35 => "nanosleep",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        61 => "wait4",
        72 => "fcntl",
        73 => "flock",
        128 => "rt_sigtimedwait",
        130 => "rt_sigsuspend",
        202 => "futex",
        208 => "io_getevents",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        247 => "waitid",
        270 => "pselect6",
        271 => "ppoll",
        281 => "epoll_pwait",
        288 => "accept4",
        299 => "recvmmsg",
        426 => "io_uring_enter",
        441 => "epoll_pwait2",
        _ => return None,
    })
}

/// A byte count for people: `512 B`, `8 KiB`, `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut whole = bytes;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    let scale = 1u64 << (10 * unit);
    if bytes.is_multiple_of(scale) || whole >= 100 {
        format!("{} {}", bytes / scale, UNITS[unit])
    } else {
        format!("{:.1} {}", bytes as f64 / scale as f64, UNITS[unit])
    }
}

/// A duration given in microseconds: `850 us`, `4.2 ms`, `12.3 s`, `5 min 3 s`, `3 h 12 min`.
pub fn duration_us(us: u64) -> String {
    let secs = us / 1_000_000;
    match us {
        0..1_000 => format!("{us} us"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        1_000_000..60_000_000 => format!("{:.1} s", us as f64 / 1e6),
        _ if secs < 3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ if secs < 86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

/// A socket type: `stream`, `dgram`, `raw`, `seqpacket`, `packet`.
pub fn socket_type(ty: i32) -> String {
    match ty {
        libc::SOCK_STREAM => "stream".into(),
        libc::SOCK_DGRAM => "dgram".into(),
        libc::SOCK_RAW => "raw".into(),
        libc::SOCK_SEQPACKET => "seqpacket".into(),
        10 => "packet".into(), // SOCK_PACKET
        other => format!("type {other}"),
    }
}

/// A TCP state.
pub fn tcp_state(state: u32) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "?",
    }
}

/// A unix socket name as the kernel keeps it: a path, `@name` for an abstract one, or
/// nothing.
fn unix_name(name: &[u8]) -> String {
    match name.first() {
        None => String::new(),
        Some(0) => format!("@{}", String::from_utf8_lossy(&name[1..])),
        Some(_) => String::from_utf8_lossy(name)
            .trim_end_matches('\0')
            .to_owned(),
    }
}

/// A unix socket: what it is and its details.
pub fn unix_socket(u: &stasis_images::pb::UnixSkEntry) -> (String, Vec<String>) {
    let name = unix_name(&u.name);
    let state = match u.state {
        10 => "listening",
        1 => "connected",
        _ => "unconnected",
    };
    let mut what = format!("unix {} socket, {state}", socket_type(u.r#type as i32));
    if !name.is_empty() {
        what.push(' ');
        what.push_str(&name);
    }
    let mut d = vec![format!("socket:[{}]", u.ino)];
    if u.peer != 0 {
        d.push(format!("peer socket:[{}]", u.peer));
    }
    if !u.stasis_icons.is_empty() {
        d.push(format!("{} waiting to be accepted", u.stasis_icons.len()));
    }
    if u.deleted == Some(true) {
        d.push("name deleted or replaced".into());
    }
    if u.uflags & 1 != 0 {
        d.push("outside the tree".into());
    }
    (what, d)
}

/// The address in CRIU's words (one for IPv4, four for IPv6) and a port.
fn inet_addr(family: u32, words: &[u32], port: u32) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match (family as i32, bytes.len()) {
        (libc::AF_INET, n) if n >= 4 => format!(
            "{}:{port}",
            std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
        ),
        (libc::AF_INET6, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes);
            format!("[{}]:{port}", std::net::Ipv6Addr::from(a))
        }
        _ => format!("?:{port}"),
    }
}

/// An IPv4 or IPv6 socket: protocol, addresses, state, and its details.
pub fn inet_socket(i: &stasis_images::pb::InetSkEntry) -> (String, Vec<String>) {
    let proto = match i.proto as i32 {
        libc::IPPROTO_TCP => "tcp".to_owned(),
        libc::IPPROTO_UDP => "udp".to_owned(),
        libc::IPPROTO_UDPLITE => "udplite".to_owned(),
        libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6 => "icmp".to_owned(),
        other => format!("protocol {other}"),
    };
    let fam = if i.family as i32 == libc::AF_INET6 {
        "6"
    } else {
        ""
    };
    let local = inet_addr(i.family, &i.src_addr, i.src_port);
    let mut what = format!("{proto}{fam} {local}");
    if i.dst_port != 0 {
        what.push_str(" -> ");
        what.push_str(&inet_addr(i.family, &i.dst_addr, i.dst_port));
    }
    let mut d = vec![format!("socket:[{}]", i.ino), socket_type(i.r#type as i32)];
    if i.r#type as i32 == libc::SOCK_STREAM {
        d.push(tcp_state(i.state).to_owned());
    }
    if i.state == 10 {
        d.push(format!("backlog {}", i.backlog));
    }
    (what, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal(1), "SIGHUP");
        assert_eq!(signal(15), "SIGTERM");
        assert_eq!(signal(31), "SIGSYS");
        assert_eq!(signal(32), "SIG32");
        assert_eq!(signal(34), "SIGRTMIN");
        assert_eq!(signal(40), "SIGRTMIN+6");
        assert_eq!(signal(64), "SIGRTMAX");
        assert_eq!(signal(0), "SIG0");
        assert_eq!(signal(99), "SIG99");
    }

    #[test]
    fn signal_sets() {
        assert_eq!(sigset(0), "none");
        let usr = (1 << 9) | (1 << 11);
        assert_eq!(sigset(usr), "SIGUSR1 SIGUSR2");
        // Real-time runs fold; classic signals never do.
        let mask = (1 << 0) | (1 << 1) | (1 << 2) | (0b1111 << 34) | (1 << 63);
        assert_eq!(
            sigset(mask),
            "SIGHUP SIGINT SIGQUIT SIGRTMIN+1..SIGRTMIN+4 SIGRTMAX"
        );
        assert_eq!(sigset(u64::MAX), "all");
        // SIGKILL/SIGSTOP cannot be blocked: leaving them out still means "all".
        assert_eq!(sigset(!((1 << 8) | (1 << 18))), "all");
        assert_eq!(sigset(!(1 << 14)), "all but SIGTERM");
        assert_eq!(sigset_members(1 << 63), vec![64]);
    }

    #[test]
    fn open_flag_names() {
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(open_flags(0o2001), "O_WRONLY|O_APPEND");
        assert_eq!(open_flags(0o102 | 0o100000), "O_RDWR|O_CREAT");
        assert_eq!(open_flags(0o4010002), "O_RDWR|O_SYNC");
        assert_eq!(open_flags(0o10002), "O_RDWR|O_DSYNC");
        assert_eq!(open_flags(0o10000000), "O_RDONLY|O_PATH");
        assert_eq!(open_flags(0o20200002), "O_RDWR|O_TMPFILE");
        assert_eq!(open_flags(0o200000), "O_RDONLY|O_DIRECTORY");
        assert_eq!(
            open_flags(0o2000000 | 0o4000),
            "O_RDONLY|O_NONBLOCK|O_CLOEXEC"
        );
        assert_eq!(open_flags(0o40000000 | 3), "O_ACCMODE|0o40000000");
    }

    #[test]
    fn vma_descriptions() {
        assert_eq!(perms(5, 2), "r-xp");
        assert_eq!(perms(3, 1), "rw-s");
        assert_eq!(perms(0, 0x22), "---p");
        assert_eq!(vma_kind(vs::REGULAR | vs::ANON_PRIVATE), "anon");
        assert_eq!(
            vma_kind(vs::REGULAR | vs::ANON_PRIVATE | vs::STACK),
            "stack"
        );
        assert_eq!(vma_kind(vs::REGULAR | vs::ANON_PRIVATE | vs::HEAP), "heap");
        assert_eq!(vma_kind(vs::REGULAR | vs::FILE_PRIVATE), "file-private");
        assert_eq!(vma_kind(vs::REGULAR | vs::ANON_SHARED), "shmem");
        assert_eq!(vma_kind(vs::REGULAR | vs::VDSO), "vdso");
        assert_eq!(vma_kind(vs::VSYSCALL), "vsyscall");
        assert_eq!(vma_kind(vs::REGULAR), "status 0x1");
    }

    #[test]
    fn xsave_component_names() {
        assert_eq!(xfeatures(0x2e7), "x87 SSE AVX AVX-512 PKRU");
        assert_eq!(xfeatures(0x6_0003), "x87 SSE AMX");
        assert_eq!(xfeatures(1 << 40), "bit40");
        assert_eq!(xfeatures(0), "none");
    }

    #[test]
    fn syscalls_sizes_durations() {
        assert_eq!(syscall(230), Some("clock_nanosleep"));
        assert_eq!(syscall(u64::MAX), None);
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(8192), "8 KiB");
        assert_eq!(size(1536 * 1024), "1.5 MiB");
        assert_eq!(size(130 * 1024 * 1024 + 1), "130 MiB");
        assert_eq!(size(u64::MAX), "16383 PiB");
        assert_eq!(duration_us(850), "850 us");
        assert_eq!(duration_us(4_200), "4.2 ms");
        assert_eq!(duration_us(12_300_000), "12.3 s");
        assert_eq!(duration_us(303_000_000), "5 min 3 s");
        assert_eq!(duration_us(3 * 3_600_000_000 + 720_000_000), "3 h 12 min");
        assert_eq!(duration_us(90_000_000_000), "1 d 1 h");
    }
}
