//! The dashboard's aggregates across the cluster: each instance publishes its own buckets
//! (per minute for the last two hours, per hour for 32 days) as one field of a hash per bucket,
//! and a dashboard on any instance adds the others' fields to its own.
//!
//! `<prefix>agg2:<width>:<bucket start>` → { instance → JSON cells }, expiring with the tier
//! (2 hours for minutes, 32 days for hours). A field is written whole, so publishing again is
//! harmless; an instance publishes its whole history once at start, then its two newest
//! buckets of each tier every [`PUBLISH_EVERY`]. (`agg2`: the cells are per key, per model and
//! per status class; the earlier `agg` held one cell per combination, which this version does
//! not read.)

use std::time::Duration;

use super::{Cluster, ClusterError};

/// How often an instance publishes its newest buckets.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(2);

/// How long a bucket of `width` seconds is kept.
fn keep(width: i64) -> i64 {
    if width == 60 {
        2 * 3600
    } else {
        32 * 24 * 3600
    }
}

impl Cluster {
    /// Publishes this instance's `buckets` (start, JSON cells) of the tier `width`.
    pub fn publish_buckets(
        &self,
        width: i64,
        buckets: &[(i64, String)],
    ) -> Result<(), ClusterError> {
        if buckets.is_empty() {
            return Ok(());
        }
        self.with(|con, _| {
            let mut pipe = redis::pipe();
            for (start, cells) in buckets {
                let key = self.bucket_key(width, *start);
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg(&self.instance)
                    .arg(cells)
                    .ignore();
                pipe.cmd("EXPIREAT")
                    .arg(&key)
                    .arg(start + width + keep(width))
                    .ignore();
            }
            pipe.query::<()>(con)
        })
    }

    /// The other instances' cells of the buckets of `width` starting at `starts`: (start,
    /// JSON cells) per instance and bucket.
    pub fn fetch_buckets(
        &self,
        width: i64,
        starts: &[i64],
    ) -> Result<Vec<(i64, String)>, ClusterError> {
        // A day's buckets per round trip, so a month's view never holds one read past the
        // command timeout.
        let mut replies: Vec<Vec<(String, String)>> = Vec::with_capacity(starts.len());
        for chunk in starts.chunks(24) {
            let part: Vec<Vec<(String, String)>> = self.with(|con, _| {
                let mut pipe = redis::pipe();
                for start in chunk {
                    pipe.cmd("HGETALL").arg(self.bucket_key(width, *start));
                }
                pipe.query(con)
            })?;
            replies.extend(part);
        }
        Ok(starts
            .iter()
            .zip(replies)
            .flat_map(|(&start, fields)| {
                fields
                    .into_iter()
                    .filter(|(instance, _)| *instance != self.instance)
                    .map(move |(_, cells)| (start, cells))
            })
            .collect())
    }

    fn bucket_key(&self, width: i64, start: i64) -> String {
        format!("{}agg2:{width}:{start}", self.prefix)
    }
}
