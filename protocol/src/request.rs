//! Signed HTTP requests: the `Authorization` header that says who reads (or
//! uploads) and proves it, so that a server can refuse a request before it
//! reads the body. The signature covers the method, the path with its query
//! as sent (still percent-encoded), the time and a nonce, under the purpose
//! `request`; a header is good for [`WINDOW_MS`] either side of the server's
//! clock. The body is not covered: what a body says is signed in the body
//! (`Signed<T>`), and reads have none.

use crate::error::ProtocolError;
use crate::signing::{PublicKey, Purpose, Signer, new_nonce, signing_input};

/// The header's scheme.
pub const SCHEME: &str = "C2SSI-Ed25519";
/// How far a request's time may be from the server's, in milliseconds.
pub const WINDOW_MS: u64 = 5 * 60 * 1000;

fn input(method: &str, path: &str, at_ms: u64, nonce: &str) -> Vec<u8> {
    signing_input(
        Purpose::Request,
        format!("{method}\n{path}\n{at_ms}\n{nonce}").as_bytes(),
    )
}

/// The `Authorization` header value for `method` on `path` (with its query,
/// as sent) by `signer` at `now_ms`.
pub fn sign_request(signer: &dyn Signer, method: &str, path: &str, now_ms: u64) -> String {
    let nonce = new_nonce();
    let signature = signer.sign_bytes(&input(method, path, now_ms, &nonce));
    format!(
        "{SCHEME} key={},at={now_ms},nonce={nonce},sig={}",
        signer.public_key().to_hex(),
        hex::encode(signature)
    )
}

/// Checks an `Authorization` header for `method` on `path` at `now_ms`;
/// returns who signed it.
pub fn verify_request(
    header: &str,
    method: &str,
    path: &str,
    now_ms: u64,
) -> Result<PublicKey, ProtocolError> {
    let malformed =
        |why: &str| ProtocolError::Malformed(format!("the Authorization header: {why}"));
    let fields = header
        .strip_prefix(SCHEME)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| malformed(&format!("not {SCHEME}")))?;
    let (mut key, mut at, mut nonce, mut sig) = (None, None, None, None);
    for field in fields.split(',') {
        match field.split_once('=') {
            Some(("key", v)) => key = Some(v),
            Some(("at", v)) => at = Some(v),
            Some(("nonce", v)) => nonce = Some(v),
            Some(("sig", v)) => sig = Some(v),
            _ => return Err(malformed("a field is not key=, at=, nonce= or sig=")),
        }
    }
    let (Some(key), Some(at), Some(nonce), Some(sig)) = (key, at, nonce, sig) else {
        return Err(malformed("key, at, nonce and sig are all needed"));
    };
    let key = PublicKey::from_hex(key)?;
    let at: u64 = at.parse().map_err(|_| malformed("'at' is not a time"))?;
    if at.abs_diff(now_ms) > WINDOW_MS {
        return Err(ProtocolError::Expired {
            purpose: Purpose::Request,
            expired_at_ms: at.saturating_add(WINDOW_MS),
        });
    }
    if nonce.is_empty() || nonce.len() > 64 {
        return Err(malformed("the nonce is empty or too long"));
    }
    let signature = hex::decode(sig).map_err(|_| ProtocolError::BadSignature {
        purpose: Purpose::Request,
    })?;
    if !key.verify(&input(method, path, at, nonce), &signature) {
        return Err(ProtocolError::BadSignature {
            purpose: Purpose::Request,
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SigningKey;

    #[test]
    fn a_signed_request_verifies_for_its_method_path_and_time_only() {
        let key = SigningKey::generate().expect("a key");
        let now = 1_800_000_000_000;
        let header = sign_request(&key, "GET", "/collectives/c-1/jobs?x=1", now);
        assert_eq!(
            verify_request(&header, "GET", "/collectives/c-1/jobs?x=1", now + 1_000)
                .expect("verifies"),
            key.public_key()
        );
        assert!(verify_request(&header, "POST", "/collectives/c-1/jobs?x=1", now).is_err());
        assert!(verify_request(&header, "GET", "/collectives/c-2/jobs?x=1", now).is_err());
        assert!(matches!(
            verify_request(
                &header,
                "GET",
                "/collectives/c-1/jobs?x=1",
                now + WINDOW_MS + 1
            ),
            Err(ProtocolError::Expired { .. })
        ));
        let forged = header.replace(&key.public_key().to_hex(), &"ab".repeat(32));
        assert!(verify_request(&forged, "GET", "/collectives/c-1/jobs?x=1", now).is_err());
        for garbage in [
            "",
            "Bearer x",
            "C2SSI-Ed25519 ",
            "C2SSI-Ed25519 key=zz,at=1,nonce=a,sig=00",
        ] {
            assert!(
                verify_request(garbage, "GET", "/", now).is_err(),
                "{garbage}"
            );
        }
    }
}
