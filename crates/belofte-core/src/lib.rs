//! belofte's pure core: domain types, event decoding, the policy, the calendar, the engine,
//! the world of all orders and the trace of every step. No I/O, no clock, no async: the
//! crate's dependencies keep it so (`cargo tree -p belofte-core -e normal`).

pub mod calendar;
pub mod domain;
pub mod engine;
pub mod event;
mod hash;
pub mod name;
pub mod notice;
pub mod policy;
pub mod slab;
mod table;
pub mod trace;
pub mod world;
