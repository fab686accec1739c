//! What the crate's unit tests share.

use std::error::Error;

/// The error and its causes as `midge serve` prints them (anyhow's `{:#}`), to check that each
/// cause is printed once.
pub(crate) fn report(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(&format!(": {error}"));
        cause = error.source();
    }
    text
}
