//! A spec's scenario compiled for execution ([`compile`]), the VU that runs it ([`vu`]),
//! CSV feeders ([`data`]) and response checks ([`checks`]).

pub mod checks;
pub mod compile;
pub mod data;
pub mod vu;

pub use compile::{compile, CompileError, Plan};
pub use vu::{Outcome, Vu};
