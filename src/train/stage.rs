//! The skeleton every training stage shares.
