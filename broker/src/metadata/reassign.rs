//! Partition reassignment and leader election as state transitions of one partition
//! (Kafka's KRaft model): during a move `replicas` is the target followed by the
//! replicas being removed; it completes once every target replica is in sync.

use serde::{Deserialize, Serialize};

use super::image::{MetadataError, PartitionState};

/// One partition to move (`target: Some`) or whose move to cancel (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

impl PartitionState {
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replica set before the move in progress (the current one when none is).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }

    /// The replica set the move in progress leads to.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    fn bump(&mut self, leader: i32) {
        if leader != self.leader {
            self.leader = leader;
            self.leader_epoch += 1;
        }
        self.partition_epoch += 1;
    }

    /// The first replica in `candidates` order that is in sync and active, else -1.
    fn elect_from(&self, candidates: &[i32], active: &dyn Fn(i32) -> bool) -> i32 {
        candidates
            .iter()
            .copied()
            .find(|r| self.isr.contains(r) && active(*r))
            .unwrap_or(-1)
    }

    /// Whether starting a move to `target` keeps an in-sync replica (a replaced move may
    /// drop the replicas it was adding, which may be the only ones in sync).
    pub fn can_reassign_to(&self, target: &[i32]) -> bool {
        let original = self.original_replicas();
        self.isr
            .iter()
            .any(|r| original.contains(r) || target.contains(r))
    }

    /// Whether cancelling keeps an in-sync replica.
    pub fn can_cancel(&self) -> bool {
        let original = self.original_replicas();
        self.isr.iter().any(|r| original.contains(r))
    }

    /// Keeps the leader if it is still a replica in sync, else elects one.
    fn reelect_if_orphaned(&mut self, active: &dyn Fn(i32) -> bool) {
        if self.leader >= 0
            && (!self.replicas.contains(&self.leader) || !self.isr.contains(&self.leader))
        {
            let replicas = self.replicas.clone();
            let leader = self.elect_from(&replicas, active);
            self.leader = leader;
            self.leader_epoch += 1;
        }
    }

    /// Starts moving to `target`; a move already in progress is replaced. Callers check
    /// [`Self::can_reassign_to`] first.
    pub fn start_reassignment(&mut self, target: &[i32], active: &dyn Fn(i32) -> bool) {
        let original = self.original_replicas();
        let adding: Vec<i32> = target
            .iter()
            .copied()
            .filter(|r| !original.contains(r))
            .collect();
        let removing: Vec<i32> = original
            .iter()
            .copied()
            .filter(|r| !target.contains(r))
            .collect();
        let mut replicas = target.to_vec();
        replicas.extend(removing.iter().copied());
        // Replicas added by a replaced move and not in the new target leave the ISR.
        self.isr
            .retain(|r| replicas.contains(r) || original.contains(r));
        self.replicas = replicas;
        self.adding = adding;
        self.removing = removing;
        self.reelect_if_orphaned(active);
        self.partition_epoch += 1;
        self.try_complete_reassignment(active);
    }

    /// Cancels the move in progress: back to the original replicas.
    pub fn cancel_reassignment(&mut self, active: &dyn Fn(i32) -> bool) {
        if !self.is_reassigning() {
            return;
        }
        let original = self.original_replicas();
        self.replicas = original.clone();
        self.isr.retain(|r| original.contains(r));
        self.adding.clear();
        self.removing.clear();
        let leader = if original.contains(&self.leader) {
            self.leader
        } else {
            self.elect_from(&original, active)
        };
        self.bump(leader);
    }

    /// Completes the move once every target replica is in sync: the removed replicas
    /// go, and leadership moves into the target if it was on one of them.
    pub fn try_complete_reassignment(&mut self, active: &dyn Fn(i32) -> bool) -> bool {
        if !self.is_reassigning() {
            return false;
        }
        let target = self.target_replicas();
        if !target.iter().all(|r| self.isr.contains(r)) {
            return false;
        }
        self.isr.retain(|r| target.contains(r));
        let leader = if target.contains(&self.leader) && active(self.leader) {
            self.leader
        } else {
            self.elect_from(&target, active)
        };
        self.replicas = target;
        self.adding.clear();
        self.removing.clear();
        self.bump(leader);
        true
    }

    /// Preferred leader election: the first replica leads if it is in sync and active.
    /// Returns whether leadership moved.
    pub fn elect_preferred(&mut self, active: &dyn Fn(i32) -> bool) -> bool {
        let Some(&preferred) = self.replicas.first() else {
            return false;
        };
        if self.leader == preferred || !self.isr.contains(&preferred) || !active(preferred) {
            return false;
        }
        self.bump(preferred);
        true
    }
}

/// Checks a target replica list against the registered brokers.
pub fn check_target(
    topic: &str,
    partition: i32,
    target: &[i32],
    registered: &dyn Fn(i32) -> bool,
) -> Result<(), MetadataError> {
    let invalid =
        |reason: String| MetadataError::InvalidAssignment(format!("{topic}-{partition}: {reason}"));
    if target.is_empty() {
        return Err(invalid("the target replica list is empty".into()));
    }
    let mut sorted = target.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != target.len() {
        return Err(invalid(format!("{target:?} lists a broker twice")));
    }
    if let Some(b) = target.iter().find(|b| !registered(**b)) {
        return Err(invalid(format!("broker {b} is not registered")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        }
    }

    const ALL: &dyn Fn(i32) -> bool = &|_| true;

    #[test]
    fn move_completes_when_target_is_in_sync() {
        let mut s = p(&[1, 2, 3], &[1, 2, 3], 1);
        s.start_reassignment(&[4, 2, 3], ALL);
        assert_eq!(s.replicas, vec![4, 2, 3, 1]);
        assert_eq!((s.adding.clone(), s.removing.clone()), (vec![4], vec![1]));
        assert!(!s.try_complete_reassignment(ALL));
        s.isr.push(4);
        assert!(s.try_complete_reassignment(ALL));
        assert_eq!(s.replicas, vec![4, 2, 3]);
        assert_eq!(s.isr, vec![2, 3, 4]);
        // The leader was removed: the first in-sync target replica takes over.
        assert_eq!((s.leader, s.leader_epoch), (4, 1));
        assert!(!s.is_reassigning());
    }

    #[test]
    fn cancel_restores_the_original_replicas() {
        let mut s = p(&[1, 2, 3], &[1, 2, 3], 1);
        s.start_reassignment(&[4, 5, 6], ALL);
        s.isr.push(4);
        s.cancel_reassignment(ALL);
        assert_eq!(
            (s.replicas.clone(), s.isr.clone()),
            (vec![1, 2, 3], vec![1, 2, 3])
        );
        assert_eq!(s.leader, 1);
        assert!(!s.is_reassigning());
    }

    #[test]
    fn reorder_only_completes_at_once_and_preferred_election_follows() {
        let mut s = p(&[1, 2, 3], &[1, 2, 3], 1);
        s.start_reassignment(&[2, 3, 1], ALL);
        assert_eq!(s.replicas, vec![2, 3, 1]);
        assert_eq!(s.leader, 1);
        assert!(s.elect_preferred(ALL));
        assert_eq!(s.leader, 2);
        assert!(!s.elect_preferred(ALL));
        // Not in sync: no election.
        let mut s = p(&[1, 2], &[2], 2);
        assert!(!s.elect_preferred(ALL));
    }

    #[test]
    fn replacing_a_move_reelects_a_leader_it_drops() {
        // Broker 4, added by a move in progress, leads; 1 is being removed.
        let mut s = p(&[4, 2, 3, 1], &[4], 4);
        s.adding = vec![4];
        s.removing = vec![1];
        // Only 4 is in sync: a new move without it would leave no in-sync replica.
        assert!(!s.can_reassign_to(&[5, 2, 3]));
        s.isr = vec![4, 2];
        assert!(s.can_reassign_to(&[5, 2, 3]));
        s.start_reassignment(&[5, 2, 3], ALL);
        assert_eq!(s.isr, vec![2]);
        assert_eq!((s.leader, s.leader_epoch), (2, 1));
        assert!(s.replicas.contains(&s.leader));
    }

    #[test]
    fn targets_are_checked() {
        let reg = |b: i32| b < 5;
        assert!(check_target("t", 0, &[1, 2], &reg).is_ok());
        assert!(check_target("t", 0, &[], &reg).is_err());
        assert!(check_target("t", 0, &[1, 1], &reg).is_err());
        assert!(check_target("t", 0, &[1, 9], &reg).is_err());
    }
}
