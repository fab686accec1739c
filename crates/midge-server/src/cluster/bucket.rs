//! The cluster's JetStream key-value buckets, opened the one way they all are, and how a write
//! a bucket refuses is tried again.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Store};

use super::ClusterError;

/// How long a write a bucket refuses is tried again. The loss of a NATS server leaves a bucket
/// without a leader until its other replicas elect one (a few seconds); meanwhile a write fails
/// ("no stream found", a timeout), and one given up then would be missing on every other node
/// for good.
pub(super) const WRITE_RETRY_FOR: Duration = Duration::from_secs(30);

/// The first wait before a write is tried again; each later one is twice the one before, up to
/// [`WRITE_RETRY_MAX_WAIT`].
pub(super) const WRITE_RETRY_FIRST_WAIT: Duration = Duration::from_millis(20);

/// The longest wait between two tries of a write.
pub(super) const WRITE_RETRY_MAX_WAIT: Duration = Duration::from_secs(1);

/// Opens the bucket `{prefix}-{name}`, creating it if need be: history 1, `replicas` copies,
/// and, with `markers`, per-message TTLs and delete markers that go after that long (NATS
/// 2.11), so the markers of purged keys do not stay for ever.
pub(super) async fn open(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    name: &str,
    replicas: usize,
    markers: Option<Duration>,
) -> Result<Store, ClusterError> {
    let bucket = format!("{prefix}-{name}");
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: bucket.clone(),
        history: 1,
        num_replicas: replicas,
        limit_markers: markers,
        ..Default::default()
    };
    js.create_key_value(config).await.map_err(|error| ClusterError::Bucket { bucket, problem: error.to_string() })
}

/// The waits between the tries of one write: doubling from [`WRITE_RETRY_FIRST_WAIT`] to
/// [`WRITE_RETRY_MAX_WAIT`], [`WRITE_RETRY_FOR`] in all (the tries' own time aside).
pub(super) fn retry_waits() -> impl Iterator<Item = Duration> {
    let mut total = Duration::ZERO;
    std::iter::successors(Some(WRITE_RETRY_FIRST_WAIT), |wait| Some((*wait * 2).min(WRITE_RETRY_MAX_WAIT))).map_while(
        move |wait| {
            total += wait;
            (total <= WRITE_RETRY_FOR).then_some(wait)
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_refused_write_is_tried_again_with_growing_waits_for_a_bounded_time() {
        let waits: Vec<Duration> = super::retry_waits().collect();
        assert_eq!(waits[..3], [Duration::from_millis(20), Duration::from_millis(40), Duration::from_millis(80)]);
        assert!(waits.iter().all(|wait| *wait <= super::WRITE_RETRY_MAX_WAIT));
        let total: Duration = waits.iter().sum();
        assert!(total <= super::WRITE_RETRY_FOR && total > super::WRITE_RETRY_FOR - super::WRITE_RETRY_MAX_WAIT);
    }
}
