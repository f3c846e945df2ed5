//! Many files at once (filled in below).

/// Placeholder.
#[derive(Debug)]
pub struct Batch;
/// Placeholder.
#[derive(Debug)]
pub struct BatchFile;
