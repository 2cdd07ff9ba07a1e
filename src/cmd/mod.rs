pub mod catalog;
pub mod classify;
pub mod keys;
pub mod note;
pub mod proof;
