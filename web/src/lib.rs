//! The pages people look at, shared by every service that serves some: one
//! layout ([`Page`]) and one stylesheet, embedded in the binary (no CDN:
//! many deployments have no internet), and [`local`], the guard of a
//! dashboard that runs on the owner's own machine.
//!
//! Pages are rendered on the server with askama (escaped by default) and
//! read fully without JavaScript; scripts only make live parts update.
#![deny(missing_docs)]

pub mod local;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// The stylesheet every page links.
pub const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The icon every page names (so that no browser asks for a missing
/// `/favicon.ico`).
pub const ICON_SVG: &str = include_str!("../assets/icon.svg");

/// One link of a page's navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    /// Where it goes.
    pub href: &'static str,
    /// What it says.
    pub label: &'static str,
}

/// A message at the top of a page, after an action.
#[derive(Debug, Clone)]
pub struct Notice {
    /// `ok` or `bad`: its colour and border.
    pub kind: &'static str,
    /// What it says.
    pub text: String,
}

impl Notice {
    /// Something done.
    pub fn ok(text: impl Into<String>) -> Notice {
        Notice {
            kind: "ok",
            text: text.into(),
        }
    }

    /// Something refused or failed.
    pub fn bad(text: impl Into<String>) -> Notice {
        Notice {
            kind: "bad",
            text: text.into(),
        }
    }
}

/// A whole page: the layout around a body that a page's own template
/// rendered (and escaped).
#[derive(Debug, Clone, Template)]
#[template(path = "layout.html")]
pub struct Page {
    /// The service, in the header and the title.
    pub app: &'static str,
    /// The page's heading.
    pub title: String,
    /// The navigation.
    pub nav: &'static [NavItem],
    /// The `href` of the current page in `nav`.
    pub current: &'static str,
    /// A message after an action.
    pub notice: Option<Notice>,
    /// The body, already rendered and escaped.
    pub body: String,
    /// Scripts to load (each served from this origin).
    pub scripts: &'static [&'static str],
    /// The footer's line.
    pub footer: String,
}

impl Page {
    /// A page with no notice and no scripts.
    pub fn new(
        app: &'static str,
        nav: &'static [NavItem],
        current: &'static str,
        title: impl Into<String>,
        body: String,
    ) -> Page {
        Page {
            app,
            title: title.into(),
            nav,
            current,
            notice: None,
            body,
            scripts: &[],
            footer: format!("compute-to-ssi {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl Page {
    /// Whether the page draws charts (it loads uPlot): its stylesheet is
    /// linked too.
    fn charts(&self) -> bool {
        self.scripts.iter().any(|s| s.contains("uPlot"))
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!("rendering a page: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered",
                )
                    .into_response()
            }
        }
    }
}

/// A page that says what went wrong, with `status`.
pub fn failure(
    app: &'static str,
    nav: &'static [NavItem],
    status: StatusCode,
    text: String,
) -> Response {
    let mut page = Page::new(app, nav, "", "Something went wrong", String::new());
    page.notice = Some(Notice::bad(text));
    let mut response = page.into_response();
    *response.status_mut() = status;
    response
}

/// Builds a page off the async threads (a dashboard's reads decrypt files
/// or wait for a server); an error becomes a [`failure`] page with the
/// status `status_of` gives it.
pub async fn render(
    app: &'static str,
    nav: &'static [NavItem],
    build: impl FnOnce() -> anyhow::Result<Page> + Send + 'static,
    status_of: fn(&anyhow::Error) -> StatusCode,
) -> Response {
    match tokio::task::spawn_blocking(build).await {
        Ok(Ok(page)) => page.into_response(),
        Ok(Err(e)) => failure(app, nav, status_of(&e), format!("{e:#}")),
        Err(e) => failure(
            app,
            nav,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page's work stopped: {e}"),
        ),
    }
}

/// Renders a page's body template; a failure (a bug, never the data's
/// fault: askama checks templates when compiled) becomes a line that says so.
pub fn body(template: &impl Template) -> String {
    template.render().unwrap_or_else(|e| {
        tracing::error!("rendering a page body: {e}");
        "<p class=\"bad\">This part of the page could not be rendered.</p>".to_string()
    })
}

/// What every page says about how a browser may use it: scripts, styles
/// and requests from its own origin only, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to a response: the Content-Security-Policy,
/// no framing, no sniffing, referrers to this origin only, no caching.
pub fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// [`secure`] as a middleware (`axum::middleware::map_response`).
pub async fn secure_layer(response: Response) -> Response {
    secure(response)
}

/// A file embedded in the binary, with its content type.
fn asset(content_type: &'static str, bytes: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        bytes,
    )
        .into_response()
}

/// The routes of the embedded assets, under `/assets/`.
pub fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
        .route(
            "/assets/live.js",
            get(|| async { asset("text/javascript; charset=utf-8", LIVE_JS) }),
        )
        .route(
            "/assets/chart.js",
            get(|| async { asset("text/javascript; charset=utf-8", CHART_JS) }),
        )
        .route(
            "/assets/uPlot.iife.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }),
        )
        .route(
            "/assets/uPlot.min.css",
            get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }),
        )
}

/// The script that refreshes a page's live parts (elements with
/// `data-live`) from the same URL, without a reload.
pub const LIVE_JS: &str = include_str!("../assets/live.js");

/// The script that draws a page's charts from the tables they illustrate.
pub const CHART_JS: &str = include_str!("../assets/chart.js");

/// uPlot 1.6.32 (MIT), the charting library: one file, embedded.
pub const UPLOT_JS: &str = include_str!("../assets/vendor/uplot/uPlot.iife.min.js");

/// uPlot's stylesheet.
pub const UPLOT_CSS: &str = include_str!("../assets/vendor/uplot/uPlot.min.css");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_escapes_its_title_and_keeps_its_body() {
        static NAV: &[NavItem] = &[NavItem {
            href: "/",
            label: "Overview",
        }];
        let page = Page::new(
            "wallet",
            NAV,
            "/",
            "<script>x</script>",
            "<p>body</p>".into(),
        );
        let html = page.render().expect("renders");
        assert!(
            html.contains("&#60;script&#62;x&#60;/script&#62;") || html.contains("&lt;script&gt;")
        );
        assert!(!html.contains("<script>x</script>"));
        assert!(html.contains("<p>body</p>"));
        assert!(html.contains("aria-current=\"page\""));
        assert!(html.contains("lang=\"en\""));
    }
}
