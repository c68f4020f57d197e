//! Load generator for the waiting line (filled in below).
mod support;

fn main() {}
