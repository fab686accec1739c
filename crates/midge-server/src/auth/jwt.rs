//! JSON Web Tokens in the password field (`[listener.jwt]`), as the core's [`Authenticator`].
//!
//! A client connects with a token as its password (its user name, if any, must be the one the
//! token names). The token is checked against a shared secret (HS256) or the public keys of a
//! JWKS file (RS256, ES256; the header's `kid` picks the key, or every key is tried without
//! one); `exp` is required and `nbf` checked. A claim (`sub` unless configured) names the user,
//! and optional claims list the topic filters the client may publish and subscribe to, which
//! limit it on top of the listener's ACL.
//!
//! The algorithm is never taken from the token alone: a secret only verifies HS256, and a JWKS
//! key only the RS256 or ES256 its own type allows, so a token cannot choose a weaker check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use midge_broker::ports::auth::{Authenticator, Credentials, Decision, Grants, Identity, Verdict};
use midge_codec::ReasonCode;
use serde::Deserialize;

/// `[listener.jwt]`: how tokens are checked.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The HS256 shared secret. Keep the config file readable by Midge alone.
    pub secret: Option<String>,
    /// A JWKS file of RS256 / ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// The claim that names the user. Default `sub`.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim listing the filters the client may publish to; absent from a token: no limit
    /// from the token.
    #[serde(default = "default_publish_claim")]
    pub publish_claim: String,
    /// The claim listing the filters the client may subscribe to and receive from.
    #[serde(default = "default_subscribe_claim")]
    pub subscribe_claim: String,
    /// Seconds of clock difference allowed when checking `exp` and `nbf`. Default 0.
    #[serde(default)]
    pub leeway_seconds: u64,
}

fn default_username_claim() -> String {
    "sub".to_owned()
}

fn default_publish_claim() -> String {
    "publish".to_owned()
}

fn default_subscribe_claim() -> String {
    "subscribe".to_owned()
}

/// Why a JWT setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Neither a secret nor a JWKS file.
    #[error("[listener.jwt] needs `secret` or `jwks_file`")]
    NoKeys,
    /// The JWKS file cannot be read or parsed.
    #[error("jwks_file {path}: {problem}")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Checks tokens as [`JwtConfig`] says.
pub struct JwtAuthenticator {
    config: JwtConfig,
    secret: Option<DecodingKey>,
    /// `(kid, algorithm, key)` for each usable JWKS key.
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("secret", &self.secret.is_some())
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// Loads the keys `config` names.
    pub fn load(config: &JwtConfig) -> Result<Self, JwtError> {
        let secret = config.secret.as_ref().map(|s| DecodingKey::from_secret(s.as_bytes()));
        let keys = match &config.jwks_file {
            Some(path) => load_jwks(path)?,
            None => Vec::new(),
        };
        if secret.is_none() && keys.is_empty() {
            return Err(JwtError::NoKeys);
        }
        Ok(Self { config: config.clone(), secret, keys })
    }

    /// The identity a valid token stands for, or why it is refused.
    fn check(&self, token: &str, username: Option<&str>) -> Result<Identity, String> {
        let header = decode_header(token).map_err(|e| format!("not a token: {e}"))?;
        let (key, algorithm) = match header.alg {
            Algorithm::HS256 => (self.secret.as_ref().ok_or("HS256 tokens are not accepted here")?, Algorithm::HS256),
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                let key = self
                    .keys
                    .iter()
                    .find(|(kid, key_alg, _)| *key_alg == alg && (header.kid.is_none() || *kid == header.kid))
                    .map(|(_, _, key)| key)
                    .ok_or("no key in jwks_file for this token")?;
                (key, alg)
            }
            other => return Err(format!("algorithm {other:?} is not accepted")),
        };
        let mut validation = Validation::new(algorithm);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway_seconds;
        validation.validate_aud = false;
        let claims = decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation)
            .map_err(|e| format!("token refused: {e}"))?
            .claims;
        let name = claims
            .get(&self.config.username_claim)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("the token has no {:?} claim", self.config.username_claim))?;
        if username.is_some_and(|given| given != name) {
            return Err("the user name is not the one the token names".to_owned());
        }
        let filters = |claim: &str| -> Option<Vec<String>> {
            let list = claims.get(claim)?.as_array()?;
            Some(list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        };
        let (publish, subscribe) = (filters(&self.config.publish_claim), filters(&self.config.subscribe_claim));
        let grants = (publish.is_some() || subscribe.is_some()).then(|| {
            // A token that lists one direction and not the other grants nothing in the other.
            Arc::new(Grants { publish: publish.unwrap_or_default(), subscribe: subscribe.unwrap_or_default() })
        });
        Ok(Identity { username: Some(Arc::from(name)), grants })
    }
}

impl Authenticator for JwtAuthenticator {
    /// Signatures are cheap next to a password hash (microseconds): checked at once.
    fn authenticate(&self, credentials: &Credentials<'_>) -> Decision {
        let verdict = match credentials.password.map(std::str::from_utf8) {
            None => Verdict::Deny { reason: ReasonCode::NOT_AUTHORIZED, detail: "no token in the password".into() },
            Some(Err(_)) => {
                Verdict::Deny { reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD, detail: "not a token".into() }
            }
            Some(Ok(token)) => match self.check(token, credentials.username) {
                Ok(identity) => Verdict::Allow(identity),
                Err(detail) => Verdict::Deny { reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD, detail: detail.into() },
            },
        };
        Decision::Now(verdict)
    }
}

fn load_jwks(path: &Path) -> Result<Vec<(Option<String>, Algorithm, DecodingKey)>, JwtError> {
    let fail = |problem: String| JwtError::Jwks { path: path.to_owned(), problem };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| fail(format!("not a JWKS: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
            _ => continue, // symmetric keys belong in `secret`, not in a public key set
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| fail(format!("key {:?}: {e}", jwk.common.key_id)))?;
        keys.push((jwk.common.key_id.clone(), algorithm, key));
    }
    if keys.is_empty() {
        return Err(fail("holds no RSA or EC key".to_owned()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use midge_broker::ports::access::Action;

    use super::*;

    fn config() -> JwtConfig {
        JwtConfig {
            secret: Some("s3cret".into()),
            jwks_file: None,
            username_claim: default_username_claim(),
            publish_claim: default_publish_claim(),
            subscribe_claim: default_subscribe_claim(),
            leeway_seconds: 0,
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn verdict(auth: &JwtAuthenticator, username: Option<&str>, token: &str) -> Verdict {
        let credentials = Credentials {
            client_id: "c",
            username,
            password: Some(token.as_bytes()),
            peer: "127.0.0.1:1",
            certificate_subject: None,
        };
        match auth.authenticate(&credentials) {
            Decision::Now(verdict) => verdict,
            Decision::Later(_) => panic!("tokens are checked at once"),
        }
    }

    #[test]
    fn a_valid_hs256_token_names_the_user_and_its_grants() {
        let auth = JwtAuthenticator::load(&config()).unwrap();
        let token = token(serde_json::json!({"sub": "dev-7", "exp": now() + 60, "publish": ["dev/7/#"]}), "s3cret");
        let Verdict::Allow(identity) = verdict(&auth, None, &token) else { panic!("refused") };
        assert_eq!(identity.username.as_deref(), Some("dev-7"));
        let grants = identity.grants.expect("grants");
        assert!(grants.allows(Action::Publish, "dev/7/temp"));
        assert!(!grants.allows(Action::Publish, "dev/8/temp"));
        assert!(!grants.allows(Action::Subscribe, "dev/7/#"), "no subscribe claim: nothing to subscribe to");
        let Verdict::Allow(_) = verdict(&auth, Some("dev-7"), &token) else { panic!("same user name refused") };
    }

    #[test]
    fn expired_early_tampered_and_foreign_tokens_are_refused() {
        let auth = JwtAuthenticator::load(&config()).unwrap();
        let refused =
            |token: &str, username: Option<&str>| matches!(verdict(&auth, username, token), Verdict::Deny { .. });
        assert!(refused(&token(serde_json::json!({"sub": "a", "exp": now() - 120}), "s3cret"), None), "expired");
        assert!(refused(
            &token(serde_json::json!({"sub": "a", "exp": now() + 60, "nbf": now() + 600}), "s3cret"),
            None
        ));
        assert!(refused(&token(serde_json::json!({"sub": "a"}), "s3cret"), None), "no exp");
        assert!(refused(&token(serde_json::json!({"sub": "a", "exp": now() + 60}), "other"), None), "wrong secret");
        let good = token(serde_json::json!({"sub": "a", "exp": now() + 60}), "s3cret");
        let mut tampered = good.clone();
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(refused(&tampered, None), "tampered");
        assert!(refused(&good, Some("b")), "another user's token");
        assert!(refused("not-a-token", None));
    }

    #[test]
    fn a_jwks_key_never_verifies_hs256() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, r#"{"keys":[{"kty":"oct","k":"czNjcmV0"}]}"#).unwrap();
        let config = JwtConfig { secret: None, jwks_file: Some(jwks), ..config() };
        assert!(
            matches!(JwtAuthenticator::load(&config), Err(JwtError::Jwks { .. })),
            "a symmetric key is no public key"
        );
    }
}
