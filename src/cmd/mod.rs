//! One module per subcommand: each parses its arguments, calls the library crates and prints;
//! decisions live in the crates, not here.

pub mod acquisition;
pub mod agent;
pub mod catalog;
pub mod classify;
pub mod demo;
pub mod diversion;
pub mod evidence;
pub mod fleet;
pub mod gpu;
pub mod inference;
pub mod init;
pub mod k8s;
pub mod keys;
pub mod landmark;
pub mod ledger;
pub mod mirror;
pub mod node;
pub mod note;
pub mod proof;
pub mod serve;
pub mod slurm;
pub mod tokens;
pub mod witness;
