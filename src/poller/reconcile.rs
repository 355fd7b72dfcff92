//! Finding deleted records (issue 15): a reconcile scan lists every id the resource's URL selects
//! now; the ids pollerd knows to exist that the scan did not see were deleted. Only a scan that
//! read every page decides anything, and a scan that would delete most of what is known is refused
//! until an operator confirms it.

use std::collections::HashSet;

use crate::object_id::ObjectId;

/// A reconcile may report more deletions than this without tripping the mass-delete guard,
/// whatever the fraction: deleting 3 of 4 records is not a sign of a broken scan.
pub const MASS_DELETE_MIN: usize = 10;

/// The mass-delete guard of one reconcile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guard {
    /// `deletedMaxFraction`: the largest share of the known ids one reconcile may delete.
    pub max_fraction: f64,
    /// `pollerd reconcile --allow-mass-delete`: the operator confirmed this once.
    pub allow_mass_delete: bool,
}

/// What a complete scan means for the known set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The resource's first reconcile: the known set becomes what the scan saw, and no event is
    /// sent (pollerd cannot tell what was deleted before it knew the records).
    Baseline { seen: usize },
    /// `deleted` become DELETED events and leave the known set; `added` (seen, not known) join it.
    Apply {
        deleted: Vec<ObjectId>,
        added: Vec<ObjectId>,
    },
    /// More than the guard allows would be deleted: nothing changes.
    MassDeleteRefused { would_delete: usize, known: usize },
}

/// Compares the ids known before the scan with those it saw. `baselined` is false until the
/// resource's first reconcile committed. Deleted ids come in ascending order, so the events of
/// one reconcile are always batched the same way.
pub fn decide(
    known: &HashSet<ObjectId>,
    baselined: bool,
    seen: &HashSet<ObjectId>,
    guard: Guard,
) -> Verdict {
    if !baselined {
        return Verdict::Baseline { seen: seen.len() };
    }
    let mut deleted: Vec<ObjectId> = known.difference(seen).cloned().collect();
    deleted.sort_unstable();
    if is_mass_delete(deleted.len(), known.len(), guard) {
        return Verdict::MassDeleteRefused {
            would_delete: deleted.len(),
            known: known.len(),
        };
    }
    let mut added: Vec<ObjectId> = seen.difference(known).cloned().collect();
    added.sort_unstable();
    Verdict::Apply { deleted, added }
}

fn is_mass_delete(deleted: usize, known: usize, guard: Guard) -> bool {
    if guard.allow_mass_delete || deleted <= MASS_DELETE_MIN {
        return false;
    }
    // Counts far below 2^53: exact as floating point.
    deleted as f64 > guard.max_fraction * known as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u64>) -> HashSet<ObjectId> {
        range.map(ObjectId::Number).collect()
    }

    const GUARD: Guard = Guard {
        max_fraction: 0.5,
        allow_mass_delete: false,
    };

    #[test]
    fn the_first_reconcile_only_learns_what_exists() {
        let verdict = decide(&HashSet::new(), false, &ids(0..5), GUARD);
        assert_eq!(verdict, Verdict::Baseline { seen: 5 });
        // Even when ids were known from polls before it.
        assert_eq!(
            decide(&ids(0..9), false, &ids(0..5), GUARD),
            Verdict::Baseline { seen: 5 }
        );
    }

    #[test]
    fn known_ids_not_seen_are_deleted_and_new_ones_join() {
        let mut seen = ids(0..1000);
        for gone in [3, 500, 999] {
            seen.remove(&ObjectId::Number(gone));
        }
        seen.insert(ObjectId::Number(1000));
        let verdict = decide(&ids(0..1000), true, &seen, GUARD);
        assert_eq!(
            verdict,
            Verdict::Apply {
                deleted: [3, 500, 999].map(ObjectId::Number).to_vec(),
                added: vec![ObjectId::Number(1000)],
            }
        );
    }

    #[test]
    fn deleting_more_than_the_fraction_is_refused_unless_allowed() {
        let known = ids(0..100);
        let seen = ids(60..100);
        assert_eq!(
            decide(&known, true, &seen, GUARD),
            Verdict::MassDeleteRefused {
                would_delete: 60,
                known: 100
            }
        );
        let allowed = Guard {
            allow_mass_delete: true,
            ..GUARD
        };
        let Verdict::Apply { deleted, .. } = decide(&known, true, &seen, allowed) else {
            panic!("an allowed mass delete applies");
        };
        assert_eq!(deleted.len(), 60);
        // Exactly half is within the guard.
        assert!(matches!(
            decide(&known, true, &ids(50..100), GUARD),
            Verdict::Apply { .. }
        ));
    }

    #[test]
    fn a_few_deletions_never_trip_the_guard() {
        let verdict = decide(&ids(0..12), true, &ids(10..12), GUARD);
        assert!(
            matches!(&verdict, Verdict::Apply { deleted, .. } if deleted.len() == 10),
            "{verdict:?}"
        );
        let verdict = decide(&ids(0..12), true, &ids(11..12), GUARD);
        assert!(matches!(verdict, Verdict::MassDeleteRefused { .. }));
    }
}
