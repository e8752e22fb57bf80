//! Who may make which request, checked from the signed `Authorization`
//! header before the handler runs and before any body is read: the
//! consumer's reads (summary, jobs, models) need the collective's key; the
//! ledger, the collective's key or a wallet subscribed or paid there; a
//! manifest upload, the collective's key, or for a new collective a creator
//! the broker's policy admits ([`Creators`]). The manifest, the algorithms
//! it allows, their audits, the broker's keys and health stay public, and
//! the signed-body routes (subscriptions, check-ins, commands, reports,
//! status lists) are checked by their own signatures.

use std::path::PathBuf;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use c2ssi_protocol::{ErrorCode, PublicKey, now_ms, request};
use c2ssi_server::ApiError;

use crate::http::AppState;

/// Who may create a collective on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creators {
    /// The consumer keys listed in this file (hex, one per line, `#`
    /// comments), read again at every creation: the default.
    AllowList(PathBuf),
    /// UNSAFE: anyone, with any number of keys.
    Anyone,
}

impl Creators {
    /// Whether `key` may create a collective.
    fn admits(&self, key: &PublicKey) -> Result<bool, ApiError> {
        match self {
            Creators::Anyone => Ok(true),
            Creators::AllowList(path) => {
                let text = match std::fs::read_to_string(path) {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(e) => {
                        return Err(ApiError::internal(format!(
                            "reading the creators file {}: {e}",
                            path.display()
                        )));
                    }
                };
                let hex = key.to_hex();
                Ok(text
                    .lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .any(|l| l == hex))
            }
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing: public, or checked by the body's own signature.
    Nothing,
    /// The collective's key.
    Consumer,
    /// The collective's key, or a wallet subscribed or paid there.
    ConsumerOrWallet,
    /// The collective's key; for a new collective, an admitted creator.
    Submission,
}

/// What `method` on `path` needs, and the collective it is about.
fn need<'a>(method: &Method, path: &'a str) -> (Need, Option<&'a str>) {
    let Some(rest) = path.strip_prefix("/collectives/") else {
        return (Need::Nothing, None);
    };
    let mut parts = rest.split('/');
    let id = parts.next().unwrap_or("");
    let tail: Vec<&str> = parts.collect();
    let need = match (method.as_str(), tail.as_slice()) {
        // HEAD runs the GET handler (axum answers it with the body dropped):
        // it needs what GET needs.
        (
            "GET" | "HEAD",
            [] | ["subscribers"] | ["jobs"] | ["jobs", _] | ["models"] | ["models", _],
        ) => Need::Consumer,
        ("GET" | "HEAD", ["ledger"] | ["ledger", "balance"] | ["ledger", "verify"]) => {
            Need::ConsumerOrWallet
        }
        ("POST", ["manifest"]) => Need::Submission,
        _ => Need::Nothing,
    };
    (need, Some(id))
}

fn unauthorized(why: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, why)
}

/// The middleware.
pub async fn check(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (need, id) = need(req.method(), req.uri().path());
    let Some(id) = id.filter(|_| need != Need::Nothing) else {
        return Ok(next.run(req).await);
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized(&format!(
                "this request needs an Authorization header ({}) signed by the collective's key{}",
                request::SCHEME,
                if need == Need::ConsumerOrWallet {
                    " or a wallet's"
                } else {
                    ""
                }
            ))
        })?;
    let key = request::verify_request(header, req.method().as_str(), &path, now_ms())
        .map_err(|e| unauthorized(&e.to_string()))?;
    let broker = state.broker.clone();
    let id = id.to_string();
    let creators = state.creators.clone();
    let allowed = c2ssi_server::blocking(move || {
        let current = match broker.registry().current(&id) {
            Ok(current) => Some(current),
            Err(crate::BrokerError::NotFound(_)) => None,
            Err(e) => return Err(ApiError::from(e)),
        };
        match (need, current) {
            (Need::Submission, None) => {
                if creators.admits(&key)? {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        ErrorCode::Forbidden,
                        format!(
                            "this broker admits new collectives from the consumer keys its \
                             operator lists; {} is not one (`collective whoami` prints it)",
                            key.to_hex()
                        ),
                    ))
                }
            }
            (_, None) => Err(ApiError::new(ErrorCode::NotFound, format!("no collective '{id}'"))),
            (_, Some(current)) if current.manifest.collective_key == key => Ok(()),
            (Need::ConsumerOrWallet, Some(_)) => {
                if broker.has_standing(&id, &key).map_err(ApiError::from)? {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        ErrorCode::Forbidden,
                        "only the collective and the wallets subscribed or paid there read its ledger",
                    ))
                }
            }
            (_, Some(_)) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the collective's key may make this request",
            )),
        }
    })
    .await;
    allowed?;
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_they_say() {
        let id = "c-000000000000000000000000";
        let get = Method::GET;
        let head = Method::HEAD;
        let post = Method::POST;
        for (method, tail, expected) in [
            (&head, "", Need::Consumer),
            (&head, "/models/abc", Need::Consumer),
            (&head, "/ledger/verify", Need::ConsumerOrWallet),
            (&get, "", Need::Consumer),
            (&get, "/jobs", Need::Consumer),
            (&get, "/subscribers", Need::Consumer),
            (&get, "/jobs/j-1", Need::Consumer),
            (&get, "/models/abc", Need::Consumer),
            (&get, "/ledger", Need::ConsumerOrWallet),
            (&get, "/ledger/verify", Need::ConsumerOrWallet),
            (&post, "/manifest", Need::Submission),
            (&get, "/manifest", Need::Nothing),
            (&get, "/algorithms/abc", Need::Nothing),
            (&post, "/checkin", Need::Nothing),
        ] {
            assert_eq!(
                need(method, &format!("/collectives/{id}{tail}")).0,
                expected,
                "{tail}"
            );
        }
        assert_eq!(need(&get, "/health").0, Need::Nothing);
    }
}
