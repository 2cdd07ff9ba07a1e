pub mod agent;
pub mod catalog;
pub mod classify;
pub mod init;
pub mod keys;
pub mod ledger;
pub mod note;
pub mod proof;
