//! The binary's own commands beyond the daemon and the engine: the demo, the benchmark
//! and the stream generator. Not part of the library's API.

pub mod bench;
pub mod demo;
pub mod generate;
