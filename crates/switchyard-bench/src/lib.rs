//! Switchyard's benchmark tools: an open-loop HTTP load generator and the
//! side-by-side suite that `bench/run.sh` drives (the fake upstream hit
//! directly, the floor proxy, Switchyard by model id and by
//! `router:<name>`, LiteLLM's proxy), printing one table. See
//! `BENCHMARKS.md` for what it measures.
//!
//! Not part of the request path; its tests (the generator, the suite and the
//! floor proxy against small local servers) run with the workspace's.
//!
//! # Layout
//!
//! - [`load`]: one bounded open-loop run against one URL (no coordinated
//!   omission), reported as JSON;
//! - [`suite`]: rounds of rate searches (highest rate within a p99 budget)
//!   and common-rate runs over several targets, medians, the table;
//! - [`stats`]: percentiles and medians;
//! - [`rss`]: peak resident memory of a process tree from `/proc`;
//! - [`floor`]: the thinnest OpenAI-shaped proxy, the floor Switchyard is
//!   compared with.

pub mod floor;
pub mod load;
pub mod rss;
pub mod stats;
pub mod suite;
