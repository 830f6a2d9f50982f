//! belofte: holds every order against the delivery promise the shop made and tells the
//! customer first when that promise is at risk or broken.

pub mod channels;
pub mod check;
pub mod console;
pub mod daemon;
pub mod kafka;
pub mod render;
pub mod rng;
pub mod settings;
pub mod simulate;
pub mod store;
