//! process manager driver (in progress)
