//! `collective ui`: the operator's dashboard, on 127.0.0.1 behind the
//! one-time token printed in the terminal ([`c2ssi_web::local`]). It holds
//! the collective's key, as `collective` does, and reads and commands the
//! broker through the same signed API: the browser never sees the key, and
//! the broker needs no second way in. Pages: the collective (subscribers over
//! time, budget, privacy terms, jobs, a form that starts a job), each job
//! (a live chart of its released metrics per round, the filter report, a
//! stop button), model versions as a chain, and the ledger with a verify
//! button.
//!
//! Why not pages served by the broker: every consumer request there is
//! signed with the collective's key, which a browser cannot do without
//! holding the key; a password or session login on the broker would be a
//! second, weaker way in to the same API.

mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use c2ssi_client::Client;
use c2ssi_protocol::SigningKey;
use c2ssi_web::local::{self, CsrfToken};
use c2ssi_web::{NavItem, Notice, Page};
use serde::Deserialize;

/// The application's name on every page.
const APP: &str = "Your collective";

/// The pages, in the navigation's order.
static NAV: &[NavItem] = &[
    NavItem {
        href: "/",
        label: "Collective and jobs",
    },
    NavItem {
        href: "/models",
        label: "Model versions",
    },
    NavItem {
        href: "/ledger",
        label: "Budget and ledger",
    },
];

/// Who the dashboard acts as: the collective, through its broker.
pub struct Operator {
    /// The broker's client, signing as the collective.
    client: Client,
    /// The collective's key (commands are signed with it).
    key: Arc<SigningKey>,
    /// The collective.
    collective: String,
    /// The start forms handed out and not yet sent: each starts one job at
    /// most, so a double click or a reload does not start two.
    forms: std::sync::Mutex<std::collections::VecDeque<String>>,
}

/// Most start forms remembered (the oldest are forgotten first).
const FORMS_KEPT: usize = 256;

impl Operator {
    /// Acts as collective `collective` with its `key`, through the broker
    /// `client` (which signs with the same key).
    pub fn new(client: Client, key: Arc<SigningKey>, collective: String) -> Operator {
        Operator {
            client,
            key,
            collective,
            forms: Default::default(),
        }
    }

    /// The collective.
    pub fn collective(&self) -> &str {
        &self.collective
    }

    /// The broker's client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A new start form's one-time id.
    fn new_form(&self) -> String {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .unwrap_or_else(|_| panic!("the operating system gave no random bytes"));
        let id = hex::encode(bytes);
        let mut forms = self
            .forms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if forms.len() >= FORMS_KEPT {
            forms.pop_front();
        }
        forms.push_back(id.clone());
        id
    }

    /// Spends a start form's id: `false` if it was sent already (or never
    /// handed out).
    fn spend_form(&self, id: &str) -> bool {
        let mut forms = self
            .forms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match forms.iter().position(|f| f == id) {
            Some(i) => {
                forms.remove(i);
                true
            }
            None => false,
        }
    }
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("collective", &self.collective)
            .field("broker", &self.client.base())
            .finish_non_exhaustive()
    }
}

type Shared = Arc<Operator>;

/// A page built off the async threads (the broker's client blocks); an
/// error becomes a page that says what failed.
async fn page(
    op: &Shared,
    f: impl FnOnce(&Operator) -> anyhow::Result<Page> + Send + 'static,
) -> Response {
    let op = op.clone();
    c2ssi_web::render(APP, NAV, move || f(&op), status_of).await
}

/// What the broker refused keeps its status (a job that is not there is a
/// 404 here too); anything else is the broker's failure to answer: 502.
fn status_of(e: &anyhow::Error) -> StatusCode {
    e.downcast_ref::<c2ssi_client::ClientError>()
        .and_then(c2ssi_client::ClientError::code)
        .filter(|c| (400..500).contains(&c.status()))
        .and_then(|c| StatusCode::from_u16(c.status()).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

fn failure(text: String) -> Response {
    c2ssi_web::failure(APP, NAV, StatusCode::BAD_GATEWAY, text)
}

/// The dashboard's pages ([`serve`] puts them behind the guard).
pub fn app(operator: Arc<Operator>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/jobs", get(|| async { Redirect::to("/") }).post(start))
        .route("/jobs/{job}", get(job))
        .route("/jobs/{job}/stop", post(stop))
        .route("/models", get(models))
        .route("/ledger", get(ledger))
        .route(
            "/ledger/verify",
            get(|| async { Redirect::to("/ledger") }).post(verify),
        )
        .with_state(operator)
}

/// Serves the dashboard on a loopback address of its own at `port` (0: any
/// free port) until ctrl-c; `ready` gets the URL to open, with its one-time
/// token.
pub fn serve(operator: Operator, port: u16, ready: impl FnOnce(&str)) -> std::io::Result<()> {
    let operator = Arc::new(operator);
    local::serve(APP, port, move |_| app(operator), ready)
}

#[derive(Debug, Deserialize)]
struct Done {
    started: Option<String>,
    stopped: Option<String>,
}

async fn overview(
    State(op): State<Shared>,
    axum::Extension(csrf): axum::Extension<CsrfToken>,
    Query(done): Query<Done>,
) -> Response {
    page(&op, move |op| {
        let mut page = pages::overview(op, &csrf.0, None)?;
        if let Some(job) = done.started {
            page.notice = Some(Notice::ok(format!("Job {job} started.")));
        }
        Ok(page)
    })
    .await
}

async fn start(
    State(op): State<Shared>,
    axum::Extension(csrf): axum::Extension<CsrfToken>,
    axum::Form(form): axum::Form<pages::StartForm>,
) -> Response {
    let shared = op.clone();
    let started = tokio::task::spawn_blocking(move || pages::start(&shared, &form)).await;
    match started {
        Ok(Ok(job)) => Redirect::to(&format!("/jobs/{job}?started=1")).into_response(),
        Ok(Err(e)) => {
            let text = format!("No job was started: {e:#}");
            let mut response = page(&op, move |op| {
                pages::overview(op, &csrf.0, Some(Notice::bad(text)))
            })
            .await;
            if response.status().is_success() {
                *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            response
        }
        Err(e) => failure(format!("starting the job stopped: {e}")),
    }
}

async fn job(
    State(op): State<Shared>,
    axum::Extension(csrf): axum::Extension<CsrfToken>,
    Path(job): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    page(&op, move |op| {
        let mut page = pages::job(op, &job, &csrf.0)?;
        if done.stopped.is_some() {
            page.notice = Some(Notice::ok(
                "The job stops after its current round.".to_string(),
            ));
        } else if done.started.is_some() {
            page.notice = Some(Notice::ok(format!("Job {job} started.")));
        }
        Ok(page)
    })
    .await
}

async fn stop(State(op): State<Shared>, Path(job): Path<String>) -> Response {
    let shared = op.clone();
    let target = job.clone();
    match tokio::task::spawn_blocking(move || pages::stop(&shared, &target)).await {
        Ok(Ok(())) => Redirect::to(&format!("/jobs/{job}?stopped=1")).into_response(),
        Ok(Err(e)) => failure(format!("The job was not stopped: {e:#}")),
        Err(e) => failure(format!("stopping the job stopped: {e}")),
    }
}

async fn models(State(op): State<Shared>) -> Response {
    page(&op, pages::models).await
}

async fn ledger(
    State(op): State<Shared>,
    axum::Extension(csrf): axum::Extension<CsrfToken>,
) -> Response {
    page(&op, move |op| pages::ledger(op, &csrf.0, None)).await
}

async fn verify(
    State(op): State<Shared>,
    axum::Extension(csrf): axum::Extension<CsrfToken>,
) -> Response {
    page(&op, move |op| {
        let notice = pages::verify(op);
        pages::ledger(op, &csrf.0, Some(notice))
    })
    .await
}
