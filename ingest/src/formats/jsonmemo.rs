//! Containers a JSON fast path has read before, kept byte for byte.
//!
//! Kong serialises the matched route's and service's whole configuration
//! into every log line: ~950 of a line's ~1,600 bytes, the same bytes for
//! every request on that route. Comparing them with a copy kept from an
//! earlier line (one `memcmp`, tens of bytes per cycle) settles where the
//! container ends and what was read from it, so the scanner does not walk
//! them again. A hit requires the whole kept container to be equal to the
//! line's bytes at the cursor; since where a container ends and what its
//! fields hold depend only on its own bytes, a hit gives exactly what a
//! fresh walk would. A miss costs one short hash.
//!
//! The memo is small and bounded: [`SETS`] × [`WAYS`] entries of at most
//! [`MAX_LEN`] bytes each, replaced round-robin within a set, the copies'
//! buffers reused so a steady stream of misses does not allocate.

/// Containers shorter than this are cheap to walk and not kept; it is
/// also how many leading bytes choose an entry's set.
pub(crate) const MIN_LEN: usize = 64;
/// Containers longer than this are not kept, which bounds the memo's
/// memory at `SETS * WAYS * MAX_LEN` bytes.
pub(crate) const MAX_LEN: usize = 4096;
/// Sets, chosen by a hash of a container's first [`MIN_LEN`] bytes.
const SETS: usize = 16;
/// Entries per set: containers whose first bytes agree (routes created
/// from one declarative config share timestamps) still fit side by side.
const WAYS: usize = 4;

/// One kept container: its hash, its bytes and what the reader took from
/// it (`None` while the slot is empty).
struct Entry<V> {
    hash: u64,
    bytes: Vec<u8>,
    value: Option<V>,
}

/// A bounded memo from container bytes to what was read from them.
pub(crate) struct Memo<V> {
    sets: [[Entry<V>; WAYS]; SETS],
    /// The way each set replaces next.
    next: [u8; SETS],
}

impl<V: Copy> Memo<V> {
    /// An empty memo.
    pub(crate) fn new() -> Self {
        Memo {
            sets: std::array::from_fn(|_| {
                std::array::from_fn(|_| Entry {
                    hash: 0,
                    bytes: Vec::new(),
                    value: None,
                })
            }),
            next: [0; SETS],
        }
    }

    /// When a kept container starts at `b[at]`: the index just past it
    /// and the value read from it.
    #[inline]
    pub(crate) fn recall(&self, b: &[u8], at: usize) -> Option<(usize, V)> {
        let rest = b.get(at..)?;
        let hash = hash(rest.first_chunk::<MIN_LEN>()?);
        self.sets[set_of(hash)]
            .iter()
            .find(|e| e.hash == hash && e.value.is_some() && rest.starts_with(&e.bytes))
            .and_then(|e| Some((at + e.bytes.len(), e.value?)))
    }

    /// Keeps `container` (a whole container, as read) with the value read
    /// from it, unless its length is outside [`MIN_LEN`]..=[`MAX_LEN`].
    pub(crate) fn remember(&mut self, container: &[u8], value: V) {
        let Some(head) = container
            .first_chunk::<MIN_LEN>()
            .filter(|_| container.len() <= MAX_LEN)
        else {
            return;
        };
        let hash = hash(head);
        let set = set_of(hash);
        let way = usize::from(self.next[set]);
        self.next[set] = ((way + 1) % WAYS) as u8;
        let e = &mut self.sets[set][way];
        e.hash = hash;
        e.bytes.clear();
        e.bytes.extend_from_slice(container);
        e.value = Some(value);
    }
}

#[cfg(test)]
impl<V> Memo<V> {
    /// How many containers are kept.
    pub(crate) fn kept(&self) -> usize {
        self.sets
            .iter()
            .flatten()
            .filter(|e| e.value.is_some())
            .count()
    }
}

/// A multiply–xorshift hash of a container's first bytes. Collisions cost
/// only a failed comparison: a hit always compares the whole container.
fn hash(head: &[u8; MIN_LEN]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let (words, _) = head.as_chunks::<8>();
    words.iter().fold(0u64, |h, w| {
        (h ^ u64::from_le_bytes(*w)).wrapping_mul(K).rotate_left(29)
    })
}

fn set_of(hash: u64) -> usize {
    (hash >> 60) as usize % SETS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(tag: u8, len: usize) -> Vec<u8> {
        let mut c = vec![b'{'];
        c.extend(std::iter::repeat_n(tag, len - 2));
        c.push(b'}');
        c
    }

    #[test]
    fn recalls_only_the_same_bytes() {
        let mut memo = Memo::new();
        let route = container(b'a', 100);
        let line = [&b"x:"[..], &route, b",\"y\":1}"].concat();
        assert_eq!(memo.recall(&line, 2), None);
        memo.remember(&route, 7u32);
        assert_eq!(memo.recall(&line, 2), Some((102, 7)));
        // The same first bytes, a different end: no hit.
        let mut changed = line.clone();
        changed[90] = b'b';
        assert_eq!(memo.recall(&changed, 2), None);
        // Cut off inside the kept container: no hit, no panic.
        assert_eq!(memo.recall(&line[..60], 2), None);
        assert_eq!(memo.recall(&line[..80], 2), None);
        assert_eq!(memo.recall(&line, line.len() + 5), None);
    }

    #[test]
    fn keeps_only_mid_sized_containers_and_stays_bounded() {
        let mut memo = Memo::new();
        let short = container(b'a', MIN_LEN - 1);
        memo.remember(&short, 1u8);
        assert_eq!(memo.recall(&short, 0), None);
        let long = container(b'a', MAX_LEN + 1);
        memo.remember(&long, 1);
        assert_eq!(memo.recall(&long, 0), None);
        // Many containers with one head share a set: the latest WAYS stay.
        let same_head: Vec<Vec<u8>> = (0..10u8)
            .map(|k| [container(b'h', 80), vec![b'0' + k]].concat())
            .collect();
        for (k, c) in same_head.iter().enumerate() {
            memo.remember(c, k as u8);
        }
        let kept = same_head
            .iter()
            .filter(|c| memo.recall(c, 0).is_some())
            .count();
        assert_eq!(kept, WAYS);
        assert_eq!(memo.recall(&same_head[9], 0), Some((81, 9)));
        let held: usize = memo.sets.iter().flatten().map(|e| e.bytes.capacity()).sum();
        assert!(held <= SETS * WAYS * MAX_LEN);
    }
}
