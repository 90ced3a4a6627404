//! The embedded store's in-process change feed: a sequence number and a bounded ring of the
//! most recent changes, with positions of the form `<epoch>:<seq>`.

use crate::revocation::{Change, ChangeBatch, FeedPosition};
use std::collections::VecDeque;

/// Recent changes of one store instance, numbered from 1.
#[derive(Debug)]
pub(super) struct Feed {
    /// Names this instance, so that a position issued by another one is recognised.
    epoch: u64,
    /// The sequence number of the last change (0 before the first).
    seq: u64,
    /// The last `capacity` changes; the back one has number `seq`.
    ring: VecDeque<Change>,
    capacity: usize,
}

impl Feed {
    /// An empty feed keeping at most `capacity` changes (at least one).
    pub(super) fn new(epoch: u64, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            epoch,
            seq: 0,
            ring: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    /// Appends a change, dropping the oldest one when full; returns its sequence number.
    pub(super) fn push(&mut self, change: Change) -> u64 {
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(change);
        self.seq += 1;
        self.seq
    }

    /// The position just after the last change.
    pub(super) fn position(&self) -> FeedPosition {
        FeedPosition(format!("{:016x}:{}", self.epoch, self.seq))
    }

    /// Parses a position issued by this instance, returning its sequence number.
    pub(super) fn parse(&self, position: &FeedPosition) -> Option<u64> {
        let (epoch, seq) = position.0.split_once(':')?;
        let epoch = u64::from_str_radix(epoch, 16).ok()?;
        let seq: u64 = seq.parse().ok()?;
        (epoch == self.epoch && seq <= self.seq).then_some(seq)
    }

    /// At most `max` changes after `seq`, or a gap if some of them are no longer held.
    pub(super) fn since(&self, seq: u64, max: usize) -> ChangeBatch {
        // `self.seq - ring.len()` is the number of the change just before the oldest held.
        let Some(skip) = seq.checked_sub(self.seq - self.ring.len() as u64) else {
            return ChangeBatch::Gap;
        };
        let changes: Vec<Change> = self
            .ring
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(max)
            .cloned()
            .collect();
        let position = FeedPosition(format!(
            "{:016x}:{}",
            self.epoch,
            seq + changes.len() as u64
        ));
        ChangeBatch::Changes(changes, position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{RevocationKey, RevocationKind};

    fn delete(id: &str) -> Change {
        Change::Delete(RevocationKey::new("iss", RevocationKind::Token, id).expect("valid key"))
    }

    #[test]
    fn since_returns_changes_after_a_position_and_a_gap_once_trimmed() {
        let mut feed = Feed::new(7, 2);
        let start = feed.parse(&feed.position()).expect("own position");
        assert_eq!(
            feed.since(start, 10),
            ChangeBatch::Changes(vec![], feed.position())
        );
        feed.push(delete("a"));
        feed.push(delete("b"));
        assert_eq!(
            feed.since(start, 1),
            ChangeBatch::Changes(vec![delete("a")], FeedPosition(format!("{:016x}:1", 7)))
        );
        feed.push(delete("c"));
        assert_eq!(feed.since(start, 10), ChangeBatch::Gap);
        assert_eq!(
            feed.since(1, 10),
            ChangeBatch::Changes(vec![delete("b"), delete("c")], feed.position())
        );
    }

    #[test]
    fn parse_refuses_other_instances_future_and_garbage() {
        let feed = Feed::new(7, 2);
        let other = Feed::new(8, 2);
        assert_eq!(feed.parse(&other.position()), None);
        assert_eq!(feed.parse(&FeedPosition(format!("{:016x}:1", 7))), None);
        assert_eq!(feed.parse(&FeedPosition("nonsense".into())), None);
        assert_eq!(feed.parse(&FeedPosition::default()), None);
    }
}
