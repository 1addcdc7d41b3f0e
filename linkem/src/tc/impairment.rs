//! The impairment model, at the path the seed API names it
//! (`linkem::tc::impairment::LinkImpairment`). Its home is [`crate::impairment`]; this
//! module only re-exports it.

pub use crate::impairment::*;
