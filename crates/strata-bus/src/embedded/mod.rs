//! The embedded segment log (to be written).
