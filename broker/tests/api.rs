//! The broker's HTTP API, driven with `oneshot` requests on the router over
//! a real broker, each test twice: on SQLite in a temporary directory, and
//! on a real PostgreSQL server started for these tests. Errors come back as JSON
//! with the right status, bodies are bounded, a manifest is taken only when
//! it names this broker and its aggregator, follows the current version and
//! adds noise, every command is checked against the collective's key and
//! never replayed, and no route says who subscribed.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use c2ssi_aggregator::AggregatorKeys;
use c2ssi_broker::aggregator_link::AggregatorLink;
use c2ssi_broker::distributor::Randomness;
use c2ssi_broker::http::{AppState, app};
use c2ssi_broker::runner::Runner;
use c2ssi_broker::{Broker, BrokerConfig, BrokerError};
use c2ssi_protocol::{
    AggregatorIdentity, Amount, CloseOutcome, CloseRound, Command, DataRequirements, Header,
    Manifest, ManifestSubmission, OpenRound, OperatorCommand, PrivacyTerms, ProgressQuery, Purpose,
    RoundProgress, Signed, Signer, SigningKey, Subscription, collective_id, privacy,
};
use c2ssi_sandbox::{Sandbox, SandboxLimits};
use c2ssi_server::MAX_BODY_BYTES;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An aggregator that is only a set of keys: these tests open no round.
#[derive(Debug)]
struct KeysOnly(AggregatorIdentity);

impl AggregatorLink for KeysOnly {
    fn identity(&self) -> &AggregatorIdentity {
        &self.0
    }
    fn open_round(&self, _: &str, _: &Signed<OpenRound>) -> Result<(), BrokerError> {
        Err(BrokerError::Aggregator("not in this test".into()))
    }
    fn progress(&self, _: &str, _: &Signed<ProgressQuery>) -> Result<RoundProgress, BrokerError> {
        Err(BrokerError::Aggregator("not in this test".into()))
    }
    fn close_round(&self, _: &str, _: &Signed<CloseRound>) -> Result<CloseOutcome, BrokerError> {
        Err(BrokerError::Aggregator("not in this test".into()))
    }
}

/// Where a test's broker keeps its state.
#[derive(Clone, Copy, Debug)]
enum Store {
    Sqlite,
    Postgres,
}

/// A fresh database in `store`.
async fn database(store: Store, dir: &std::path::Path) -> c2ssi_broker::database::Database {
    let dir = dir.to_path_buf();
    // Opening blocks (PostgreSQL's client runs its own runtime).
    tokio::task::spawn_blocking(move || match store {
        Store::Sqlite => c2ssi_broker::database::Database::open(&dir.join("broker.db")),
        Store::Postgres => {
            let url = c2ssi_broker::scratch_postgres::fresh_database("api")
                .unwrap_or_else(|e| panic!("these tests run on PostgreSQL too: {e}"));
            c2ssi_broker::database::Database::connect(&url)
        }
    })
    .await
    .expect("opening")
    .expect("a database")
}

/// Each test, once on each store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Store::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Store::Postgres).await
            }
        })*
    };
}

on_both_stores!(
    errors_are_json_with_the_right_status,
    a_manifest_is_taken_only_under_this_brokers_rules,
    commands_are_checked_against_the_collective_key_and_never_replayed,
    no_route_says_who_subscribed,
    sybils_get_one_subscription_per_credential_and_revocation_ends_it,
    reads_are_the_collectives_and_uploads_are_refused_before_their_body_is_read,
    an_expired_credential_ends_its_subscription_at_the_next_check_in,
    a_nul_character_in_a_signed_field_is_refused_as_invalid_on_either_store,
    a_check_in_is_never_taken_twice,
    metrics_and_the_status_page_count_requests_and_name_no_collective,
    the_openapi_description_names_every_route_and_only_routes,
);

async fn broker(store: Store, dir: &std::path::Path) -> (axum::Router, Arc<Broker>) {
    let keys = AggregatorKeys::generate().expect("keys");
    let aggregator = KeysOnly(AggregatorIdentity {
        public_key: keys.public_key(),
        recipient: keys.recipient(),
        url: "http://127.0.0.1:9".into(),
    });
    let db = database(store, dir).await;
    let key = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || c2ssi_broker::keys::broker_key(&db))
            .await
            .expect("the key")
            .expect("a key")
    };
    let key = Arc::new(key);
    let broker = Arc::new(Broker::new(
        db,
        key,
        Arc::new(Sandbox::new(SandboxLimits::default()).expect("a sandbox")),
        Arc::new(aggregator),
        Randomness::os(),
        BrokerConfig::default(),
    ));
    let router = app(AppState {
        monitor: c2ssi_broker::monitor::Monitor::new(broker.clone(), Some(METRICS_TOKEN.into())),
        broker: broker.clone(),
        runner: Runner::default(),
        creators: c2ssi_broker::access::Creators::Anyone,
    });
    (router, broker)
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    send(router, None, method, path, body).await
}

/// [`call`] with an `Authorization` header signed by `key`.
async fn call_as(
    router: &axum::Router,
    key: &SigningKey,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    send(router, Some(key), method, path, body).await
}

/// One request through the router, signed by `key` when given; the status
/// and the JSON answer (`Null` if it is not JSON).
async fn send(
    router: &axum::Router,
    key: Option<&SigningKey>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header(
            "authorization",
            c2ssi_protocol::request::sign_request(key, method, path, c2ssi_protocol::now_ms()),
        );
    }
    let request = request.body(Body::from(body)).expect("a request");
    let response = router.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("no error code")
}

/// Version `version` of a diabetes collective's manifest for `broker`.
fn manifest(key: &SigningKey, broker: &Broker, version: u64, terms: PrivacyTerms) -> Manifest {
    let file: Value = serde_json::from_str(include_str!("../../examples/diabetes-collective.json"))
        .expect("the example manifest");
    let requirements: DataRequirements =
        serde_json::from_value(file["requirements"].clone()).expect("requirements");
    let keys = broker.keys();
    Manifest {
        header: Header::new(
            Purpose::Manifest,
            &collective_id(&key.public_key()),
            3_600_000,
        ),
        version,
        name: "diabetes".into(),
        description: "a test collective".into(),
        requirements,
        allowed_algorithms: Vec::new(),
        rate: Amount(5_000),
        privacy: terms,
        collective_key: key.public_key(),
        broker_key: keys.broker_key,
        aggregator_key: keys.aggregator.public_key,
        aggregator_recipient: keys.aggregator.recipient,
        credential: None,
    }
}

fn submission(key: &SigningKey, m: &Manifest) -> ManifestSubmission {
    ManifestSubmission {
        manifest: Signed::sign(m, key).expect("signed"),
        components_base64: Vec::new(),
        audit_params: Vec::new(),
    }
}

fn deposit(key: &SigningKey, id: &str, amount: &str) -> Signed<OperatorCommand> {
    Signed::sign(
        &OperatorCommand {
            header: Header::new(Purpose::OperatorCommand, id, 60_000),
            command: Command::Deposit {
                amount: amount.parse().expect("an amount"),
            },
        },
        key,
    )
    .expect("signed")
}

async fn errors_are_json_with_the_right_status(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, _) = broker(store, dir.path()).await;

    let (status, body) = call(&router, "GET", "/health", Vec::new()).await;
    assert_eq!((status, &body["ok"]), (StatusCode::OK, &Value::Bool(true)));

    let (status, body) = call(
        &router,
        "POST",
        "/collectives/c-000000000000000000000000/subscriptions",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid");

    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, body) = call(
        &router,
        "POST",
        "/collectives/c-000000000000000000000000/commands",
        huge,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "too-large");

    // Ids that are not collective ids never reach a handler (nor a URL or
    // a log line): 404, whatever they hold.
    for id in ["c-nope", "%00", "c-000000000000000000000000%0a", ".."] {
        let (status, body) = call(
            &router,
            "GET",
            &format!("/collectives/{id}/manifest"),
            Vec::new(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
        assert_eq!(error_code(&body), "not-found");
    }
}

async fn a_manifest_is_taken_only_under_this_brokers_rules(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, broker) = broker(store, dir.path()).await;
    let key = SigningKey::generate().expect("a key");
    let id = collective_id(&key.public_key());
    let path = format!("/collectives/{id}/manifest");

    // Terms without noise: refused by default.
    let none = PrivacyTerms::with_noise(5, 1.0, 1e-5, 3, 0.0, Vec::new()).expect("terms");
    let (status, body) = call_as(
        &router,
        &key,
        "POST",
        &path,
        json(&submission(&key, &manifest(&key, &broker, 1, none))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Another broker's key named: refused.
    let mut foreign = manifest(&key, &broker, 1, privacy::default_terms());
    foreign.broker_key = SigningKey::generate().expect("a key").public_key();
    let (status, body) = call_as(
        &router,
        &key,
        "POST",
        &path,
        json(&submission(&key, &foreign)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Epsilon understated: refused.
    let mut lying = manifest(&key, &broker, 1, privacy::default_terms());
    lying.privacy.epsilon = Some(0.1);
    let (status, body) = call_as(
        &router,
        &key,
        "POST",
        &path,
        json(&submission(&key, &lying)),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("understated"),
        "{body}"
    );

    // Signed by a key that is not the one the id derives from: refused.
    let thief = SigningKey::generate().expect("a key");
    let good = manifest(&key, &broker, 1, privacy::default_terms());
    let (status, _) = call_as(
        &router,
        &key,
        "POST",
        &path,
        json(&submission(&thief, &good)),
    )
    .await;
    assert!(status.is_client_error());

    // The right one is created; the same version again, or a skipped one, conflicts.
    let (status, body) =
        call_as(&router, &key, "POST", &path, json(&submission(&key, &good))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = call_as(&router, &key, "POST", &path, json(&submission(&key, &good))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let skipped = manifest(&key, &broker, 3, privacy::default_terms());
    let (status, _) = call_as(
        &router,
        &key,
        "POST",
        &path,
        json(&submission(&key, &skipped)),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let next = manifest(&key, &broker, 2, privacy::default_terms());
    let (status, body) =
        call_as(&router, &key, "POST", &path, json(&submission(&key, &next))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);

    // Every version can be fetched by digest (the aggregator does).
    let current = {
        let (broker, id) = (broker.clone(), id.clone());
        tokio::task::spawn_blocking(move || broker.registry().current(&id))
            .await
            .expect("the registry")
            .expect("current")
            .digest
    };
    let (status, _) = call(
        &router,
        "GET",
        &format!("/collectives/{id}/manifests/{current}"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

async fn commands_are_checked_against_the_collective_key_and_never_replayed(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, broker) = broker(store, dir.path()).await;
    let key = SigningKey::generate().expect("a key");
    let id = collective_id(&key.public_key());
    let m = manifest(&key, &broker, 1, privacy::default_terms());
    let (status, body) = call_as(
        &router,
        &key,
        "POST",
        &format!("/collectives/{id}/manifest"),
        json(&submission(&key, &m)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let commands = format!("/collectives/{id}/commands");

    let first = deposit(&key, &id, "5");
    let (status, body) = call(&router, "POST", &commands, json(&first)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "deposited");

    let (status, body) = call(&router, "POST", &commands, json(&first)).await;
    assert!(
        status.is_client_error(),
        "a replay was taken: {status} {body}"
    );
    let stranger = SigningKey::generate().expect("a key");
    let (status, body) = call(
        &router,
        "POST",
        &commands,
        json(&deposit(&stranger, &id, "1")),
    )
    .await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
        "{status} {body}"
    );
    let mut tampered = serde_json::to_value(deposit(&key, &id, "1")).expect("JSON");
    let payload = tampered["payload"]
        .as_str()
        .expect("payload")
        .replace("1000000", "9000000");
    tampered["payload"] = Value::String(payload);
    let (status, body) = call(&router, "POST", &commands, json(&tampered)).await;
    assert!(status.is_client_error(), "{status} {body}");

    let (status, balance) = call_as(
        &router,
        &key,
        "GET",
        &format!("/collectives/{id}/ledger/balance"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(balance["deposited"], 5_000_000);
    let (status, verified) = call_as(
        &router,
        &key,
        "GET",
        &format!("/collectives/{id}/ledger/verify"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{verified}");
}

/// A check-in is taken once: the same signed check-in again, an older one,
/// or one signed before the broker started is refused (409), on either
/// store, although no check-in is written to the database as it comes.
async fn a_check_in_is_never_taken_twice(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let signed_before_start = Header::new(Purpose::CheckIn, "placeholder", 60_000);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (router, broker) = broker(store, dir.path()).await;
    let (_, id, digest) = new_collective(&router, &broker).await;
    let wallet = SigningKey::generate().expect("a key");
    let (status, body) = call(
        &router,
        "POST",
        &format!("/collectives/{id}/subscriptions"),
        json(&signed_subscription(
            Header::new(Purpose::Subscription, &id, 60_000),
            &wallet,
            &digest,
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let check_in = |header: Header| {
        json(
            &Signed::sign(
                &c2ssi_protocol::CheckIn {
                    header,
                    wallet: wallet.public_key(),
                    receipts_after: 0,
                },
                &wallet,
            )
            .expect("signed"),
        )
    };
    let path = format!("/collectives/{id}/checkin");
    let first = Header::new(Purpose::CheckIn, &id, 60_000);
    let (status, body) = call(&router, "POST", &path, check_in(first.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The very same request again: a replay.
    let (status, body) = call(&router, "POST", &path, check_in(first.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "conflict");
    // One issued before the last one taken.
    let mut older = Header::new(Purpose::CheckIn, &id, 60_000);
    older.issued_at_ms = first.issued_at_ms - 1;
    let (status, body) = call(&router, "POST", &path, check_in(older)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // One signed before this broker started (what a restart forgot).
    let mut before = signed_before_start;
    before.collective_id = id.clone();
    let (status, body) = call(&router, "POST", &path, check_in(before)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A fresh one is taken.
    let mut fresh = Header::new(Purpose::CheckIn, &id, 60_000);
    fresh.issued_at_ms = fresh.issued_at_ms.max(first.issued_at_ms + 1);
    let (status, body) = call(&router, "POST", &path, check_in(fresh)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A new collective with the default terms, created through the API: its
/// key, id and current manifest digest.
async fn new_collective(router: &axum::Router, broker: &Broker) -> (SigningKey, String, String) {
    let key = SigningKey::generate().expect("a key");
    let id = collective_id(&key.public_key());
    let m = manifest(&key, broker, 1, privacy::default_terms());
    let (status, outcome) = call_as(
        router,
        &key,
        "POST",
        &format!("/collectives/{id}/manifest"),
        json(&submission(&key, &m)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{outcome}");
    let digest = outcome["digest"].as_str().expect("a digest").to_string();
    (key, id, digest)
}

/// A subscription of `wallet` to `digest` under `header`.
fn signed_subscription(header: Header, wallet: &SigningKey, digest: &str) -> Signed<Subscription> {
    Signed::sign(
        &Subscription {
            header,
            wallet: wallet.public_key(),
            manifest_digest: digest.to_string(),
            consent: "yes".into(),
            credentials: Vec::new(),
        },
        wallet,
    )
    .expect("signed")
}

/// PostgreSQL cannot store a NUL character in text; a wallet that signs one
/// into its header's nonce gets a 422 that says so, on either store, and
/// nothing is stored.
async fn a_nul_character_in_a_signed_field_is_refused_as_invalid_on_either_store(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, broker) = broker(store, dir.path()).await;
    let (key, id, digest) = new_collective(&router, &broker).await;
    let wallet = SigningKey::generate().expect("a key");
    let mut header = Header::new(Purpose::Subscription, &id, 60_000);
    header.nonce = "a\u{0}b".into();
    let subscription = signed_subscription(header, &wallet, &digest);
    let (status, body) = call(
        &router,
        "POST",
        &format!("/collectives/{id}/subscriptions"),
        json(&subscription),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("NUL")),
        "{body}"
    );
    let (_, summary) = call_as(
        &router,
        &key,
        "GET",
        &format!("/collectives/{id}"),
        Vec::new(),
    )
    .await;
    assert_eq!(summary["subscribers"], 0, "{summary}");
}

async fn no_route_says_who_subscribed(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, broker) = broker(store, dir.path()).await;
    let (key, id, digest) = new_collective(&router, &broker).await;
    let wallet = SigningKey::generate().expect("a key");
    let subscription = signed_subscription(
        Header::new(Purpose::Subscription, &id, 60_000),
        &wallet,
        &digest,
    );
    let (status, body) = call(
        &router,
        "POST",
        &format!("/collectives/{id}/subscriptions"),
        json(&subscription),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, summary) = call_as(
        &router,
        &key,
        "GET",
        &format!("/collectives/{id}"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(summary["subscribers"], 1);
    let key_hex = wallet.public_key().to_hex();
    for path in [
        format!("/collectives/{id}"),
        format!("/collectives/{id}/subscribers"),
        format!("/collectives/{id}/jobs"),
        format!("/collectives/{id}/ledger"),
        "/collectives".to_string(),
    ] {
        let (_, body) = call_as(&router, &key, "GET", &path, Vec::new()).await;
        assert!(
            !body.to_string().contains(&key_hex),
            "{path} names the wallet: {body}"
        );
    }
    // The count over time is the consumer's only: one point, one subscriber.
    let path = format!("/collectives/{id}/subscribers");
    let (status, history) = call_as(&router, &key, "GET", &path, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history[0]["subscribers"], 1, "{history}");
    let (status, body) = call(&router, "GET", &path, Vec::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// An issuer for the Sybil tests: its key and its DID.
struct Issuer {
    key: SigningKey,
    did: c2ssi_credentials::Did,
}

impl Issuer {
    fn new() -> Issuer {
        let key = SigningKey::generate().expect("a key");
        let did = c2ssi_credentials::Did::from_ed25519(key.public_key().0);
        Issuer { key, did }
    }

    /// A `UniquePersonCredential` about `wallet`, valid from an hour ago
    /// until `until_ms`, with revocation bit `index` in list `urn:list`.
    fn issue(&self, wallet: &SigningKey, until_ms: u64, index: u64) -> Value {
        let now = c2ssi_protocol::now_ms();
        c2ssi_credentials::issue(
            &c2ssi_credentials::Issuance {
                issuer: &self.did,
                subject: &c2ssi_credentials::Did::from_ed25519(wallet.public_key().0),
                credential_type: "UniquePersonCredential",
                valid_from_ms: now - 3_600_000,
                valid_until_ms: Some(until_ms),
                status: Some(c2ssi_credentials::StatusEntry {
                    list: "urn:list".into(),
                    index,
                }),
            },
            &|m| self.key.sign_bytes(m),
        )
        .expect("issued")
    }

    fn status_list(&self, revoked: &[u64]) -> Value {
        self.status_list_at(revoked, c2ssi_protocol::now_ms())
    }

    fn status_list_at(&self, revoked: &[u64], at_ms: u64) -> Value {
        c2ssi_credentials::issue_list(
            "urn:list",
            &self.did,
            c2ssi_credentials::MIN_BITS,
            revoked,
            at_ms,
            &|m| self.key.sign_bytes(m),
        )
        .expect("a list")
    }
}

fn subscription(id: &str, digest: &str, wallet: &SigningKey, credentials: Vec<Value>) -> Vec<u8> {
    json(
        &Signed::sign(
            &Subscription {
                header: Header::new(Purpose::Subscription, id, 60_000),
                wallet: wallet.public_key(),
                manifest_digest: digest.to_string(),
                consent: "yes".into(),
                credentials,
            },
            wallet,
        )
        .expect("signed"),
    )
}

async fn sybils_get_one_subscription_per_credential_and_revocation_ends_it(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, broker) = broker(store, dir.path()).await;
    let issuer = Issuer::new();
    // A second issuer the manifest also names, who tries to take the first
    // one's status list id.
    let squatter = Issuer::new();
    let key = SigningKey::generate().expect("a key");
    let id = collective_id(&key.public_key());
    let m = Manifest {
        credential: Some(c2ssi_protocol::CredentialRequirement {
            credential_type: "UniquePersonCredential".into(),
            issuers: vec![issuer.did.clone(), squatter.did.clone()],
        }),
        ..manifest(&key, &broker, 1, privacy::default_terms())
    };
    let (status, outcome) = call_as(
        &router,
        &key,
        "POST",
        &format!("/collectives/{id}/manifest"),
        json(&submission(&key, &m)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{outcome}");
    let digest = outcome["digest"].as_str().expect("a digest").to_string();
    let path = format!("/collectives/{id}/subscriptions");
    let subscribers = |router: axum::Router| {
        let id = id.clone();
        let key = SigningKey::from_pkcs8(key.pkcs8()).expect("the key");
        async move {
            let (_, summary) = call_as(
                &router,
                &key,
                "GET",
                &format!("/collectives/{id}"),
                Vec::new(),
            )
            .await;
            summary["subscribers"].as_u64().expect("a count")
        }
    };
    // The last point of the count over time, which each change updates by
    // its difference: it must agree with the count itself.
    let last_point = |router: axum::Router| {
        let id = id.clone();
        let key = SigningKey::from_pkcs8(key.pkcs8()).expect("the key");
        async move {
            let (_, history) = call_as(
                &router,
                &key,
                "GET",
                &format!("/collectives/{id}/subscribers"),
                Vec::new(),
            )
            .await;
            history
                .as_array()
                .and_then(|h| h.last())
                .map_or(0, |p| p["subscribers"].as_u64().expect("a count"))
        }
    };

    // 1,000 fresh keys without a credential: every one refused.
    let mut refused = 0;
    for _ in 0..1_000 {
        let sybil = SigningKey::generate().expect("a key");
        let (status, body) = call_as(
            &router,
            &key,
            "POST",
            &path,
            subscription(&id, &digest, &sybil, vec![]),
        )
        .await;
        if status == StatusCode::FORBIDDEN && error_code(&body) == "forbidden" {
            refused += 1;
        }
    }
    assert_eq!(refused, 1_000);
    assert_eq!(subscribers(router.clone()).await, 0);

    // One person's credential, about wallet `person`.
    let person = SigningKey::generate().expect("a key");
    let in_a_year = c2ssi_protocol::now_ms() + 365 * 86_400_000;
    let credential = issuer.issue(&person, in_a_year, 17);
    // The other issuer pushes a list under the same id first: it is its own
    // list, and says nothing of this issuer's credentials.
    let (status, body) = call(
        &router,
        "POST",
        "/status-lists",
        json(&squatter.status_list(&[17])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Before its issuer published a status list, the broker cannot tell
    // whether it was revoked: refused (fail closed).
    let (status, body) = call_as(
        &router,
        &key,
        "POST",
        &path,
        subscription(&id, &digest, &person, vec![credential.clone()]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(
        &router,
        "POST",
        "/status-lists",
        json(&issuer.status_list(&[])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 300 Sybil keys present it: it is about another DID, so none is admitted.
    let mut admitted = 0;
    for _ in 0..300 {
        let sybil = SigningKey::generate().expect("a key");
        let (status, _) = call_as(
            &router,
            &key,
            "POST",
            &path,
            subscription(&id, &digest, &sybil, vec![credential.clone()]),
        )
        .await;
        if status.is_success() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 0);
    // Its subject subscribes, once; consenting again keeps one subscription.
    for _ in 0..2 {
        let (status, body) = call_as(
            &router,
            &key,
            "POST",
            &path,
            subscription(&id, &digest, &person, vec![credential.clone()]),
        )
        .await;
        assert!(status.is_success(), "{body}");
    }
    assert_eq!(subscribers(router.clone()).await, 1);
    assert_eq!(
        last_point(router.clone()).await,
        1,
        "re-subscribing counts once"
    );

    // A credential from an issuer the manifest does not name, an expired
    // one, and a forged one (subject changed) are refused.
    let stranger = Issuer::new();
    let other = SigningKey::generate().expect("a key");
    let expired = issuer.issue(&other, c2ssi_protocol::now_ms() - 1_000, 18);
    let mut forged = issuer.issue(&person, in_a_year, 19);
    forged["credentialSubject"]["id"] = c2ssi_credentials::Did::from_ed25519(other.public_key().0)
        .as_str()
        .into();
    for (what, credential) in [
        ("unnamed issuer", stranger.issue(&other, in_a_year, 1)),
        ("expired", expired),
        ("forged", forged),
    ] {
        let (status, body) = call_as(
            &router,
            &key,
            "POST",
            &path,
            subscription(&id, &digest, &other, vec![credential]),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    }
    // A status list from an issuer no collective names is not kept.
    let (status, _) = call(
        &router,
        "POST",
        "/status-lists",
        json(&stranger.status_list(&[])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The issuer revokes it: the subscription ends, and cannot start again.
    let (status, body) = call(
        &router,
        "POST",
        "/status-lists",
        json(&issuer.status_list(&[17])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ended_subscriptions"], 1);
    assert_eq!(subscribers(router.clone()).await, 0);
    assert_eq!(last_point(router.clone()).await, 0, "a revocation counts");
    // An older list (a replay from before the revocation) does not undo it.
    let older = issuer.status_list_at(&[], c2ssi_protocol::now_ms() - 60_000);
    let (status, _) = call(&router, "POST", "/status-lists", json(&older)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = call_as(
        &router,
        &key,
        "POST",
        &path,
        subscription(&id, &digest, &person, vec![credential]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("revoked"), "{body}");
}

async fn reads_are_the_collectives_and_uploads_are_refused_before_their_body_is_read(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, broker) = broker(store, dir.path()).await;
    let key = SigningKey::generate().expect("a key");
    let id = collective_id(&key.public_key());
    let m = manifest(&key, &broker, 1, privacy::default_terms());
    let (status, _) = call_as(
        &router,
        &key,
        "POST",
        &format!("/collectives/{id}/manifest"),
        json(&submission(&key, &m)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let stranger = SigningKey::generate().expect("a key");
    for path in [
        format!("/collectives/{id}"),
        format!("/collectives/{id}/jobs"),
        format!("/collectives/{id}/models"),
        format!("/collectives/{id}/ledger"),
        format!("/collectives/{id}/ledger/balance"),
    ] {
        let (status, body) = call(&router, "GET", &path, Vec::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        // HEAD runs the GET handler: it needs the same signature.
        let (status, _) = call(&router, "HEAD", &path, Vec::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "HEAD {path}");
        let (status, body) = call_as(&router, &stranger, "GET", &path, Vec::new()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        let (status, body) = call_as(&router, &key, "GET", &path, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // The manifest stays public.
    let (status, _) = call(
        &router,
        "GET",
        &format!("/collectives/{id}/manifest"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A signature for another path does not open this one.
    let auth = c2ssi_protocol::request::sign_request(
        &key,
        "GET",
        &format!("/collectives/{id}/jobs"),
        c2ssi_protocol::now_ms(),
    );
    let request = Request::builder()
        .method("GET")
        .uri(format!("/collectives/{id}/models"))
        .header("authorization", auth)
        .body(Body::empty())
        .expect("a request");
    let response = router.clone().oneshot(request).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // An upload without the collective's signature is refused before its
    // body is read: this body fails whoever reads it.
    let poisoned = || Body::from_stream(poisoned_stream());
    for auth in [None, Some(&stranger)] {
        let mut request = Request::builder()
            .method("POST")
            .uri(format!("/collectives/{id}/manifest"))
            .header("content-type", "application/json");
        if let Some(k) = auth {
            request = request.header(
                "authorization",
                c2ssi_protocol::request::sign_request(
                    k,
                    "POST",
                    &format!("/collectives/{id}/manifest"),
                    c2ssi_protocol::now_ms(),
                ),
            );
        }
        let response = router
            .clone()
            .oneshot(request.body(poisoned()).expect("a request"))
            .await
            .expect("an answer");
        assert!(
            response.status() == StatusCode::UNAUTHORIZED
                || response.status() == StatusCode::FORBIDDEN,
            "{}",
            response.status()
        );
    }
}

/// A body stream whose first read fails: a handler that read it would
/// answer 400 or 422, not 401 or 403.
fn poisoned_stream()
-> impl futures_core::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send + 'static {
    struct Poisoned;
    impl futures_core::Stream for Poisoned {
        type Item = Result<axum::body::Bytes, std::io::Error>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            panic!("the body of an unauthenticated upload was read");
        }
    }
    Poisoned
}

async fn an_expired_credential_ends_its_subscription_at_the_next_check_in(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, broker) = broker(store, dir.path()).await;
    let issuer = Issuer::new();
    let key = SigningKey::generate().expect("a key");
    let id = collective_id(&key.public_key());
    let m = Manifest {
        credential: Some(c2ssi_protocol::CredentialRequirement {
            credential_type: "UniquePersonCredential".into(),
            issuers: vec![issuer.did.clone()],
        }),
        ..manifest(&key, &broker, 1, privacy::default_terms())
    };
    let (status, outcome) = call_as(
        &router,
        &key,
        "POST",
        &format!("/collectives/{id}/manifest"),
        json(&submission(&key, &m)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{outcome}");
    let digest = outcome["digest"].as_str().expect("a digest").to_string();
    let (status, _) = call(
        &router,
        "POST",
        "/status-lists",
        json(&issuer.status_list(&[])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let person = SigningKey::generate().expect("a key");
    // Valid for one more second.
    let credential = issuer.issue(&person, c2ssi_protocol::now_ms() + 1_000, 5);
    let (status, body) = call(
        &router,
        "POST",
        &format!("/collectives/{id}/subscriptions"),
        subscription(&id, &digest, &person, vec![credential]),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let check_in = || {
        json(
            &Signed::sign(
                &c2ssi_protocol::CheckIn {
                    header: Header::new(Purpose::CheckIn, &id, 60_000),
                    wallet: person.public_key(),
                    receipts_after: 0,
                },
                &person,
            )
            .expect("signed"),
        )
    };
    let path = format!("/collectives/{id}/checkin");
    let (status, body) = call(&router, "POST", &path, check_in()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    // Expired: the check-in is refused and the subscription is gone.
    let (status, body) = call(&router, "POST", &path, check_in()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("expired"), "{body}");
    let (_, summary) = call_as(
        &router,
        &key,
        "GET",
        &format!("/collectives/{id}"),
        Vec::new(),
    )
    .await;
    assert_eq!(summary["subscribers"], 0);
    let (status, _) = call(&router, "POST", &path, check_in()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The metrics token of the test broker.
const METRICS_TOKEN: &str = "test-metrics-token";

/// The text of a plain GET, with its content type.
async fn text_of(router: &axum::Router, path: &str) -> (StatusCode, String, String) {
    text_with(router, path, None).await
}

/// [`text_of`], with a bearer token.
async fn text_with(
    router: &axum::Router,
    path: &str,
    bearer: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = Request::builder().uri(path);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Body::empty()).expect("a request");
    let response = router.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let csp = response.headers().contains_key("content-security-policy");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        format!("{kind}{}", if csp { " (csp)" } else { "" }),
        text,
    )
}

async fn metrics_and_the_status_page_count_requests_and_name_no_collective(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, broker) = broker(store, dir.path()).await;
    let (_, id, _) = new_collective(&router, &broker).await;
    let (status, _) = call(
        &router,
        "GET",
        &format!("/collectives/{id}/manifest"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The metrics are the operator's: no token, or a wrong one, gets 401.
    for bearer in [None, Some("wrong")] {
        let (status, _, _) = text_with(&router, "/metrics", bearer).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bearer:?}");
    }
    let (status, kind, text) = text_with(&router, "/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(
        text.contains(
            "c2ssi_http_requests_total{method=\"GET\",route=\"/collectives/{id}/manifest\",status=\"200\"} 1"
        ),
        "{text}"
    );
    for gauge in [
        "c2ssi_rounds_open 0",
        "c2ssi_jobs_running 0",
        "c2ssi_aggregator_up 1",
    ] {
        assert!(text.contains(gauge), "{gauge}: {text}");
    }
    assert!(text.contains("c2ssi_access_reports_total 0"), "{text}");
    assert!(
        !text.contains(&id),
        "the metrics name no collective: {text}"
    );

    let (status, kind, page) = text_of(&router, "/status").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        kind.starts_with("text/html") && kind.ends_with("(csp)"),
        "{kind}"
    );
    assert!(
        page.contains("Broker status") && page.contains("rounds open"),
        "{page}"
    );
    assert!(page.contains("reachable"), "{page}");
    assert!(!page.contains(&id), "the status page names no collective");
    let (status, kind, _) = text_of(&router, "/assets/style.css").await;
    assert_eq!(
        (status, kind.starts_with("text/css")),
        (StatusCode::OK, true)
    );
}

/// Every operation of `/openapi.json` reaches a handler of the router, with
/// the method it names: a route the router does not have would answer
/// axum's bare 404 (or 405), while every handler here answers JSON. The
/// router and the description are built from one list (`utoipa-axum`), so a
/// route cannot be left out of the description; this checks the reverse.
async fn the_openapi_description_names_every_route_and_only_routes(store: Store) {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, _) = broker(store, dir.path()).await;
    let (status, _, text) = text_of(&router, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let api: Value = serde_json::from_str(&text).expect("the description is JSON");
    assert!(
        api["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{api}"
    );
    let paths = api["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "c-000000000000000000000000")
            .replace("{digest}", "00")
            .replace("{sha}", "00")
            .replace("{job}", "j-00")
            .replace("{hash}", "00");
        for method in ["get", "post"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let body = if method == "post" {
                b"{}".to_vec()
            } else {
                Vec::new()
            };
            let (status, answer) = call(&router, &method.to_uppercase(), &concrete, body).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                status != StatusCode::NOT_FOUND || error_code(&answer) == "not-found",
                "{method} {path}: no handler answered ({status}, {answer})"
            );
        }
    }
    assert_eq!(
        operations, 23,
        "the broker's JSON API has 23 operations: {paths:#?}"
    );
    // Every schema it refers to is in it, and the main ones are there.
    let schemas = api["components"]["schemas"].as_object().expect("schemas");
    let mut refs = Vec::new();
    collect_refs(&api, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        assert!(schemas.contains_key(name), "{r} refers to nothing");
    }
    for name in [
        "Manifest",
        "JobStatus",
        "ErrorBody",
        "ModelVersion",
        "LedgerEntry",
    ] {
        assert!(schemas.contains_key(name), "{name} is not described");
    }
    assert!(
        !paths.contains_key("/nothing-here"),
        "and a path the router does not have is not described"
    );
    let (status, _) = call(&router, "GET", "/nothing-here", Vec::new()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the bare 404 this test tells apart"
    );
}

/// Every `$ref` in a JSON document.
fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
