//! Holds, payments and the sweep that lets unpaid holds lapse.

pub mod graphql;
pub mod loader;
pub mod model;
pub mod service;
