//! linkem-macros
