//! cloudai master (being built).
