//! The binary's own commands beyond the daemon and the engine: the development broker, the
//! demo, the benchmark and the stream generator. Not part of the library's API.

pub mod bench;
pub mod broker;
pub mod demo;
pub mod generate;
mod resume;
