//! The network lock of TCP connections being checkpointed: from before their state is
//! read until their restore is complete, no packet of theirs goes in or out, so the peer
//! sees neither a reset (from a socket that is gone) nor data that would be lost.
//!
//! nftables, as CRIU's `--network-lock nftables`: a table `inet stasis-ROOTPID` with an
//! input and an output chain that drop packets whose (source, port, destination, port)
//! is in a set, and let through packets marked [`LOCK_BYPASS_MARK`] (the ones stasis
//! itself hands to the stack at restore). The `nft` program does the work.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::inet::LOCK_BYPASS_MARK;

/// How connections are locked (`--network-lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// nftables rules (the default).
    #[default]
    Nftables,
    /// No lock: the caller guarantees no packet reaches the connections (e.g. the tree's
    /// network namespace is unplugged).
    Skip,
}

impl std::str::FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nftables" => Ok(Method::Nftables),
            "skip" => Ok(Method::Skip),
            "iptables" => Err("--network-lock iptables is not supported; use nftables".into()),
            other => Err(format!("unknown network lock method {other:?}")),
        }
    }
}

impl Method {
    /// CRIU's number for the method in `inventory.img` (`network_lock_method`: 0
    /// iptables, 1 nftables, 2 skip).
    pub fn criu_code(self) -> u32 {
        match self {
            Method::Nftables => 1,
            Method::Skip => 2,
        }
    }

    /// The method of CRIU's number, if stasis has it.
    pub fn from_criu_code(code: u32) -> Option<Method> {
        match code {
            1 => Some(Method::Nftables),
            2 => Some(Method::Skip),
            _ => None,
        }
    }
}

/// The nftables table of the tree rooted at `root`.
pub fn table_name(root: i32) -> String {
    format!("stasis-{root}")
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run nft ({e}); install nftables or use --network-lock skip")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The connections of one tree locked so far.
#[derive(Debug)]
pub struct NetLock {
    method: Method,
    table: String,
    created: bool,
    /// Every connection locked, as on the wire, its lower address first.
    locked: std::collections::HashSet<(SocketAddr, SocketAddr)>,
}

/// Both addresses as one family: an IPv6 socket's IPv4-mapped addresses are IPv4 on the
/// wire.
fn wire(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

impl NetLock {
    /// A lock of nothing yet, for the tree rooted at `root`.
    pub fn new(method: Method, root: i32) -> NetLock {
        NetLock {
            method,
            table: table_name(root),
            created: false,
            locked: std::collections::HashSet::new(),
        }
    }

    /// Whether anything is locked.
    pub fn is_active(&self) -> bool {
        self.created
    }

    /// Stops every packet of the connection between `local` and `peer`, both ways.
    pub fn lock(&mut self, local: SocketAddr, peer: SocketAddr) -> Result<(), String> {
        self.lock_all(&[(local, peer)])
    }

    /// Stops every packet of each connection (local, peer), both ways, in one `nft` run.
    /// Connections locked already are left as they are.
    pub fn lock_all(&mut self, conns: &[(SocketAddr, SocketAddr)]) -> Result<(), String> {
        if self.method == Method::Skip {
            return Ok(());
        }
        // One entry per connection, in either direction: both ends may be the tree's.
        let mut new: Vec<(SocketAddr, SocketAddr)> = conns
            .iter()
            .map(|&(l, p)| {
                let (l, p) = (wire(l), wire(p));
                if l <= p { (l, p) } else { (p, l) }
            })
            .filter(|c| !self.locked.contains(c))
            .collect();
        new.sort_unstable();
        new.dedup();
        if new.is_empty() {
            return Ok(());
        }
        let t = &self.table;
        let mut script = String::new();
        if !self.created {
            // A table left by an earlier dump of the same pid is replaced (adding a table
            // that exists does nothing, so the delete always has one to delete).
            script.push_str(&format!(
                "add table inet {t}\n\
                 delete table inet {t}\n\
                 add table inet {t}\n\
                 add chain inet {t} output {{ type filter hook output priority 0; policy accept; }}\n\
                 add chain inet {t} input {{ type filter hook input priority 0; policy accept; }}\n\
                 add rule inet {t} output meta mark {mark:#x} accept\n\
                 add rule inet {t} input meta mark {mark:#x} accept\n\
                 add set inet {t} conns4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n\
                 add set inet {t} conns6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n",
                mark = LOCK_BYPASS_MARK
            ));
            for chain in ["output", "input"] {
                script.push_str(&format!(
                    "add rule inet {t} {chain} ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
                     add rule inet {t} {chain} ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n"
                ));
            }
        }
        for (l, p) in &new {
            let set = if l.is_ipv4() { "conns4" } else { "conns6" };
            script.push_str(&format!(
                "add element inet {t} {set} {{ {} . {} . {} . {}, {} . {} . {} . {} }}\n",
                l.ip(),
                l.port(),
                p.ip(),
                p.port(),
                p.ip(),
                p.port(),
                l.ip(),
                l.port()
            ));
        }
        nft(&script)?;
        self.created = true;
        self.locked.extend(new);
        Ok(())
    }

    /// Lets the locked connections' packets through again.
    pub fn unlock(&mut self) -> Result<(), String> {
        if !self.created {
            return Ok(());
        }
        self.created = false;
        self.locked.clear();
        nft(&format!("delete table inet {}\n", self.table))
    }
}

/// Removes the lock a dump of the tree rooted at `root` left, if there is one (the
/// restore's last step). Without nft there is nothing to remove.
pub fn unlock_tree(root: i32) -> Result<(), String> {
    if Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Ok(());
    }
    let t = table_name(root);
    // Adding a table that exists does nothing: the delete always finds one.
    nft(&format!("add table inet {t}\ndelete table inet {t}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_by_name_and_by_criu_number() {
        for m in [Method::Nftables, Method::Skip] {
            assert_eq!(Method::from_criu_code(m.criu_code()), Some(m));
        }
        // CRIU's iptables (0) and unknown numbers are not stasis's to undo.
        assert_eq!(Method::from_criu_code(0), None);
        assert_eq!(Method::from_criu_code(7), None);
        assert_eq!("nftables".parse::<Method>(), Ok(Method::Nftables));
        assert_eq!("skip".parse::<Method>(), Ok(Method::Skip));
        assert!(
            "iptables"
                .parse::<Method>()
                .unwrap_err()
                .contains("nftables")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_lock_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        assert_eq!(wire(mapped), "10.0.0.1:80".parse::<SocketAddr>().unwrap());
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(wire(v6), v6);
    }
}
