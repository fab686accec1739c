//! What the crate's unit tests share.

use std::error::Error;

/// The error and its causes as `midge serve` prints them (anyhow's `{:#}`), to check that each
/// cause is printed once.
pub(crate) fn report(error: &dyn Error) -> String {
    crate::error_chain(error)
}
