//! cloudai worker (being built).
