//! Two engine processes as nodes of one PostgreSQL database: a node is stopped (SIGKILL, or
//! SIGSTOP past its lease), the other takes its accounts over, the stopped one comes back and
//! is handed one of them again (the hand-over: release, then take).
//!
//! The database itself counts any write a node makes for an account another node owns: the
//! driver installs a trigger on every table that records a row written (or deleted) by a
//! session whose name — the node, set by the engine as `application_name` — is not the
//! account's owner in the ownership table. The engine's fencing must keep that count at 0.
//! Acknowledgements (inbox deletions by number) are left out: a node acknowledges the events
//! it delivered, whoever holds their account by then (see docs/store.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use secretchat::PgOptions;
use tokio_postgres::NoTls;

use super::Driver;
use crate::crash::wire::Down;
use crate::crash::{CrashError, CrashOptions};

/// How long a take-over may take at most before the run gives up (the lease, plus the time
/// a loaded machine needs).
const TAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// A node cut off from the database (see `netns`).
pub(super) struct Cut {
    node: usize,
    at: Instant,
    /// Its accounts it has not stopped by itself yet.
    running: Vec<u64>,
}

/// The shared database of a run.
pub(super) struct Shared {
    url: String,
    /// The run's table prefix.
    pub(super) prefix: String,
    /// The run's at-rest key (a shared database needs one), in the data directory.
    pub(super) key_file: PathBuf,
}

fn remote(e: impl std::fmt::Display) -> CrashError {
    CrashError::Engine(format!("database: {e}"))
}

impl Shared {
    /// A prefix and a key for the run (the given key file, or a new one in `dir`).
    pub(super) async fn prepare(
        url: &str,
        dir: &Path,
        opts: &CrashOptions,
    ) -> Result<Self, CrashError> {
        let key_file = match &opts.at_rest_key_file {
            Some(k) => k.clone(),
            None => {
                let path = dir.join("run.key");
                let key = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
                let text = zeroize::Zeroizing::new(hex::encode(*key));
                write_private(&path, text.as_bytes())?;
                path
            }
        };
        Ok(Shared {
            url: url.to_owned(),
            prefix: format!("crash{}_", std::process::id()),
            key_file,
        })
    }

    async fn client(&self) -> Result<tokio_postgres::Client, CrashError> {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(remote)?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Installs the audit (after a node made the tables).
    pub(super) async fn install_audit(&self) -> Result<(), CrashError> {
        let p = &self.prefix;
        let client = self.client().await?;
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {p}foreign_writes (node TEXT, account BIGINT, tbl TEXT, \
             op TEXT, at TIMESTAMPTZ DEFAULT now());
             CREATE OR REPLACE FUNCTION {p}audit() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE a BIGINT; o TEXT;
             BEGIN
               IF TG_OP = 'DELETE' THEN a := OLD.account; ELSE a := NEW.account; END IF;
               IF a <> -9223372036854775808
                  AND NOT (TG_OP = 'DELETE' AND TG_TABLE_NAME = '{p}inbox') THEN
                 SELECT owner INTO o FROM {p}accounts WHERE account = a;
                 IF o IS DISTINCT FROM current_setting('application_name') THEN
                   INSERT INTO {p}foreign_writes (node, account, tbl, op)
                   VALUES (current_setting('application_name'), a, TG_TABLE_NAME, TG_OP);
                 END IF;
               END IF;
               IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
               RETURN NEW;
             END $$;"
        );
        for t in ["meta", "chats", "chat_index", "outbox", "waiting", "inbox"] {
            sql.push_str(&format!(
                "CREATE TRIGGER {p}audit_{t} BEFORE INSERT OR UPDATE OR DELETE ON {p}{t} \
                 FOR EACH ROW EXECUTE FUNCTION {p}audit();"
            ));
        }
        client.batch_execute(&sql).await.map_err(remote)
    }

    /// Writes the audit recorded.
    pub(super) async fn foreign_writes(&self) -> Result<u64, CrashError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!("SELECT count(*) FROM {}foreign_writes", self.prefix),
                &[],
            )
            .await
            .map_err(remote)?;
        let n: i64 = row.try_get(0).map_err(remote)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Drops the run's tables and the audit.
    pub(super) async fn drop_tables(&self) {
        if let Ok(client) = self.client().await {
            let p = &self.prefix;
            let _ = client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {p}foreign_writes; DROP FUNCTION IF EXISTS {p}audit() CASCADE"
                ))
                .await;
        }
        let mut o = PgOptions::new(self.url.clone());
        o.prefix = self.prefix.clone();
        let _ = secretchat::drop_postgres_tables(&o);
    }
}

/// Writes `bytes` to a new file at `path` that only its owner can read (created so, never
/// readable by others in between).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    // A key left by an earlier run in the same directory is replaced, not reused.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
async fn signal(pid: u32, signal: &str) -> Result<(), CrashError> {
    let status = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(CrashError::Engine(format!("kill -{signal} {pid} failed")))
    }
}

impl Driver<'_> {
    /// One stop of a node that runs an account: SIGKILL, or SIGSTOP past its lease; the
    /// other node takes its accounts over; the stopped node comes back and is handed one.
    pub(super) async fn stop_a_node(&mut self) -> Result<(), CrashError> {
        let running: Vec<usize> = (0..self.lives.len())
            .filter(|n| self.holder.contains(&Some(*n)))
            .collect();
        if running.is_empty() {
            return Ok(()); // nothing runs anywhere: the next revive places the accounts
        }
        let victim = running[self.rng.gen_range(0..running.len())];
        let other = 1 - victim;
        let accounts: Vec<u64> = (0..2)
            .filter(|i| self.holder[*i] == Some(victim))
            .map(|i| i as u64 + 1)
            .collect();
        let stopped_at = Instant::now();
        if !self.nets.is_empty() && self.rng.gen_bool(self.opts.cut_share) {
            return self.cut_a_node(victim, accounts).await;
        }
        let pause = self.rng.gen_bool(self.opts.pause_share);
        let pid = self.lives[victim]
            .as_ref()
            .and_then(|l| l.child.id())
            .ok_or_else(|| CrashError::Engine("no engine process to stop".into()))?;
        if pause {
            signal(pid, "STOP").await?;
            self.report.pauses += 1;
            self.report.kills += 1;
            self.lost_accounts_of(victim);
            for a in &accounts {
                self.leaving[victim].insert(*a);
            }
        } else {
            self.kill(victim).await;
        }
        for a in &accounts {
            self.take(other, *a, stopped_at).await?;
            self.report.takeovers += 1;
        }
        if pause {
            if let Err(e) = signal(pid, "CONT").await {
                // Gone while stopped: say how it ended (a stopped process cannot exit by
                // itself, so it ended before the stop took hold, or was killed).
                let ended = self.lives[victim]
                    .as_mut()
                    .and_then(|l| l.child.try_wait().ok().flatten());
                return Err(CrashError::Engine(format!(
                    "{e}: node {victim} had ended ({ended:?}); its log is engine{victim}.log \
                     in the data directory (--data-dir keeps it)"
                )));
            }
            // It finds its leases gone and stops those accounts by itself.
            let settle = Instant::now() + Duration::from_millis(self.opts.lease_ms);
            self.traffic(settle, true).await;
        } else {
            self.spawn(victim).await?;
        }
        self.hand_back(victim, &accounts).await
    }

    /// The hand-over: the other node gives one of `accounts` back to `n`.
    async fn hand_back(&mut self, n: usize, accounts: &[u64]) -> Result<(), CrashError> {
        let account = accounts[self.rng.gen_range(0..accounts.len())];
        self.release(1 - n, account).await?;
        self.take(n, account, Instant::now()).await
    }

    /// A cut: node `victim`'s link to the database goes down while it runs. It must stop
    /// `accounts` by itself once it cannot renew their leases, and the other node takes them
    /// over; then the link comes back, and the node is handed one of them again.
    async fn cut_a_node(&mut self, victim: usize, accounts: Vec<u64>) -> Result<(), CrashError> {
        let at = Instant::now();
        self.nets[victim].set_link(false)?;
        self.report.cuts += 1;
        self.report.kills += 1;
        self.lost_accounts_of(victim);
        for a in &accounts {
            self.leaving[victim].insert(*a);
        }
        self.cut = Some(Cut {
            node: victim,
            at,
            running: accounts.clone(),
        });
        for a in &accounts {
            self.take(1 - victim, *a, at).await?;
            self.report.takeovers += 1;
        }
        let deadline = Instant::now() + TAKE_TIMEOUT;
        while self.cut.as_ref().is_some_and(|c| !c.running.is_empty()) {
            if Instant::now() >= deadline {
                self.report.cut_not_stopped += 1;
                self.violation(format!(
                    "node {victim}, cut off from the database, never stopped its accounts"
                ));
                break;
            }
            self.traffic(Instant::now() + Duration::from_millis(10), true)
                .await;
        }
        self.cut = None;
        self.nets[victim].set_link(true)?;
        // Whatever it had in flight meets the fence now.
        let settle = Instant::now() + Duration::from_millis(self.opts.lease_ms);
        self.traffic(settle, true).await;
        self.hand_back(victim, &accounts).await
    }

    /// Node `n` reported `account` stopped without being asked (its lease ran out).
    pub(super) fn stopped_by_itself(&mut self, n: usize, account: u64) {
        let Some(cut) = self.cut.as_mut().filter(|c| c.node == n) else {
            return;
        };
        cut.running.retain(|a| *a != account);
        if cut.running.is_empty() {
            let ms = cut.at.elapsed().as_millis() as u64;
            self.report.cut_stop_ms_max = self.report.cut_stop_ms_max.max(ms);
        }
    }

    /// Has node `n` take `account` (waiting out another node's lease); serves traffic
    /// meanwhile. Records the time from `since` to the account running on `n`.
    pub(super) async fn take(
        &mut self,
        n: usize,
        account: u64,
        since: Instant,
    ) -> Result<(), CrashError> {
        self.send_to(n, Down::Take(account));
        let i = usize::from(account == 2);
        let deadline = Instant::now() + TAKE_TIMEOUT;
        while self.holder[i] != Some(n) {
            if Instant::now() >= deadline {
                return Err(CrashError::Engine(format!(
                    "node {n} never took account {account}"
                )));
            }
            self.traffic(Instant::now() + Duration::from_millis(10), true)
                .await;
        }
        let ms = since.elapsed().as_millis() as u64;
        self.report.takeover_ms_max = self.report.takeover_ms_max.max(ms);
        Ok(())
    }

    /// Has node `n` release `account` and waits for it.
    async fn release(&mut self, n: usize, account: u64) -> Result<(), CrashError> {
        self.leaving[n].insert(account);
        self.send_to(n, Down::Release(account));
        let i = usize::from(account == 2);
        let deadline = Instant::now() + TAKE_TIMEOUT;
        while self.holder[i] == Some(n) {
            if Instant::now() >= deadline {
                return Err(CrashError::Engine(format!(
                    "node {n} never released account {account}"
                )));
            }
            self.traffic(Instant::now() + Duration::from_millis(10), true)
                .await;
        }
        Ok(())
    }
}
