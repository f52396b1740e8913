//! What kircd runs on: its three backends (Kafka, PostgreSQL, Valkey) with
//! their settings, checks and clients, the supervisor loop they run under,
//! the traffic budget, systemd's notification protocol, logging and the
//! timing marks the benchmarks read.

pub mod hops;
pub mod kafka;
pub mod logging;
pub mod postgres;
pub mod sd_notify;
pub mod supervise;
pub mod traffic;
pub mod valkey;
