//! Who a request says it is: its `Authorization` header, read without deciding anything (the
//! decision is `client`'s, with the listener's tokens and authenticator).

use axum::http::{header, HeaderMap};
use base64::Engine as _;

use super::error::ApiError;

/// The credentials a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// `Authorization: Bearer TOKEN`: one of the listener's `http_tokens`.
    Bearer(String),
    /// `Authorization: Basic ...`: a user name and password, checked as an MQTT client's.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// No `Authorization` header: an anonymous client, as `allow_anonymous` decides.
    Anonymous,
}

impl Credentials {
    /// The credentials in `headers`; a header in another scheme, or malformed, is a 401.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(Self::Anonymous) };
        let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(Self::Bearer(rest.to_owned()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ApiError::unauthorized("Basic credentials are not base64 of user:password"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| ApiError::unauthorized("Basic credentials are not base64 of user:password"))?;
            return Ok(Self::Basic { user: user.to_owned(), password: password.to_owned() });
        }
        Err(ApiError::unauthorized("the Authorization header is neither Bearer nor Basic"))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn read(value: &str) -> Result<Credentials, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        Credentials::from_headers(&headers)
    }

    #[test]
    fn schemes_are_read_and_others_refused() {
        assert_eq!(Credentials::from_headers(&HeaderMap::new()).unwrap(), Credentials::Anonymous);
        assert_eq!(read("Bearer abc").unwrap(), Credentials::Bearer("abc".into()));
        assert_eq!(read("bearer  abc ").unwrap(), Credentials::Bearer("abc".into()));
        // "alice:pa:ss" in base64: the password may hold colons.
        assert_eq!(
            read("Basic YWxpY2U6cGE6c3M=").unwrap(),
            Credentials::Basic { user: "alice".into(), password: "pa:ss".into() }
        );
        for bad in ["Digest x", "Bearer", "Basic !!!", "Basic YWxpY2U="] {
            assert_eq!(read(bad).unwrap_err().status(), axum::http::StatusCode::UNAUTHORIZED, "{bad}");
        }
    }
}
