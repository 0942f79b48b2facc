//! The shared backend: PostgreSQL (and what speaks its SQL), with fenced account ownership.
//!
//! One table per [`Family`], `(account, k, v)` with primary key `(account, k)`: `k` is the
//! store's whole key, `account` the account it belongs to (the key's first eight bytes for the
//! per-chat families, the account named in a per-account meta key, 0 for the engine-wide meta
//! values; an inbox event's is its batch's account, as its key is a sequence number), so an
//! account's rows sit together on a distributed database's shard. Accounts are stored with the
//! sign bit flipped, so `(account, k)` orders as `k` does. The inbox is read in sequence order
//! (an index on `k`), each node only its own accounts' events ([`Backend::range_of`]).
//!
//! Writes go to a committer task (`commit.rs`): every batch waiting when a transaction starts
//! goes into it (group commit), after one `SELECT … FOR SHARE` of the epochs of the accounts
//! the batches belong to ([`lease`]): a batch whose account this node no longer owns is
//! refused with [`StoreError::Fenced`], and nothing of it is written. `synchronous_commit` is
//! left on: a commit the server acknowledged survives its crash.
//!
//! The engine calls the store from its actors' threads: a read here blocks its thread for a
//! round trip to the server (and first waits for this node's writes not yet committed, so it
//! reads them).

mod commit;
pub mod lease;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Runtime};
use tokio_postgres::NoTls;

use super::backend::{Backend, Batch, Family, KeyRange, Synced, Ticket, WriteMode};
use super::{KeyValue, StoreError};
use commit::Committer;
pub use lease::{Lease, Leases};

/// How to connect.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db` (key=value strings work too).
    pub url: String,
    /// This node's name in the ownership table (unique per node).
    pub node: String,
    /// How long an account's lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Connections in the pool (reads; the committer holds one of them while it commits).
    pub connections: usize,
    /// A write that could not commit for this long fails with [`StoreError::Remote`].
    pub write_timeout: Duration,
    /// A read, an acquisition or release of an account, or a counter reservation that gets no
    /// answer for this long fails with [`StoreError::Remote`] (the database unreachable, its
    /// connections all busy): `Engine::add_account` among them.
    pub request_timeout: Duration,
    /// Table name prefix (several stores in one database, e.g. tests).
    pub prefix: String,
}

impl PgOptions {
    /// Defaults for `url`: node named by host name and process id, lease 10 s, 8 connections,
    /// writes and requests given up after 30 s.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            node: format!(
                "{}:{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into()),
                std::process::id()
            ),
            lease_ttl: Duration::from_secs(10),
            connections: 8,
            write_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            prefix: "sc_".into(),
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        let url = match self.url.split_once('@') {
            Some((_, host)) => format!("<credentials>@{host}"),
            None => self.url.clone(),
        };
        f.debug_struct("PgOptions")
            .field("url", &url)
            .field("node", &self.node)
            .field("lease_ttl", &self.lease_ttl)
            .field("connections", &self.connections)
            .field("write_timeout", &self.write_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A PostgreSQL database.
pub struct Postgres {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    tables: Arc<Tables>,
    committer: Arc<Committer>,
    leases: Arc<Leases>,
    /// [`PgOptions::request_timeout`].
    request_timeout: Duration,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("prefix", &self.tables.prefix)
            .finish_non_exhaustive()
    }
}

/// The tables' names.
#[derive(Debug)]
pub(crate) struct Tables {
    prefix: String,
}

impl Tables {
    pub(crate) fn of(&self, family: Family) -> String {
        format!("{}{}", self.prefix, family.name())
    }

    pub(crate) fn accounts(&self) -> String {
        format!("{}accounts", self.prefix)
    }

    pub(crate) fn counters(&self) -> String {
        format!("{}counters", self.prefix)
    }
}

/// A database error as the store's, with its causes (the server's message among them).
pub(crate) fn remote(e: impl std::error::Error) -> StoreError {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    StoreError::Remote(text)
}

/// A failure of this backend's own machinery as the store's error.
pub(crate) fn failure(what: &str) -> StoreError {
    StoreError::Remote(what.to_owned())
}

/// The account column of `key` in `family`: see the module documentation.
pub(crate) fn account_of(family: Family, key: &[u8]) -> Result<i64, StoreError> {
    let leading =
        |k: &[u8]| -> Option<u64> { Some(u64::from_be_bytes(k.get(..8)?.try_into().ok()?)) };
    let account = match family {
        Family::Chats | Family::ChatIndex | Family::Outbox | Family::Waiting => {
            leading(key).ok_or(StoreError::Corrupt(family.name()))?
        }
        Family::Meta => ["qts/", "dh/", "upload/", "download/"]
            .iter()
            .find_map(|p| key.strip_prefix(p.as_bytes()).and_then(leading))
            .unwrap_or(0),
        // Not in the key: the batch's (see `column_for`).
        Family::Inbox => 0,
    };
    Ok(column(account))
}

/// The account column of a row `batch` puts: an inbox event's is the batch's account.
pub(crate) fn column_for(batch: &Batch, family: Family, key: &[u8]) -> Result<i64, StoreError> {
    match family {
        Family::Inbox => batch
            .account
            .map(column)
            .ok_or(StoreError::Corrupt("an inbox event without its account")),
        _ => account_of(family, key),
    }
}

/// An account as its column value: order-preserving (sign bit flipped).
pub(crate) fn column(account: u64) -> i64 {
    (account ^ (1 << 63)) as i64
}

/// The account columns bounding the keys from `from` to `to` (`None`: the end) in `family`:
/// a range read or deletion also bounds `account`, so it is an index range scan.
pub(crate) fn bounds(family: Family, from: &[u8], to: Option<&[u8]>) -> (i64, i64) {
    if family == Family::Inbox {
        return (i64::MIN, i64::MAX);
    }
    (
        account_of(family, from).unwrap_or(i64::MIN),
        to.and_then(|to| account_of(family, to).ok())
            .unwrap_or(i64::MAX),
    )
}

/// The order of a range read: the inbox by sequence number, the others as keyed.
fn order(family: Family) -> &'static str {
    match family {
        Family::Inbox => "k",
        _ => "account, k",
    }
}

/// `(k, v)` rows as the store's entries.
fn key_values(rows: &[tokio_postgres::Row]) -> Result<Vec<KeyValue>, StoreError> {
    rows.iter()
        .map(|r| Ok((cell(r, 0)?, cell(r, 1)?)))
        .collect()
}

/// Column `i` of a row, typed; a row of another shape is an error, never a panic.
pub(crate) fn cell<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(remote)
}

/// The account of a column value (see [`column`]).
pub(crate) fn account(column: i64) -> u64 {
    (column as u64) ^ (1 << 63)
}

impl Postgres {
    /// Connects, creates the tables when missing, and starts the committer and the lease
    /// renewal.
    ///
    /// # Errors
    /// [`StoreError::Remote`] when the database cannot be reached or refuses the schema.
    pub fn connect(options: PgOptions) -> Result<Arc<Self>, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("secretchat-postgres")
            .enable_all()
            .build()
            .map_err(remote)?;
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(options.url.clone());
        // The server names each session by its node (pg_stat_activity, logs, audits).
        cfg.application_name = Some(options.node.clone());
        // A connection attempt to an unreachable server gives up after half a lease.
        cfg.connect_timeout = Some((options.lease_ttl / 2).max(Duration::from_millis(100)));
        // A node that stalls (paused, cut off) inside a transaction holds its row locks — the
        // epochs it checked among them, which a taking node's acquisition must update: the
        // server ends such a session after half a lease, so a take-over waits for the lease
        // alone. (Its transaction rolls back: nothing of it was committed.)
        cfg.options = Some(format!(
            "-c idle_in_transaction_session_timeout={}",
            (options.lease_ttl / 2).as_millis().max(100)
        ));
        cfg.pool = Some(deadpool_postgres::PoolConfig::new(
            options.connections.max(2),
        ));
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(remote)?;
        let tables = Arc::new(Tables {
            prefix: options.prefix.clone(),
        });
        // Not `block_on`: the caller may be inside a runtime of its own.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (p, t) = (pool.clone(), tables.clone());
        rt.spawn(async move {
            let _ = tx.send(create_tables(&p, &t).await);
        });
        rx.recv()
            .map_err(|_| failure("the database runtime stopped"))??;
        let leases = Leases::new(
            pool.clone(),
            tables.clone(),
            options.node.clone(),
            options.lease_ttl,
        );
        let committer = Committer::new(
            pool.clone(),
            tables.clone(),
            leases.clone(),
            options.write_timeout,
        );
        rt.spawn(committer.clone().run());
        rt.spawn(leases.clone().renew_loop());
        Ok(Arc::new(Postgres {
            rt: Some(rt),
            pool,
            tables,
            committer,
            leases,
            request_timeout: options.request_timeout,
        }))
    }

    /// This node's account leases: acquire, release, renew.
    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    /// Runs `fut` on this backend's runtime and waits for it on the calling thread (which may
    /// be inside another runtime: it does not enter this one).
    fn wait<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let rt = self.rt.as_ref().ok_or_else(|| failure("closed"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| failure("the database runtime stopped"))?
    }

    /// `fut`, failed with [`StoreError::Remote`] if it has no answer within the request
    /// timeout.
    fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static {
        let limit = self.request_timeout;
        async move {
            tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
                Err(StoreError::Remote(format!(
                    "no answer from the database within {limit:?}"
                )))
            })
        }
    }

    /// A read: after this node's writes so far are committed (or failed), `query` on a pooled
    /// connection (within the request timeout).
    fn read<T: Send + 'static, F>(&self, query: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_postgres::Object, Arc<Tables>) -> commit::BoxFut<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let tables = self.tables.clone();
        let committer = self.committer.clone();
        let upto = committer.issued();
        let query = self.bounded(async move {
            let client = pool.get().await.map_err(remote)?;
            query(client, tables).await
        });
        self.wait(async move {
            committer.settled(upto).await;
            query.await
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.committer.close();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Drops the tables of the store `options` names (its data is gone).
///
/// # Errors
/// [`StoreError::Remote`].
pub fn drop_tables(options: &PgOptions) -> Result<(), StoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(remote)?;
    let tables = Tables {
        prefix: options.prefix.clone(),
    };
    let url = options.url.clone();
    // On a thread of its own: the caller may be inside a runtime.
    std::thread::spawn(move || {
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, NoTls).await.map_err(remote)?;
            tokio::spawn(conn);
            for t in Family::ALL
                .map(|f| tables.of(f))
                .into_iter()
                .chain([tables.accounts(), tables.counters()])
            {
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {t}"))
                    .await
                    .map_err(remote)?;
            }
            Ok(())
        })
    })
    .join()
    .map_err(|_| failure("the drop thread panicked"))?
}

async fn create_tables(pool: &Pool, tables: &Tables) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(remote)?;
    let tx = client.transaction().await.map_err(remote)?;
    // Two nodes starting together: one creates, the other waits (a lock held by this
    // transaction only).
    tx.execute("SELECT pg_advisory_xact_lock(7413)", &[])
        .await
        .map_err(remote)?;
    for family in Family::ALL {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (account BIGINT NOT NULL, k BYTEA NOT NULL, \
             v BYTEA NOT NULL, PRIMARY KEY (account, k))",
            tables.of(family)
        ))
        .await
        .map_err(remote)?;
    }
    // The inbox is read and acknowledged by sequence number.
    let inbox = tables.of(Family::Inbox);
    tx.batch_execute(&format!(
        "CREATE INDEX IF NOT EXISTS {inbox}_k ON {inbox} (k)"
    ))
    .await
    .map_err(remote)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} (account BIGINT PRIMARY KEY, epoch BIGINT NOT NULL, \
         owner TEXT NOT NULL, lease_until TIMESTAMPTZ NOT NULL)",
        tables.accounts()
    ))
    .await
    .map_err(remote)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, next BIGINT NOT NULL)",
        tables.counters()
    ))
    .await
    .map_err(remote)?;
    tx.commit().await.map_err(remote)
}

impl Backend for Postgres {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let account = account_of(family, key)?;
        let key = key.to_vec();
        self.read(move |client, tables| {
            Box::pin(async move {
                // An inbox event is found by its number alone (see `column_for`).
                let sql = match family {
                    Family::Inbox => format!(
                        "SELECT v FROM {} WHERE k = $2 AND $1::int8 IS NOT NULL",
                        tables.of(family)
                    ),
                    _ => format!(
                        "SELECT v FROM {} WHERE account = $1 AND k = $2",
                        tables.of(family)
                    ),
                };
                let stmt = client.prepare_cached(&sql).await.map_err(remote)?;
                let row = client
                    .query_opt(&stmt, &[&account, &key])
                    .await
                    .map_err(remote)?;
                row.map(|r| cell(&r, 0)).transpose()
            })
        })
    }

    fn range(
        &self,
        family: Family,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        // (account, k) orders as k does for the per-chat families; meta ranges are read
        // within one account's keys (a prefix), where it does too. The inbox orders by k.
        let (lo_account, hi_account) = bounds(family, from, to);
        let order = order(family);
        let from = from.to_vec();
        let to = to.map(<[u8]>::to_vec);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |client, tables| {
            Box::pin(async move {
                let t = tables.of(family);
                let rows = match &to {
                    Some(to) => {
                        let sql = format!(
                            "SELECT k, v FROM {t} WHERE (account, k) >= ($1, $2) AND k >= $2 \
                             AND k < $3 AND account <= $5 ORDER BY {order} LIMIT $4"
                        );
                        let stmt = client.prepare_cached(&sql).await.map_err(remote)?;
                        client
                            .query(&stmt, &[&lo_account, &from, to, &limit, &hi_account])
                            .await
                    }
                    None => {
                        let sql = format!(
                            "SELECT k, v FROM {t} WHERE (account, k) >= ($1, $2) AND k >= $2 \
                             ORDER BY {order} LIMIT $3"
                        );
                        let stmt = client.prepare_cached(&sql).await.map_err(remote)?;
                        client.query(&stmt, &[&lo_account, &from, &limit]).await
                    }
                }
                .map_err(remote)?;
                key_values(&rows)
            })
        })
    }

    fn range_of(
        &self,
        accounts: &[u64],
        family: Family,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let accounts: Vec<i64> = accounts.iter().map(|a| column(*a)).collect();
        let from = from.to_vec();
        let to = to.map(<[u8]>::to_vec);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let order = order(family);
        self.read(move |client, tables| {
            Box::pin(async move {
                let t = tables.of(family);
                // Two statements, so that the upper bound is an index bound in a cached plan.
                let rows = match &to {
                    Some(to) => {
                        let sql = format!(
                            "SELECT k, v FROM {t} WHERE account = ANY($1) AND k >= $2 \
                             AND k < $3 ORDER BY {order} LIMIT $4"
                        );
                        let stmt = client.prepare_cached(&sql).await.map_err(remote)?;
                        client.query(&stmt, &[&accounts, &from, to, &limit]).await
                    }
                    None => {
                        let sql = format!(
                            "SELECT k, v FROM {t} WHERE account = ANY($1) AND k >= $2 \
                             ORDER BY {order} LIMIT $3"
                        );
                        let stmt = client.prepare_cached(&sql).await.map_err(remote)?;
                        client.query(&stmt, &[&accounts, &from, &limit]).await
                    }
                }
                .map_err(remote)?;
                key_values(&rows)
            })
        })
    }

    fn filed_under(
        &self,
        family: Family,
        keys: &[Vec<u8>],
    ) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
        let keys = keys.to_vec();
        self.read(move |client, tables| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT k, account FROM {} WHERE k = ANY($1::bytea[])",
                    tables.of(family)
                );
                let stmt = client.prepare_cached(&sql).await.map_err(remote)?;
                let rows = client.query(&stmt, &[&keys]).await.map_err(remote)?;
                rows.iter()
                    .map(|r| Ok((cell(r, 0)?, account(cell(r, 1)?))))
                    .collect()
            })
        })
    }

    fn holds(&self, account: u64) -> bool {
        self.leases.owns(account)
    }

    fn held_accounts(&self) -> Option<Vec<u64>> {
        Some(self.leases.owned().iter().map(|l| l.account).collect())
    }

    fn last_key(&self, family: Family) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |client, tables| {
            Box::pin(async move {
                let order = match family {
                    Family::Inbox => "k DESC",
                    _ => "account DESC, k DESC",
                };
                let sql = format!(
                    "SELECT k FROM {} ORDER BY {order} LIMIT 1",
                    tables.of(family)
                );
                let row = client.query_opt(&sql, &[]).await.map_err(remote)?;
                row.map(|r| cell(&r, 0)).transpose()
            })
        })
    }

    fn write(&self, batch: Batch, mode: WriteMode) -> Result<Ticket, StoreError> {
        // Checked here so that a bad key fails its own write, not its group's transaction.
        for op in &batch.ops {
            match op {
                super::backend::Op::Put(f, k, _) => column_for(&batch, *f, k)?,
                super::backend::Op::Delete(f, k) | super::backend::Op::DeleteRange(f, k, _) => {
                    account_of(*f, k)?
                }
            };
        }
        let ticket = self.committer.submit(batch)?;
        if mode != WriteMode::Group {
            let committer = self.committer.clone();
            self.wait(async move { committer.outcome(ticket).await })?;
        }
        Ok(ticket)
    }

    fn synced(&self, ticket: Ticket) -> Synced<'_> {
        let committer = self.committer.clone();
        Box::pin(async move { committer.outcome(ticket).await })
    }

    fn flush(&self) -> Result<(), StoreError> {
        let committer = self.committer.clone();
        let upto = committer.issued();
        self.wait(async move {
            committer.settled(upto).await;
            Ok(())
        })
    }

    /// PostgreSQL keeps a replaced row's old version until VACUUM reclaims it: the tables are
    /// vacuumed (which also removes dead index entries).
    fn erase(&self, family: Family, _ranges: Option<&[KeyRange]>) -> Result<(), StoreError> {
        self.flush()?;
        let pool = self.pool.clone();
        let table = self.tables.of(family);
        self.wait(async move {
            let client = pool.get().await.map_err(remote)?;
            client
                .batch_execute(&format!("VACUUM {table}"))
                .await
                .map_err(remote)
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn commit_latency(&self) -> Option<super::backend::Latency> {
        self.committer.latencies.summary()
    }

    fn lost_accounts(&self) -> Option<tokio::sync::watch::Receiver<Vec<u64>>> {
        Some(self.leases.lost())
    }

    fn reserve(&self, name: &str, n: u64, floor: u64) -> Result<u64, StoreError> {
        let (name, t) = (name.to_owned(), self.tables.counters());
        let to_i64 = |v: u64| i64::try_from(v).map_err(|_| StoreError::Corrupt("counter"));
        let (n, floor) = (to_i64(n)?, to_i64(floor)?);
        let pool = self.pool.clone();
        let first: i64 = self.wait(self.bounded(async move {
            let client = pool.get().await.map_err(remote)?;
            let row = client
                .query_one(
                    &format!(
                        "INSERT INTO {t} AS c (name, next) VALUES ($1::text, $3::int8 + $2::int8) \
                         ON CONFLICT (name) DO UPDATE SET next = greatest(c.next, $3) + $2 \
                         RETURNING next - $2"
                    ),
                    &[&name, &n, &floor],
                )
                .await
                .map_err(remote)?;
            cell(&row, 0)
        }))?;
        u64::try_from(first).map_err(|_| StoreError::Corrupt("counter"))
    }

    fn acquire(&self, account: u64) -> Result<(), StoreError> {
        if self.leases.owns(account) {
            return Ok(());
        }
        let leases = self.leases.clone();
        self.wait(self.bounded(async move { leases.acquire(account).await.map(|_| ()) }))
    }

    fn release(&self, account: u64) -> Result<(), StoreError> {
        let committer = self.committer.clone();
        let upto = committer.issued();
        let leases = self.leases.clone();
        // What was submitted for it commits (or fails) first.
        let release = self.bounded(async move { leases.release(account).await });
        self.wait(async move {
            committer.settled(upto).await;
            release.await
        })
    }

    fn disk_size(&self) -> u64 {
        let tables = self.tables.clone();
        self.read(move |client, _| {
            Box::pin(async move {
                let mut total = 0i64;
                for family in Family::ALL {
                    let row = client
                        .query_one(
                            "SELECT pg_total_relation_size($1::regclass)",
                            &[&tables.of(family)],
                        )
                        .await
                        .map_err(remote)?;
                    total += cell::<i64>(&row, 0)?;
                }
                Ok(u64::try_from(total).unwrap_or(0))
            })
        })
        .unwrap_or(0)
    }
}
