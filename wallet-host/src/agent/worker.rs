//! One pass of the wallet agent over its subscriptions: check in, keep the
//! receipts, keep a newer manifest as pending the owner's consent, and
//! handle a task if there is one. `wallet agent` repeats passes; tests run
//! single passes.

use std::path::PathBuf;

use c2ssi_client::{Client, ClientError};
use c2ssi_protocol::{
    CheckIn, Header, PublicKey, Purpose, Refusal, Signed, Signer, Task, UpdateEnvelope,
    UpdateOutcome, UpdateResponse, now_ms,
};
use c2ssi_sandbox::Sandbox;

use super::budget::Policy;
use super::consent;
use super::{
    AccessLog, Denial, LOG_FILE, POLICY_FILE, SUBSCRIPTIONS_FILE, Subscriptions, denied_record,
    keep_receipts, log_access, run_task, verify_task,
};
use crate::store::{Wallet, WalletError};

/// How long a check-in signature is valid.
const CHECKIN_VALIDITY_MS: u64 = 60_000;

/// What went wrong in a pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The wallet itself.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A collective's service.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A message that does not verify.
    #[error("{0}")]
    Protocol(String),
}

/// What one pass did for one collective.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassReport {
    /// Tasks run (their envelopes sent).
    pub tasks_run: usize,
    /// Tasks denied, with the reason.
    pub denied: Vec<String>,
    /// New receipts kept.
    pub receipts: usize,
    /// Errors talking to collectives (the agent goes on).
    pub errors: Vec<String>,
    /// The shortest wait any collective asked for.
    pub retry_after_ms: Option<u64>,
    /// Collectives whose newer manifest waits for the owner's consent.
    pub pending: Vec<String>,
}

/// The agent's view of a wallet.
#[derive(Debug)]
pub struct Worker<'a> {
    wallet: &'a Wallet,
    sandbox: &'a Sandbox,
    /// Where downloaded algorithms are kept; `None` (a wallet in memory): not kept.
    cache_dir: Option<PathBuf>,
}

impl<'a> Worker<'a> {
    /// A worker for `wallet`, running tasks in `sandbox` under the owner's
    /// policy (read again at every task, so a change takes effect at once).
    pub fn new(wallet: &'a Wallet, sandbox: &'a Sandbox) -> Worker<'a> {
        Worker {
            cache_dir: wallet.dir().map(|d| d.join("algorithms")),
            wallet,
            sandbox,
        }
    }

    fn me(&self) -> PublicKey {
        Signer::public_key(self.wallet.keys())
    }

    /// One pass over every subscription.
    pub fn pass(&self) -> Result<PassReport, AgentError> {
        let subs: Subscriptions = self.wallet.read_document(SUBSCRIPTIONS_FILE)?;
        let mut report = PassReport::default();
        for id in subs.collectives.keys() {
            if let Err(e) = self.pass_one(id, &mut report) {
                match e {
                    AgentError::Wallet(e) => return Err(AgentError::Wallet(e)),
                    other => report.errors.push(format!("{id}: {other}")),
                }
            }
        }
        Ok(report)
    }

    fn pass_one(&self, id: &str, report: &mut PassReport) -> Result<(), AgentError> {
        // Read again: a revocation since the pass began takes effect now.
        let subs: Subscriptions = self.wallet.read_document(SUBSCRIPTIONS_FILE)?;
        let Some(record) = subs.collectives.get(id) else {
            return Ok(());
        };
        let manifest = record.manifest().map_err(|e| {
            AgentError::Protocol(format!("the stored manifest does not verify: {e}"))
        })?;
        let client = Client::new(&record.url);
        let check_in = CheckIn {
            header: Header::new(Purpose::CheckIn, id, CHECKIN_VALIDITY_MS),
            wallet: self.me(),
            receipts_after: record.receipts_after,
        };
        let signed = Signed::sign(&check_in, self.wallet.keys())
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        let response = client.check_in(id, &signed)?;
        report.retry_after_ms = Some(
            report
                .retry_after_ms
                .map_or(response.retry_after_ms, |r| r.min(response.retry_after_ms)),
        );
        let (kept, _) = keep_receipts(self.wallet, id, &manifest, &response.receipts)?;
        report.receipts += kept;
        let waiting = match &record.pending {
            Some(p) => p
                .open_any_time(None, Purpose::Manifest)
                .map_or(manifest.version, |p| p.version),
            None => manifest.version,
        };
        if response.manifest_version > waiting {
            let newer = client.manifest(id)?;
            match consent::keep_pending(self.wallet, id, &newer)? {
                Ok(changes) => tracing::info!(
                    collective = id,
                    changes = changes.len(),
                    "a new manifest waits for consent"
                ),
                Err(refused) => report.errors.push(format!("{id}: {refused}")),
            }
        }
        let subs: Subscriptions = self.wallet.read_document(SUBSCRIPTIONS_FILE)?;
        if subs
            .collectives
            .get(id)
            .is_some_and(|r| r.pending.is_some())
        {
            report.pending.push(id.to_string());
        }
        if let Some(task) = response.task {
            self.handle(&client, id, &task, report)?;
        }
        Ok(())
    }

    fn algorithm(&self, client: &Client, id: &str, sha256: &str) -> Result<Vec<u8>, AgentError> {
        let safe = sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit());
        if !safe {
            return Err(AgentError::Protocol(format!("'{sha256}' is not a SHA-256")));
        }
        let path = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha256}.wasm")));
        if let Some(path) = &path
            && let Ok(bytes) = std::fs::read(path)
            && hex::encode(c2ssi_protocol::sha256(&bytes)) == sha256
        {
            return Ok(bytes);
        }
        let bytes = client.algorithm(id, sha256)?;
        if let (Some(dir), Some(path)) = (&self.cache_dir, &path)
            && hex::encode(c2ssi_protocol::sha256(&bytes)) == sha256
        {
            // The component is the collective's code, not personal data; a
            // failed cache write only means downloading it again.
            let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(path, &bytes));
        }
        Ok(bytes)
    }

    /// Handles one task: verify, run, send, log.
    pub fn handle(
        &self,
        client: &Client,
        id: &str,
        task: &Signed<Task>,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        let me = self.me();
        let policy: Policy = self.wallet.read_document(POLICY_FILE)?;
        let verified = self
            .wallet
            .update_document(LOG_FILE, |log: &mut AccessLog| {
                let subs: Subscriptions = self.wallet.read_document(SUBSCRIPTIONS_FILE)?;
                Ok(verify_task(
                    &me,
                    subs.collectives.get(id),
                    id,
                    task,
                    log,
                    &policy,
                ))
            })?;
        let verified = match verified {
            Ok(v) => v,
            Err(denial) => {
                report.denied.push(denial.to_string());
                log_access(self.wallet, denied_record(id, task, &denial))?;
                return Ok(());
            }
        };
        let bytes = match self.algorithm(client, id, &verified.task.algorithm_sha256) {
            Ok(b) => b,
            Err(e) => {
                let denial = Denial::AlgorithmRefused(e.to_string());
                report.denied.push(denial.to_string());
                log_access(self.wallet, denied_record(id, task, &denial))?;
                return Ok(());
            }
        };
        // Only the task's table is read.
        let records = self.wallet.records_of([verified.task.table.as_str()])?;
        let handled = match run_task(
            self.wallet.keys(),
            &records,
            &verified,
            &bytes,
            self.sandbox,
        ) {
            Ok(h) => h,
            Err(denial) => {
                report.denied.push(denial.to_string());
                log_access(self.wallet, denied_record(id, task, &denial))?;
                return Ok(());
            }
        };
        let mut record = handled.record;
        let sent = deliver(
            &verified.task.update_url,
            id,
            &handled.envelope,
            verified.task.header.expires_at_ms,
        );
        match sent {
            Ok(response) => {
                record.delivered = Some(response.outcome.taken());
                if let Some(receipt) = response.receipt {
                    let (kept, _) = keep_receipts(self.wallet, id, &verified.manifest, &[receipt])?;
                    report.receipts += kept;
                }
                if let UpdateOutcome::Refused(r) = response.outcome {
                    report.errors.push(format!(
                        "{id}: the update was refused ({}): {}",
                        r.name(),
                        response.message.unwrap_or_default()
                    ));
                }
            }
            Err(e) => {
                record.delivered = Some(false);
                report
                    .errors
                    .push(format!("{id}: sending the update failed: {e}"));
            }
        }
        record.time_ms = now_ms();
        log_access(self.wallet, record)?;
        report.tasks_run += 1;
        Ok(())
    }
}

/// The longest a wallet keeps trying to deliver one update.
const DELIVERY_PATIENCE_MS: u64 = 30_000;

/// Sends an update envelope, trying again while the aggregator cannot be
/// reached or does not know the round (it may be restarting, and the broker
/// then opens the round again), until the task expires or for at most
/// [`DELIVERY_PATIENCE_MS`]: the data was used, so the access should reach
/// the ledger. Any other answer is final.
fn deliver(
    update_url: &str,
    id: &str,
    envelope: &Signed<UpdateEnvelope>,
    task_expires_ms: u64,
) -> Result<UpdateResponse, ClientError> {
    let until = task_expires_ms.min(now_ms().saturating_add(DELIVERY_PATIENCE_MS));
    let mut pause = std::time::Duration::from_millis(250);
    loop {
        let sent = Client::send_update(update_url, id, envelope);
        let again = match &sent {
            Err(ClientError::Unreachable { .. }) => true,
            Ok(r) => r.outcome == UpdateOutcome::Refused(Refusal::RoundNotOpen),
            Err(_) => false,
        };
        if !again || now_ms().saturating_add(pause.as_millis() as u64) >= until {
            return sent;
        }
        tracing::info!(
            pause_ms = pause.as_millis() as u64,
            "the aggregator did not take the update yet; trying again"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(4));
    }
}
