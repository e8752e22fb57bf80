//! `wallet ui`: the owner's dashboard, a local page on 127.0.0.1 behind the
//! one-time token printed in the terminal ([`c2ssi_web::local`]): the
//! wallet's tables (values only on request), subscriptions and the changes
//! waiting for consent (accept or decline there), the access log, receipts
//! and earnings, and the privacy spent against the owner's limits.

mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use c2ssi_web::local::{self, CsrfToken};
use c2ssi_web::{NavItem, Notice, Page};
use serde::Deserialize;

use crate::store::Wallet;

/// The application's name on every page.
const APP: &str = "Your wallet";

/// The pages, in the navigation's order.
static NAV: &[NavItem] = &[
    NavItem {
        href: "/",
        label: "Overview",
    },
    NavItem {
        href: "/data",
        label: "Data",
    },
    NavItem {
        href: "/collectives",
        label: "Collectives and consent",
    },
    NavItem {
        href: "/log",
        label: "Access log",
    },
    NavItem {
        href: "/earnings",
        label: "Earnings",
    },
    NavItem {
        href: "/privacy",
        label: "Privacy budget",
    },
];

/// What the handlers share: the unlocked wallet.
#[derive(Clone)]
struct Ui {
    wallet: Arc<Wallet>,
}

impl std::fmt::Debug for Ui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ui")
            .field("wallet", &self.wallet.id())
            .finish()
    }
}

/// A page built off the async threads (the wallet's reads decrypt files);
/// an error becomes a page that says what failed.
async fn page(
    ui: &Ui,
    f: impl FnOnce(&Wallet) -> anyhow::Result<Page> + Send + 'static,
) -> Response {
    let wallet = ui.wallet.clone();
    c2ssi_web::render(APP, NAV, move || f(&wallet), status_of).await
}

/// A request whose address or form says something that cannot be: 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

/// A table that is not there is the address's fault, not the wallet's: 404;
/// a malformed request 400; anything else, 500.
fn status_of(e: &anyhow::Error) -> StatusCode {
    if e.downcast_ref::<BadInput>().is_some() {
        return StatusCode::BAD_REQUEST;
    }
    match e.downcast_ref::<crate::store::WalletError>() {
        Some(crate::store::WalletError::NoSuchTable { .. }) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The dashboard's pages over an unlocked wallet ([`serve`] puts them
/// behind the guard).
pub fn app(wallet: Arc<Wallet>) -> Router {
    let ui = Ui { wallet };
    Router::new()
        .route("/", get(overview))
        .route("/data", get(data))
        .route("/data/{name}", get(table))
        .route("/collectives", get(collectives))
        .route(
            "/collectives/{id}/accept",
            get(|| async { Redirect::to("/collectives") }).post(accept),
        )
        .route(
            "/collectives/{id}/decline",
            get(|| async { Redirect::to("/collectives") }).post(decline),
        )
        .route("/log", get(log))
        .route("/earnings", get(earnings))
        .route("/privacy", get(privacy))
        .with_state(ui)
}

/// Serves the dashboard on a loopback address of its own at `port` (0: any
/// free port) until ctrl-c; `ready` gets the URL to open, with its one-time
/// token.
pub fn serve(wallet: Wallet, port: u16, ready: impl FnOnce(&str)) -> std::io::Result<()> {
    let wallet = Arc::new(wallet);
    local::serve(APP, port, move |_| app(wallet), ready)
}

async fn overview(State(ui): State<Ui>) -> Response {
    page(&ui, pages::overview).await
}

async fn data(State(ui): State<Ui>) -> Response {
    page(&ui, pages::data).await
}

#[derive(Debug, Deserialize)]
struct RowsQuery {
    rows: Option<String>,
}

async fn table(
    State(ui): State<Ui>,
    Path(name): Path<String>,
    Query(q): Query<RowsQuery>,
) -> Response {
    page(&ui, move |w| {
        let rows = q
            .rows
            .map(|r| {
                r.trim()
                    .parse::<usize>()
                    .map_err(|_| BadInput(format!("rows: '{}' is not a number of rows", r.trim())))
            })
            .transpose()?;
        pages::table(w, &name, rows)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct DoneQuery {
    accepted: Option<String>,
    declined: Option<String>,
}

async fn collectives(
    State(ui): State<Ui>,
    axum::Extension(csrf): axum::Extension<CsrfToken>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let notice = match (q.accepted, q.declined) {
        (Some(id), _) => Some(Notice::ok(format!(
            "You consented to the new terms of {id}: its tasks run again."
        ))),
        (None, Some(id)) => Some(Notice::ok(format!(
            "You declined the terms of {id} and unsubscribed: its key is deleted, none of its tasks runs."
        ))),
        (None, None) => None,
    };
    page(&ui, move |w| {
        let mut page = pages::collectives(w, &csrf.0)?;
        page.notice = notice;
        Ok(page)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct AcceptForm {
    digest: String,
}

async fn accept(
    State(ui): State<Ui>,
    axum::Extension(csrf): axum::Extension<CsrfToken>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<AcceptForm>,
) -> Response {
    let wallet = ui.wallet.clone();
    let target = id.clone();
    let done = tokio::task::spawn_blocking(move || pages::accept(&wallet, &target, &form.digest))
        .await
        .map_err(|e| anyhow::anyhow!("the consent's work stopped: {e}"))
        .and_then(|r| r);
    match done {
        Ok(()) => Redirect::to(&format!("/collectives?accepted={id}")).into_response(),
        Err(e) => refused(&ui, csrf, format!("Nothing was consented to: {e:#}")).await,
    }
}

async fn decline(
    State(ui): State<Ui>,
    axum::Extension(csrf): axum::Extension<CsrfToken>,
    Path(id): Path<String>,
) -> Response {
    let wallet = ui.wallet.clone();
    let target = id.clone();
    let done = tokio::task::spawn_blocking(move || crate::agent::consent::revoke(&wallet, &target))
        .await
        .map_err(|e| anyhow::anyhow!("the revocation's work stopped: {e}"))
        .and_then(|r| r);
    match done {
        Ok(Ok(_)) => Redirect::to(&format!("/collectives?declined={id}")).into_response(),
        Ok(Err(why)) => {
            let text = format!(
                "You declined and this wallet deleted the key of {id}: none of its tasks \
                     runs here. The broker was not told ({why}); it may still sample this \
                     wallet, and every task it sends is denied."
            );
            page(&ui, move |w| {
                let mut page = pages::collectives(w, &csrf.0)?;
                page.notice = Some(Notice::bad(text));
                Ok(page)
            })
            .await
        }
        Err(e) => refused(&ui, csrf, format!("Nothing was revoked: {e:#}")).await,
    }
}

/// The collectives page again, saying why an action was refused.
async fn refused(ui: &Ui, csrf: CsrfToken, text: String) -> Response {
    let mut response = page(ui, move |w| {
        let mut page = pages::collectives(w, &csrf.0)?;
        page.notice = Some(Notice::bad(text));
        Ok(page)
    })
    .await;
    if response.status().is_success() {
        *response.status_mut() = StatusCode::CONFLICT;
    }
    response
}

async fn log(State(ui): State<Ui>) -> Response {
    page(&ui, pages::log).await
}

async fn earnings(State(ui): State<Ui>) -> Response {
    page(&ui, pages::earnings).await
}

async fn privacy(State(ui): State<Ui>) -> Response {
    page(&ui, pages::privacy).await
}
