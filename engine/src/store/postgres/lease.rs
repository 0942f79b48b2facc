//! Account ownership: a lease per account, with an epoch that fences off its last owner.
//!
//! `accounts(account, epoch, owner, lease_until)`: a node acquires an account by bumping its
//! epoch — only when the lease has expired or the node already owns it, judged by the
//! database's clock. Every write transaction reads the epochs of its accounts `FOR SHARE` and
//! writes nothing for an account whose epoch is not the one this node acquired (Temporal's
//! `range_id`; Kleppmann's fencing token). An acquisition updates the row, so it waits for the
//! write transactions holding it and every later one sees the new epoch: once a node has
//! acquired an account, nothing the previous owner writes commits.
//!
//! A node renews its leases every ttl/3, and only while they run: an expired lease is not
//! revived by its owner (another node may be taking it). One that could not renew for ttl minus a margin
//! (measured from when it sent the last renewal that succeeded, on its own monotonic clock)
//! gives the account up by itself: its writes are refused before they reach the database and
//! the account is reported lost ([`Leases::lost`]), so the engine stops its network I/O
//! before another node may take over.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::{Tables, cell, column, remote};
use crate::store::StoreError;

/// An account this node owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The account.
    pub account: u64,
    /// Its epoch: bumped by every acquisition.
    pub epoch: i64,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    /// Past this instant the lease may have expired in the database: writes stop.
    valid_until: Instant,
}

/// This node's leases.
#[derive(Debug)]
pub struct Leases {
    pool: Pool,
    tables: Arc<Tables>,
    node: String,
    ttl: Duration,
    held: Mutex<HashMap<u64, Held>>,
    lost: tokio::sync::watch::Sender<Vec<u64>>,
}

impl Leases {
    pub(super) fn new(pool: Pool, tables: Arc<Tables>, node: String, ttl: Duration) -> Arc<Self> {
        Arc::new(Leases {
            pool,
            tables,
            node,
            ttl,
            held: Mutex::default(),
            lost: tokio::sync::watch::channel(Vec::new()).0,
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How long a lease lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn margin(&self) -> Duration {
        self.ttl / 5
    }

    /// Takes `account`: when nobody holds it, its lease expired, or this node holds it. The
    /// epoch moves on either way, so writes of an earlier acquisition (this node's included)
    /// are refused from now on.
    ///
    /// # Errors
    /// [`StoreError::Owned`] while another node's lease runs; [`StoreError::Remote`].
    pub async fn acquire(&self, account: u64) -> Result<Lease, StoreError> {
        let client = self.pool.get().await.map_err(remote)?;
        let sent = Instant::now();
        let t = self.tables.accounts();
        let ttl_s = self.ttl.as_secs_f64();
        let sql = format!(
            "INSERT INTO {t} AS a (account, epoch, owner, lease_until) \
             VALUES ($1, 1, $2, now() + $3::float8 * interval '1 second') \
             ON CONFLICT (account) DO UPDATE SET epoch = a.epoch + 1, owner = $2, \
             lease_until = now() + $3::float8 * interval '1 second' \
             WHERE a.lease_until < now() OR a.owner = $2 RETURNING epoch"
        );
        let row = client
            .query_opt(&sql, &[&column(account), &self.node, &ttl_s])
            .await
            .map_err(remote)?;
        let Some(row) = row else {
            let owner = client
                .query_opt(
                    &format!("SELECT owner FROM {t} WHERE account = $1"),
                    &[&column(account)],
                )
                .await
                .map_err(remote)?
                .map(|r| cell::<String>(&r, 0))
                .transpose()?
                .unwrap_or_default();
            return Err(StoreError::Owned { account, owner });
        };
        let epoch: i64 = cell(&row, 0)?;
        self.hold(account, epoch, sent);
        self.lost.send_if_modified(|l| {
            let before = l.len();
            l.retain(|a| *a != account);
            l.len() != before
        });
        Ok(Lease { account, epoch })
    }

    /// A renewal sent at `sent` succeeded: extends the holding, if it is still the same one.
    fn extend(&self, account: u64, epoch: i64, sent: Instant) {
        let valid_until = sent + self.ttl.saturating_sub(self.margin());
        if let Ok(mut held) = self.held.lock() {
            if let Some(h) = held.get_mut(&account).filter(|h| h.epoch == epoch) {
                h.valid_until = h.valid_until.max(valid_until);
            }
        }
    }

    fn hold(&self, account: u64, epoch: i64, sent: Instant) {
        let valid_until = sent + self.ttl.saturating_sub(self.margin());
        if let Ok(mut held) = self.held.lock() {
            held.insert(account, Held { epoch, valid_until });
        }
    }

    /// Gives `account` up: its lease ends now, so another node may take it at once.
    ///
    /// # Errors
    /// [`StoreError::Remote`] (this node has stopped writing for it either way).
    pub async fn release(&self, account: u64) -> Result<(), StoreError> {
        let epoch = self
            .held
            .lock()
            .ok()
            .and_then(|mut h| h.remove(&account))
            .map(|h| h.epoch);
        let Some(epoch) = epoch else {
            return Ok(());
        };
        let client = self.pool.get().await.map_err(remote)?;
        client
            .execute(
                &format!(
                    "UPDATE {} SET lease_until = now() - interval '1 millisecond' \
                     WHERE account = $1 AND epoch = $2 AND owner = $3",
                    self.tables.accounts()
                ),
                &[&column(account), &epoch, &self.node],
            )
            .await
            .map_err(remote)?;
        Ok(())
    }

    /// The accounts this node owns now (their leases valid on its clock).
    pub fn owned(&self) -> Vec<Lease> {
        let now = Instant::now();
        self.held.lock().map_or_else(
            |_| Vec::new(),
            |h| {
                h.iter()
                    .filter(|(_, x)| x.valid_until > now)
                    .map(|(a, x)| Lease {
                        account: *a,
                        epoch: x.epoch,
                    })
                    .collect()
            },
        )
    }

    /// Whether this node owns `account` now.
    pub fn owns(&self, account: u64) -> bool {
        self.epoch(account).is_some()
    }

    /// The epoch this node holds `account` under, while its lease runs on this node's clock.
    pub(super) fn epoch(&self, account: u64) -> Option<i64> {
        let now = Instant::now();
        self.held
            .lock()
            .ok()?
            .get(&account)
            .filter(|h| h.valid_until > now)
            .map(|h| h.epoch)
    }

    /// Accounts this node lost (fenced off, or unable to renew) and has not acquired again:
    /// it must stop them.
    pub fn lost(&self) -> tokio::sync::watch::Receiver<Vec<u64>> {
        self.lost.subscribe()
    }

    /// Gives up these `(account, epoch)` holdings — each only if this node still holds the
    /// account under that epoch (a release or a new acquisition in the meantime wins).
    fn lose(&self, lost: &[(u64, i64)]) {
        let mut accounts = Vec::new();
        if let Ok(mut held) = self.held.lock() {
            for (a, e) in lost {
                if held.get(a).is_some_and(|h| h.epoch == *e) {
                    held.remove(a);
                    accounts.push(*a);
                }
            }
        }
        if accounts.is_empty() {
            return;
        }
        tracing::warn!(?accounts, node = %self.node, "accounts lost to another node or to the database");
        self.lost.send_modify(|l| {
            l.extend_from_slice(&accounts);
            l.sort_unstable();
            l.dedup();
        });
    }

    fn lose_epoch(&self, account: u64, epoch: i64) {
        self.lose(&[(account, epoch)]);
    }

    /// Renews every lease once: those whose epoch moved on are lost at once, those that
    /// could not be renewed are lost once their time on this node's clock is up.
    ///
    /// # Errors
    /// [`StoreError::Remote`] when the database could not be asked.
    pub async fn renew(&self) -> Result<(), StoreError> {
        // In account order: write transactions lock the same rows in that order.
        let mut held: Vec<(u64, Held)> = self
            .held
            .lock()
            .map(|h| h.iter().map(|(a, x)| (*a, *x)).collect())
            .unwrap_or_default();
        held.sort_unstable_by_key(|(a, _)| column(*a));
        if held.is_empty() {
            return Ok(());
        }
        let sent = Instant::now();
        let result = async {
            let client = self.pool.get().await.map_err(remote)?;
            let ttl_s = self.ttl.as_secs_f64();
            let accounts: Vec<i64> = held.iter().map(|(a, _)| column(*a)).collect();
            let epochs: Vec<i64> = held.iter().map(|(_, h)| h.epoch).collect();
            let rows = client
                .query(
                    &format!(
                        "UPDATE {} AS a SET lease_until = now() + $3::float8 * interval '1 second' \
                         FROM unnest($1::int8[], $2::int8[]) AS h(account, epoch) \
                         WHERE a.account = h.account AND a.epoch = h.epoch AND a.owner = $4 \
                         AND a.lease_until > now() RETURNING a.account",
                        self.tables.accounts()
                    ),
                    &[&accounts, &epochs, &ttl_s, &self.node],
                )
                .await
                .map_err(remote)?;
            rows.iter()
                .map(|r| cell::<i64>(r, 0))
                .collect::<Result<BTreeSet<i64>, StoreError>>()
        }
        .await;
        match result {
            Ok(renewed) => {
                let mut gone = Vec::new();
                for (a, h) in held {
                    if renewed.contains(&column(a)) {
                        self.extend(a, h.epoch, sent);
                    } else {
                        gone.push((a, h.epoch));
                    }
                }
                self.lose(&gone);
                Ok(())
            }
            Err(e) => {
                let now = Instant::now();
                let expired: Vec<(u64, i64)> = held
                    .iter()
                    .filter(|(_, h)| h.valid_until <= now)
                    .map(|(a, h)| (*a, h.epoch))
                    .collect();
                self.lose(&expired);
                Err(e)
            }
        }
    }

    /// Renews every ttl/3, and gives up accounts whose time ran out between renewals.
    pub(super) async fn renew_loop(self: Arc<Self>) {
        let every = (self.ttl / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            // Bounded: a renewal that hangs (the database cut off) must not keep this loop
            // from giving up the accounts whose time ran out.
            match tokio::time::timeout(every, self.renew()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                Err(_) => tracing::warn!("lease renewal got no answer"),
            }
            let now = Instant::now();
            let expired: Vec<(u64, i64)> = self
                .held
                .lock()
                .map(|h| {
                    h.iter()
                        .filter(|(_, x)| x.valid_until <= now)
                        .map(|(a, x)| (*a, x.epoch))
                        .collect()
                })
                .unwrap_or_default();
            self.lose(&expired);
        }
    }

    /// Inside a write transaction: locks the ownership rows of `accounts` (`FOR SHARE`, in
    /// account order, as renewals lock them) and returns their epochs. Accounts whose epoch
    /// moved past the one this node holds are lost.
    pub(super) async fn locked_epochs(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        accounts: &BTreeSet<u64>,
    ) -> Result<HashMap<u64, i64>, StoreError> {
        if accounts.is_empty() {
            return Ok(HashMap::new());
        }
        let cols: Vec<i64> = accounts.iter().map(|a| column(*a)).collect();
        let rows = tx
            .query(
                &format!(
                    "SELECT account, epoch FROM {} WHERE account = ANY($1) ORDER BY account \
                     FOR SHARE",
                    self.tables.accounts()
                ),
                &[&cols],
            )
            .await
            .map_err(remote)?;
        let stored = rows
            .iter()
            .map(|r| Ok((super::account(cell(r, 0)?), cell(r, 1)?)))
            .collect::<Result<HashMap<u64, i64>, StoreError>>()?;
        for (a, e) in &stored {
            if let Some(mine) = self.epoch(*a) {
                if mine != *e {
                    self.lose_epoch(*a, mine);
                }
            }
        }
        Ok(stored)
    }
}
