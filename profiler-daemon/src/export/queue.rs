//! A bounded queue of windows for one exporter, bounded both in windows and in bytes.
//!
//! The producer never waits: [`BoundedQueue::push`] drops the *oldest* queued windows
//! until the new one fits (the newest data is the most useful once a destination comes
//! back) and reports what it dropped, so a dead or slow destination costs at most the
//! configured memory and never stalls sampling.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

use super::{Batch, Flavor};

pub struct BoundedQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    max_windows: usize,
    max_bytes: usize,
    flavor: Flavor,
}

struct Inner {
    items: VecDeque<Arc<Batch>>,
    bytes: usize,
    closed: bool,
}

/// What a push had to give up to make room.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    pub windows: u64,
    pub profiles: u64,
}

impl BoundedQueue {
    pub fn new(max_windows: usize, max_bytes: usize, flavor: Flavor) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            notify: Notify::new(),
            max_windows: max_windows.max(1),
            max_bytes: max_bytes.max(1),
            flavor,
        }
    }

    /// Enqueues `batch`, evicting the oldest windows while over a bound. A single window
    /// larger than the byte bound is still accepted alone (else it could never be sent).
    pub fn push(&self, batch: Arc<Batch>) -> Evicted {
        let size = batch.bytes(self.flavor);
        let mut evicted = Evicted::default();
        {
            let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            while !q.items.is_empty()
                && (q.items.len() >= self.max_windows || q.bytes + size > self.max_bytes)
            {
                if let Some(old) = q.items.pop_front() {
                    q.bytes -= old.bytes(self.flavor);
                    evicted.windows += 1;
                    evicted.profiles += old.series.len() as u64;
                }
            }
            q.bytes += size;
            q.items.push_back(batch);
        }
        self.notify.notify_one();
        evicted
    }

    /// The oldest window; waits while empty. `None` once closed and empty.
    pub async fn pop(&self) -> Option<Arc<Batch>> {
        loop {
            let notified = self.notify.notified();
            {
                let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(b) = q.items.pop_front() {
                    q.bytes -= b.bytes(self.flavor);
                    return Some(b);
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// No more pushes; `pop` returns `None` once the queue is empty.
    pub fn close(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Removes everything still queued (at the end of shutdown) and returns it.
    pub fn take_all(&self) -> Vec<Arc<Batch>> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.bytes = 0;
        q.items.drain(..).collect()
    }

    /// (windows, bytes) queued now.
    pub fn depth(&self) -> (usize, usize) {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (q.items.len(), q.bytes)
    }

    pub fn capacity(&self) -> (usize, usize) {
        (self.max_windows, self.max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::SeriesProfile;
    use std::time::{Duration, SystemTime};

    fn batch(seq: u64, series: usize, bytes_each: usize) -> Arc<Batch> {
        Arc::new(Batch {
            seq,
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(1),
            series: (0..series)
                .map(|i| SeriesProfile {
                    labels: vec![("service_name".into(), format!("s{i}"))],
                    series_key: i as u64,
                    samples: 1,
                    detailed: Some(vec![0; bytes_each]),
                    compact: None,
                })
                .collect(),
        })
    }

    #[test]
    fn evicts_oldest_by_count_and_bytes() {
        // Each series costs its bytes plus 64 of bookkeeping.
        let q = BoundedQueue::new(2, 1000, Flavor::Detailed);
        assert_eq!(q.push(batch(1, 1, 100)), Evicted::default());
        assert_eq!(q.push(batch(2, 1, 100)), Evicted::default());
        let e = q.push(batch(3, 2, 100));
        assert_eq!(
            e,
            Evicted {
                windows: 1,
                profiles: 1
            }
        );
        assert_eq!(q.depth(), (2, 164 + 328));
        // Byte bound: 814 more does not fit next to 492 -> both old ones go.
        let e = q.push(batch(4, 1, 750));
        assert_eq!(e.windows, 2);
        assert_eq!(q.depth(), (1, 814));
        // Larger than the whole bound: accepted alone.
        let e = q.push(batch(5, 1, 5000));
        assert_eq!(e.windows, 1);
        assert_eq!(q.depth(), (1, 5064));
    }

    #[tokio::test]
    async fn pop_in_order_and_close() {
        let q = Arc::new(BoundedQueue::new(8, 1 << 20, Flavor::Detailed));
        q.push(batch(1, 1, 1));
        q.push(batch(2, 1, 1));
        assert_eq!(q.pop().await.unwrap().seq, 1);
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { (q.pop().await.map(|b| b.seq), q.pop().await.is_none()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.close();
        assert_eq!(waiter.await.unwrap(), (Some(2), true));
    }
}
