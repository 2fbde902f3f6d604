//! Shared state and exact counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::time::Instant;

use crate::{TargetStats, MAX_TRACKED_KEYS, OVERFLOW_KEY};

pub(crate) struct Shared {
    pub(crate) counters: Counters,
    base_delay: Option<Duration>,
    epoch: Instant,
    /// Nanoseconds since `epoch` until which counted requests are held; 0 = no stall.
    stall_until: AtomicU64,
}

impl Shared {
    pub(crate) fn new(base_delay: Option<Duration>) -> Self {
        Shared {
            counters: Counters::new(),
            base_delay: base_delay.filter(|d| !d.is_zero()),
            epoch: Instant::now(),
            stall_until: AtomicU64::new(0),
        }
    }

    fn nanos_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// True when a counted request must wait (stall window or base delay).
    #[inline]
    pub(crate) fn must_wait(&self) -> bool {
        self.base_delay.is_some() || self.stall_until.load(Relaxed) != 0
    }

    /// Holds a counted request through any stall window, then the base delay.
    pub(crate) async fn wait(&self) {
        loop {
            let until = self.stall_until.load(Relaxed);
            if until == 0 {
                break;
            }
            let now = self.nanos_since_epoch();
            if now >= until {
                // Window over: clear it so the hot path goes back to one atomic load.
                let _ = self
                    .stall_until
                    .compare_exchange(until, 0, Relaxed, Relaxed);
                break;
            }
            // The window may be moved by another /__stall meanwhile: look again after.
            tokio::time::sleep_until(self.epoch + Duration::from_nanos(until)).await;
        }
        if let Some(d) = self.base_delay {
            tokio::time::sleep(d).await;
        }
    }

    pub(crate) fn stall_for(&self, ms: u64) {
        if ms == 0 {
            self.stall_until.store(0, Relaxed);
            return;
        }
        let until = self
            .nanos_since_epoch()
            .saturating_add(ms.saturating_mul(1_000_000))
            .max(1);
        self.stall_until.store(until, Relaxed);
    }
}

/// Methods with their own atomic counter, in index order.
const KNOWN_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::CONNECT,
    Method::TRACE,
];

/// The hot-path routes with their own atomic counter.
pub(crate) const FAST_PATHS: [&str; 2] = ["/", "/fast"];

const MIN_STATUS: u16 = 100;
const STATUS_SLOTS: usize = 900; // 100..=999

pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) fast_paths: [AtomicU64; FAST_PATHS.len()],
    methods: [AtomicU64; KNOWN_METHODS.len()],
    statuses: Box<[AtomicU64]>,
    pub(crate) other_paths: Mutex<HashMap<String, u64>>,
    other_methods: Mutex<HashMap<String, u64>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn bump_key(map: &mut HashMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < MAX_TRACKED_KEYS {
        map.insert(key.to_owned(), 1);
    } else {
        *map.entry(OVERFLOW_KEY.to_owned()).or_insert(0) += 1;
    }
}

impl Counters {
    fn new() -> Self {
        Counters {
            requests: AtomicU64::new(0),
            fast_paths: Default::default(),
            methods: Default::default(),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            other_paths: Mutex::new(HashMap::new()),
            other_methods: Mutex::new(HashMap::new()),
        }
    }

    #[inline]
    pub(crate) fn count_method(&self, method: &Method) {
        for (i, known) in KNOWN_METHODS.iter().enumerate() {
            if method == known {
                self.methods[i].fetch_add(1, Relaxed);
                return;
            }
        }
        bump_key(&mut lock(&self.other_methods), method.as_str());
    }

    #[inline]
    pub(crate) fn count_status(&self, status: StatusCode) {
        let slot = usize::from(status.as_u16().saturating_sub(MIN_STATUS));
        if let Some(counter) = self.statuses.get(slot) {
            counter.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> TargetStats {
        let mut stats = TargetStats {
            requests: self.requests.load(Relaxed),
            ..TargetStats::default()
        };
        for (path, n) in lock(&self.other_paths).iter() {
            stats.by_path.insert(path.clone(), *n);
        }
        for (path, counter) in FAST_PATHS.iter().zip(&self.fast_paths) {
            let n = counter.load(Relaxed);
            if n > 0 {
                stats.by_path.insert((*path).to_string(), n);
            }
        }
        for (m, n) in lock(&self.other_methods).iter() {
            stats.by_method.insert(m.clone(), *n);
        }
        for (method, counter) in KNOWN_METHODS.iter().zip(&self.methods) {
            let n = counter.load(Relaxed);
            if n > 0 {
                stats.by_method.insert(method.as_str().to_string(), n);
            }
        }
        for (slot, counter) in self.statuses.iter().enumerate() {
            let n = counter.load(Relaxed);
            if n > 0 {
                // slot < 900, so this fits in u16.
                let code = MIN_STATUS + u16::try_from(slot).unwrap_or(0);
                stats.by_status.insert(code, n);
            }
        }
        stats
    }

    pub(crate) fn reset(&self) {
        self.requests.store(0, Relaxed);
        for c in self
            .fast_paths
            .iter()
            .chain(&self.methods)
            .chain(self.statuses.iter())
        {
            c.store(0, Relaxed);
        }
        lock(&self.other_paths).clear();
        lock(&self.other_methods).clear();
    }
}
