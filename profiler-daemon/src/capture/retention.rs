//! Which keys of the kernel's sample buffers a drain keeps and which it deletes.
//!
//! A drained key that counted samples is kept, zeroed: a stack that recurs is then one
//! lookup in the kernel instead of an insert after every drain. Kept keys cost map room,
//! so a key is deleted once it has been idle for [`KEY_IDLE_DRAINS`] drains of its buffer
//! (for one, when the buffer holds more than half its map), when its process exited or
//! exec'd, when its user stack was lost, and when its buffer's kernel stacks are cleared
//! (more than 1/16 of the stack map in use: stale stacks occupy buckets a new stack would
//! collide with). The policy is plain data, so it is tested without the kernel.

use std::collections::{HashMap, HashSet};

use profiler_common::SampleKey;

/// Drains of its buffer a key may count nothing in before it is deleted: long enough
/// that a stack sampled about once a second at low frequencies keeps its key.
pub const KEY_IDLE_DRAINS: u64 = 10;

/// What a drain does with one key of the buffer it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFate {
    /// Counted samples: set its count to zero and keep it for its next samples.
    Zero,
    /// Already zero and not idle long enough: leave it as it is.
    Keep,
    /// Remove it from the buffer.
    Delete,
}

/// The retention state of both sample buffers.
#[derive(Debug)]
pub struct KeyRetention {
    /// Keys a buffer may hold before its drain deletes every key idle since the last one.
    keys_limit: usize,
    /// Kernel stacks a buffer may hold before its drain clears them (with the keys that
    /// name them).
    kernel_stacks_limit: usize,
    buffers: [BufferRetention; 2],
}

#[derive(Debug, Default)]
struct BufferRetention {
    /// How often this buffer was drained.
    drains: u64,
    /// The drain of this buffer in which each kept key last counted.
    last_counted: HashMap<SampleKey, u64>,
    /// Processes that exited or exec'd since this buffer's last drain.
    ended: HashSet<u32>,
}

impl KeyRetention {
    /// For buffers of `counts_entries` keys and stack maps of `stack_entries` stacks.
    pub fn new(counts_entries: u32, stack_entries: u32) -> Self {
        Self {
            keys_limit: (counts_entries / 2) as usize,
            kernel_stacks_limit: (stack_entries / 16).max(1) as usize,
            buffers: Default::default(),
        }
    }

    /// `tgid` exited or exec'd: the next drain of each buffer deletes its keys.
    pub fn process_ended(&mut self, tgid: u32) {
        for buffer in &mut self.buffers {
            buffer.ended.insert(tgid);
        }
    }

    /// Starts a drain of `buffer`, which holds `keys` keys and `kernel_stacks` kernel
    /// stacks; decide each key's fate with [`Drain::fate`].
    pub fn drain(&mut self, buffer: usize, keys: usize, kernel_stacks: usize) -> Drain<'_> {
        let b = &mut self.buffers[buffer];
        b.drains += 1;
        Drain {
            drain: b.drains,
            idle_drains: if keys > self.keys_limit {
                1
            } else {
                KEY_IDLE_DRAINS
            },
            clear_kernel_stacks: kernel_stacks > self.kernel_stacks_limit,
            ended: std::mem::take(&mut b.ended),
            last_counted: &mut b.last_counted,
        }
    }

    /// The keys either buffer keeps: the stacks they name are the only ones worth
    /// caching.
    pub fn kept_keys(&self) -> impl Iterator<Item = &SampleKey> {
        self.buffers.iter().flat_map(|b| b.last_counted.keys())
    }
}

/// One drain of one buffer.
pub struct Drain<'a> {
    drain: u64,
    idle_drains: u64,
    clear_kernel_stacks: bool,
    ended: HashSet<u32>,
    last_counted: &'a mut HashMap<SampleKey, u64>,
}

impl Drain<'_> {
    /// Whether this drain clears the buffer's kernel stacks (after reading them).
    pub fn clears_kernel_stacks(&self) -> bool {
        self.clear_kernel_stacks
    }

    /// The fate of `key`, which counted `count` samples since the buffer's last drain;
    /// `stack_lost`: its user stack was evicted before it could be read.
    pub fn fate(&mut self, key: &SampleKey, count: u64, stack_lost: bool) -> KeyFate {
        let last = if count > 0 {
            self.drain
        } else {
            self.last_counted.get(key).copied().unwrap_or(0)
        };
        let delete = stack_lost
            || self.drain - last >= self.idle_drains
            || self.ended.contains(&key.tgid)
            || (self.clear_kernel_stacks && key.kernel_stack_id >= 0);
        if delete {
            self.last_counted.remove(key);
            KeyFate::Delete
        } else if count > 0 {
            self.last_counted.insert(*key, self.drain);
            KeyFate::Zero
        } else {
            KeyFate::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tgid: u32, user_stack: u64, kernel_stack_id: i32) -> SampleKey {
        SampleKey {
            tgid,
            tid: tgid,
            user_stack,
            kernel_stack_id,
            flags: 0,
            comm: [0; 16],
            go_labels: 0,
            python_stack: 0,
        }
    }

    fn kept_user_stacks(r: &KeyRetention) -> HashSet<u64> {
        r.kept_keys().map(|k| k.user_stack).collect()
    }

    /// Drains buffer 0 holding `keys` with their counts; returns each key's fate.
    fn drain(r: &mut KeyRetention, keys: &[(SampleKey, u64)]) -> Vec<KeyFate> {
        let mut d = r.drain(0, keys.len(), 0);
        keys.iter().map(|(k, c)| d.fate(k, *c, false)).collect()
    }

    #[test]
    fn an_idle_key_is_deleted_after_ten_drains_and_a_recurring_one_is_kept() {
        let mut r = KeyRetention::new(1024, 1024);
        let (idle, recurring) = (key(1, 0xa, -1), key(1, 0xb, -1));
        assert_eq!(
            drain(&mut r, &[(idle, 3), (recurring, 2)]),
            [KeyFate::Zero, KeyFate::Zero]
        );
        // Idle for KEY_IDLE_DRAINS - 1 drains: still kept (zeroed in the kernel).
        for _ in 1..KEY_IDLE_DRAINS {
            assert_eq!(
                drain(&mut r, &[(idle, 0), (recurring, 1)]),
                [KeyFate::Keep, KeyFate::Zero]
            );
        }
        assert_eq!(
            drain(&mut r, &[(idle, 0), (recurring, 1)]),
            [KeyFate::Delete, KeyFate::Zero],
            "the 10th idle drain deletes the key"
        );
        assert_eq!(kept_user_stacks(&r), HashSet::from([0xb]));
        // The recurring key stays for as long as it counts.
        for _ in 0..3 * KEY_IDLE_DRAINS {
            assert_eq!(drain(&mut r, &[(recurring, 1)]), [KeyFate::Zero]);
        }
    }

    #[test]
    fn a_key_counting_again_restarts_its_idle_time() {
        let mut r = KeyRetention::new(1024, 1024);
        let k = key(1, 0xa, -1);
        drain(&mut r, &[(k, 1)]);
        for _ in 1..KEY_IDLE_DRAINS {
            assert_eq!(drain(&mut r, &[(k, 0)]), [KeyFate::Keep]);
        }
        assert_eq!(drain(&mut r, &[(k, 5)]), [KeyFate::Zero]);
        for _ in 1..KEY_IDLE_DRAINS {
            assert_eq!(drain(&mut r, &[(k, 0)]), [KeyFate::Keep]);
        }
        assert_eq!(drain(&mut r, &[(k, 0)]), [KeyFate::Delete]);
    }

    #[test]
    fn buffers_count_their_own_drains() {
        let mut r = KeyRetention::new(1024, 1024);
        let k = key(1, 0xa, -1);
        assert_eq!(r.drain(1, 1, 0).fate(&k, 1, false), KeyFate::Zero);
        // Buffer 0 draining does not age buffer 1's key.
        for _ in 0..2 * KEY_IDLE_DRAINS {
            drain(&mut r, &[]);
        }
        assert_eq!(r.drain(1, 1, 0).fate(&k, 0, false), KeyFate::Keep);
    }

    #[test]
    fn a_full_buffer_deletes_keys_idle_for_one_drain() {
        // Half of 8 entries: a drain of more than 4 keys keeps only those that counted.
        let mut r = KeyRetention::new(8, 1024);
        let keys: Vec<SampleKey> = (0..5).map(|i| key(1, i, -1)).collect();
        let counted: Vec<_> = keys.iter().map(|k| (*k, 1)).collect();
        assert!(drain(&mut r, &counted).iter().all(|f| *f == KeyFate::Zero));
        let mut idle = counted.clone();
        idle[0].1 = 0;
        assert_eq!(drain(&mut r, &idle)[0], KeyFate::Delete);
        // Below the limit, the idle time is the usual one again.
        let mut r = KeyRetention::new(8, 1024);
        drain(&mut r, &counted[..4]);
        let mut idle = counted[..4].to_vec();
        idle[0].1 = 0;
        assert_eq!(drain(&mut r, &idle)[0], KeyFate::Keep);
    }

    #[test]
    fn keys_of_ended_processes_are_deleted_at_the_next_drain_of_each_buffer() {
        let mut r = KeyRetention::new(1024, 1024);
        let (ended, other) = (key(7, 0xa, -1), key(8, 0xb, -1));
        for buffer in 0..2 {
            let mut d = r.drain(buffer, 2, 0);
            assert_eq!(d.fate(&ended, 1, false), KeyFate::Zero);
            assert_eq!(d.fate(&other, 1, false), KeyFate::Zero);
        }
        r.process_ended(7);
        for buffer in 0..2 {
            let mut d = r.drain(buffer, 2, 0);
            // Its last samples are still reported by the caller; the key goes.
            assert_eq!(d.fate(&ended, 2, false), KeyFate::Delete);
            assert_eq!(d.fate(&other, 0, false), KeyFate::Keep);
        }
        assert_eq!(kept_user_stacks(&r), HashSet::from([0xb]));
        // Once per buffer: a new process with the reused pid keeps its keys.
        assert_eq!(r.drain(0, 1, 0).fate(&ended, 1, false), KeyFate::Zero);
    }

    #[test]
    fn kernel_stacks_are_kept_until_the_buffer_holds_a_sixteenth_of_its_map() {
        let mut r = KeyRetention::new(1024, 64);
        let (kernel, user_only) = (key(1, 0xa, 3), key(1, 0xb, -1));
        let mut d = r.drain(0, 2, 4);
        assert!(
            !d.clears_kernel_stacks(),
            "4 of 64 stacks is not more than 1/16"
        );
        assert_eq!(d.fate(&kernel, 1, false), KeyFate::Zero);
        let mut d = r.drain(0, 2, 5);
        assert!(d.clears_kernel_stacks());
        assert_eq!(
            d.fate(&kernel, 1, false),
            KeyFate::Delete,
            "names a cleared stack"
        );
        assert_eq!(d.fate(&user_only, 1, false), KeyFate::Zero);
    }

    #[test]
    fn a_key_whose_user_stack_was_lost_is_deleted() {
        let mut r = KeyRetention::new(1024, 1024);
        let k = key(1, 0xa, -1);
        assert_eq!(r.drain(0, 1, 0).fate(&k, 4, true), KeyFate::Delete);
        assert!(kept_user_stacks(&r).is_empty());
    }
}
