//! Clients of external services shared by several components (a Kafka source and sink build
//! their librdkafka clients the same way).

pub mod kafka;
