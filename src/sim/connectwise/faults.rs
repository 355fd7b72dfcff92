//! Injected faults: which requests they hit, and the answers they make.

use std::time::Duration;

use super::{Fault, FaultScope};

struct ActiveFault {
    fault: Fault,
    scope: FaultScope,
    /// Of the requests in scope, the share affected (all when `None`).
    percent: Option<u8>,
    /// Matching requests seen so far.
    matched: usize,
}

/// The seed of a new simulator's fault dice: runs repeat unless a test reseeds.
const DEFAULT_FAULT_SEED: u64 = 0x5EED_FA17;

/// The faults in force.
pub(super) struct FaultTable {
    active: Vec<ActiveFault>,
    /// Decides which requests a percentage fault hits; seeded, so a failing run can be replayed.
    dice: fastrand::Rng,
}

impl Default for FaultTable {
    fn default() -> Self {
        FaultTable {
            active: Vec::new(),
            dice: fastrand::Rng::with_seed(DEFAULT_FAULT_SEED),
        }
    }
}

/// What the faults decided for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct FaultPlan {
    /// Total delay before answering.
    pub latency: Duration,
    /// The first non-latency fault that applies, which shapes the answer.
    pub answer: Option<Fault>,
}

impl FaultPlan {
    /// Adds a fault that applies: latencies add up, the first other fault shapes the answer.
    pub fn add(&mut self, fault: Fault) {
        match fault {
            Fault::Latency(delay) => self.latency += delay,
            fault if self.answer.is_none() => self.answer = Some(fault),
            _ => {}
        }
    }
}

impl FaultTable {
    /// `percent`: each request in scope is affected with this probability (`None`: every one).
    pub fn add(&mut self, fault: Fault, scope: FaultScope, percent: Option<u8>) {
        self.active.push(ActiveFault {
            fault,
            scope,
            percent,
            matched: 0,
        });
    }

    pub fn reseed(&mut self, seed: u64) {
        self.dice.seed(seed);
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// Counts the request against every fault whose scope matches `path`, and says which apply.
    pub fn plan(&mut self, path: &str) -> FaultPlan {
        let mut plan = FaultPlan::default();
        for active in &mut self.active {
            let in_scope = active
                .scope
                .path_contains
                .as_deref()
                .is_none_or(|text| path.contains(text));
            if !in_scope {
                continue;
            }
            active.matched += 1;
            let affected = active.matched > active.scope.skip
                && active.matched - active.scope.skip <= active.scope.count;
            if !affected {
                continue;
            }
            // The dice are rolled only for requests in the window, so a given seed and request
            // sequence always hits the same requests.
            if let Some(percent) = active.percent
                && self.dice.u8(0..100) >= percent
            {
                continue;
            }
            plan.add(active.fault.clone());
        }
        // Exhausted faults are dropped so the table stays small in long runs.
        self.active.retain(|active| {
            active.matched <= active.scope.skip
                || active.matched - active.scope.skip < active.scope.count
        });
        plan
    }
}

/// The HTML page of a maintenance window, as ConnectWise's front end serves it.
pub(super) const MAINTENANCE_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>ConnectWise - \
    Scheduled Maintenance</title></head>\n<body><h1>We&rsquo;ll be back soon</h1>\n<p>ConnectWise \
    Manage is undergoing scheduled maintenance. Please try again later.</p></body></html>\n";

/// An HTML page answered with 200, as a login portal or captive proxy would.
pub(super) const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>ConnectWise Manage \
    - Login</title></head>\n<body><form method=\"post\" action=\"/login\"><input name=\"company\">\
    <input name=\"username\"><input type=\"password\" name=\"password\"></form></body></html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(table: &mut FaultTable, requests: usize) -> Vec<bool> {
        (0..requests)
            .map(|_| table.plan("/company/contacts").answer.is_some())
            .collect()
    }

    #[test]
    fn a_percentage_fault_hits_about_that_share_of_requests() {
        let mut table = FaultTable::default();
        table.add(Fault::ServerError, FaultScope::always(), Some(10));
        let hit = hits(&mut table, 10_000).iter().filter(|h| **h).count();
        // 10 % of 10,000 is 1,000; a fair die lands within ±200 all but never.
        assert!((800..=1200).contains(&hit), "{hit} of 10,000 hit");
    }

    #[test]
    fn zero_and_hundred_percent_are_never_and_always() {
        let mut never = FaultTable::default();
        never.add(Fault::ServerError, FaultScope::always(), Some(0));
        assert!(hits(&mut never, 500).iter().all(|h| !h));
        let mut always = FaultTable::default();
        always.add(Fault::ServerError, FaultScope::always(), Some(100));
        assert!(hits(&mut always, 500).iter().all(|h| *h));
    }

    #[test]
    fn the_same_seed_hits_the_same_requests() {
        let run = |seed| {
            let mut table = FaultTable::default();
            table.reseed(seed);
            table.add(Fault::ServerError, FaultScope::always(), Some(30));
            hits(&mut table, 300)
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn a_percentage_applies_only_inside_the_scope_window() {
        let mut table = FaultTable::default();
        let scope = FaultScope {
            path_contains: Some("/service/tickets".into()),
            skip: 2,
            count: 50,
        };
        table.add(Fault::ServerError, scope, Some(100));
        assert!(table.plan("/company/contacts").answer.is_none());
        let tickets: Vec<bool> = (0..60)
            .map(|_| table.plan("/service/tickets").answer.is_some())
            .collect();
        assert_eq!(tickets.iter().filter(|h| **h).count(), 50);
        assert!(!tickets[0] && !tickets[1] && tickets[2] && !tickets[59]);
    }

    #[test]
    fn random_latency_adds_up_with_other_faults() {
        let mut table = FaultTable::default();
        table.add(
            Fault::Latency(Duration::from_millis(300)),
            FaultScope::always(),
            Some(100),
        );
        table.add(Fault::TruncatedJson, FaultScope::always(), Some(100));
        let plan = table.plan("/company/contacts");
        assert_eq!(plan.latency, Duration::from_millis(300));
        assert_eq!(plan.answer, Some(Fault::TruncatedJson));
    }
}
