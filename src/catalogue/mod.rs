//! Concerts, dates and seats: what is on sale and what can be held now.

pub mod directory;
pub mod graphql;
pub mod import;
pub mod loader;
pub mod manage;
pub mod model;
pub mod seed;
pub mod service;
