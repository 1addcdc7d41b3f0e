//! linkem
