//! Unit tests per phase (Scenario fast-forward).
