//! Putting the partitions of a Kafka topic back into event-time order.
//!
//! Each batch a Kafka source delivers holds one partition's messages, in
//! that partition's order. When gatewatch reads a backlog (after a restart,
//! or with a lagging consumer) one batch can span an hour of event time, so
//! handing batches to the detectors as they come would make time jump back
//! and forth by that much. Per-client order would survive (a topic keyed by
//! client keeps each client in one partition), but site-wide figures, the
//! lateness horizon and attacks spread over many sources would not.
//!
//! The merger keeps one lane per (source, partition) and releases events
//! smallest event time first. It only releases an event when no *active*
//! lane could still deliver an earlier one: a lane is active when it
//! delivered within `idle_after` (wall clock) and has not yet shown an
//! event at or after the candidate. A partition that goes quiet therefore
//! holds the others back for at most `idle_after` (40 times that when the
//! source said it holds a backlog, as it says of every freshly assigned
//! partition until its statistics show it caught up; a caught-up partition
//! keeps that longer patience only while the events waiting are history,
//! not live traffic), and a cap on buffered events bounds memory whatever
//! the partitions do. A batch is acknowledged
//! once all its events are released, in order within its lane.

use gatewatch_detector::{Event, EventTime};
use gatewatch_ingest::Acknowledge;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One lane per partition of a topic of a source.
pub type LaneId = (u16, Arc<str>, i32);

/// How much longer than `idle_after` a partition that reported a backlog
/// may hold the others back: its next batch is known to exist, but the
/// broker may be slow to hand it over.
const BACKLOG_PATIENCE: u32 = 40;

/// What the merger hands out next.
pub enum Released {
    /// The next event in event-time order.
    Event(Event<'static>),
    /// Every event of a batch has been released: acknowledge it once the
    /// findings from those events are stored.
    Done(Option<Box<dyn Acknowledge>>),
}

struct Pending {
    events: VecDeque<Event<'static>>,
    ack: Option<Box<dyn Acknowledge>>,
}

struct Lane {
    queue: VecDeque<Pending>,
    last_arrival: Instant,
    /// Newest event time this lane has delivered (queued or released).
    newest: EventTime,
    /// The last batch said more messages were waiting at the broker.
    backlog: bool,
    /// The source said the partition is caught up, and nothing arrived
    /// since: it can only deliver what is written from now on.
    caught_up: bool,
}

impl Lane {
    /// How long after its last arrival this lane is waited for;
    /// `head_is_live` says whether the next event to go is live traffic
    /// (see [`PartitionMerger::is_live`]; asked only of caught-up lanes, as
    /// it reads the clock).
    fn patience(&self, idle_after: Duration, head_is_live: impl Fn() -> bool) -> Duration {
        // A caught-up partition gets only what is written from now on. For
        // live traffic that is nothing earlier than the head, so it is
        // waited for as any quiet partition; while the head is history (a
        // backfill into the topic), the partition may get history too and
        // keeps the patience of a backlog.
        if self.backlog || (self.caught_up && !head_is_live()) {
            idle_after * BACKLOG_PATIENCE
        } else {
            idle_after
        }
    }

    /// Whether this (empty) lane may still deliver something before `head`
    /// and so must be waited for.
    fn may_precede(
        &self,
        head: EventTime,
        head_is_live: impl Fn() -> bool,
        now: Instant,
        idle_after: Duration,
    ) -> bool {
        self.queue.is_empty()
            && self.newest < head
            && now.duration_since(self.last_arrival) < self.patience(idle_after, head_is_live)
    }
}

/// See the module docs.
pub struct PartitionMerger {
    lanes: BTreeMap<LaneId, Lane>,
    idle_after: Duration,
    max_buffered: usize,
    buffered: usize,
    /// When the first batch arrived: partitions not heard from yet cannot
    /// hold anything back, so nothing is released until they have had
    /// `idle_after` to show up.
    started: Option<Instant>,
}

impl PartitionMerger {
    /// A merger that waits at most `idle_after` for a quiet partition and
    /// holds at most `max_buffered` events.
    pub fn new(idle_after: Duration, max_buffered: usize) -> PartitionMerger {
        PartitionMerger {
            lanes: BTreeMap::new(),
            idle_after,
            max_buffered: max_buffered.max(1),
            buffered: 0,
            started: None,
        }
    }

    /// Queues one batch's events (in the partition's order) and its ack;
    /// `backlog` when the source knows the partition has more to deliver.
    pub fn push(
        &mut self,
        lane: LaneId,
        events: Vec<Event<'static>>,
        ack: Option<Box<dyn Acknowledge>>,
        backlog: bool,
        now: Instant,
    ) {
        let l = self.lanes.entry(lane).or_insert_with(|| Lane {
            queue: VecDeque::new(),
            last_arrival: now,
            newest: EventTime::MIN,
            backlog,
            caught_up: false,
        });
        l.last_arrival = now;
        l.backlog = backlog;
        l.caught_up = false;
        self.started.get_or_insert(now);
        if let Some(max) = events.iter().map(|e| e.ts).max() {
            l.newest = l.newest.max(max);
        }
        self.buffered += events.len();
        l.queue.push_back(Pending {
            events: events.into(),
            ack,
        });
    }

    /// The source says `lane` is caught up: see [`Lane::patience`]. Not an
    /// arrival: it does not make a quiet lane active again.
    pub fn caught_up(&mut self, lane: &LaneId) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.backlog = false;
            l.caught_up = true;
        }
    }

    /// Whether `head` is live traffic rather than history: within the
    /// backlog patience of the wall clock. Only caught-up lanes ask.
    fn is_live(&self, head: EventTime) -> bool {
        let window = (self.idle_after * BACKLOG_PATIENCE).as_millis() as i64;
        let now = EventTime::from_datetime(chrono::Utc::now());
        head.millis() >= now.millis().saturating_sub(window)
    }

    /// Events waiting.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// The next thing to hand out, if it may go now. `flush` releases
    /// everything regardless of quiet lanes (at shutdown).
    pub fn pop(&mut self, now: Instant, flush: bool) -> Option<Released> {
        // Finished batches first, so acks follow their events promptly.
        for l in self.lanes.values_mut() {
            if l.queue.front().is_some_and(|p| p.events.is_empty()) {
                let done = l.queue.pop_front()?;
                return Some(Released::Done(done.ack));
            }
        }
        let (lane, head) = self.head()?;
        let lane = lane.clone();
        let warming_up = self
            .started
            .is_some_and(|t| now.duration_since(t) < self.idle_after);
        let must_wait = !flush
            && self.buffered < self.max_buffered
            && (warming_up
                || self.lanes.iter().any(|(id, l)| {
                    *id != lane && l.may_precede(head, || self.is_live(head), now, self.idle_after)
                }));
        if must_wait {
            return None;
        }
        let l = self.lanes.get_mut(&lane)?;
        let ev = l.queue.front_mut()?.events.pop_front()?;
        self.buffered -= 1;
        Some(Released::Event(ev))
    }

    /// When a waiting lane turns idle, so the caller knows how long it may
    /// block waiting for new batches.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.buffered == 0 {
            return None;
        }
        let warm_up_end = self.started.map(|t| t + self.idle_after);
        let head = self.head().map(|(_, ts)| ts);
        let head_is_live = || head.is_some_and(|h| self.is_live(h));
        self.lanes
            .values()
            .filter(|l| l.queue.is_empty())
            .map(|l| l.last_arrival + l.patience(self.idle_after, head_is_live))
            .chain(warm_up_end)
            .min()
    }

    /// The lane whose next event is the earliest, and that event's time.
    fn head(&self) -> Option<(&LaneId, EventTime)> {
        self.lanes
            .iter()
            .filter_map(|(id, l)| {
                l.queue
                    .front()
                    .and_then(|p| p.events.front())
                    .map(|e| (id, e.ts))
            })
            .min_by_key(|&(id, ts)| (ts, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn lane(partition: i32) -> LaneId {
        (0, Arc::from("t"), partition)
    }

    fn ev(s: i64) -> Event<'static> {
        Event::new(EventTime::from_secs(s), "203.0.113.1".parse().unwrap())
    }

    struct Ack(Arc<Mutex<Vec<&'static str>>>, &'static str);
    impl Acknowledge for Ack {
        fn ack(self: Box<Self>) {
            self.0.lock().unwrap().push(self.1);
        }
    }

    fn drain(m: &mut PartitionMerger, now: Instant, flush: bool) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(r) = m.pop(now, flush) {
            out.push(match r {
                Released::Event(e) => e.ts.secs().to_string(),
                Released::Done(Some(a)) => {
                    a.ack();
                    "ack".into()
                }
                Released::Done(None) => "done".into(),
            });
        }
        out
    }

    #[test]
    fn partitions_interleave_by_event_time() {
        let mut m = PartitionMerger::new(Duration::from_millis(200), 1000);
        let t0 = Instant::now();
        m.push(lane(2), vec![], None, false, t0); // starts the warm-up, then goes quiet
        let now = t0 + Duration::from_millis(210);
        m.push(lane(0), vec![ev(1), ev(5), ev(9)], None, false, now);
        // Partition 1 delivered (an empty batch) but nothing as new as 1
        // yet: it may still send something earlier, so partition 0 waits.
        m.push(lane(1), vec![], None, false, now);
        assert_eq!(drain(&mut m, now, false), vec!["done", "done"]);
        m.push(lane(1), vec![ev(2), ev(6)], None, false, now);
        assert_eq!(drain(&mut m, now, false), vec!["1", "2", "5", "6", "done"]);
        // Partition 1 is empty, active and behind 9: wait until it idles.
        assert!(m.pop(now, false).is_none());
        let later = now + Duration::from_millis(250);
        assert!(m.next_deadline().is_some_and(|d| d <= later));
        assert_eq!(drain(&mut m, later, false), vec!["9", "done"]);
    }

    #[test]
    fn acks_follow_their_batches_in_lane_order() {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let mut m = PartitionMerger::new(Duration::from_millis(200), 1000);
        let now = Instant::now();
        m.push(
            lane(0),
            vec![ev(1)],
            Some(Box::new(Ack(acks.clone(), "a1"))),
            false,
            now,
        );
        m.push(
            lane(0),
            vec![ev(3)],
            Some(Box::new(Ack(acks.clone(), "a2"))),
            false,
            now,
        );
        m.push(
            lane(1),
            vec![ev(2)],
            Some(Box::new(Ack(acks.clone(), "b1"))),
            false,
            now,
        );
        let got = drain(&mut m, now, true);
        assert_eq!(got, vec!["1", "ack", "2", "ack", "3", "ack"]);
        assert_eq!(*acks.lock().unwrap(), vec!["a1", "b1", "a2"]);
    }

    #[test]
    fn nothing_leaves_before_every_partition_had_time_to_show_up() {
        let mut m = PartitionMerger::new(Duration::from_millis(200), 1000);
        let start = Instant::now();
        m.push(lane(0), vec![ev(50)], None, false, start);
        assert!(m.pop(start + Duration::from_millis(100), false).is_none());
        m.push(
            lane(1),
            vec![ev(10)],
            None,
            false,
            start + Duration::from_millis(150),
        );
        let got = drain(&mut m, start + Duration::from_millis(210), false);
        assert_eq!(
            got,
            vec!["10", "done"],
            "partition 0 may not pass 10 while partition 1 is active"
        );
    }

    #[test]
    fn the_buffer_cap_releases_without_waiting() {
        let mut m = PartitionMerger::new(Duration::from_secs(3600), 2);
        let now = Instant::now();
        m.push(lane(1), vec![], None, false, now);
        m.push(lane(0), vec![ev(10), ev(11), ev(12)], None, false, now);
        // Over the cap: releases down to it even though lane 1 is active.
        assert_eq!(drain(&mut m, now, false), vec!["done", "10", "11"]);
        assert_eq!(m.buffered(), 1);
    }

    #[test]
    fn a_partition_with_a_backlog_is_waited_for_longer() {
        let idle = Duration::from_millis(100);
        let mut m = PartitionMerger::new(idle, 1000);
        let t0 = Instant::now();
        m.push(lane(1), vec![ev(1)], None, true, t0);
        m.push(lane(0), vec![ev(5)], None, false, t0);
        let after_idle = t0 + idle * 2;
        let mut got = Vec::new();
        while let Some(r) = m.pop(after_idle, false) {
            if let Released::Event(e) = r {
                got.push(e.ts.secs());
            }
        }
        assert_eq!(got, vec![1], "lane 1 has more at the broker: wait for it");
        let much_later = t0 + idle * (BACKLOG_PATIENCE + 1);
        assert!(matches!(m.pop(much_later, false), Some(Released::Event(_))));
    }

    /// A partition announced as possibly holding a backlog that the source
    /// then reports caught up stops holding live traffic back at once (the
    /// first burst after a start waited out the whole backlog patience),
    /// but still holds history: a backfill may reach it a moment later.
    #[test]
    fn a_caught_up_partition_holds_history_but_not_live_traffic() {
        let idle = Duration::from_millis(100);
        let wall = EventTime::from_datetime(chrono::Utc::now()).secs();
        for (first, live) in [(wall, true), (1_000, false)] {
            let mut m = PartitionMerger::new(idle, 1000);
            let t0 = Instant::now();
            m.push(lane(1), vec![], None, true, t0); // assigned
            let later = t0 + idle * 3;
            m.push(lane(0), vec![ev(first)], None, false, later);
            assert_eq!(drain(&mut m, later, false), vec!["done"], "{first}");
            m.caught_up(&lane(1));
            let released = drain(&mut m, later, false);
            if live {
                assert_eq!(released, vec![first.to_string(), "done".into()]);
            } else {
                assert!(released.is_empty(), "{released:?}");
                let patience_ends = t0 + idle * BACKLOG_PATIENCE;
                let just_before = patience_ends - Duration::from_millis(1);
                assert!(drain(&mut m, just_before, false).is_empty());
                assert_eq!(drain(&mut m, patience_ends, false), vec!["1000", "done"]);
            }
        }
    }
}
