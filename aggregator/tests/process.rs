//! The aggregator's HTTP API, driven with `oneshot` requests: rounds open
//! only under a manifest signed by its collective, naming this aggregator,
//! and on the word of the broker that manifest names; the terms come from
//! the manifest, not the broker; refusals are typed and have their status.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use c2ssi_aggregator::process::{AggregatorState, BrokerLink, LinkError, app};
use c2ssi_aggregator::{Aggregator, AggregatorKeys, NoiseSource};
use c2ssi_protocol::{
    AccessReport, AggregationRule, Amount, Assignment, Attestation, CloseOutcome, CloseRound,
    DataRequirements, Header, Manifest, OpenRound, Outcome, PrivacyTerms, ProgressQuery, Purpose,
    Receipt, RoundProgress, Signed, Signer, SigningKey, UpdateEnvelope, UpdatePayload,
    collective_id,
};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;
use tower::ServiceExt;

/// A broker that serves one manifest and pays nothing.
#[derive(Default)]
struct FakeBroker {
    manifest: Mutex<Option<Signed<Manifest>>>,
}

impl BrokerLink for FakeBroker {
    fn manifest_version(&self, _: &str, digest: &str) -> Result<Signed<Manifest>, LinkError> {
        self.manifest
            .lock()
            .expect("test setup")
            .clone()
            .filter(|m| hex::encode(m.digest()) == digest)
            .ok_or_else(|| LinkError::NotFound("no such manifest".into()))
    }

    fn report_access(
        &self,
        _: &str,
        _: &Signed<AccessReport>,
    ) -> Result<Signed<Receipt>, LinkError> {
        Err(LinkError::Refused("this broker pays nothing".into()))
    }
}

struct Setup {
    router: axum::Router,
    aggregator: AggregatorState,
    id: String,
    digest: String,
    broker: SigningKey,
    wallets: Vec<SigningKey>,
}

fn setup(name_this_aggregator: bool, terms: PrivacyTerms) -> Setup {
    let keys = AggregatorKeys::generate().expect("test setup");
    let other = AggregatorKeys::generate().expect("test setup");
    let named = if name_this_aggregator { &keys } else { &other };
    let collective = SigningKey::generate().expect("test setup");
    let broker = SigningKey::generate().expect("test setup");
    let id = collective_id(&collective.public_key());
    let manifest = Manifest {
        header: Header::new(Purpose::Manifest, &id, 3_600_000),
        version: 1,
        name: "n".into(),
        description: "d".into(),
        requirements: serde_json::from_value::<DataRequirements>(serde_json::json!({
            "tables": [{"table": "t", "columns": [{"name": "x", "type": "boolean"}]}]
        }))
        .expect("test setup"),
        allowed_algorithms: Vec::new(),
        rate: Amount(1),
        privacy: terms,
        collective_key: collective.public_key(),
        broker_key: broker.public_key(),
        aggregator_key: named.public_key(),
        aggregator_recipient: named.recipient(),
        credential: None,
    };
    let signed = Signed::sign(&manifest, &collective).expect("test setup");
    let digest = hex::encode(signed.digest());
    let link = Arc::new(FakeBroker::default());
    *link.manifest.lock().expect("test setup") = Some(signed);
    let aggregator = AggregatorState::with_link(
        Aggregator::new(keys, NoiseSource::os()),
        "http://127.0.0.1:9",
        link,
    )
    .with_metrics_token(Some("the-operator's".into()));
    Setup {
        router: app(aggregator.clone()),
        aggregator,
        id,
        digest,
        broker,
        wallets: (0..3)
            .map(|_| SigningKey::generate().expect("test setup"))
            .collect(),
    }
}

fn open_message(s: &Setup, signer: &SigningKey) -> Signed<OpenRound> {
    Signed::sign(
        &OpenRound {
            header: Header::new(Purpose::OpenRound, &s.id, 60_000),
            job_id: "j".into(),
            round: 1,
            manifest_digest: s.digest.clone(),
            model_len: 2,
            assigned: s
                .wallets
                .iter()
                .enumerate()
                .map(|(i, w)| Assignment {
                    wallet: w.public_key(),
                    task_digest: format!("task-{i}"),
                })
                .collect(),
        },
        signer,
    )
    .expect("test setup")
}

fn envelope(s: &Setup, i: usize, delta: Vec<f32>, present: bool) -> Signed<UpdateEnvelope> {
    let recipient: age::x25519::Recipient = s
        .aggregator
        .identity()
        .recipient
        .parse()
        .expect("test setup");
    let payload = UpdatePayload {
        outcome: Outcome::Trained,
        delta,
        metrics: Vec::new(),
    };
    Signed::sign(
        &UpdateEnvelope {
            header: Header::new(Purpose::Update, &s.id, 60_000),
            job_id: "j".into(),
            round: 1,
            wallet: s.wallets[i].public_key(),
            task_digest: format!("task-{i}"),
            manifest_digest: s.digest.clone(),
            attestation: Attestation {
                requirements_digest: String::new(),
                table: "t".into(),
                present,
            },
            sealed: payload.seal(&recipient).expect("test setup"),
        },
        &s.wallets[i],
    )
    .expect("test setup")
}

/// A GET through the router, with a bearer token when given: the status
/// and the body.
async fn get(
    router: &axum::Router,
    path: &str,
    bearer: Option<&str>,
) -> (StatusCode, axum::body::Bytes) {
    let mut request = Request::builder().uri(path);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Body::empty()).expect("a request");
    let response = router.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    (status, bytes)
}

async fn post<T: Serialize>(router: &axum::Router, path: &str, body: &T) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(body).expect("test setup")))
                .expect("test setup"),
        )
        .await
        .expect("test setup");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("test setup")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn rounds_open_only_on_the_word_of_the_manifests_broker() {
    let s = setup(true, c2ssi_protocol::privacy::default_terms());
    let path = format!("/collectives/{}/rounds/open", s.id);
    let stranger = SigningKey::generate().expect("test setup");
    let (status, body) = post(&s.router, &path, &open_message(&s, &stranger)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = post(&s.router, &path, &open_message(&s, &s.broker)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An envelope for a round that is not open: refused, typed, 410.
    let mut late = envelope(&s, 0, vec![0.1, 0.1], false);
    let mut body: UpdateEnvelope = serde_json::from_str(&late.payload).expect("test setup");
    body.round = 2;
    late = Signed::sign(&body, &s.wallets[0]).expect("test setup");
    let (status, answer) = post(&s.router, &format!("/collectives/{}/updates", s.id), &late).await;
    assert_eq!(status, StatusCode::GONE, "{answer}");
    assert_eq!(answer["outcome"]["reason"], "round-not-open");

    // A Byzantine wallet's malformed update: refused, typed, 422, no receipt.
    let updates = format!("/collectives/{}/updates", s.id);
    for (i, delta) in [(1, vec![f32::NAN, 0.0]), (2, vec![1.0; 5])] {
        let (status, answer) = post(&s.router, &updates, &envelope(&s, i, delta, true)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["outcome"]["reason"], "invalid-update");
        assert!(answer["receipt"].is_null(), "{answer}");
    }

    // The operator's metrics count each outcome by kind, name no
    // collective, and see the round open; they are for the token's bearer.
    let (status, _) = get(&s.router, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, bytes) = get(&s.router, "/metrics", Some("the-operator's")).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8_lossy(&bytes);
    for line in [
        "c2ssi_updates_total{outcome=\"invalid-update\"} 2",
        "c2ssi_updates_total{outcome=\"round-not-open\"} 1",
        "c2ssi_rounds_open 1",
        "route=\"/collectives/{id}/updates\",status=\"422\"} 2",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    assert!(!metrics.contains(&s.id), "{metrics}");

    // How far the round is: for the broker that opened it only.
    let progress_path = format!("/collectives/{}/rounds/progress", s.id);
    let query = |signer: &SigningKey| {
        Signed::sign(
            &ProgressQuery {
                header: Header::new(Purpose::RoundProgress, &s.id, 60_000),
                job_id: "j".into(),
                round: 1,
            },
            signer,
        )
        .expect("test setup")
    };
    let (status, body) = post(&s.router, &progress_path, &query(&stranger)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = post(&s.router, &progress_path, &query(&s.broker)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let progress: RoundProgress = serde_json::from_value(body).expect("test setup");
    assert_eq!(
        progress,
        RoundProgress {
            open: true,
            answered: 2,
            assigned: 3
        }
    );

    // Closing is asked by the broker, under the manifest's k (10): too few.
    let close = Signed::sign(
        &CloseRound {
            header: Header::new(Purpose::CloseRound, &s.id, 60_000),
            job_id: "j".into(),
            round: 1,
            rule: AggregationRule::Median,
            center: None,
        },
        &stranger,
    )
    .expect("test setup");
    let (status, _) = post(
        &s.router,
        &format!("/collectives/{}/rounds/close", s.id),
        &close,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "only the round's broker closes it"
    );
    let close = Signed::sign(
        &CloseRound {
            header: Header::new(Purpose::CloseRound, &s.id, 60_000),
            job_id: "j".into(),
            round: 1,
            rule: AggregationRule::Mean,
            center: None,
        },
        &s.broker,
    )
    .expect("test setup");
    let (status, body) = post(
        &s.router,
        &format!("/collectives/{}/rounds/close", s.id),
        &close,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome: CloseOutcome = serde_json::from_value(body).expect("test setup");
    assert!(
        matches!(outcome, CloseOutcome::TooFew { min_batch: 10 }),
        "{outcome:?}"
    );

    // Closed is closed: the broker's own open message, replayed, is refused.
    let (status, body) = post(&s.router, &path, &open_message(&s, &s.broker)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let (status, body) = post(&s.router, &progress_path, &query(&s.broker)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["open"], false);
}

#[tokio::test]
async fn a_manifest_naming_another_aggregator_opens_nothing() {
    let s = setup(false, c2ssi_protocol::privacy::default_terms());
    let (status, body) = post(
        &s.router,
        &format!("/collectives/{}/rounds/open", s.id),
        &open_message(&s, &s.broker),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
}

#[tokio::test]
async fn a_rule_that_keeps_the_momentum_starts_from_the_center_the_broker_sends() {
    let terms = PrivacyTerms::with_noise(3, 10.0, 1e-5, 1, 0.0, Vec::new()).expect("test setup");
    let close = |s: &Setup, center: Option<Vec<f32>>| {
        Signed::sign(
            &CloseRound {
                header: Header::new(Purpose::CloseRound, &s.id, 60_000),
                job_id: "j".into(),
                round: 1,
                rule: AggregationRule::CenteredClippingMomentum {
                    radius: 1e6,
                    beta: 0.5,
                },
                center,
            },
            &s.broker,
        )
        .expect("test setup")
    };
    let mut released = Vec::new();
    for center in [Some(vec![1.0f32, 1.0]), None] {
        let s = setup(true, terms.clone());
        let (status, body) = post(
            &s.router,
            &format!("/collectives/{}/rounds/open", s.id),
            &open_message(&s, &s.broker),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for (i, delta) in [vec![0.1f32, 0.1], vec![0.3, 0.1], vec![0.2, 0.4]]
            .into_iter()
            .enumerate()
        {
            let (status, body) = post(
                &s.router,
                &format!("/collectives/{}/updates", s.id),
                &envelope(&s, i, delta, true),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (status, body) = post(
            &s.router,
            &format!("/collectives/{}/rounds/close", s.id),
            &close(&s, center),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let CloseOutcome::Released { result } = serde_json::from_value(body).expect("test setup")
        else {
            panic!("nothing released");
        };
        let batch: c2ssi_protocol::BatchResult =
            serde_json::from_str(&result.payload).expect("test setup");
        released.push(batch.aggregate);
    }
    // Nothing clipped: `beta center + (1 - beta) mean`, the mean being
    // (0.2, 0.2); without a center, from zero.
    let close_to =
        |got: &[f32], want: [f32; 2]| got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6);
    assert!(close_to(&released[0], [0.6, 0.6]), "{:?}", released[0]);
    assert!(close_to(&released[1], [0.1, 0.1]), "{:?}", released[1]);
}

/// `/openapi.json` describes every route, each operation reaches a handler
/// (axum's bare 404 or 405 would mean it does not), and every schema it
/// refers to is in it.
#[tokio::test]
async fn the_openapi_description_matches_the_routes() {
    let s = setup(true, c2ssi_protocol::privacy::default_terms());
    let (status, bytes) = get(&s.router, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let api: Value = serde_json::from_slice(&bytes).expect("JSON");
    let paths = api["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", &s.id);
        for method in ["get", "post"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let body = if method == "post" { "{}" } else { "" };
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("a request");
            let response = s.router.clone().oneshot(request).await.expect("an answer");
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("the body")
                .to_bytes();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                status != StatusCode::NOT_FOUND || !bytes.is_empty(),
                "{method} {path}: no handler answered"
            );
        }
    }
    assert_eq!(operations, 6, "{paths:#?}");
    let text = api.to_string();
    let schemas = api["components"]["schemas"].as_object().expect("schemas");
    for piece in text.split("\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap_or("");
        assert!(
            schemas.contains_key(name),
            "{name} is referred to, not described"
        );
    }
    assert!(schemas.contains_key("UpdateResponse"));
}
