//! A bounded table of per-client state: the one place that decides how much
//! memory detectors may hold and which client is forgotten first.
//!
//! Entries live in a slab (`Vec`) threaded by an intrusive doubly-linked list
//! in the order they were last touched; a compact hash index (`u32` slot
//! numbers only) finds them. Two rules bound memory:
//!
//! * **Cap:** when the table is full, inserting a new key evicts the least
//!   recently touched entry. Touch order is stream order, so eviction is
//!   deterministic (it never depends on hash-map iteration order or hash seeds).
//! * **Idle expiry:** an entry not touched for `idle` of event time is dead.
//!   `observe` treats a dead entry as absent (and replaces it with fresh
//!   state); [`ClientTable::expire`] frees dead entries from the
//!   least-recently-touched end only, so the entries it drops are exactly ones
//!   a later `observe` would have ignored or evicted first. Findings therefore
//!   do not depend on how often the watermark is delivered.

use crate::event::ClientKey;
use crate::time::EventTime;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

const NIL: u32 = u32::MAX;
/// `next` of a slot on the free list.
const FREE: u32 = u32::MAX - 1;

struct Slot<V> {
    key: ClientKey,
    prev: u32,
    next: u32,
    last_seen: EventTime,
    value: V,
}

/// Bounded, least-recently-seen-evicting map from [`ClientKey`] to `V`.
pub struct ClientTable<V> {
    index: HashTable<u32>,
    hasher: ahash::RandomState,
    slots: Vec<Slot<V>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    len: usize,
    cap: usize,
    idle_ms: i64,
    evicted: u64,
}

impl<V> ClientTable<V> {
    /// A table holding at most `cap` keys, forgetting keys idle for `idle_ms`.
    pub fn new(cap: usize, idle_ms: i64) -> Self {
        ClientTable {
            index: HashTable::new(),
            // Randomly seeded: the hash only places entries, it never decides
            // anything, and a random seed denies hash-flooding by chosen keys.
            hasher: ahash::RandomState::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            cap: cap.clamp(1, FREE as usize - 1),
            idle_ms,
            evicted: 0,
        }
    }

    /// Keys currently held (dead ones not yet expired included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most keys the table will hold.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Keys evicted because the table was full (not counting idle expiry).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Bytes held by the table itself (slab, index, free list), not counting
    /// heap memory owned by values.
    pub fn table_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<V>>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.free.capacity() * std::mem::size_of::<u32>()
    }

    /// Every live-or-dead value, in no particular order (for sizing only).
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots
            .iter()
            .filter(|s| s.next != FREE)
            .map(|s| &s.value)
    }

    fn is_dead(&self, slot: u32, now: EventTime) -> bool {
        now.since(self.slots[slot as usize].last_seen) > self.idle_ms
    }

    fn find(&self, key: &ClientKey) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index
            .find(h, |&i| slots[i as usize].key == *key)
            .copied()
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
        }
        if old == NIL {
            self.tail = i;
        } else {
            self.slots[old as usize].prev = i;
        }
        self.head = i;
    }

    fn touch(&mut self, i: u32, now: EventTime) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        let s = &mut self.slots[i as usize];
        if now > s.last_seen {
            s.last_seen = now;
        }
    }

    fn remove_from_index(&mut self, i: u32) {
        let key = self.slots[i as usize].key;
        let h = self.hasher.hash_one(key);
        let slots = &self.slots;
        if let Ok(entry) = self.index.find_entry(h, |&j| slots[j as usize].key == key) {
            entry.remove();
        }
    }

    /// The value for `key`, touching it; `None` when absent or dead (a dead
    /// entry is dropped on the way).
    pub fn get_mut(&mut self, key: &ClientKey, now: EventTime) -> Option<&mut V> {
        let i = self.find(key)?;
        if self.is_dead(i, now) {
            self.unlink(i);
            self.remove_from_index(i);
            self.slots[i as usize].next = FREE;
            self.free.push(i);
            self.len -= 1;
            return None;
        }
        self.touch(i, now);
        Some(&mut self.slots[i as usize].value)
    }

    /// The value for `key`, touching it; a new value from `make` when absent
    /// or dead. Evicts the least recently touched key when full. The flag
    /// says whether the value is fresh.
    pub fn get_or_insert_with(
        &mut self,
        key: &ClientKey,
        now: EventTime,
        make: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        if let Some(i) = self.find(key) {
            let fresh = self.is_dead(i, now);
            if fresh {
                let s = &mut self.slots[i as usize];
                s.value = make();
                s.last_seen = now;
            }
            self.touch(i, now);
            return (&mut self.slots[i as usize].value, fresh);
        }
        let i = if self.len >= self.cap {
            // Full: reuse the least recently touched slot.
            let t = self.tail;
            self.unlink(t);
            self.remove_from_index(t);
            self.evicted += 1;
            self.len -= 1;
            let s = &mut self.slots[t as usize];
            s.key = *key;
            s.last_seen = now;
            s.value = make();
            t
        } else if let Some(f) = self.free.pop() {
            let s = &mut self.slots[f as usize];
            s.key = *key;
            s.last_seen = now;
            s.value = make();
            f
        } else {
            if self.slots.len() == self.slots.capacity() {
                // Grow by doubling, but never past the cap: a full table
                // wastes no slab space.
                let want = (self.slots.capacity().max(8) * 2).min(self.cap);
                self.slots
                    .reserve_exact(want.saturating_sub(self.slots.len()).max(1));
            }
            self.slots.push(Slot {
                key: *key,
                prev: NIL,
                next: NIL,
                last_seen: now,
                value: make(),
            });
            (self.slots.len() - 1) as u32
        };
        self.push_front(i);
        let h = self.hasher.hash_one(key);
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.index
            .insert_unique(h, i, |&j| hasher.hash_one(slots[j as usize].key));
        self.len += 1;
        (&mut self.slots[i as usize].value, true)
    }

    /// Frees dead entries from the least-recently-touched end, stopping at
    /// the first live one. Returns how many were freed.
    pub fn expire(&mut self, watermark: EventTime) -> usize {
        let mut n = 0;
        while self.tail != NIL && self.is_dead(self.tail, watermark) {
            let t = self.tail;
            self.unlink(t);
            self.remove_from_index(t);
            self.slots[t as usize].next = FREE;
            self.free.push(t);
            self.len -= 1;
            n += 1;
        }
        n
    }
}

/// A table's entries from the least to the most recently touched, with
/// its eviction count: what a restarted process needs to rebuild the table
/// exactly (the same order, so the same clients are evicted first).
#[derive(Serialize, Deserialize)]
pub struct TableState<V> {
    entries: Vec<(ClientKey, EventTime, V)>,
    evicted: u64,
}

impl<V> ClientTable<V> {
    /// The entries, borrowed, for saving.
    pub fn save(&self) -> TableState<&V> {
        let mut entries = Vec::with_capacity(self.len);
        let mut i = self.tail;
        while i != NIL {
            let s = &self.slots[i as usize];
            entries.push((s.key, s.last_seen, &s.value));
            i = s.prev;
        }
        TableState {
            entries,
            evicted: self.evicted,
        }
    }

    /// Replaces the table's entries with saved ones. Entries beyond the cap
    /// (a table saved with a larger one) evict the oldest, as live
    /// inserts would.
    pub fn restore(&mut self, state: TableState<V>) {
        *self = ClientTable::new(self.cap, self.idle_ms);
        for (key, last_seen, value) in state.entries {
            let mut value = Some(value);
            let (slot, _) = self.get_or_insert_with(&key, last_seen, || {
                value.take().expect("a saved table holds each key once")
            });
            if let Some(v) = value {
                // A key saved twice (a corrupt state): the later one wins.
                *slot = v;
            }
        }
        self.evicted += state.evicted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn k(n: u32) -> ClientKey {
        ClientKey::Ip(IpAddr::V4(Ipv4Addr::from(n)))
    }

    fn t(s: i64) -> EventTime {
        EventTime::from_secs(s)
    }

    #[test]
    fn evicts_least_recently_touched_when_full() {
        let mut tab: ClientTable<u32> = ClientTable::new(3, 1_000_000);
        for i in 0..3 {
            *tab.get_or_insert_with(&k(i), t(i as i64), || 0).0 += 1;
        }
        // Touch 0 so that 1 is now the least recent.
        assert!(tab.get_mut(&k(0), t(5)).is_some());
        tab.get_or_insert_with(&k(9), t(6), || 0);
        assert_eq!(tab.len(), 3);
        assert!(tab.get_mut(&k(1), t(7)).is_none(), "1 was evicted");
        assert!(tab.get_mut(&k(0), t(7)).is_some());
        assert!(tab.get_mut(&k(2), t(7)).is_some());
        assert_eq!(tab.evicted(), 1);
    }

    #[test]
    fn dead_entries_look_absent_and_expire_from_the_tail() {
        let mut tab: ClientTable<u32> = ClientTable::new(10, 10_000);
        *tab.get_or_insert_with(&k(1), t(0), || 0).0 = 7;
        *tab.get_or_insert_with(&k(2), t(8), || 0).0 = 8;
        // 11 s after k(1) was touched: dead for observe.
        let (v, fresh) = tab.get_or_insert_with(&k(1), t(11), || 0);
        assert!(fresh);
        assert_eq!(*v, 0);
        // Expiry stops at the first live entry.
        assert_eq!(tab.expire(t(15)), 0);
        assert_eq!(tab.expire(t(19)), 1);
        assert_eq!(tab.len(), 1);
        assert!(tab.get_mut(&k(2), t(19)).is_none());
        assert!(tab.get_mut(&k(1), t(19)).is_some());
    }

    #[test]
    fn a_restored_table_evicts_and_expires_as_the_saved_one_would() {
        let mut tab: ClientTable<u32> = ClientTable::new(3, 10_000);
        for i in 0..3 {
            *tab.get_or_insert_with(&k(i), t(i as i64), || 0).0 = i + 10;
        }
        // Touched last but with an older time: order is touch order.
        assert!(tab.get_mut(&k(0), t(1)).is_some());
        let bytes = postcard::to_stdvec(&tab.save()).unwrap();
        let mut back: ClientTable<u32> = ClientTable::new(3, 10_000);
        back.restore(postcard::from_bytes(&bytes).unwrap());
        for tab in [&mut tab, &mut back] {
            // k(1) is the least recently touched: evicted first.
            tab.get_or_insert_with(&k(9), t(3), || 0);
            assert!(tab.get_mut(&k(1), t(3)).is_none());
            // Each keeps its time last seen: k(0) 1 s, k(2) 2 s (10 s idle
            // is still alive, 11 s is dead).
            assert_eq!(tab.get_mut(&k(0), t(11)).copied(), Some(10));
            assert!(tab.get_mut(&k(2), t(13)).is_none());
        }
        assert_eq!((tab.evicted(), back.evicted()), (1, 1));
    }

    #[test]
    fn slots_are_reused_and_memory_stays_at_cap() {
        let mut tab: ClientTable<u64> = ClientTable::new(1000, 1_000_000);
        for i in 0..100_000 {
            tab.get_or_insert_with(&k(i), t(i64::from(i)), || 0);
        }
        assert_eq!(tab.len(), 1000);
        assert!(tab.table_bytes() < 1000 * 80, "{}", tab.table_bytes());
        assert_eq!(tab.evicted(), 99_000);
    }
}
