//! Framework runners: reading what k6, Locust and JMeter write while they run and turning it
//! into the same events the native engine records.
//!
//! Only the k6 reader exists so far ([`k6`]); starting the tools with an agent's share of the
//! load and feeding these events to the recorder is the rest of the framework-runner work.

pub mod k6;
