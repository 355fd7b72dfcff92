//! Injected faults: which requests they hit, and the answers they make.

use std::time::Duration;

use super::{Fault, FaultScope};

struct ActiveFault {
    fault: Fault,
    scope: FaultScope,
    /// Matching requests seen so far.
    matched: usize,
}

/// The faults in force.
#[derive(Default)]
pub(super) struct FaultTable {
    active: Vec<ActiveFault>,
}

/// What the faults decided for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct FaultPlan {
    /// Total delay before answering.
    pub latency: Duration,
    /// The first non-latency fault that applies, which shapes the answer.
    pub answer: Option<Fault>,
}

impl FaultTable {
    pub fn add(&mut self, fault: Fault, scope: FaultScope) {
        self.active.push(ActiveFault {
            fault,
            scope,
            matched: 0,
        });
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
            match &active.fault {
                Fault::Latency(delay) => plan.latency += *delay,
                fault if plan.answer.is_none() => plan.answer = Some(fault.clone()),
                _ => {}
            }
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
