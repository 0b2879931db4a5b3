//! Reading what a Kafka topic holds, for checks.
#![allow(dead_code)]

use rdkafka::message::{Headers, Message};

/// A message's headers, values as (lossy) UTF-8; none when it has no headers.
pub fn headers<C>(m: &impl Message) -> C
where
    C: FromIterator<(String, String)> + Default,
{
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_owned(), v.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}
