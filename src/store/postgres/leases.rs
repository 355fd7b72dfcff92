//! Nodes and leases: a node's heartbeat and the renewal of its leases (one transaction, so both
//! carry the server's same `now()`), claims of free leases, releases, and the whole picture for
//! `status`. Also the check every instance write makes first ([`Db::fenced`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::{Db, from_millis};
use crate::store::StoreError;

/// A lease this node just claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseClaim {
    pub instance: String,
    pub epoch: i64,
    /// Who held it before, when its lease had expired rather than been released: a takeover.
    pub expired_owner: Option<String>,
}

/// What one heartbeat saw of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The leases of those asked to renew that this node still holds at their epoch.
    pub renewed: Vec<String>,
    /// Nodes whose heartbeat is younger than the TTL, this one included.
    pub live_nodes: u64,
    /// Instances to share among them: those held by someone, and the free ones this node has a
    /// file for.
    pub instances: u64,
}

/// A node as `status` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub node_id: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Leases it holds that have not expired.
    pub leases: u64,
}

/// An instance's lease as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    pub instance: String,
    /// `None` when free (released, or never claimed).
    pub owner: Option<String>,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

/// The live nodes and every lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub nodes: Vec<NodeView>,
    pub leases: Vec<LeaseView>,
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn count(row: &tokio_postgres::Row, index: usize) -> u64 {
    u64::try_from(row.get::<_, i64>(index)).unwrap_or(0)
}

impl Db {
    /// Begins a transaction for a write that belongs to `instance`. On a fenced store its first
    /// statement checks that this node holds the instance's lease at the epoch it claimed, and
    /// locks the lease row (`FOR SHARE`) until the transaction ends: a takeover, which updates
    /// the row, cannot commit in between. Else the write fails with [`StoreError::LeaseLost`].
    pub(super) async fn fenced<'a>(
        &self,
        client: &'a mut deadpool_postgres::Client,
        instance: &str,
        action: &str,
    ) -> Result<Transaction<'a>, StoreError> {
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error(action, &e))?;
        self.check_lease(&tx, instance, action).await?;
        Ok(tx)
    }

    /// In `tx`: on a fenced store, checks that this node holds `instance`'s lease at the epoch
    /// it claimed and locks the lease row until `tx` ends (see [`Db::fenced`]); else
    /// [`StoreError::LeaseLost`], and the fence is told. A plain SELECT: `tx` goes on after a
    /// refusal, for the writes of other instances.
    pub(super) async fn check_lease(
        &self,
        tx: &Transaction<'_>,
        instance: &str,
        action: &str,
    ) -> Result<(), StoreError> {
        let Some(fence) = &self.fence else {
            return Ok(());
        };
        let lost = || {
            fence.refused(instance);
            StoreError::LeaseLost {
                instance: instance.to_string(),
                node: fence.node_id().to_string(),
            }
        };
        let epoch = fence.epoch(instance).ok_or_else(lost)?;
        let held = self
            .query_cached(
                tx,
                "SELECT 1 FROM pollerd_leases WHERE instance = $1 AND owner = $2 AND epoch = $3 \
                 FOR SHARE",
                &[&instance, &fence.node_id(), &epoch],
                action,
            )
            .await?;
        match held.is_empty() {
            false => Ok(()),
            true => Err(lost()),
        }
    }

    /// [`Db::check_lease`] for several instances in one statement: those of `instances` this
    /// node holds at the epoch it claimed, their lease rows locked until `tx` ends. The fence is
    /// told of each other one.
    pub(super) async fn check_leases<'i>(
        &self,
        tx: &Transaction<'_>,
        instances: &[&'i str],
        action: &str,
    ) -> Result<std::collections::HashSet<&'i str>, StoreError> {
        let Some(fence) = &self.fence else {
            return Ok(instances.iter().copied().collect());
        };
        let (mut names, mut epochs) = (Vec::new(), Vec::new());
        for instance in instances {
            if let Some(epoch) = fence.epoch(instance) {
                names.push(*instance);
                epochs.push(epoch);
            }
        }
        let rows = tx
            .query(
                "SELECT l.instance FROM pollerd_leases l \
                 JOIN unnest($1::text[], $2::int8[]) AS h(instance, epoch) \
                 ON l.instance = h.instance AND l.epoch = h.epoch \
                 WHERE l.owner = $3 FOR SHARE OF l",
                &[&names, &epochs, &fence.node_id()],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let held: std::collections::HashSet<String> =
            rows.iter().map(|row| row.get::<_, String>(0)).collect();
        let held: std::collections::HashSet<&'i str> = instances
            .iter()
            .copied()
            .filter(|instance| held.contains(*instance))
            .collect();
        for instance in instances.iter().filter(|i| !held.contains(**i)) {
            fence.refused(instance);
        }
        Ok(held)
    }

    /// One statement (one round trip, so a loaded server or network delays it least): this
    /// node's heartbeat, its leases in `held` renewed for `ttl` where it still holds them at
    /// their epoch, and the counts its fair share is computed from. The counts see the database
    /// as the statement started, so this node is counted apart from the others.
    pub(super) async fn heartbeat(
        &self,
        node: &str,
        held: &[(String, i64)],
        wanted: &[String],
        ttl: Duration,
    ) -> Result<Heartbeat, StoreError> {
        let action = format!("renew the leases of node {node}");
        let client = self.client(&action).await?;
        let (names, epochs): (Vec<&str>, Vec<i64>) = held
            .iter()
            .map(|(name, epoch)| (name.as_str(), *epoch))
            .unzip();
        let row = client
            .query_one(
                "WITH beat AS ( \
                   INSERT INTO pollerd_nodes (node_id) VALUES ($1) \
                   ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = now() RETURNING 1), \
                 renewed AS ( \
                   UPDATE pollerd_leases l \
                   SET expires_at = now() + $4::int8 * interval '1 millisecond' \
                   FROM unnest($2::text[], $3::int8[]) AS h(instance, epoch) \
                   WHERE l.instance = h.instance AND l.epoch = h.epoch AND l.owner = $1 \
                   RETURNING l.instance) \
                 SELECT \
                   (SELECT coalesce(array_agg(instance), '{}') FROM renewed), \
                   (SELECT count(*) FROM beat), \
                   (SELECT count(*) FROM pollerd_nodes WHERE node_id <> $1 \
                    AND heartbeat_at > now() - $4::int8 * interval '1 millisecond'), \
                   (SELECT count(*) FROM pollerd_leases \
                    WHERE owner IS NOT NULL AND expires_at > now() AND NOT instance = ANY($5))",
                &[&node, &names, &epochs, &ms(ttl), &wanted],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        let wanted = u64::try_from(wanted.len()).unwrap_or(u64::MAX);
        Ok(Heartbeat {
            renewed: row.get(0),
            live_nodes: count(&row, 2).saturating_add(1),
            instances: count(&row, 3).saturating_add(wanted),
        })
    }

    /// Claims for `node` up to `limit` free leases among `wanted` (its files), and besides any
    /// among them free for longer than `ttl` (no node claimed it within its share: it would
    /// otherwise wait forever). Rows for `wanted` are created as needed. Rows another node is
    /// writing under are skipped, not waited for.
    pub(super) async fn claim(
        &self,
        node: &str,
        wanted: &[String],
        limit: u64,
        ttl: Duration,
    ) -> Result<Vec<LeaseClaim>, StoreError> {
        let action = format!("claim leases for node {node}");
        let mut client = self.client(&action).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error(&action, &e))?;
        tx.execute(
            "INSERT INTO pollerd_leases (instance) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            &[&wanted],
        )
        .await
        .map_err(|e| self.error(&action, &e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tx
            .query(
                "WITH free AS ( \
                   SELECT instance, owner, \
                     expires_at < now() - $4::int8 * interval '1 millisecond' AS orphaned \
                   FROM pollerd_leases \
                   WHERE instance = ANY($2) AND (owner IS NULL OR expires_at < now()) \
                   FOR UPDATE SKIP LOCKED), \
                 chosen AS ( \
                   SELECT instance, owner FROM ( \
                     SELECT instance, owner, orphaned, \
                       row_number() OVER (ORDER BY random()) AS n FROM free) f \
                   WHERE orphaned OR n <= $3) \
                 UPDATE pollerd_leases l SET owner = $1, epoch = l.epoch + 1, \
                   expires_at = now() + $4::int8 * interval '1 millisecond' \
                 FROM chosen WHERE l.instance = chosen.instance \
                 RETURNING l.instance, l.epoch, chosen.owner",
                &[&node, &wanted, &limit, &ms(ttl)],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        tx.commit().await.map_err(|e| self.error(&action, &e))?;
        let mut claims: Vec<LeaseClaim> = rows
            .iter()
            .map(|row| LeaseClaim {
                instance: row.get(0),
                epoch: row.get(1),
                expired_owner: row.get::<_, Option<String>>(2).filter(|o| o != node),
            })
            .collect();
        claims.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(claims)
    }

    /// Frees the leases in `held` that `node` still holds at their epoch; the instances freed.
    pub(super) async fn release(
        &self,
        node: &str,
        held: &[(String, i64)],
    ) -> Result<Vec<String>, StoreError> {
        let action = format!("release leases of node {node}");
        let client = self.client(&action).await?;
        let (names, epochs): (Vec<&str>, Vec<i64>) = held
            .iter()
            .map(|(name, epoch)| (name.as_str(), *epoch))
            .unzip();
        let rows = client
            .query(
                "UPDATE pollerd_leases l SET owner = NULL, expires_at = now() \
                 FROM unnest($2::text[], $3::int8[]) AS h(instance, epoch) \
                 WHERE l.instance = h.instance AND l.epoch = h.epoch AND l.owner = $1 \
                 RETURNING l.instance",
                &[&node, &names, &epochs],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The node leaves: its row goes, so the others count one node fewer at once.
    pub(super) async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let action = format!("remove node {node}");
        let client = self.client(&action).await?;
        client
            .execute("DELETE FROM pollerd_nodes WHERE node_id = $1", &[&node])
            .await
            .map_err(|e| self.error(&action, &e))?;
        Ok(())
    }

    /// The nodes whose heartbeat is younger than `ttl`, and every lease.
    pub(super) async fn cluster(&self, ttl: Duration) -> Result<ClusterView, StoreError> {
        let action = "read the nodes and leases";
        let client = self.client(action).await?;
        let epoch_ms = |column: &str| format!("(extract(epoch FROM {column}) * 1000)::int8");
        let nodes = client
            .query(
                &format!(
                    "SELECT n.node_id, {}, {}, \
                     (SELECT count(*) FROM pollerd_leases l \
                      WHERE l.owner = n.node_id AND l.expires_at > now()) \
                     FROM pollerd_nodes n \
                     WHERE n.heartbeat_at > now() - $1::int8 * interval '1 millisecond' \
                     ORDER BY n.node_id",
                    epoch_ms("n.started_at"),
                    epoch_ms("n.heartbeat_at")
                ),
                &[&ms(ttl)],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let leases = client
            .query(
                &format!(
                    "SELECT instance, owner, epoch, {} FROM pollerd_leases ORDER BY instance",
                    epoch_ms("expires_at")
                ),
                &[],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let time = |ms: i64| from_millis(ms).unwrap_or(DateTime::UNIX_EPOCH);
        Ok(ClusterView {
            nodes: nodes
                .iter()
                .map(|row| NodeView {
                    node_id: row.get(0),
                    started_at: time(row.get(1)),
                    heartbeat_at: time(row.get(2)),
                    leases: count(row, 3),
                })
                .collect(),
            leases: leases
                .iter()
                .map(|row| LeaseView {
                    instance: row.get(0),
                    owner: row.get(1),
                    epoch: row.get(2),
                    expires_at: time(row.get(3)),
                })
                .collect(),
        })
    }
}
