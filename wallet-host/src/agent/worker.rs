//! One pass of the wallet agent over its subscriptions: check in, keep the
//! receipts, keep a newer manifest as pending the owner's consent, and
//! handle a task if there is one. `wallet agent` repeats passes over HTTP;
//! tests run single passes; the simulation hands its wallets their tasks and
//! has them handled here, through a [`Transport`] that calls its broker and
//! aggregator in the same process.

use std::path::PathBuf;

use c2ssi_protocol::{
    CheckIn, Header, PublicKey, Purpose, Signed, Signer, Task, UpdateOutcome, now_ms,
};
use c2ssi_sandbox::Sandbox;

use super::budget::Policy;
use super::consent;
use super::transport::{HttpTransport, Transport, TransportError};
use super::{
    AccessLog, Computed, Denial, LOG_FILE, POLICY_FILE, SUBSCRIPTIONS_FILE, Subscriptions,
    VerifiedTask, denied_record, keep_receipts, log_access, seal, verify_task,
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
    /// Reaching a collective's broker or aggregator.
    #[error(transparent)]
    Transport(#[from] TransportError),
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
    /// How [`Worker::pass`] reaches every collective; `None`: over HTTP, at
    /// each subscription's URL.
    transport: Option<&'a dyn Transport>,
}

impl<'a> Worker<'a> {
    /// A worker for `wallet`, running tasks in `sandbox` under the owner's
    /// policy (read again at every task, so a change takes effect at once),
    /// reaching each collective over HTTP at its subscription's URL and
    /// keeping downloaded algorithms in the wallet's directory.
    pub fn new(wallet: &'a Wallet, sandbox: &'a Sandbox) -> Worker<'a> {
        Worker {
            cache_dir: wallet.dir().map(|d| d.join("algorithms")),
            wallet,
            sandbox,
            transport: None,
        }
    }

    /// The same worker, reaching every collective through `transport`
    /// whatever its subscription's URL.
    pub fn through(self, transport: &'a dyn Transport) -> Worker<'a> {
        Worker {
            transport: Some(transport),
            ..self
        }
    }

    /// The same worker, keeping downloaded algorithms in `dir` (`None`: not
    /// kept, as when the transport keeps them for many wallets).
    pub fn keeping_algorithms_in(self, dir: Option<PathBuf>) -> Worker<'a> {
        Worker {
            cache_dir: dir,
            ..self
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
        let http;
        let transport: &dyn Transport = match self.transport {
            Some(t) => t,
            None => {
                http = HttpTransport::new(&record.url);
                &http
            }
        };
        let check_in = CheckIn {
            header: Header::new(Purpose::CheckIn, id, CHECKIN_VALIDITY_MS),
            wallet: self.me(),
            receipts_after: record.receipts_after,
        };
        let signed = Signed::sign(&check_in, self.wallet.keys())
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        let response = transport.check_in(id, &signed)?;
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
            let newer = transport.manifest(id)?;
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
            self.handle(transport, id, &task, report)?;
        }
        Ok(())
    }

    fn algorithm(
        &self,
        transport: &dyn Transport,
        id: &str,
        sha256: &str,
    ) -> Result<Vec<u8>, AgentError> {
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
        let bytes = transport.algorithm(id, sha256)?;
        if let (Some(dir), Some(path)) = (&self.cache_dir, &path)
            && hex::encode(c2ssi_protocol::sha256(&bytes)) == sha256
        {
            // The component is the collective's code, not personal data; a
            // failed cache write only means downloading it again.
            let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(path, &bytes));
        }
        Ok(bytes)
    }

    /// Handles one task of collective `id`, reaching it through
    /// `transport`: [`Worker::check`], [`Worker::compute`], [`Worker::send`].
    pub fn handle(
        &self,
        transport: &dyn Transport,
        id: &str,
        task: &Signed<Task>,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        let Some(verified) = self.check(id, task, report)? else {
            return Ok(());
        };
        let Some(computed) = self.compute(transport, id, task, &verified, report)? else {
            return Ok(());
        };
        self.send(transport, id, task, &verified, computed, report)
    }

    /// Checks a task against the subscription, the owner's policy and
    /// privacy budget, and reserves its privacy cost ([`verify_task`]);
    /// `None`: denied, and the denial logged and reported.
    pub fn check(
        &self,
        id: &str,
        task: &Signed<Task>,
        report: &mut PassReport,
    ) -> Result<Option<VerifiedTask>, AgentError> {
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
        match verified {
            Ok(v) => Ok(Some(v)),
            Err(denial) => {
                self.deny(id, task, &denial, report)?;
                Ok(None)
            }
        }
    }

    /// Runs a checked task: fetches its algorithm (or takes it from the
    /// cache), runs it in the sandbox on the task's table only and applies
    /// the manifest's terms ([`super::compute`]); `None`: denied, and the
    /// denial logged and reported.
    pub fn compute(
        &self,
        transport: &dyn Transport,
        id: &str,
        task: &Signed<Task>,
        verified: &VerifiedTask,
        report: &mut PassReport,
    ) -> Result<Option<Computed>, AgentError> {
        let bytes = match self.algorithm(transport, id, &verified.task.algorithm_sha256) {
            Ok(b) => b,
            Err(e) => {
                self.deny(id, task, &Denial::AlgorithmRefused(e.to_string()), report)?;
                return Ok(None);
            }
        };
        // Only the task's table is read.
        let records = self.wallet.records_of([verified.task.table.as_str()])?;
        match super::compute(&records, verified, &bytes, self.sandbox) {
            Ok(c) => Ok(Some(c)),
            Err(denial) => {
                self.deny(id, task, &denial, report)?;
                Ok(None)
            }
        }
    }

    /// Seals what was computed to the aggregator, signs the envelope,
    /// delivers it through `transport`, keeps the receipt and logs the
    /// access.
    pub fn send(
        &self,
        transport: &dyn Transport,
        id: &str,
        task: &Signed<Task>,
        verified: &VerifiedTask,
        computed: Computed,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        let handled = match seal(self.wallet.keys(), verified, computed) {
            Ok(h) => h,
            Err(denial) => return self.deny(id, task, &denial, report),
        };
        let mut record = handled.record;
        match transport.deliver(id, &verified.task, &handled.envelope) {
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

    fn deny(
        &self,
        id: &str,
        task: &Signed<Task>,
        denial: &Denial,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        report.denied.push(denial.to_string());
        log_access(self.wallet, denied_record(id, task, denial))?;
        Ok(())
    }
}
