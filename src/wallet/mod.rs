//! Users and their money: registration, balance, charges and history.

pub mod graphql;
pub mod loader;
pub mod model;
pub mod service;
