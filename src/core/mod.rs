//! The pure core: domain types, the policy, the calendar, the engine. No I/O, no clock.

pub mod calendar;
pub mod domain;
pub mod engine;
pub mod event;
pub mod name;
pub mod notice;
pub mod output;
pub mod policy;
pub mod slab;
pub mod world;
