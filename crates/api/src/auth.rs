//! An optional bearer token in front of the API, for a gateway reachable beyond loopback.
//!
//! The local gateway applies it when `GATEWAY_API_TOKEN` is set: it invokes functions with the
//! operator's AWS credentials, so anyone who can reach it unchecked can run them. The cloud
//! deployment does not use it; API Gateway authorizes every request with IAM before a handler
//! sees it.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::problem::ApiError;

/// Paths served without a token: a liveness probe must not need the secret.
pub const OPEN_PATHS: &[&str] = &["/health"];

/// The token every request (but those to [`OPEN_PATHS`]) must carry as `Authorization: Bearer`.
///
/// Only its SHA-256 digest is kept, and `Debug` shows neither, so it cannot reach a log.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl ApiToken {
    /// Shorter tokens are refused: this one guards functions run with AWS credentials.
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 4096;

    /// A token of [`Self::MIN_LEN`] to [`Self::MAX_LEN`] visible ASCII characters, so that any
    /// client can send it in a header exactly as configured.
    pub fn new(secret: &str) -> Result<Self, String> {
        if !secret.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the token must be visible ASCII characters only (no spaces)".to_owned());
        }
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&secret.len()) {
            return Err(format!(
                "the token must be {} to {} characters long (e.g. `openssl rand -hex 32`), not {}",
                Self::MIN_LEN,
                Self::MAX_LEN,
                secret.len()
            ));
        }
        Ok(Self { digest: Sha256::digest(secret.as_bytes()).into() })
    }

    /// Compares digests, not the strings: both are 32 bytes, so the time taken says nothing
    /// about the token's length or how much of it a guess got right.
    fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        presented.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// `router` with every request but those to [`OPEN_PATHS`] refused (401) without `token`.
///
/// It wraps the whole router, fallbacks included, so an unknown route or method is not
/// revealed to a client without the token either.
pub fn require_token(router: Router, token: ApiToken) -> Router {
    router.layer(middleware::from_fn_with_state(Arc::new(token), check_token))
}

async fn check_token(State(token): State<Arc<ApiToken>>, request: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match bearer_token(request.headers()) {
        Some(presented) if token.matches(presented) => next.run(request).await,
        Some(_) => ApiError::WrongToken.into_response(),
        None => ApiError::MissingToken.into_response(),
    }
}

/// The credentials of `Authorization: Bearer <token>` (the scheme in any case, RFC 9110 §11.1),
/// or `None` when the request carries no bearer token at all.
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let credentials = rest.trim_ascii();
    (!credentials.is_empty()).then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_other_schemes_are_no_token() {
        assert_eq!(bearer_token(&authorization("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer_token(&authorization("bearer   abc")), Some(&b"abc"[..]));
        assert_eq!(bearer_token(&authorization("BEARER abc")), Some(&b"abc"[..]));
        for no_token in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer_token(&authorization(no_token)), None, "{no_token}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn a_token_matches_itself_only() {
        let token = ApiToken::new("0123456789abcdef").unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        assert!(!token.matches(b"0123456789abcdeF"));
        assert!(!token.matches(b"0123456789abcdef0"));
        assert!(!token.matches(b""));
    }

    #[test]
    fn short_or_unsendable_tokens_are_refused() {
        assert!(ApiToken::new("too-short").is_err());
        assert!(ApiToken::new("has a space in it, long enough").is_err());
        assert!(ApiToken::new("ünïcödé-is-not-ascii").is_err());
        assert!(ApiToken::new(&"x".repeat(ApiToken::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", ApiToken::new("super-secret-token-value").unwrap());
        assert!(!shown.contains("secret"), "{shown}");
    }
}
