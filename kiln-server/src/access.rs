//! Who may talk to the server.
//!
//! - With a token (`--auth-token-file`), every request but `/healthz` must carry it, as
//!   `Authorization: Bearer <token>` (agents, SDKs, Grafana Alloy) or as the password of
//!   HTTP basic auth with any user name (browsers prompt for it on the 401's
//!   `WWW-Authenticate: Basic`; Pyroscope clients configured with basic auth).
//! - On a loopback address, requests must be addressed to a loopback name (`localhost`,
//!   `127.x.y.z`, `[::1]`, any port): a web page whose DNS name was rebound to 127.0.0.1
//!   would send its own name as `Host`, so it cannot read or push data.

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;

/// A token clients must present. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl Token {
    /// The token in a file's first line; surrounding whitespace (the newline editors add)
    /// is not part of it.
    pub fn parse(text: &str) -> Option<Token> {
        let t = text.lines().next().unwrap_or("").trim();
        (!t.is_empty()).then(|| Token(t.as_bytes().to_vec()))
    }

    fn matches(&self, given: &[u8]) -> bool {
        given.len() == self.0.len() && bool::from(given.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The access rules of one server.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Required on every request but `/healthz` when set.
    pub token: Option<Token>,
    /// Refuse requests whose `Host` is not a loopback name or address.
    pub loopback_hosts_only: bool,
}

impl Access {
    /// No token; `Host` checked when `listen` is a loopback address.
    pub fn for_listen(listen: SocketAddr) -> Access {
        Access {
            token: None,
            loopback_hosts_only: listen.ip().is_loopback(),
        }
    }
}

/// Whether `host` (a `Host` header or URI authority, with or without port) names this
/// machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:4040
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || valid_port(port) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if !name.contains(':') => {
                if !valid_port(port) {
                    return false;
                }
                name
            }
            // A bare IPv6 address without brackets.
            Some(_) => host,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_port(p: &str) -> bool {
    p.strip_prefix(':').unwrap_or(p).parse::<u16>().is_ok()
}

fn credentials_match(token: &Token, value: &HeaderValue) -> bool {
    let Ok(v) = value.to_str() else {
        return false;
    };
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        token.matches(rest.as_bytes())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return false;
        };
        // A password read from a file or a Secret may keep its trailing newline; the
        // token itself never has surrounding whitespace.
        match decoded.iter().position(|&c| c == b':') {
            Some(i) => token.matches(decoded[i + 1..].trim_ascii()),
            None => false,
        }
    } else {
        false
    }
}

/// Why a request was refused: the reason counted in `/metrics` and the response to send.
pub struct Refusal {
    pub reason: &'static str,
    pub response: Response,
}

impl Access {
    /// Why `req` may not go on to its route, if it may not; the server's access
    /// middleware applies this to every route.
    pub fn refusal(&self, req: &Request) -> Option<Refusal> {
        // Liveness probes carry no credentials and reveal nothing.
        if req.uri().path() == "/healthz" {
            return None;
        }
        if self.loopback_hosts_only {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()));
            if !host.is_some_and(is_loopback_host) {
                return Some(Refusal {
                    reason: "bad_host",
                    response: ApiError::new(
                        StatusCode::MISDIRECTED_REQUEST,
                        "bad_host",
                        "this server listens on loopback and answers only requests to localhost, 127.0.0.1 or [::1]",
                    )
                    .into_response(),
                });
            }
        }
        if let Some(token) = &self.token {
            let ok = req
                .headers()
                .get(header::AUTHORIZATION)
                .is_some_and(|v| credentials_match(token, v));
            if !ok {
                let mut r = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing or wrong credentials: send Authorization: Bearer <token>, or basic auth with the token as password",
                )
                .into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"kiln\", charset=\"UTF-8\""),
                );
                return Some(Refusal {
                    reason: "unauthorized",
                    response: r,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST:4040",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:4040",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:4040",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "evil.example:4040",
            "localhost.evil.example",
            "10.0.0.1:4040",
            "0.0.0.0:4040",
            "[::2]:4040",
            "127.0.0.1:notaport",
            "[::1]x",
            "localhost:4040:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn credentials() {
        let t = Token::parse("s3cret\n").unwrap();
        let ok = |v: &str| credentials_match(&t, &HeaderValue::from_str(v).unwrap());
        assert!(ok("Bearer s3cret"));
        assert!(ok("bearer  s3cret "));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert!(ok(&format!("Basic {basic}")));
        let newline = base64::engine::general_purpose::STANDARD.encode("kiln:s3cret\n");
        assert!(ok(&format!("Basic {newline}")));
        assert!(!ok("Bearer s3cre"));
        assert!(!ok("Bearer s3cretx"));
        assert!(!ok("s3cret"));
        let wrong = base64::engine::general_purpose::STANDARD.encode("s3cret:x");
        assert!(!ok(&format!("Basic {wrong}")));
        assert!(!ok("Basic !!!"));
        assert!(Token::parse(" \n").is_none());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }
}
