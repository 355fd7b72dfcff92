//! What limits the provider requests of all instances together: a permit per host (a safety
//! cap), and per tenant (an origin and the credentials sent to it: ConnectWise cloud tenants
//! share one host) its permits, its request budget per minute and its pause after a 429.
//!
//! Tenants come and go with instance files, so their entries go once idle: no request holding
//! or waiting for a permit, the budget whole again, no pause. One entry is about 120 bytes (the
//! key, the budget and pause times, and a shared semaphore), kept from a tenant's first request
//! until about a minute after its last.

#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// The longest a provider's 429 can pause its tenant; a longer `Retry-After` is cut to this.
pub const MAX_PROVIDER_PAUSE: Duration = Duration::from_secs(600);
/// A budget is a minute's worth of requests, spent at once when saved up.
const BUDGET_WINDOW: Duration = Duration::from_secs(60);
/// How often idle entries are looked for (at a request, under the lock it takes anyway).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// `[polling] max_per_tenant` and `tenant_requests_per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantLimits {
    /// Requests of one tenant at once.
    pub max_per_tenant: usize,
    /// Requests of one tenant a minute; `None`: no budget.
    pub requests_per_minute: Option<NonZeroU32>,
}

impl Default for TenantLimits {
    fn default() -> Self {
        use crate::config::settings::{DEFAULT_MAX_PER_TENANT, DEFAULT_TENANT_REQUESTS_PER_MINUTE};
        TenantLimits {
            max_per_tenant: DEFAULT_MAX_PER_TENANT,
            requests_per_minute: NonZeroU32::new(DEFAULT_TENANT_REQUESTS_PER_MINUTE),
        }
    }
}

/// Told when a request waits for its tenant's request budget, and when the wait ends (the
/// poller shows it in `status`, counts it in the metrics, and lends its poll slot to other
/// resources meanwhile).
pub trait ThrottleWatch: Send + Sync {
    fn waiting(&self, wait: Duration);
    fn done(&self);
    /// After the wait, before the request goes on (the poller takes its poll slot back).
    fn resume(&self) -> futures_util::future::BoxFuture<'_, ()>;
}

/// A tenant, as a per-process random hash of its origin and credentials (never kept in clear).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tenant(u64);

/// What a request may go on with once its wait is over: the semaphores to take a permit of,
/// tenant's first. Holding them keeps the tenant's entry from being swept.
pub struct Admission {
    /// How long the tenant's budget makes the request wait (zero: none).
    pub wait: Duration,
    pub tenant_permits: Arc<Semaphore>,
    pub host_permits: Arc<Semaphore>,
}

/// Shared by every clone of the provider client.
pub struct Gates {
    hasher: RandomState,
    max_per_host: usize,
    limits: TenantLimits,
    state: Mutex<GateState>,
}

struct GateState {
    hosts: HashMap<String, Arc<Semaphore>>,
    tenants: HashMap<Tenant, TenantGate>,
    swept_at: Instant,
}

#[derive(Clone)]
struct TenantGate {
    permits: Arc<Semaphore>,
    budget: Budget,
    paused_until: Option<Instant>,
}

/// A tenant's request budget as GCRA keeps it: the time at which its budget is whole again.
/// Each request moves that a spacing (a minute / the budget) later, and may go once it is at
/// most a minute ahead; so a whole budget is spent at once, then one request per spacing. A
/// request is given its turn when it asks (no retry, first come first served).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Budget {
    whole_at: Option<Instant>,
}

impl Budget {
    /// Reserves the next turn and returns how long until it.
    fn reserve(&mut self, per_minute: NonZeroU32, now: Instant) -> Duration {
        let spacing = BUDGET_WINDOW
            .checked_div(per_minute.get())
            .unwrap_or(BUDGET_WINDOW);
        let from = self.whole_at.filter(|at| *at > now).unwrap_or(now);
        let whole_at = from.checked_add(spacing).unwrap_or(from);
        self.whole_at = Some(whole_at);
        whole_at
            .saturating_duration_since(now)
            .saturating_sub(BUDGET_WINDOW)
    }

    fn is_whole(&self, now: Instant) -> bool {
        self.whole_at.is_none_or(|at| at <= now)
    }
}

impl TenantGate {
    fn new(max_per_tenant: usize) -> TenantGate {
        TenantGate {
            permits: Arc::new(Semaphore::new(max_per_tenant)),
            budget: Budget::default(),
            paused_until: None,
        }
    }

    fn pause_remaining(&self, now: Instant) -> Option<Duration> {
        self.paused_until
            .filter(|at| *at > now)
            .map(|at| at.saturating_duration_since(now))
    }

    /// Nothing holds or waits for its permits (only the map holds the semaphore), its budget is
    /// whole and it is not paused: forgetting it changes nothing.
    fn is_idle(&self, now: Instant) -> bool {
        Arc::strong_count(&self.permits) == 1
            && self.budget.is_whole(now)
            && self.pause_remaining(now).is_none()
    }
}

impl Gates {
    /// Limits are at least 1.
    pub fn new(max_per_host: usize, limits: TenantLimits) -> Gates {
        Gates {
            hasher: RandomState::new(),
            max_per_host: max_per_host.max(1),
            limits: TenantLimits {
                max_per_tenant: limits.max_per_tenant.max(1),
                ..limits
            },
            state: Mutex::new(GateState {
                hosts: HashMap::new(),
                tenants: HashMap::new(),
                swept_at: Instant::now(),
            }),
        }
    }

    /// The maps, whole even after a panic elsewhere while they were held (each change to them
    /// is one insert or removal), so one panic never stops every later request.
    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn max_per_host(&self) -> usize {
        self.max_per_host
    }

    /// The origin and every header marked sensitive (credentials, API keys) of a request.
    pub fn tenant(&self, request: &reqwest::Request) -> Tenant {
        let mut h = self.hasher.build_hasher();
        let url = request.url();
        (url.scheme(), url.host_str(), url.port_or_known_default()).hash(&mut h);
        for (name, value) in request.headers() {
            if value.is_sensitive() {
                (name.as_str(), value.as_bytes()).hash(&mut h);
            }
        }
        Tenant(h.finish())
    }

    /// A request's turn: its wait for the tenant's budget and the permits to take then; or, when
    /// a 429 paused the tenant, how long the pause still lasts (and the budget is not spent).
    pub fn admit(&self, tenant: Tenant, host: &str) -> Result<Admission, Duration> {
        self.admit_at(tenant, host, Instant::now())
    }

    fn admit_at(&self, tenant: Tenant, host: &str, now: Instant) -> Result<Admission, Duration> {
        let mut state = self.state();
        state.sweep_if_due(now);
        let gate = state.gate(tenant, self.limits.max_per_tenant);
        if let Some(remaining) = gate.pause_remaining(now) {
            return Err(remaining);
        }
        let wait = match self.limits.requests_per_minute {
            Some(per_minute) => gate.budget.reserve(per_minute, now),
            None => Duration::ZERO,
        };
        let tenant_permits = gate.permits.clone();
        let host_permits = state.host_permits(host, self.max_per_host);
        Ok(Admission {
            wait,
            tenant_permits,
            host_permits,
        })
    }

    /// How long the tenant's 429 pause still lasts, if it has one.
    pub fn paused(&self, tenant: Tenant) -> Option<Duration> {
        let now = Instant::now();
        let state = self.state();
        state.tenants.get(&tenant)?.pause_remaining(now)
    }

    /// A 429: the tenant's requests fail without being sent for `wait` (at most
    /// [`MAX_PROVIDER_PAUSE`]).
    pub fn pause(&self, tenant: Tenant, wait: Duration) {
        let until = crate::time_math::deadline_in(wait.min(MAX_PROVIDER_PAUSE));
        self.state()
            .gate(tenant, self.limits.max_per_tenant)
            .paused_until = Some(until);
    }

    #[cfg(test)]
    fn entries(&self) -> (usize, usize) {
        let state = self.state();
        (state.tenants.len(), state.hosts.len())
    }
}

impl GateState {
    /// The tenant's entry, made on its first request (or 429).
    fn gate(&mut self, tenant: Tenant, max_per_tenant: usize) -> &mut TenantGate {
        self.tenants
            .entry(tenant)
            .or_insert_with(|| TenantGate::new(max_per_tenant))
    }

    /// The host's semaphore; its name is copied only the first time (this runs every request).
    fn host_permits(&mut self, host: &str, max_per_host: usize) -> Arc<Semaphore> {
        if let Some(permits) = self.hosts.get(host) {
            return permits.clone();
        }
        let permits = Arc::new(Semaphore::new(max_per_host));
        self.hosts.insert(host.to_string(), permits.clone());
        permits
    }

    /// Forgets idle tenants and hosts, at most once every [`SWEEP_EVERY`].
    fn sweep_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept_at) < SWEEP_EVERY {
            return;
        }
        self.swept_at = now;
        self.tenants.retain(|_, gate| !gate.is_idle(now));
        self.hosts
            .retain(|_, permits| Arc::strong_count(permits) > 1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]

    use super::*;

    fn per_minute(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    fn gates(max_per_host: usize, max_per_tenant: usize, requests_per_minute: u32) -> Gates {
        let limits = TenantLimits {
            max_per_tenant,
            requests_per_minute: Some(per_minute(requests_per_minute)),
        };
        Gates::new(max_per_host, limits)
    }

    /// The waits a budget gives requests asking at `offsets` (seconds) after `start`.
    fn waits(budget: &mut Budget, n: u32, start: Instant, offsets: &[u64]) -> Vec<Duration> {
        offsets
            .iter()
            .map(|s| budget.reserve(per_minute(n), start + Duration::from_secs(*s)))
            .collect()
    }

    #[test]
    fn a_whole_budget_goes_at_once_then_one_request_per_spacing() {
        let start = Instant::now();
        let mut budget = Budget::default();
        // 6 a minute: 6 at once, the 7th and 8th 10 s and 20 s later.
        let at_start = waits(&mut budget, 6, start, &[0; 8]);
        let secs: Vec<u64> = at_start.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 0, 0, 0, 0, 0, 10, 20]);
        // 25 s on, the two reserved turns are past; the next is 30 s after the start (5 s on).
        assert_eq!(
            waits(&mut budget, 6, start, &[25]),
            [Duration::from_secs(5)]
        );
        // A minute and a half unused: whole again, 6 at once.
        assert!(budget.is_whole(start + Duration::from_secs(150)));
        let later = waits(&mut budget, 6, start, &[150; 6]);
        assert!(later.iter().all(Duration::is_zero), "{later:?}");
        assert!(
            !budget
                .reserve(per_minute(6), start + Duration::from_secs(150))
                .is_zero()
        );
    }

    #[test]
    fn tenants_have_budgets_of_their_own() {
        let gates = gates(64, 2, 2);
        let now = Instant::now();
        let (a, b) = (Tenant(1), Tenant(2));
        let wait = |t| gates.admit_at(t, "h", now).unwrap().wait;
        assert_eq!([wait(a), wait(a), wait(a)].map(|w| w.as_secs()), [0, 0, 30]);
        assert_eq!([wait(b), wait(b)].map(|w| w.as_secs()), [0, 0]);
        let admission = gates.admit_at(a, "h", now).unwrap();
        assert_eq!(admission.tenant_permits.available_permits(), 2);
        assert_eq!(admission.host_permits.available_permits(), 64);
    }

    #[test]
    fn a_paused_tenant_is_refused_without_spending_its_budget() {
        let gates = gates(4, 1, 1);
        gates.pause(Tenant(7), Duration::from_secs(30));
        let refused = gates.admit(Tenant(7), "h").err().expect("paused");
        assert!(refused > Duration::from_secs(25), "{refused:?}");
        assert_eq!(gates.paused(Tenant(8)), None);
        // The pause over, the whole (one-request) budget is still there.
        let after = Instant::now() + Duration::from_secs(31);
        assert!(
            gates
                .admit_at(Tenant(7), "h", after)
                .unwrap()
                .wait
                .is_zero()
        );
    }

    #[test]
    fn idle_tenants_and_hosts_are_forgotten_busy_ones_kept() {
        let gates = gates(4, 4, 60);
        let start = Instant::now();
        for t in 0..1000 {
            drop(gates.admit_at(Tenant(t), &format!("host-{}", t % 10), start));
        }
        // Tenant 5000 holds its admission (a request waiting or in flight) across the sweep.
        let held = gates.admit_at(Tenant(5000), "busy", start).unwrap();
        assert_eq!(gates.entries(), (1001, 11));
        // Two minutes on: every budget is whole again, and the sweep is due.
        let later = start + Duration::from_secs(120);
        drop(gates.admit_at(Tenant(9999), "other", later));
        assert_eq!(
            gates.entries(),
            (2, 2),
            "the held tenant and the one just asking"
        );
        drop(held);
        // A budget spent within the last minute keeps its tenant: forgetting it would give the
        // tenant a whole new budget.
        for _ in 0..90 {
            drop(gates.admit_at(Tenant(1), "h", later));
        }
        drop(gates.admit_at(Tenant(2), "h", later + Duration::from_secs(61)));
        let state = gates.state.lock().unwrap();
        assert!(state.tenants.contains_key(&Tenant(1)));
        assert!(!state.tenants.contains_key(&Tenant(5000)));
    }
}
