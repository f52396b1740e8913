//! File transfers between contacts: offers, their answers, and the files'
//! pieces over the data channel, verified and resumable. This module grows
//! with the feature; today it holds what a receiver decides before any
//! byte is written: where a file from a manifest may be saved.

pub mod manifest;
pub mod names;
