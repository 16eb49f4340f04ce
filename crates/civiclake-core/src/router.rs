//! The in-process topic router: publishers hand a CloudEvent to a topic, every subscriber
//! whose filter matches gets it.
//!
//! * Order: a subscriber receives the events of one publisher in the order they were
//!   published (publishing is synchronous: the event is in every matching queue when
//!   [`TopicRouter::publish`] returns).
//! * Bounded queues: each subscriber has a queue of `capacity` events. A publisher never
//!   waits: when a subscriber's queue is full the event is dropped *for that subscriber*, the
//!   router's `lagged` counter goes up, and the subscriber receives [`Delivery::Lagged`] with
//!   the number of events it missed, at the place in the sequence where they were missed
//!   (like `tokio::sync::broadcast`). Nothing is lost silently; a subscriber that must see
//!   everything reads the durable source (an events table) after a `Lagged`.
//! * Closing the router (server shutdown) ends every subscription once its queue is drained.

use crate::cloudevent::CloudEvent;
use crate::topic::{Topic, TopicFilter};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use tokio::sync::Notify;

/// Queue length of a subscriber unless configured otherwise.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// The router is closed (the server is stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the topic router is closed")]
pub struct RouterClosed;

/// An event received on a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The topic it was published on.
    pub topic: Topic,
    /// The event (shared by every subscriber that receives it).
    pub event: Arc<CloudEvent>,
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// An event.
    Message(Message),
    /// This many events were dropped here because the subscriber's queue was full.
    Lagged(u64),
}

/// Counters of the router since start (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouterStats {
    /// Events published.
    pub published: u64,
    /// Events put in a subscriber's queue (one per matching subscriber).
    pub delivered: u64,
    /// Events dropped for a subscriber whose queue was full.
    pub lagged: u64,
    /// Events published that no subscriber's filter matched.
    pub unmatched: u64,
    /// Current subscriptions.
    pub subscribers: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    lagged: AtomicU64,
    unmatched: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Delivery>,
    /// Messages in `items` (a `Lagged` marker does not count against the capacity).
    messages: usize,
    /// Events dropped since the last item queued.
    missed: u64,
    closed: bool,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    filter: TopicFilter,
    queue: Mutex<Queue>,
    notify: Notify,
}

impl Slot {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue inconsistent (every update is
        // a single push or pop), so a poisoned lock is used as is.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    slots: RwLock<Vec<Arc<Slot>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    counters: Counters,
}

impl Inner {
    fn slots(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Slot>>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Slot>>> {
        self.slots.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Routes CloudEvents from publishers to the subscribers whose topic filter matches.
#[derive(Debug, Clone)]
pub struct TopicRouter {
    inner: Arc<Inner>,
}

impl Default for TopicRouter {
    fn default() -> Self {
        Self::new(DEFAULT_QUEUE_CAPACITY)
    }
}

impl TopicRouter {
    /// A router whose subscribers each queue up to `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                slots: RwLock::new(Vec::new()),
                next_id: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                counters: Counters::default(),
            }),
        }
    }

    /// The queue length of each subscriber.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Delivers `event` to every subscriber whose filter matches `topic`; returns how many
    /// got it (subscribers with a full queue get a `Lagged` instead). Never waits.
    pub fn publish(&self, topic: &Topic, event: CloudEvent) -> Result<usize, RouterClosed> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(RouterClosed);
        }
        let c = &self.inner.counters;
        c.published.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(event);
        let mut matched = 0usize;
        let mut delivered = 0usize;
        for slot in self.inner.slots().iter() {
            if !slot.filter.matches(topic) {
                continue;
            }
            matched += 1;
            let mut q = slot.queue();
            if q.closed {
                continue;
            }
            if q.messages >= self.inner.capacity {
                q.missed += 1;
                c.lagged.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if q.missed > 0 {
                let missed = std::mem::take(&mut q.missed);
                q.items.push_back(Delivery::Lagged(missed));
            }
            q.items.push_back(Delivery::Message(Message {
                topic: topic.clone(),
                event: event.clone(),
            }));
            q.messages += 1;
            drop(q);
            slot.notify.notify_one();
            delivered += 1;
        }
        if matched == 0 {
            c.unmatched.fetch_add(1, Ordering::Relaxed);
        }
        c.delivered.fetch_add(delivered as u64, Ordering::Relaxed);
        Ok(delivered)
    }

    /// A subscription to the topics matching `filter`, from now on.
    pub fn subscribe(&self, filter: TopicFilter) -> Result<Subscription, RouterClosed> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(RouterClosed);
        }
        let slot = Arc::new(Slot {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            filter,
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
        });
        self.inner.slots_mut().push(slot.clone());
        Ok(Subscription {
            slot,
            router: Arc::downgrade(&self.inner),
        })
    }

    /// Refuses further publishing and subscribing; subscriptions end once drained.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        for slot in self.inner.slots().iter() {
            slot.queue().closed = true;
            slot.notify.notify_one();
        }
    }

    /// Whether [`TopicRouter::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Counters since start.
    pub fn stats(&self) -> RouterStats {
        let c = &self.inner.counters;
        RouterStats {
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            lagged: c.lagged.load(Ordering::Relaxed),
            unmatched: c.unmatched.load(Ordering::Relaxed),
            subscribers: self.inner.slots().len() as u64,
        }
    }
}

/// The receiving end of a subscription; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    slot: Arc<Slot>,
    router: Weak<Inner>,
}

impl Subscription {
    /// The filter this subscription was made with.
    pub fn filter(&self) -> &TopicFilter {
        &self.slot.filter
    }

    /// The next delivery without waiting: `None` when the queue is empty (or the router is
    /// closed and the queue drained).
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let mut q = self.slot.queue();
        match q.items.pop_front() {
            Some(d) => {
                if matches!(d, Delivery::Message(_)) {
                    q.messages -= 1;
                }
                Some(d)
            }
            None if q.missed > 0 => Some(Delivery::Lagged(std::mem::take(&mut q.missed))),
            None => None,
        }
    }

    /// Waits for the next delivery; `None` once the router is closed and the queue drained.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(d) = self.try_recv() {
                return Some(d);
            }
            if self.slot.queue().closed {
                return None;
            }
            // `notify_one` keeps a permit when nobody waits, so an event queued between the
            // check above and this wait is not missed.
            self.slot.notify.notified().await;
        }
    }

    /// Waits for the next event, skipping `Lagged` markers (for subscribers that can afford
    /// gaps); `None` once the router is closed and the queue drained.
    pub async fn recv_message(&mut self) -> Option<Message> {
        loop {
            match self.recv().await? {
                Delivery::Message(m) => return Some(m),
                Delivery::Lagged(_) => {}
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(router) = self.router.upgrade() {
            router.slots_mut().retain(|s| s.id != self.slot.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn topic(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    fn event(n: u64) -> CloudEvent {
        CloudEvent::new(n.to_string(), "/test", "t").with_data(json!(n))
    }

    fn ids(sub: &mut Subscription) -> Vec<String> {
        std::iter::from_fn(|| sub.try_recv())
            .map(|d| match d {
                Delivery::Message(m) => format!("{}:{}", m.topic, m.event.id),
                Delivery::Lagged(n) => format!("lagged {n}"),
            })
            .collect()
    }

    #[test]
    fn delivers_to_every_matching_filter_in_order() {
        let router = TopicRouter::default();
        let mut kiosks = router
            .subscribe(filter("devices/kiosk/+/heartbeat"))
            .unwrap();
        let mut bus = router.subscribe(filter("bus/#")).unwrap();
        let mut all = router.subscribe(filter("#")).unwrap();
        assert_eq!(
            router.publish(&topic("devices/kiosk/k1/heartbeat"), event(1)),
            Ok(2)
        );
        assert_eq!(router.publish(&topic("bus/lab/loans"), event(2)), Ok(2));
        assert_eq!(
            router.publish(&topic("devices/kiosk/k2/heartbeat"), event(3)),
            Ok(2)
        );
        assert_eq!(
            router.publish(&topic("devices/kiosk/k2/status"), event(4)),
            Ok(1)
        );
        assert_eq!(
            ids(&mut kiosks),
            [
                "devices/kiosk/k1/heartbeat:1",
                "devices/kiosk/k2/heartbeat:3"
            ]
        );
        assert_eq!(ids(&mut bus), ["bus/lab/loans:2"]);
        assert_eq!(ids(&mut all).len(), 4);
        drop(all);
        assert_eq!(router.publish(&topic("ingest/air"), event(5)), Ok(0));
        let stats = router.stats();
        assert_eq!(
            (
                stats.published,
                stats.delivered,
                stats.lagged,
                stats.unmatched,
                stats.subscribers
            ),
            (5, 7, 0, 1, 2)
        );
    }

    #[test]
    fn a_full_queue_drops_and_says_how_many_where() {
        let router = TopicRouter::new(2);
        let mut slow = router.subscribe(filter("bus/#")).unwrap();
        let mut fast = router.subscribe(filter("bus/#")).unwrap();
        let t = topic("bus/x/y");
        for n in 1..=5 {
            router.publish(&t, event(n)).unwrap();
            assert_eq!(ids(&mut fast), [format!("bus/x/y:{n}")]);
        }
        // The slow subscriber read nothing: it has the first two, then learns of three lost.
        assert_eq!(ids(&mut slow), ["bus/x/y:1", "bus/x/y:2", "lagged 3"]);
        // Space again: the next loss is reported before the events that follow it.
        for n in 6..=9 {
            router.publish(&t, event(n)).unwrap();
            assert_eq!(ids(&mut fast).len(), 1);
        }
        assert!(matches!(slow.try_recv(), Some(Delivery::Message(m)) if m.event.id == "6"));
        router.publish(&t, event(10)).unwrap();
        assert_eq!(ids(&mut slow), ["bus/x/y:7", "lagged 2", "bus/x/y:10"]);
        assert_eq!(router.stats().lagged, 5);
        assert_eq!(ids(&mut fast), ["bus/x/y:10"]);
    }

    #[tokio::test]
    async fn recv_waits_and_ends_when_the_router_closes() {
        let router = TopicRouter::default();
        let mut sub = router.subscribe(filter("devices/scanner/+/scans")).unwrap();
        let publisher = router.clone();
        let task = tokio::spawn(async move {
            for n in 0..100 {
                publisher
                    .publish(
                        &topic(&format!("devices/scanner/s{}/scans", n % 3)),
                        event(n),
                    )
                    .unwrap();
                tokio::task::yield_now().await;
            }
            publisher.close();
        });
        let mut got = Vec::new();
        while let Some(m) = sub.recv_message().await {
            got.push(m.event.id.parse::<u64>().unwrap());
        }
        task.await.unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(router.publish(&topic("bus/a"), event(0)), Err(RouterClosed));
        assert!(router.subscribe(filter("bus/#")).is_err());
    }
}
