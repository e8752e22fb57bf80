//! The collective's HTTP API, driven with `oneshot` requests on the router
//! over a real service (SQLite in a temporary directory): errors come back
//! as JSON with the right status, bodies are bounded, every mutating call is
//! checked against its signer, and a replayed command changes nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use c2ssi_protocol::{
    Amount, Command, CreateCollective, Header, ManifestDraft, OperatorCommand, Purpose, Signed,
    SigningKey,
};
use c2ssi_sandbox::SandboxLimits;
use collective::coordinator::{Coordinator, CoordinatorConfig};
use collective::http::{AppState, MAX_BODY_BYTES, app};
use collective::runner::Runner;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn service(dir: &std::path::Path) -> (axum::Router, Arc<Coordinator>) {
    let coordinator = collective::service::open_local(
        dir,
        CoordinatorConfig::default(),
        SandboxLimits::default(),
    )
    .expect("a service");
    let router = app(AppState {
        coordinator: coordinator.clone(),
        runner: Runner::default(),
    });
    (router, coordinator)
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a request");
    let response = router.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

fn create_request(operator: &SigningKey) -> Signed<CreateCollective> {
    // The example manifest file states the rate in tokens; the wire, in millionths.
    let mut file: Value =
        serde_json::from_str(include_str!("../../examples/diabetes-collective.json"))
            .expect("the example manifest");
    file["rate"] = Value::from(5_000u64);
    let draft: ManifestDraft = serde_json::from_value(file).expect("a manifest draft");
    Signed::sign(
        &CreateCollective {
            header: Header::new(Purpose::CreateCollective, "", 60_000),
            draft,
        },
        operator,
    )
    .expect("signed")
}

fn deposit(operator: &SigningKey, id: &str, amount: &str) -> Signed<OperatorCommand> {
    Signed::sign(
        &OperatorCommand {
            header: Header::new(Purpose::OperatorCommand, id, 60_000),
            command: Command::Deposit {
                amount: amount.parse().expect("an amount"),
            },
        },
        operator,
    )
    .expect("signed")
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("no error code")
}

#[tokio::test]
async fn errors_are_json_with_the_right_status() {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, _) = service(dir.path());

    let (status, body) = call(&router, "GET", "/health", Vec::new()).await;
    assert_eq!((status, &body["ok"]), (StatusCode::OK, &Value::Bool(true)));

    let (status, body) = call(&router, "POST", "/collectives", b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, body) = call(&router, "POST", "/collectives", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "too-large");

    let (status, body) = call(&router, "GET", "/collectives/c-nope/manifest", Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "not-found");
}

#[tokio::test]
async fn commands_are_checked_against_the_operator_and_never_replayed() {
    let dir = tempfile::tempdir().expect("a directory");
    let (router, coordinator) = service(dir.path());
    let operator = SigningKey::generate().expect("a key");
    let (status, manifest) = call(
        &router,
        "POST",
        "/collectives",
        json(&create_request(&operator)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{manifest}");
    let signed: Signed<c2ssi_protocol::Manifest> =
        serde_json::from_value(manifest["manifest"].clone()).expect("a signed manifest");
    let id = signed
        .open_any_time(None, Purpose::Manifest)
        .expect("it verifies")
        .header
        .collective_id;
    assert_eq!(manifest["collective_id"], Value::String(id.clone()));
    let commands = format!("/collectives/{id}/commands");

    let first = deposit(&operator, &id, "5");
    let (status, body) = call(&router, "POST", &commands, json(&first)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The same signed command again: refused, and the balance is unchanged.
    let (status, body) = call(&router, "POST", &commands, json(&first)).await;
    assert!(
        status.is_client_error(),
        "a replay was taken: {status} {body}"
    );
    // Someone else's key: refused.
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
    // A body whose signature no longer matches: refused.
    let mut tampered = serde_json::to_value(deposit(&operator, &id, "1")).expect("JSON");
    let payload = tampered["payload"]
        .as_str()
        .expect("payload")
        .replace("1000000", "9000000");
    tampered["payload"] = Value::String(payload);
    let (status, body) = call(&router, "POST", &commands, json(&tampered)).await;
    assert!(status.is_client_error(), "{status} {body}");

    let (deposited, paid) = coordinator.ledger().balance(&id).expect("the balance");
    assert_eq!((deposited, paid), (Amount(5_000_000), Amount(0)));
    let (status, verified) = call(
        &router,
        "GET",
        &format!("/collectives/{id}/ledger/verify"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{verified}");
}
