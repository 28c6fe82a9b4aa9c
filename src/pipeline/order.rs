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
//! holds the others back for at most `idle_after`, and a cap on buffered
//! events bounds memory whatever the partitions do. A batch is acknowledged
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
}

impl Lane {
    /// Whether this (empty) lane may still deliver something before `head`
    /// and so must be waited for.
    fn may_precede(&self, head: EventTime, now: Instant, idle_after: Duration) -> bool {
        let patience = if self.backlog {
            idle_after * BACKLOG_PATIENCE
        } else {
            idle_after
        };
        self.queue.is_empty()
            && self.newest < head
            && now.duration_since(self.last_arrival) < patience
    }

    fn patience_ends(&self, idle_after: Duration) -> Instant {
        let patience = if self.backlog {
            idle_after * BACKLOG_PATIENCE
        } else {
            idle_after
        };
        self.last_arrival + patience
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
        });
        l.last_arrival = now;
        l.backlog = backlog;
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
        let (lane, head) = self
            .lanes
            .iter()
            .filter_map(|(id, l)| {
                l.queue
                    .front()
                    .and_then(|p| p.events.front())
                    .map(|e| (id, e.ts))
            })
            .min_by_key(|&(id, ts)| (ts, id))?;
        let lane = lane.clone();
        let warming_up = self
            .started
            .is_some_and(|t| now.duration_since(t) < self.idle_after);
        let must_wait = !flush
            && self.buffered < self.max_buffered
            && (warming_up
                || self
                    .lanes
                    .iter()
                    .any(|(id, l)| *id != lane && l.may_precede(head, now, self.idle_after)));
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
        self.lanes
            .values()
            .filter(|l| l.queue.is_empty())
            .map(|l| l.patience_ends(self.idle_after))
            .chain(warm_up_end)
            .min()
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
}
