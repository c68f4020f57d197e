//! The waiting line: tokens, fair admission, live position.

pub mod cursor;
pub mod graphql;
pub mod line;
pub mod live;
pub mod model;
mod rate;
pub mod runtime;
pub mod service;
pub mod subscription;
pub mod token;
