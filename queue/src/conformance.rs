//! The conformance suite every backend must pass (placeholder until built).
