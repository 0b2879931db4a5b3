//! Clients of external services shared by several components: the Kafka source, sink and
//! dead letter build their librdkafka clients the same way; the GCS sink and the BigQuery
//! loader share credentials and the objects handed from one to the other.

#[cfg(feature = "gcp")]
pub mod gcp;
pub mod kafka;
