//! The fleet as the scheduler sees it: `chipledger_domain::fleet`, where every reader gets it
//! (the dashboard too, without linking this crate).

pub use chipledger_domain::fleet::*;
