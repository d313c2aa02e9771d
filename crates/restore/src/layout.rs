//! Where things go in the restore child's address space.
//!
//! The child still runs as a copy of stasis, whose mappings may sit where the image wants
//! its own. So the image's memory is first built in a *zone*: a range free both in the
//! child now and in the image, holding the bootstrap region (restorer blob, its program,
//! data and stack), temporary slots for the kernel's vDSO, whole shared-memory objects,
//! and one slot per vma. The restorer then unmaps everything outside the zone and moves
//! each slot to its final address; since the zone is free in the image, no move can
//! clobber a slot not yet moved.
//!
//! A vma a child shares copy-on-write with its parent is not given a slot of its own: the
//! child inherits the parent's slot (in the parent's zone) at the fork and moves that one.
//! So every zone avoids the vmas of the whole tree, not just its own process's.

use stasis_images::consts::vma_status;
use stasis_images::{PAGE_SIZE, pb};
use stasis_sys::proc::{Vma, VmaPath};

use crate::image::TASK_SIZE;

/// Virtual space kept for the bootstrap region (blob, program, frames, stack). Only what
/// is used gets mapped; the rest is an inaccessible reservation.
pub const BOOTSTRAP_RESERVE: u64 = 256 << 20;
/// Slots of vmas at least this large keep their address modulo this, so transparent huge
/// pages line up after the move.
const HUGE: u64 = 2 << 20;
/// Lowest address we place the zone at.
const ZONE_FLOOR: u64 = 1 << 32;

/// The plan for one restore child.
#[derive(Debug)]
pub struct Layout {
    /// Start of the zone.
    pub zone_start: u64,
    /// End of the zone.
    pub zone_end: u64,
    /// Start of the bootstrap region (at the zone's start).
    pub bootstrap: u64,
    /// Premap address of each image vma (by index), `None` for vdso/vvar/vsyscall.
    pub slots: Vec<Option<u64>>,
    /// Temporary homes of the current vDSO pieces: (current start, length, slot).
    pub vdso_slots: Vec<(u64, u64, u64)>,
    /// Slots inherited from the parent (outside the zone), as sorted `[start, end)`.
    pub inherited: Vec<(u64, u64)>,
}

/// Whether an image vma is premapped in a slot (everything but the kernel's own areas).
pub fn is_premapped(v: &pb::VmaEntry) -> bool {
    v.status & (vma_status::VSYSCALL | vma_status::VDSO | vma_status::VVAR) == 0
}

/// The current vDSO pieces of this process, in address order.
pub fn current_vdso(current: &[Vma]) -> Vec<(u64, u64)> {
    current
        .iter()
        .filter(|v| matches!(v.path, VmaPath::Vvar | VmaPath::VvarVclock | VmaPath::Vdso))
        .map(|v| (v.start, v.len()))
        .collect()
}

/// Plans the zone for restoring `target` in a process currently laid out as `current`,
/// away from the ranges in `avoid` (the whole tree's vmas). `inherited` lists the vmas
/// (by index) that keep the slot they were inherited in.
pub fn plan(
    current: &[Vma],
    target: &[pb::VmaEntry],
    avoid: &[(u64, u64)],
    inherited: &[(usize, u64)],
) -> Option<Layout> {
    let inherited_slot = |i: usize| inherited.iter().find(|(j, _)| *j == i).map(|(_, s)| *s);
    let vdso = current_vdso(current);
    // Size: bootstrap, vDSO slots, vma slots with guard pages and room
    // for huge-page alignment.
    let mut size = BOOTSTRAP_RESERVE;
    size += vdso.iter().map(|(_, len)| len + PAGE_SIZE).sum::<u64>();
    for (_, v) in target
        .iter()
        .enumerate()
        .filter(|(i, v)| is_premapped(v) && inherited_slot(*i).is_none())
    {
        let len = v.end - v.start;
        size += len + PAGE_SIZE + if len >= HUGE { HUGE } else { 0 };
    }
    let size = size.next_multiple_of(HUGE);

    // Occupied ranges: the child's own mappings and the image's vmas.
    let mut busy: Vec<(u64, u64)> = current
        .iter()
        .filter(|v| v.end <= TASK_SIZE)
        .map(|v| (v.start, v.end))
        .chain(target.iter().map(|v| (v.start, v.end)))
        .chain(avoid.iter().copied())
        .collect();
    busy.sort_unstable();
    // Search from the top of the address space down for a gap that fits.
    let mut gap_end = TASK_SIZE & !(HUGE - 1);
    let mut start = None;
    for &(b_start, b_end) in busy.iter().rev() {
        if b_end <= gap_end {
            let gap_start = b_end.next_multiple_of(HUGE) + HUGE;
            if gap_end >= gap_start + size {
                start = Some((gap_end - size) & !(HUGE - 1));
                break;
            }
        }
        gap_end = gap_end.min(b_start.saturating_sub(HUGE) & !(HUGE - 1));
    }
    if start.is_none() && gap_end >= ZONE_FLOOR + size {
        start = Some((gap_end - size) & !(HUGE - 1));
    }
    let zone_start = start.filter(|s| *s >= ZONE_FLOOR)?;

    let mut next = zone_start + BOOTSTRAP_RESERVE;
    let mut vdso_slots = Vec::new();
    for (cur, len) in vdso {
        vdso_slots.push((cur, len, next));
        next += len + PAGE_SIZE;
    }
    let mut slots = Vec::with_capacity(target.len());
    let mut inherited_ranges = Vec::new();
    for (i, v) in target.iter().enumerate() {
        if !is_premapped(v) {
            slots.push(None);
            continue;
        }
        if let Some(slot) = inherited_slot(i) {
            slots.push(Some(slot));
            inherited_ranges.push((slot, slot + (v.end - v.start)));
            continue;
        }
        let len = v.end - v.start;
        if len >= HUGE {
            // Same offset within a huge page as the final address: less than HUGE of
            // padding, which the sizing above allows for.
            next += v.start.wrapping_sub(next) % HUGE;
        }
        slots.push(Some(next));
        next += len + PAGE_SIZE;
    }
    if next > zone_start + size {
        // A sizing bug must not turn into mappings outside the reservation.
        return None;
    }
    Some(Layout {
        zone_start,
        zone_end: zone_start + size,
        bootstrap: zone_start,
        slots,
        vdso_slots,
        inherited: {
            inherited_ranges.sort_unstable();
            inherited_ranges
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, status: u32) -> pb::VmaEntry {
        pb::VmaEntry {
            start,
            end,
            status,
            ..Default::default()
        }
    }

    fn cur(start: u64, end: u64, path: VmaPath) -> Vma {
        Vma {
            start,
            end,
            read: true,
            write: true,
            exec: false,
            shared: false,
            offset: 0,
            dev_major: 0,
            dev_minor: 0,
            inode: 0,
            path,
            vm_flags: vec![],
            rss_kb: 0,
            anon_huge_kb: 0,
        }
    }

    /// Many large vmas at every offset within a huge page: every slot must lie inside the
    /// zone, apart from the others, and keep its vma's huge-page offset.
    #[test]
    fn slots_fit_the_zone_whatever_the_alignment() {
        let anon = vma_status::REGULAR | vma_status::ANON_PRIVATE;
        let mut target = Vec::new();
        let mut at = 0x7f00_0000_0000u64;
        for i in 0..64u64 {
            let len = HUGE + (i % 7) * PAGE_SIZE;
            let start = at + (i * 37 % 512) * PAGE_SIZE;
            target.push(vma(start, start + len, anon));
            target.push(vma(
                start + len + PAGE_SIZE,
                start + len + 2 * PAGE_SIZE,
                anon,
            ));
            at = (start + len + 3 * PAGE_SIZE).next_multiple_of(HUGE) + HUGE;
        }
        let l = plan(&[], &target, &[], &[]).unwrap();
        let mut used: Vec<(u64, u64)> = Vec::new();
        for (v, slot) in target.iter().zip(&l.slots) {
            let s = slot.unwrap();
            let len = v.end - v.start;
            assert!(s >= l.zone_start + BOOTSTRAP_RESERVE && s + len <= l.zone_end);
            if len >= HUGE {
                assert_eq!(s % HUGE, v.start % HUGE);
            }
            assert!(
                used.iter().all(|&(a, b)| s + len <= a || b <= s),
                "slot {s:#x} overlaps"
            );
            used.push((s, s + len));
        }
    }

    #[test]
    fn zone_avoids_both_layouts_and_keeps_huge_alignment() {
        let anon = vma_status::REGULAR | vma_status::ANON_PRIVATE;
        let target = vec![
            vma(0x5555_0000_0000, 0x5555_0000_4000, anon),
            vma(0x7f00_0020_1000, 0x7f00_0060_1000, anon),
            vma(
                0x7fff_f000_0000,
                0x7fff_f000_2000,
                vma_status::REGULAR | vma_status::VDSO,
            ),
        ];
        let current = vec![
            cur(0x5600_0000_0000, 0x5600_0010_0000, VmaPath::Anonymous),
            cur(0x7ffd_0000_0000, 0x7ffd_0000_2000, VmaPath::Vdso),
            cur(0x7ffe_0000_0000, 0x7ffe_0010_0000, VmaPath::Stack),
        ];
        let l = plan(&current, &target, &[], &[]).unwrap();
        let overlaps = |s: u64, e: u64| s < l.zone_end && l.zone_start < e;
        for v in &target {
            assert!(!overlaps(v.start, v.end));
        }
        for v in &current {
            assert!(!overlaps(v.start, v.end));
        }
        assert_eq!(l.slots[2], None);
        let big = l.slots[1].unwrap();
        assert_eq!(big % HUGE, target[1].start % HUGE);
        assert!(l.slots[0].unwrap() >= l.zone_start + BOOTSTRAP_RESERVE);
        assert!(big + 0x40_0000 <= l.zone_end);
        assert_eq!(l.vdso_slots.len(), 1);
    }

    /// A child's zone avoids the whole tree's vmas, and a vma inherited from the parent
    /// keeps the parent's slot, outside the child's zone.
    #[test]
    fn inherited_slots_and_the_tree_s_vmas() {
        let anon = vma_status::REGULAR | vma_status::ANON_PRIVATE;
        let target = vec![
            vma(0x5555_0000_0000, 0x5555_0000_4000, anon),
            vma(0x7f00_0000_0000, 0x7f00_4000_0000, anon),
        ];
        // Another process of the tree maps what lies right below the top of user space.
        let avoid = vec![(0x7ff0_0000_0000, 0x7fff_ffff_0000)];
        let parent_slot = 0x6000_0000_0000;
        let l = plan(&[], &target, &avoid, &[(1, parent_slot)]).unwrap();
        assert!(
            l.zone_end <= avoid[0].0,
            "the zone overlaps another process's vmas"
        );
        assert_eq!(l.slots[1], Some(parent_slot));
        assert_eq!(l.inherited, vec![(parent_slot, parent_slot + 0x4000_0000)]);
        // The inherited vma takes no room in the zone.
        assert!(l.zone_end - l.zone_start < 0x4000_0000);
        assert!(l.slots[0].unwrap() >= l.zone_start && l.slots[0].unwrap() < l.zone_end);
    }
}
