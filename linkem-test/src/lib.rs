//! linkem-test
