//! The lease manager of a node sharing a PostgreSQL store with others: every renew interval it
//! beats the node's heartbeat and renews its leases, claims free or expired leases of instances
//! this node has a file for up to its fair share (ceil(instances / live nodes)), and asks for a
//! few to be released when it holds more (a node joined). The main loop runs what it is told:
//! [`LeaseChange::Gained`] instances start, [`LeaseChange::Lost`] ones stop at once,
//! [`LeaseChange::Release`] ones stop and are then released ([`Leases::release`]).
//!
//! A node trusts its leases only until the renew that last succeeded was sent plus the TTL (the
//! server's expiry is later than that): past it, or on a write refused by the fence, it gives
//! them up and stops the instances without waiting to hear from PostgreSQL.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::internal_events::{LeaseClaimed, LeaseLost, LeaseReleased, ReleaseReason};
use crate::metrics::{LeaseLossCause, Metrics};
use crate::store::{Fence, Heartbeat, PostgresStore};

/// How long a node waits for its last releases and for leaving, when it stops.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// `[store] node_id`, `lease_renew`, `lease_ttl`.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub node_id: String,
    pub renew: Duration,
    pub ttl: Duration,
}

/// What the main loop must do for the leases.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseChange {
    /// Held now: start these instances.
    Gained(Vec<String>),
    /// Lost: stop these instances at once (their writes are refused already).
    Lost(Vec<String>),
    /// Stop these instances, then release their leases with [`Leases::release`].
    Release(Vec<String>, ReleaseReason),
}

/// What the manager's task and the main loop share.
pub struct Leases {
    store: Arc<PostgresStore>,
    fence: Arc<Fence>,
    settings: LeaseSettings,
    metrics: Metrics,
    /// Asked to be released and not released yet: neither counted nor asked again.
    releasing: Mutex<HashSet<String>>,
}

impl Leases {
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    pub fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    pub fn store(&self) -> &Arc<PostgresStore> {
        &self.store
    }

    /// Releases `instances` (stopped by now): their writes are refused from here on, and
    /// another node may claim them at once.
    pub async fn release(&self, instances: &[String], reason: ReleaseReason) {
        let held: Vec<(String, i64)> = instances
            .iter()
            .filter_map(|name| self.fence.epoch(name).map(|epoch| (name.clone(), epoch)))
            .collect();
        for (name, _) in &held {
            self.fence.give_up(name);
        }
        let released = match self.store.release(self.node_id(), held.clone()).await {
            Ok(released) => released,
            Err(e) => {
                // Unreleased, they expire after the TTL, and other nodes take them over then.
                tracing::warn!("lease manager: cannot release {} lease(s): {e}", held.len());
                Vec::new()
            }
        };
        self.releasing().retain(|name| !instances.contains(name));
        let count = self.fence.held().len();
        for (instance, epoch) in held.iter().filter(|(name, _)| released.contains(name)) {
            LeaseReleased {
                instance,
                epoch: *epoch,
                reason,
                held: count,
            }
            .emit(&self.metrics);
        }
    }

    fn releasing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.releasing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives up `instances` without releasing them, telling why.
    fn lose(
        &self,
        instances: &[String],
        cause: LeaseLossCause,
        changes: &UnboundedSender<LeaseChange>,
    ) {
        let lost: Vec<String> = instances
            .iter()
            .filter(|name| self.fence.give_up(name))
            .cloned()
            .collect();
        if lost.is_empty() {
            return;
        }
        let held = self.fence.held().len();
        for instance in &lost {
            LeaseLost {
                instance,
                cause,
                held,
            }
            .emit(&self.metrics);
        }
        let _ = changes.send(LeaseChange::Lost(lost));
    }
}

/// The running manager.
pub struct LeaseManager {
    leases: Arc<Leases>,
    wanted: watch::Sender<Vec<String>>,
    claiming: CancellationToken,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl LeaseManager {
    /// Starts the manager; `refusals` reports the instances whose writes the fence refused.
    pub fn start(
        store: Arc<PostgresStore>,
        fence: Arc<Fence>,
        refusals: UnboundedReceiver<String>,
        settings: LeaseSettings,
        metrics: Metrics,
    ) -> (LeaseManager, UnboundedReceiver<LeaseChange>) {
        let leases = Arc::new(Leases {
            store,
            fence,
            settings,
            metrics,
            releasing: Mutex::default(),
        });
        let (wanted, wanted_changes) = watch::channel(Vec::new());
        let (changes, received) = tokio::sync::mpsc::unbounded_channel();
        let claiming = CancellationToken::new();
        let cancel = CancellationToken::new();
        let manager = Manager {
            leases: leases.clone(),
            changes,
            wanted: wanted_changes,
            refusals,
            claiming: claiming.clone(),
            valid_until: None,
            trouble: false,
            claim_trouble: false,
        };
        let task = tokio::spawn(manager.run(cancel.clone()));
        let handle = LeaseManager {
            leases,
            wanted,
            claiming,
            cancel,
            task,
        };
        (handle, received)
    }

    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    /// The instances this node has a file for (it claims among them only).
    pub fn set_wanted(&self, mut names: Vec<String>) {
        names.sort();
        names.dedup();
        self.wanted.send_replace(names);
    }

    /// No more claims: the node is stopping (its renewals go on until [`LeaseManager::stop`]).
    pub fn stop_claiming(&self) {
        self.claiming.cancel();
    }

    /// Stops renewing, releases every lease still held and removes the node's row, so the other
    /// nodes claim its instances at their next round. Call once its instances have stopped.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
        let leases = self.leases;
        let held: Vec<String> = leases
            .fence
            .held()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let leave = async {
            leases.release(&held, ReleaseReason::Stopping).await;
            leases.store.leave(leases.node_id()).await
        };
        match tokio::time::timeout(LEAVE_WAIT, leave).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                "lease manager: cannot remove node {}: {e}",
                leases.node_id()
            ),
            Err(_) => tracing::warn!(
                "lease manager: PostgreSQL did not answer within {LEAVE_WAIT:?}; the leases of node {} expire after the TTL",
                leases.node_id()
            ),
        }
    }
}

/// The manager's task.
struct Manager {
    leases: Arc<Leases>,
    changes: UnboundedSender<LeaseChange>,
    wanted: watch::Receiver<Vec<String>>,
    refusals: UnboundedReceiver<String>,
    claiming: CancellationToken,
    /// Until when the leases held are surely still this node's: the last successful renew's
    /// send time plus the TTL.
    valid_until: Option<Instant>,
    /// A round failed: logged once until one succeeds again.
    trouble: bool,
    /// A claim failed: logged once until one succeeds again.
    claim_trouble: bool,
}

impl Manager {
    async fn run(mut self, cancel: CancellationToken) {
        let mut rounds = tokio::time::interval(self.leases.settings.renew);
        rounds.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let expiry = self.valid_until;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = rounds.tick() => self.round().await,
                Some(instance) = self.refusals.recv() => {
                    self.leases.lose(&[instance], LeaseLossCause::Write, &self.changes);
                }
                _ = sleep_until(expiry) => self.expire_all(),
                Ok(()) = self.wanted.changed() => self.round().await,
            }
        }
    }

    /// One heartbeat: renew, then claim or release toward this node's share.
    async fn round(&mut self) {
        let leases = self.leases.clone();
        let wanted = self.wanted.borrow_and_update().clone();
        let held = leases.fence.held();
        let sent_at = Instant::now();
        let node = leases.node_id();
        let beat = leases
            .store
            .heartbeat(node, held.clone(), wanted.clone(), leases.settings.ttl);
        let deadline = self.valid_until.unwrap_or(sent_at + leases.settings.ttl);
        let beat = tokio::time::timeout_at(deadline, beat).await;
        let beat = match beat {
            Ok(Ok(beat)) => beat,
            Ok(Err(e)) => return self.round_failed(&e.to_string()),
            Err(_) => {
                return self
                    .round_failed("PostgreSQL did not answer before the leases' TTL ran out");
            }
        };
        if std::mem::take(&mut self.trouble) {
            tracing::info!("lease manager: renewing works again");
        }
        let renewed: HashSet<&str> = beat.renewed.iter().map(String::as_str).collect();
        let lost: Vec<String> = held
            .iter()
            .filter(|(name, _)| !renewed.contains(name.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        leases.lose(&lost, LeaseLossCause::Renewal, &self.changes);
        self.valid_until = Some(sent_at + leases.settings.ttl);
        if !self.claiming.is_cancelled() {
            self.toward_share(&beat, &wanted).await;
        }
    }

    /// A claim failed; the leases held are renewed as before.
    fn claim_failed(&mut self, reason: &str) {
        if !std::mem::replace(&mut self.claim_trouble, true) {
            tracing::warn!(
                "lease manager: node {} cannot claim leases: {reason}; retrying every {:?}",
                self.leases.node_id(),
                self.leases.settings.renew
            );
        }
    }

    fn round_failed(&mut self, reason: &str) {
        if !std::mem::replace(&mut self.trouble, true) {
            tracing::warn!(
                "lease manager: cannot renew the leases of node {}: {reason}; retrying every {:?}",
                self.leases.node_id(),
                self.leases.settings.renew
            );
        }
        if self
            .valid_until
            .is_some_and(|until| Instant::now() >= until)
        {
            self.expire_all();
        }
    }

    /// The TTL ran out since the last renew that succeeded: the leases may be another node's
    /// by now, so every instance stops.
    fn expire_all(&mut self) {
        self.valid_until = None;
        let held: Vec<String> = self
            .leases
            .fence
            .held()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        self.leases
            .lose(&held, LeaseLossCause::Expired, &self.changes);
    }

    /// Releases what is beyond this node's share (unwanted ones first), or claims up to it.
    async fn toward_share(&mut self, beat: &Heartbeat, wanted: &[String]) {
        let leases = self.leases.clone();
        let share = beat.instances.div_ceil(beat.live_nodes.max(1));
        let releasing = leases.releasing().clone();
        let held: Vec<String> = leases
            .fence
            .held()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !releasing.contains(name))
            .collect();
        let (kept, unwanted): (Vec<String>, Vec<String>) = held
            .into_iter()
            .partition(|name| wanted.binary_search(name).is_ok());
        self.ask_release(unwanted, ReleaseReason::NoFile);
        let kept_count = kept.len() as u64;
        if kept_count > share {
            let excess = usize::try_from(kept_count - share).unwrap_or(usize::MAX);
            let mut kept = kept;
            fastrand::shuffle(&mut kept);
            kept.truncate(excess);
            self.ask_release(kept, ReleaseReason::Rebalance);
            return;
        }
        let candidates: Vec<String> = wanted
            .iter()
            .filter(|name| leases.fence.epoch(name).is_none())
            .cloned()
            .collect();
        if candidates.is_empty() {
            return;
        }
        let claims = leases.store.claim(
            leases.node_id(),
            candidates,
            share - kept_count,
            leases.settings.ttl,
        );
        // Bounded by the renew interval, so that a slow claim never holds back the next renewal.
        let claims = match tokio::time::timeout(leases.settings.renew, claims).await {
            Ok(Ok(claims)) => claims,
            Ok(Err(e)) => return self.claim_failed(&e.to_string()),
            // Claimed or not, unknown: any it got expire unrenewed, and are claimed again.
            Err(_) => {
                return self.claim_failed("PostgreSQL did not answer within the renew interval");
            }
        };
        if std::mem::take(&mut self.claim_trouble) {
            tracing::info!("lease manager: claiming works again");
        }
        if claims.is_empty() {
            return;
        }
        for claim in &claims {
            leases.fence.hold(&claim.instance, claim.epoch);
        }
        let held = leases.fence.held().len();
        for claim in &claims {
            LeaseClaimed {
                instance: &claim.instance,
                epoch: claim.epoch,
                expired_owner: claim.expired_owner.as_deref(),
                held,
            }
            .emit(&leases.metrics);
        }
        let gained = claims.into_iter().map(|claim| claim.instance).collect();
        let _ = self.changes.send(LeaseChange::Gained(gained));
    }

    fn ask_release(&mut self, instances: Vec<String>, reason: ReleaseReason) {
        if instances.is_empty() {
            return;
        }
        self.leases.releasing().extend(instances.iter().cloned());
        let _ = self.changes.send(LeaseChange::Release(instances, reason));
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
