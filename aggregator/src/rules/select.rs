//! Selection of order statistics in place, for the coordinate-wise rules: a
//! quickselect over integer keys with a branchless partition, which leaves
//! a slice partitioned around the selected positions as
//! `select_nth_unstable` does.
//!
//! On this machine's cores it takes about two thirds of the time of
//! `select_nth_unstable` for 100 to 1,000 keys: the standard library's
//! partition and small-slice sort branch on the data, and on random values
//! those branches are mispredicted. A slice that needs more partitions than
//! a balanced one would (an adversary can craft a column against any fixed
//! pivot rule) is finished by `select_nth_unstable`, whose worst case is
//! linear, so a batch cannot make the aggregator quadratic.

/// Windows this short are finished by insertion sort.
const SMALL: usize = 8;

/// The median of three.
#[inline(always)]
fn median3(a: i32, b: i32, c: i32) -> i32 {
    a.min(b).max(a.max(b).min(c))
}

/// A pivot for `s` (at least [`SMALL`] long): the median of three spread
/// values, or of three such medians (Tukey's ninther) from 64 on.
#[inline(always)]
fn pivot(s: &[i32]) -> i32 {
    let m = s.len();
    if m >= 64 {
        let e = m / 8;
        median3(
            median3(s[0], s[e], s[2 * e]),
            median3(s[3 * e], s[4 * e], s[5 * e]),
            median3(s[6 * e], s[7 * e], s[m - 1]),
        )
    } else {
        median3(s[0], s[m / 2], s[m - 1])
    }
}

/// Moves the values for which `before` holds to the front of `s`, keeping
/// nothing else in order, without a branch on the data (Lomuto's scheme
/// with a swap in every step); returns how many there are.
#[inline(always)]
#[allow(
    clippy::manual_swap,
    reason = "the value moved to the front is the one compared: `swap` then a read back is three times slower"
)]
fn partition(s: &mut [i32], before: impl Fn(i32) -> bool) -> usize {
    let mut i = 0;
    for j in 0..s.len() {
        let x = s[j];
        s[j] = s[i];
        s[i] = x;
        i += usize::from(before(x));
    }
    i
}

/// Sorts a short slice.
fn insertion_sort(s: &mut [i32]) {
    for i in 1..s.len() {
        let x = s[i];
        let mut j = i;
        while j > 0 && s[j - 1] > x {
            s[j] = s[j - 1];
            j -= 1;
        }
        s[j] = x;
    }
}

/// How many partitions a slice of `n` may take before it is handed to
/// `select_nth_unstable`: twice a balanced quickselect's depth, and some.
fn budget(n: usize) -> u32 {
    2 * (usize::BITS - n.leading_zeros()) + 4
}

/// Reorders `v` so that `v[k]` is the value of rank `k`, with no greater
/// value before it and no smaller value after it (as
/// `v.select_nth_unstable(k)`); returns it. `k` must be within `v`.
pub(crate) fn select(v: &mut [i32], k: usize) -> i32 {
    let (mut lo, mut hi) = (0, v.len());
    let mut left = budget(v.len());
    loop {
        let s = &mut v[lo..hi];
        let r = k - lo;
        if s.len() <= SMALL {
            insertion_sort(s);
            return s[r];
        }
        if left == 0 {
            return *s.select_nth_unstable(r).1;
        }
        left -= 1;
        let p = pivot(s);
        let below = partition(s, |x| x < p);
        if r < below {
            hi = lo + below;
        } else if below > 0 {
            lo += below;
        } else {
            // Nothing below the pivot: its copies come first, and a window
            // of copies is already in place.
            let equal = partition(s, |x| x == p);
            if r < equal {
                return p;
            }
            lo += equal;
        }
    }
}

/// Reorders `v` as [`select`] would for `k1` and then for `k2` (`k1 <= k2`,
/// both within `v`): the values of ranks `k1` and `k2` at those positions,
/// each with no greater value before it and no smaller value after it. The
/// partitions both need are done once.
pub(crate) fn select_two(v: &mut [i32], k1: usize, k2: usize) {
    let (mut lo, mut hi) = (0, v.len());
    let mut left = budget(v.len());
    loop {
        let s = &mut v[lo..hi];
        let (r1, r2) = (k1 - lo, k2 - lo);
        if s.len() <= SMALL {
            insertion_sort(s);
            return;
        }
        if left == 0 {
            s.select_nth_unstable(r1);
            if r2 > r1 {
                s[r1 + 1..].select_nth_unstable(r2 - r1 - 1);
            }
            return;
        }
        left -= 1;
        let p = pivot(s);
        let below = partition(s, |x| x < p);
        if r2 < below {
            hi = lo + below;
        } else if r1 >= below && below > 0 {
            lo += below;
        } else if r1 < below {
            // They fall apart: each side on its own.
            let (left_side, right_side) = s.split_at_mut(below);
            select(left_side, r1);
            select(right_side, r2 - below);
            return;
        } else {
            let equal = partition(s, |x| x == p);
            if r2 < equal {
                return;
            }
            if r1 < equal {
                select(&mut s[equal..], r2 - equal);
                return;
            }
            lo += equal;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether `v` is partitioned around position `k`.
    fn partitioned(v: &[i32], k: usize) -> bool {
        v[..k].iter().all(|&x| x <= v[k]) && v[k + 1..].iter().all(|&x| x >= v[k])
    }

    fn keys() -> impl Strategy<Value = Vec<i32>> {
        prop_oneof![
            proptest::collection::vec(any::<i32>(), 1..300),
            // Many ties.
            proptest::collection::vec(-3i32..3, 1..300),
        ]
    }

    proptest! {
        #[test]
        fn select_finds_the_rank_and_partitions(v in keys(), at in any::<prop::sample::Index>()) {
            let k = at.index(v.len());
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let mut w = v.clone();
            prop_assert_eq!(select(&mut w, k), sorted[k]);
            prop_assert_eq!(w[k], sorted[k]);
            prop_assert!(partitioned(&w, k));
            w.sort_unstable();
            prop_assert_eq!(w, sorted);
        }

        #[test]
        fn select_two_places_both_ranks(v in keys(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
            let (k1, k2) = {
                let (a, b) = (a.index(v.len()), b.index(v.len()));
                (a.min(b), a.max(b))
            };
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let mut w = v.clone();
            select_two(&mut w, k1, k2);
            prop_assert_eq!(w[k1], sorted[k1]);
            prop_assert_eq!(w[k2], sorted[k2]);
            prop_assert!(partitioned(&w, k1) && partitioned(&w, k2));
            w.sort_unstable();
            prop_assert_eq!(w, sorted);
        }
    }

    #[test]
    fn sorted_reversed_and_constant_slices() {
        for n in [1usize, 2, 9, 64, 65, 1000] {
            let up: Vec<i32> = (0..n as i32).collect();
            let down: Vec<i32> = up.iter().rev().copied().collect();
            let organ: Vec<i32> = (0..n as i32).map(|i| i.min(n as i32 - i)).collect();
            for v in [up, down, organ, vec![7; n]] {
                let mut sorted = v.clone();
                sorted.sort_unstable();
                for k in [0, n / 5, n / 2, n - 1] {
                    let mut w = v.clone();
                    assert_eq!(select(&mut w, k), sorted[k]);
                    let (k1, k2) = (k.min(n - 1 - k), k.max(n - 1 - k));
                    let mut w = v.clone();
                    select_two(&mut w, k1, k2);
                    assert_eq!((w[k1], w[k2]), (sorted[k1], sorted[k2]));
                }
            }
        }
    }
}
