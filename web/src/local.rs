//! The guard of a dashboard that runs on its user's own machine (`wallet ui`,
//! `collective ui`), against the other programs and web pages on it:
//!
//! - it listens on a loopback address of its own, drawn at random in
//!   127.0.0.0/8 where the system routes all of it (Linux; elsewhere
//!   127.0.0.1), and answers only requests whose `Host` is that address and
//!   port, so a web page that rebinds its DNS name to 127.0.0.1 gets
//!   nothing; browsers send a host's cookies to every port of it, and an
//!   address of its own keeps the session cookie from servers of other local
//!   users on 127.0.0.1 (the cookie's name carries the port, so two
//!   dashboards never overwrite each other's);
//! - the first request must carry the one-time token printed in the terminal
//!   (`/login?token=...`); the token is spent at once and traded for a session
//!   cookie (`HttpOnly`, `SameSite=Strict`), so the URL that holds it is
//!   worthless once used, wherever it was logged;
//! - every request that changes something must come from this origin and
//!   carry the session's CSRF token as the form field `csrf`;
//! - every response forbids framing, inline scripts, other origins and
//!   referrers to other origins (`Content-Security-Policy`, `Referrer-Policy:
//!   same-origin`; with `no-referrer` a browser sends a form's `Origin` as
//!   `null`, and the origin check could not tell it from another site).
//!
//! Who it holds against: other local users and processes without the token,
//! and any web site the user visits. Not against malware running as the user,
//! which can read the wallet's files anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use ring::rand::{SecureRandom, SystemRandom};

use crate::{NavItem, Page, secure};

/// The session cookie's name, before the port.
pub const SESSION_COOKIE: &str = "c2ssi_session";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Largest form body read.
pub const MAX_FORM_BYTES: usize = 64 << 10;

/// The CSRF token of the signed-in session, put in each request's extensions
/// for the forms a page renders.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

#[derive(Debug)]
struct Session {
    id: [u8; 32],
    csrf: String,
}

/// The guard's state: the unspent login token and the one session.
#[derive(Debug)]
pub struct LocalAccess {
    app: &'static str,
    address: std::net::SocketAddr,
    token: Mutex<Option<[u8; 32]>>,
    session: Mutex<Option<Session>>,
}

/// Fresh random bytes, as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The system generator fails only where the OS has none; nothing can be
    // protected without it.
    SystemRandom::new()
        .fill(&mut bytes)
        .unwrap_or_else(|_| panic!("the operating system gave no random bytes"));
    hex::encode(bytes)
}

/// Secrets are compared by their SHA-256 digests: the time a comparison
/// takes then says nothing about the secret.
fn digest(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl LocalAccess {
    /// The guard of `app` listening on `address` (loopback), and the
    /// one-time login token to print.
    pub fn new(app: &'static str, address: std::net::SocketAddr) -> (Arc<LocalAccess>, String) {
        let token = random_hex();
        let access = LocalAccess {
            app,
            address,
            token: Mutex::new(Some(digest(&token))),
            session: Mutex::new(None),
        };
        (Arc::new(access), token)
    }

    /// The URL to open: the token in it works once.
    pub fn login_url(&self, token: &str) -> String {
        format!("http://{}/login?token={token}", self.address)
    }

    /// The session cookie's name: one per port.
    fn cookie_name(&self) -> String {
        format!("{SESSION_COOKIE}_{}", self.address.port())
    }

    /// The `Host` values this dashboard answers: its address, and
    /// `localhost` with its port when it listens on 127.0.0.1.
    fn hosts(&self) -> Vec<String> {
        let mut hosts = vec![self.address.to_string()];
        if self.address.ip() == std::net::IpAddr::from([127, 0, 0, 1]) {
            hosts.push(format!("localhost:{}", self.address.port()));
        }
        hosts
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        self.hosts().iter().any(|h| h == host)
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        match headers.get(header::ORIGIN).map(|o| o.to_str()) {
            None => true,
            Some(Ok(origin)) => self
                .hosts()
                .iter()
                .any(|h| origin.strip_prefix("http://") == Some(h.as_str())),
            Some(Err(_)) => false,
        }
    }

    /// The session's CSRF token, when the request's cookie is the session's.
    fn session_of(&self, headers: &HeaderMap) -> Option<String> {
        let presented = cookie(headers, &self.cookie_name())?;
        let session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let session = session.as_ref()?;
        (digest(&presented) == session.id).then(|| session.csrf.clone())
    }

    /// Spends the login token; on success, the new session's cookie value.
    fn login(&self, token: &str) -> Option<String> {
        let mut unspent = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if unspent.as_ref() != Some(&digest(token)) {
            return None;
        }
        *unspent = None;
        let id = random_hex();
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(Session {
            id: digest(&id),
            csrf: random_hex(),
        });
        Some(id)
    }

    fn refusal(&self, status: StatusCode, title: &str, text: &str) -> Response {
        static NO_NAV: &[NavItem] = &[];
        let body = format!("<p>{}</p>", escape(text));
        let mut page = Page::new(self.app, NO_NAV, "", title, body).into_response();
        *page.status_mut() = status;
        page
    }
}

/// Serves the dashboard `app`: listens on a loopback address of its own at
/// `port` (0: any free one), makes its guard, hands `ready` the one-time
/// URL, and serves what `router` builds behind the guard until ctrl-c.
pub fn serve(
    app: &'static str,
    port: u16,
    router: impl FnOnce(Arc<LocalAccess>) -> Router,
    ready: impl FnOnce(&str),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = bind(port).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("listening on a loopback address at port {port}: {e}"),
            )
        })?;
        let (access, token) = LocalAccess::new(app, listener.local_addr()?);
        ready(&access.login_url(&token));
        let routes = router(access.clone())
            .merge(crate::assets())
            .merge(routes(access.clone()))
            .layer(axum::middleware::from_fn_with_state(access, guard));
        c2ssi_server::serve(listener, routes, None).await
    })
}

/// Listens on a loopback address of the dashboard's own, at `port` (0: any
/// free one): 127.a.b.c drawn at random, or 127.0.0.1 where the system does
/// not route the rest of 127.0.0.0/8.
pub async fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let mut bytes = [0u8; 3];
    if SystemRandom::new().fill(&mut bytes).is_ok() {
        let ip = std::net::Ipv4Addr::new(127, 1 + bytes[0] % 254, bytes[1], 1 + bytes[2] % 254);
        if let Ok(listener) = tokio::net::TcpListener::bind((ip, port)).await {
            return Ok(listener);
        }
    }
    tokio::net::TcpListener::bind(("127.0.0.1", port)).await
}

/// Escapes text for HTML (the refusals are built without a template).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The login route: `/login?token=...`.
pub fn routes(access: Arc<LocalAccess>) -> Router {
    Router::new().route("/login", get(login)).with_state(access)
}

async fn login(
    State(access): State<Arc<LocalAccess>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let token = query.get("token").map(String::as_str).unwrap_or("");
    match access.login(token) {
        Some(session) => {
            let cookie = format!(
                "{}={session}; HttpOnly; SameSite=Strict; Path=/",
                access.cookie_name()
            );
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None => access.refusal(
            StatusCode::FORBIDDEN,
            "This link does not sign you in",
            "Its token is wrong or was used already: each link works once. Start the \
             dashboard again for a new one.",
        ),
    }
}

/// The middleware: host, session, origin and CSRF checks, and the security
/// headers on every response.
pub async fn guard(State(access): State<Arc<LocalAccess>>, req: Request, next: Next) -> Response {
    if !access.host_allowed(req.headers()) {
        return secure(access.refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "Wrong address",
            "This dashboard answers only at its own loopback address (127.0.0.1 or localhost, \
             with its port).",
        ));
    }
    let path = req.uri().path();
    if path == "/login" || path.starts_with("/assets/") {
        return secure(next.run(req).await);
    }
    // A browser says where a request comes from: only this origin, or the
    // user (a typed address, a bookmark), may reach the pages. A page on
    // another port of this address is "same-site", and is refused too.
    if let Some(site) = req.headers().get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return secure(access.refusal(
            StatusCode::FORBIDDEN,
            "Refused",
            "The request came from another site or another program's page; open the \
             dashboard's own address.",
        ));
    }
    let Some(csrf) = access.session_of(req.headers()) else {
        return secure(access.refusal(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "Open the link the dashboard printed in its terminal; it signs this browser in.",
        ));
    };
    let req = if req.method() == Method::GET || req.method() == Method::HEAD {
        req
    } else {
        match check_form(&access, req, &csrf).await {
            Ok(req) => req,
            Err(refusal) => return secure(refusal),
        }
    };
    let mut req = req;
    req.extensions_mut().insert(CsrfToken(csrf));
    secure(next.run(req).await)
}

/// Checks a request that changes something: from this origin, a form body
/// of bounded size, with the session's CSRF token. The body is put back.
async fn check_form(access: &LocalAccess, req: Request, csrf: &str) -> Result<Request, Response> {
    let forbidden = |text: &str| access.refusal(StatusCode::FORBIDDEN, "Refused", text);
    if !access.origin_allowed(req.headers()) {
        return Err(forbidden("The request came from another site."));
    }
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(access.refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Refused",
                "The form is too large.",
            ));
        }
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let presented = fields
        .iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if digest(presented) != digest(csrf) {
        return Err(forbidden(
            "The form's CSRF token is missing or wrong. Reload the page and try again.",
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    fn app() -> (Router, Arc<LocalAccess>, String) {
        let (access, token) = LocalAccess::new("test", ([127, 0, 0, 1], 4321).into());
        let app = Router::new()
            .route(
                "/",
                get(|axum::Extension(c): axum::Extension<CsrfToken>| async move { c.0 }),
            )
            .route("/act", post(|body: String| async move { body }))
            .merge(routes(access.clone()))
            .layer(axum::middleware::from_fn_with_state(access.clone(), guard));
        (app, access, token)
    }

    fn get_req(uri: &str, host: &str, cookie: Option<&str>) -> Request {
        let mut b = Request::builder().uri(uri).header(header::HOST, host);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::empty()).expect("a request")
    }

    async fn text(r: Response) -> String {
        let bytes = r.into_body().collect().await.expect("a body").to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Signs in with the token; returns the cookie and the CSRF token.
    async fn sign_in(app: &Router, token: &str) -> (String, String) {
        let r = app
            .clone()
            .oneshot(get_req(
                &format!("/login?token={token}"),
                "127.0.0.1:4321",
                None,
            ))
            .await
            .expect("answers");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().expect("a pair").to_string();
        let r = app
            .clone()
            .oneshot(get_req("/", "127.0.0.1:4321", Some(&cookie)))
            .await
            .expect("answers");
        assert_eq!(r.status(), StatusCode::OK);
        (cookie, text(r).await)
    }

    #[tokio::test]
    async fn the_token_works_once_and_nothing_answers_without_the_session() {
        let (app, _, token) = app();
        let r = app
            .clone()
            .oneshot(get_req("/", "127.0.0.1:4321", None))
            .await
            .expect("answers");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .is_ok()
        );
        let wrong = app
            .clone()
            .oneshot(get_req("/login?token=00", "127.0.0.1:4321", None))
            .await
            .expect("answers");
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        let (cookie, _) = sign_in(&app, &token).await;
        let again = app
            .clone()
            .oneshot(get_req(
                &format!("/login?token={token}"),
                "127.0.0.1:4321",
                None,
            ))
            .await
            .expect("answers");
        assert_eq!(again.status(), StatusCode::FORBIDDEN, "a spent token");
        let forged = app
            .clone()
            .oneshot(get_req(
                "/",
                "127.0.0.1:4321",
                Some(&format!("{SESSION_COOKIE}_4321=00")),
            ))
            .await
            .expect("answers");
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
        let ok = app
            .clone()
            .oneshot(get_req("/", "localhost:4321", Some(&cookie)))
            .await
            .expect("answers");
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_cookie_is_named_by_port_so_another_dashboards_is_not_taken() {
        let (app, _, token) = app();
        let (cookie, _) = sign_in(&app, &token).await;
        assert!(
            cookie.starts_with(&format!("{SESSION_COOKIE}_4321=")),
            "{cookie}"
        );
        // The same value under another dashboard's name is no session here.
        let value = cookie.split_once('=').map(|(_, v)| v).unwrap_or("");
        let other = format!("{SESSION_COOKIE}_4322={value}");
        let r = app
            .clone()
            .oneshot(get_req("/", "127.0.0.1:4321", Some(&other)))
            .await
            .expect("answers");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_request_another_page_makes_is_refused_even_with_the_session() {
        let (app, _, token) = app();
        let (cookie, _) = sign_in(&app, &token).await;
        for (site, expected) in [
            ("same-origin", StatusCode::OK),
            ("none", StatusCode::OK),
            ("same-site", StatusCode::FORBIDDEN),
            ("cross-site", StatusCode::FORBIDDEN),
        ] {
            let mut request = get_req("/", "127.0.0.1:4321", Some(&cookie));
            request
                .headers_mut()
                .insert("sec-fetch-site", HeaderValue::from_static(site));
            let r = app.clone().oneshot(request).await.expect("answers");
            assert_eq!(r.status(), expected, "{site}");
        }
    }

    #[tokio::test]
    async fn another_host_name_gets_nothing_even_with_the_session() {
        let (app, _, token) = app();
        let (cookie, _) = sign_in(&app, &token).await;
        for host in [
            "evil.example:4321",
            "127.0.0.1:4322",
            "127.0.0.1",
            "127.0.0.1:43210",
        ] {
            let r = app
                .clone()
                .oneshot(get_req("/", host, Some(&cookie)))
                .await
                .expect("answers");
            assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
        }
        let r = app
            .clone()
            .oneshot(get_req(
                &format!("/login?token={token}"),
                "rebound.example:4321",
                None,
            ))
            .await
            .expect("answers");
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    }

    #[tokio::test]
    async fn a_form_needs_the_csrf_token_and_this_origin() {
        let (app, _, token) = app();
        let (cookie, csrf) = sign_in(&app, &token).await;
        let post = |body: String, origin: Option<&str>| {
            let mut b = Request::builder()
                .method(Method::POST)
                .uri("/act")
                .header(header::HOST, "127.0.0.1:4321")
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            if let Some(o) = origin {
                b = b.header(header::ORIGIN, o);
            }
            b.body(Body::from(body)).expect("a request")
        };
        let ok = app
            .clone()
            .oneshot(post(
                format!("csrf={csrf}&x=1"),
                Some("http://127.0.0.1:4321"),
            ))
            .await
            .expect("answers");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            text(ok).await,
            format!("csrf={csrf}&x=1"),
            "the body is put back"
        );
        for (body, origin) in [
            ("x=1".to_string(), None),
            ("csrf=00&x=1".to_string(), None),
            (format!("csrf={csrf}"), Some("http://evil.example")),
            (format!("csrf={csrf}"), Some("null")),
        ] {
            let r = app
                .clone()
                .oneshot(post(body.clone(), origin))
                .await
                .expect("answers");
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{body} {origin:?}");
        }
        let big = app
            .clone()
            .oneshot(post(
                format!("csrf={csrf}&x={}", "a".repeat(MAX_FORM_BYTES)),
                None,
            ))
            .await
            .expect("answers");
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
