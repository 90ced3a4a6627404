//! Positions in the Redis change feed, and deciding from the stream's state whether changes
//! after a position may have been lost (a gap).

use crate::revocation::FeedPosition;
use std::fmt;

/// What the feed looks like now.
#[derive(Debug)]
pub(super) struct FeedState {
    pub(super) epoch: String,
    pub(super) exists: bool,
    pub(super) last_generated: StreamPos,
    pub(super) max_deleted: StreamPos,
    /// Entries ever added to the stream.
    pub(super) entries_added: u64,
    /// Entries it holds now: the last `length` of those added.
    pub(super) length: u64,
}

impl FeedState {
    /// Whether changes after `after` may have been lost.
    pub(super) fn is_gap(&self, after: &Position) -> bool {
        if self.epoch != after.epoch {
            return true;
        }
        if !self.exists {
            return after.id != StreamPos::ZERO || after.count != 0;
        }
        self.last_generated < after.id
            || self.entries_added < after.count
            || after.count < self.entries_added.saturating_sub(self.length)
            || self.max_deleted > after.id
    }
}

/// A stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct StreamPos(pub(super) u64, pub(super) u64);

impl StreamPos {
    pub(super) const ZERO: Self = Self(0, 0);

    pub(super) fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl fmt::Display for StreamPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// A feed position: `<epoch>/<stream id>/<count>`, where `count` entries had been added to
/// the stream up to and including `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) epoch: String,
    pub(super) id: StreamPos,
    pub(super) count: u64,
}

impl Position {
    pub(super) fn parse(position: &FeedPosition) -> Option<Self> {
        let mut parts = position.0.split('/');
        let (Some(epoch), Some(id), Some(count), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            epoch: epoch.to_owned(),
            id: StreamPos::parse(id)?,
            count: count.parse().ok()?,
        })
    }

    pub(super) fn to_feed(&self) -> FeedPosition {
        FeedPosition(format!("{}/{}/{}", self.epoch, self.id, self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_follow_epoch_reset_and_trimming() {
        let at = |epoch: &str, ms: u64, count: u64| Position {
            epoch: epoch.into(),
            id: StreamPos(ms, 0),
            count,
        };
        // Entries 1..=10 added at ms 1..=10; the last 4 are kept.
        let state = FeedState {
            epoch: "e".into(),
            exists: true,
            last_generated: StreamPos(10, 0),
            max_deleted: StreamPos::ZERO,
            entries_added: 10,
            length: 4,
        };
        assert!(!state.is_gap(&at("e", 6, 6)));
        assert!(!state.is_gap(&at("e", 10, 10)));
        assert!(state.is_gap(&at("e", 5, 5)), "entry 6 was trimmed");
        assert!(state.is_gap(&at("e", 11, 11)), "the stream was reset");
        assert!(state.is_gap(&at("other", 6, 6)), "redis was wiped");
        let deleted = FeedState {
            max_deleted: StreamPos(8, 0),
            ..state
        };
        assert!(deleted.is_gap(&at("e", 7, 7)));
        let gone = FeedState {
            exists: false,
            last_generated: StreamPos::ZERO,
            entries_added: 0,
            length: 0,
            ..deleted
        };
        assert!(!gone.is_gap(&at("e", 0, 0)));
        assert!(gone.is_gap(&at("e", 1, 1)));
    }

    #[test]
    fn positions_round_trip_and_refuse_garbage() {
        let position = FeedPosition("abc/17-3/5".into());
        let parsed = Position::parse(&position).expect("valid");
        assert_eq!(parsed.id, StreamPos(17, 3));
        assert_eq!(parsed.count, 5);
        assert_eq!(parsed.to_feed(), position);
        for bad in ["", "abc/17-3", "abc/17/5", "abc/17-3/x", "abc/17-3/5/6"] {
            assert_eq!(Position::parse(&FeedPosition(bad.into())), None, "{bad:?}");
        }
    }
}
