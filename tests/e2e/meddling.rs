//! A man in the middle between a wallet agent and the broker, and between
//! the wallets and the aggregator: tasks that are forged, signed by another
//! key, expired or replayed are denied by the wallet (and never run); an
//! update that is duplicated or tampered with on its way is refused by the
//! aggregator (and never paid).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use c2ssi_protocol::{Purpose, Signed, SigningKey, Task, new_nonce, now_ms};
use serde_json::Value;

use crate::proxy::{self, Meddler};
use crate::support::{Service, WalletDir, eventually, free_port, payments, wallets};

/// Hands the wallet its first real task, then, one per check-in, a forged
/// copy, one signed by a stranger, an expired one signed by the broker's own
/// key, and the first again; duplicates and tampers with the first update.
struct Attacker {
    broker_key: SigningKey,
    state: Mutex<AttackerState>,
}

#[derive(Default)]
struct AttackerState {
    first_task: bool,
    injections: VecDeque<Value>,
    meddled: bool,
    update_answers: Vec<(&'static str, u16, Value)>,
}

fn signed_json(task: &Task, key: &SigningKey) -> Value {
    let signed = Signed::sign(task, key).expect("signing");
    serde_json::to_value(&signed).expect("JSON")
}

impl Attacker {
    fn injections(&self, real: &Value) -> VecDeque<Value> {
        let signed: Signed<Task> = serde_json::from_value(real.clone()).expect("a signed task");
        let body = signed
            .open_any_time(None, Purpose::Task)
            .expect("the real task verifies");

        // 1. The same signature over a changed body: the seed is the attacker's.
        let mut forged = real.clone();
        let mut payload: Value =
            serde_json::from_str(real["payload"].as_str().expect("payload")).expect("JSON");
        payload["seed"] = Value::from(666u64);
        forged["payload"] = Value::String(payload.to_string());

        // 2. A well-formed task signed by a key that is not the collective's.
        let mut stranger = body.clone();
        stranger.header.nonce = new_nonce();
        let stranger = signed_json(&stranger, &SigningKey::generate().expect("a key"));

        // 3. Signed by the broker itself, but expired.
        let mut expired = body.clone();
        expired.header.nonce = new_nonce();
        expired.header.issued_at_ms = now_ms() - 120_000;
        expired.header.expires_at_ms = now_ms() - 60_000;
        let expired = signed_json(&expired, &self.broker_key);

        // 4. The very task the wallet already ran.
        VecDeque::from([forged, stranger, expired, real.clone()])
    }
}

impl Meddler for Attacker {
    fn check_in(&self, mut answer: Value) -> Value {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !answer["task"].is_null() {
            if !state.first_task {
                state.first_task = true;
                state.injections = self.injections(&answer["task"]);
            }
            return answer;
        }
        if let Some(task) = state.injections.pop_front() {
            answer["task"] = task;
        }
        answer
    }

    fn update(&self, body: Value, forward: &dyn Fn(&Value) -> (u16, Value)) -> (u16, Value) {
        // Every wallet's update passes here; the first one is meddled with.
        let first = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            !std::mem::replace(&mut state.meddled, true)
        };
        let (status, answer) = forward(&body);
        if first {
            let duplicate = forward(&body);
            let mut tampered = body.clone();
            let mut payload: Value =
                serde_json::from_str(body["payload"].as_str().expect("payload")).expect("JSON");
            payload["round"] = Value::from(payload["round"].as_u64().unwrap_or(0) + 1);
            tampered["payload"] = Value::String(payload.to_string());
            let tampered = forward(&tampered);
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state
                .update_answers
                .push(("original", status, answer.clone()));
            state
                .update_answers
                .push(("duplicate", duplicate.0, duplicate.1));
            state
                .update_answers
                .push(("tampered", tampered.0, tampered.1));
        }
        (status, answer)
    }
}

pub(crate) fn a_man_in_the_middle_gets_no_forged_task_run_and_no_altered_update_paid() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Wallets reach the aggregator through the attacker, at a port chosen now.
    let aggregator_proxy = free_port();
    let service = Service::start_with(dir.path(), "10", Some(aggregator_proxy));
    let broker_key = {
        let db = service.open_database();
        c2ssi_broker::keys::broker_key(&db).expect("the broker's key")
    };
    let attacker = Arc::new(Attacker {
        broker_key,
        state: Mutex::default(),
    });
    let _aggregator_proxy =
        proxy::start_on(aggregator_proxy, &service.aggregator_url, attacker.clone());
    let proxy = proxy::start(&service.url, attacker.clone());

    let people = wallets(dir.path(), "m", 300, 5);
    // The victim reaches the collective only through the attacker.
    people[0].subscribe(&proxy.url, &service.collective);
    for w in &people[1..] {
        w.subscribe(&service.url, &service.collective);
    }
    let _agents: Vec<_> = people.iter().map(WalletDir::agent).collect();
    let job = service.train(2, 5, "1");
    let status = service.wait_for_end(&job);
    assert_eq!(status["state"], "completed", "{status:#}");

    // The wallet denied all four injected tasks, each for its own reason,
    // and ran only the real ones.
    let victim = &people[0];
    let log = eventually("four denials in the victim's log", || {
        let log = victim.log();
        let denied = log
            .iter()
            .filter(|r| r["outcome"]["kind"] == "denied")
            .count();
        (denied >= 4).then_some(log)
    });
    let outcomes: Vec<String> = log
        .iter()
        .map(|r| match r["outcome"]["kind"].as_str() {
            Some("denied") => format!("denied: {}", r["outcome"]["denial"].as_str().unwrap_or("")),
            Some(kind) => kind.to_string(),
            None => String::new(),
        })
        .collect();
    let count = |name: &str| outcomes.iter().filter(|o| *o == name).count();
    assert_eq!(count("denied: forged"), 2, "{outcomes:#?}");
    assert_eq!(count("denied: expired"), 1, "{outcomes:#?}");
    assert_eq!(count("denied: replayed"), 1, "{outcomes:#?}");
    assert_eq!(
        count("trained"),
        2,
        "one real task per round: {outcomes:#?}"
    );

    // The aggregator took the original update, refused its duplicate (409)
    // and the tampered copy (422), and only the original was paid.
    let answers = attacker
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .update_answers
        .clone();
    assert_eq!(answers.len(), 3, "{answers:#?}");
    let (_, status, original) = &answers[0];
    assert_eq!(*status, 200, "{original}");
    assert_eq!(original["outcome"]["status"], "taken", "{original}");
    assert!(!original["receipt"].is_null(), "{original}");
    let (_, status, duplicate) = &answers[1];
    assert_eq!(*status, 409, "{duplicate}");
    assert_eq!(duplicate["outcome"]["reason"], "duplicate", "{duplicate}");
    assert!(duplicate["receipt"].is_null());
    let (_, status, tampered) = &answers[2];
    assert_eq!(*status, 422, "{tampered}");
    assert_eq!(tampered["outcome"]["reason"], "bad-signature", "{tampered}");
    assert!(tampered["receipt"].is_null());
    let paid = payments(&service.ledger());
    assert_eq!(paid.len(), 10, "2 rounds x 5 wallets, nothing more");
    service.verify_ledger();
}
