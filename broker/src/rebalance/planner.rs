//! The rebalance planner: a pure function from the current assignment to a balanced one.
//!
//! Goals, in order: no replica on a broker that may not hold any (drained, unknown);
//! replica counts per broker within ±1; preferred leaders (first replicas) per broker
//! within ±1; replicas of a partition in distinct racks when the racks allow it; and as
//! few moves (and bytes) as possible — a replica only moves off a broker above its share,
//! choosing the smallest partitions first, and leadership is balanced by reordering
//! replicas, which moves no data.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
    /// Bytes copied to the new replicas (size × replicas added).
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub replicas: usize,
    pub leaders: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub moves: Vec<Move>,
    pub before: BTreeMap<i32, Load>,
    pub after: BTreeMap<i32, Load>,
    pub bytes_to_move: u64,
}

fn loads(
    eligible: &[BrokerInfo],
    partitions: &[PartitionInfo],
    assignment: &[Vec<i32>],
) -> BTreeMap<i32, Load> {
    let mut out: BTreeMap<i32, Load> = eligible.iter().map(|b| (b.id, Load::default())).collect();
    for (p, replicas) in partitions.iter().zip(assignment) {
        for (i, r) in replicas.iter().enumerate() {
            let l = out.entry(*r).or_default();
            l.replicas += 1;
            l.bytes += p.size_bytes;
            if i == 0 {
                l.leaders += 1;
            }
        }
    }
    out
}

struct Racks<'a> {
    of: BTreeMap<i32, &'a str>,
    /// Enforce distinct racks only when every broker has one.
    enabled: bool,
    distinct: usize,
}

impl Racks<'_> {
    /// Whether `to` may join `replicas` (without `leaving`) as far as racks go.
    fn allows(&self, replicas: &[i32], leaving: i32, to: i32) -> bool {
        if !self.enabled {
            return true;
        }
        let others: Vec<&str> = replicas
            .iter()
            .filter(|r| **r != leaving)
            .filter_map(|r| self.of.get(r).copied())
            .collect();
        let Some(rack) = self.of.get(&to) else {
            return true;
        };
        // With fewer racks than replicas some must share; otherwise none may.
        !others.contains(rack) || self.distinct < replicas.len()
    }
}

fn replace(replicas: &mut [i32], from: i32, to: i32) {
    for r in replicas.iter_mut() {
        if *r == from {
            *r = to;
        }
    }
}

/// Replica (or leader) counts per broker and per (topic, broker), and the cost of their
/// imbalance: squared counts, broker totals weighted [`TOTAL_WEIGHT`] times.
struct Counts {
    total: BTreeMap<i32, i64>,
    per_topic: BTreeMap<(usize, i32), i64>,
}

const TOTAL_WEIGHT: i64 = 1000;

impl Counts {
    fn new<'a, I: Iterator<Item = i32>>(
        ids: &BTreeSet<i32>,
        topic_of: &[usize],
        assignment: &'a [Vec<i32>],
        members: impl Fn(&'a Vec<i32>) -> I,
    ) -> Self {
        let mut c = Self {
            total: ids.iter().map(|b| (*b, 0)).collect(),
            per_topic: BTreeMap::new(),
        };
        for (pi, a) in assignment.iter().enumerate() {
            for b in members(a) {
                if ids.contains(&b) {
                    *c.total.entry(b).or_default() += 1;
                    *c.per_topic.entry((topic_of[pi], b)).or_default() += 1;
                }
            }
        }
        c
    }

    fn topic(&self, t: usize, b: i32) -> i64 {
        self.per_topic.get(&(t, b)).copied().unwrap_or(0)
    }

    fn get(&self, b: i32) -> i64 {
        self.total.get(&b).copied().unwrap_or(0)
    }

    /// Change of cost when one replica of topic `t` moves from `d` to `r`:
    /// (x-1)² - x² + (y+1)² - y² = 2(y - x + 1) for each of the two counts.
    fn move_delta(&self, t: usize, d: i32, r: i32) -> i64 {
        TOTAL_WEIGHT * 2 * (self.get(r) - self.get(d) + 1)
            + 2 * (self.topic(t, r) - self.topic(t, d) + 1)
    }

    /// A replica of `t` moves d → r and one of `u` moves r → d (totals unchanged).
    fn swap_delta(&self, t: usize, u: usize, d: i32, r: i32) -> i64 {
        2 * (self.topic(t, r) - self.topic(t, d) + 1)
            + 2 * (self.topic(u, d) - self.topic(u, r) + 1)
    }

    fn apply_move(&mut self, t: usize, d: i32, r: i32) {
        *self.total.entry(d).or_default() -= 1;
        *self.total.entry(r).or_default() += 1;
        *self.per_topic.entry((t, d)).or_default() -= 1;
        *self.per_topic.entry((t, r)).or_default() += 1;
    }
}

/// Plans a balanced assignment over `eligible` brokers (those not listed lose all their
/// replicas).
pub fn plan(eligible: &[BrokerInfo], partitions: &[PartitionInfo]) -> Plan {
    let ids: BTreeSet<i32> = eligible.iter().map(|b| b.id).collect();
    let racks = {
        let of: BTreeMap<i32, &str> = eligible
            .iter()
            .filter_map(|b| b.rack.as_deref().map(|r| (b.id, r)))
            .collect();
        let distinct = of.values().collect::<BTreeSet<_>>().len();
        Racks {
            enabled: !eligible.is_empty() && of.len() == eligible.len(),
            distinct,
            of,
        }
    };
    let current: Vec<Vec<i32>> = partitions.iter().map(|p| p.replicas.clone()).collect();
    let before = loads(eligible, partitions, &current);
    let mut assignment = current.clone();
    if ids.is_empty() {
        return Plan {
            before: before.clone(),
            after: before,
            ..Default::default()
        };
    }
    let count = |a: &[Vec<i32>]| -> BTreeMap<i32, (usize, u64)> {
        let mut c: BTreeMap<i32, (usize, u64)> = ids.iter().map(|b| (*b, (0, 0))).collect();
        for (p, replicas) in partitions.iter().zip(a) {
            for r in replicas {
                if let Some(e) = c.get_mut(r) {
                    e.0 += 1;
                    e.1 += p.size_bytes;
                }
            }
        }
        c
    };

    // 1. Replicas on brokers that may not hold any move to the least loaded eligible one.
    for pi in 0..partitions.len() {
        for slot in 0..assignment[pi].len() {
            let r = assignment[pi][slot];
            if ids.contains(&r) {
                continue;
            }
            let c = count(&assignment);
            let target = c
                .iter()
                .filter(|(b, _)| !assignment[pi].contains(b))
                .filter(|(b, _)| racks.allows(&assignment[pi], r, **b))
                .min_by_key(|(b, (n, bytes))| (*n, *bytes, **b))
                .or_else(|| {
                    c.iter()
                        .filter(|(b, _)| !assignment[pi].contains(b))
                        .min_by_key(|(b, (n, bytes))| (*n, *bytes, **b))
                })
                .map(|(b, _)| *b);
            if let Some(t) = target {
                assignment[pi][slot] = t;
            }
        }
    }

    // 2. Replica counts within ±1, per broker and per topic per broker: local search on
    // a cost that weighs the broker totals far above the per-topic counts. Single moves
    // first (the smallest partition among equally good ones); when none helps, swaps of
    // two partitions between two brokers (totals unchanged, topics evened out).
    let topic_of: Vec<usize> = {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        partitions
            .iter()
            .map(|p| {
                let n = names.len();
                *names.entry(p.topic.as_str()).or_insert(n)
            })
            .collect()
    };
    let mut counts = Counts::new(&ids, &topic_of, &assignment, |a| a.iter().copied());
    let total_replicas: usize = assignment.iter().map(Vec::len).sum();
    for _ in 0..=(2 * total_replicas) {
        let mut best: Option<(i64, u64, usize, i32, i32)> = None;
        for (pi, replicas) in assignment.iter().enumerate() {
            for &d in replicas {
                for &r in &ids {
                    if replicas.contains(&r) || !racks.allows(replicas, d, r) {
                        continue;
                    }
                    let delta = counts.move_delta(topic_of[pi], d, r);
                    let key = (delta, partitions[pi].size_bytes, pi, d, r);
                    if delta < 0 && best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                        best = Some(key);
                    }
                }
            }
        }
        if let Some((_, _, pi, d, r)) = best {
            replace(&mut assignment[pi], d, r);
            counts.apply_move(topic_of[pi], d, r);
            continue;
        }
        // No single move helps: try a swap between brokers whose topic counts differ.
        let mut swapped = false;
        'swap: for (pi, a) in assignment.iter().enumerate() {
            for &d in a {
                for &r in &ids {
                    if a.contains(&r)
                        || counts.topic(topic_of[pi], d) < counts.topic(topic_of[pi], r) + 2
                    {
                        continue;
                    }
                    for (qi, b) in assignment.iter().enumerate() {
                        if topic_of[qi] == topic_of[pi] || !b.contains(&r) || b.contains(&d) {
                            continue;
                        }
                        let delta = counts.swap_delta(topic_of[pi], topic_of[qi], d, r);
                        if delta < 0 && racks.allows(a, d, r) && racks.allows(b, r, d) {
                            let (pi, qi) = (pi, qi);
                            replace(&mut assignment[pi], d, r);
                            replace(&mut assignment[qi], r, d);
                            counts.apply_move(topic_of[pi], d, r);
                            counts.apply_move(topic_of[qi], r, d);
                            swapped = true;
                            break 'swap;
                        }
                    }
                }
            }
        }
        if !swapped {
            break;
        }
    }

    // 3. Preferred leaders within ±1 (per broker, then per topic), by putting another
    // replica first — which moves no data.
    let mut leaders = Counts::new(&ids, &topic_of, &assignment, |a| {
        a.first().copied().into_iter()
    });
    for _ in 0..=(2 * partitions.len()) {
        let mut best: Option<(i64, usize, usize)> = None;
        for (pi, a) in assignment.iter().enumerate() {
            let Some(&first) = a.first() else { continue };
            for (pos, &r) in a.iter().enumerate().skip(1) {
                let delta = leaders.move_delta(topic_of[pi], first, r);
                if delta < 0 && best.is_none_or(|b| delta < b.0) {
                    best = Some((delta, pi, pos));
                }
            }
        }
        let Some((_, pi, pos)) = best else { break };
        let (from, to) = (assignment[pi][0], assignment[pi][pos]);
        assignment[pi].swap(0, pos);
        leaders.apply_move(topic_of[pi], from, to);
    }

    let after = loads(eligible, partitions, &assignment);
    let moves: Vec<Move> = partitions
        .iter()
        .zip(current.iter().zip(&assignment))
        .filter(|(_, (from, to))| from != to)
        .map(|(p, (from, to))| {
            let added = to.iter().filter(|r| !from.contains(r)).count() as u64;
            Move {
                topic: p.topic.clone(),
                partition: p.partition,
                from: from.clone(),
                to: to.clone(),
                bytes: added * p.size_bytes,
            }
        })
        .collect();
    let bytes_to_move = moves.iter().map(|m| m.bytes).sum();
    Plan {
        moves,
        before,
        after,
        bytes_to_move,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<BrokerInfo> {
        ids.iter()
            .map(|id| BrokerInfo {
                id: *id,
                rack: None,
            })
            .collect()
    }

    /// `count` partitions of RF 3 placed round-robin on brokers 0..3, as topic creation does.
    fn three_broker_topic(count: i32) -> Vec<PartitionInfo> {
        (0..count)
            .map(|p| PartitionInfo {
                topic: "t".into(),
                partition: p,
                replicas: (0..3).map(|r| (p + r) % 3).collect(),
                size_bytes: 1000 + p as u64,
            })
            .collect()
    }

    fn spread(plan: &Plan) -> (usize, usize) {
        let r: Vec<usize> = plan.after.values().map(|l| l.replicas).collect();
        let l: Vec<usize> = plan.after.values().map(|l| l.leaders).collect();
        (
            r.iter().max().unwrap() - r.iter().min().unwrap(),
            l.iter().max().unwrap() - l.iter().min().unwrap(),
        )
    }

    #[test]
    fn a_new_broker_gets_its_share_with_minimal_moves() {
        let parts = three_broker_topic(12);
        let plan = plan(&brokers(&[0, 1, 2, 3]), &parts);
        assert_eq!(spread(&plan), (0, 0), "{:?}", plan.after);
        // 36 replicas over 4 brokers: 9 each, so exactly 9 replicas move to broker 3.
        let added: usize = plan
            .moves
            .iter()
            .map(|m| m.to.iter().filter(|r| !m.from.contains(r)).count())
            .sum();
        assert_eq!(added, 9);
        assert_eq!(plan.after[&3].replicas, 9);
        assert!(plan.bytes_to_move > 0);
    }

    #[test]
    fn every_topic_is_spread_too() {
        // Two topics; the empty one must not absorb the whole move.
        let mut parts = three_broker_topic(12);
        parts.extend((0..50).map(|p| PartitionInfo {
            topic: "__consumer_offsets".into(),
            partition: p,
            replicas: (0..3).map(|r| (p + r) % 3).collect(),
            size_bytes: 0,
        }));
        let plan = plan(&brokers(&[0, 1, 2, 3]), &parts);
        let (r, l) = spread(&plan);
        assert!(r <= 1 && l <= 1, "{:?}", plan.after);
        let mut t_count: BTreeMap<i32, usize> = BTreeMap::new();
        for p in parts.iter().filter(|p| p.topic == "t") {
            let to = plan
                .moves
                .iter()
                .find(|m| m.topic == "t" && m.partition == p.partition)
                .map(|m| m.to.clone())
                .unwrap_or(p.replicas.clone());
            for r in to {
                *t_count.entry(r).or_default() += 1;
            }
        }
        assert_eq!(
            t_count.values().copied().collect::<Vec<_>>(),
            vec![9, 9, 9, 9]
        );
    }

    #[test]
    fn balanced_input_is_left_alone() {
        let parts = three_broker_topic(6);
        let plan = plan(&brokers(&[0, 1, 2]), &parts);
        assert!(plan.moves.is_empty(), "{:?}", plan.moves);
    }

    #[test]
    fn draining_moves_everything_off() {
        let mut parts = three_broker_topic(8);
        for p in &mut parts {
            // A fourth broker holds some replicas first.
            if p.partition % 2 == 0 {
                p.replicas[2] = 3;
            }
        }
        let plan = plan(&brokers(&[0, 1, 2]), &parts);
        assert!(plan.moves.iter().all(|m| !m.to.contains(&3)));
        assert!(!plan.after.contains_key(&3));
        let (r, l) = spread(&plan);
        assert!(r <= 1 && l <= 1, "{:?}", plan.after);
        for m in &plan.moves {
            let mut d = m.to.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), m.to.len(), "duplicate replica in {m:?}");
        }
    }

    #[test]
    fn racks_are_kept_distinct() {
        let eligible: Vec<BrokerInfo> =
            [(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "b"), (5, "c")]
                .iter()
                .map(|(id, r)| BrokerInfo {
                    id: *id,
                    rack: Some(r.to_string()),
                })
                .collect();
        let plan = plan(&eligible, &three_broker_topic(12));
        let rack = |b: i32| ["a", "b", "c"][(b % 3) as usize];
        let parts = three_broker_topic(12);
        for (i, p) in parts.iter().enumerate() {
            let to = plan
                .moves
                .iter()
                .find(|m| m.partition == i as i32)
                .map(|m| m.to.clone())
                .unwrap_or(p.replicas.clone());
            let mut rs: Vec<&str> = to.iter().map(|b| rack(*b)).collect();
            rs.sort_unstable();
            rs.dedup();
            assert_eq!(rs.len(), 3, "partition {i} on {to:?}");
        }
        let (r, l) = spread(&plan);
        assert!(r <= 1 && l <= 1, "{:?}", plan.after);
    }
}
