//! Unit tests per phase (Dropbox scenario harness).
