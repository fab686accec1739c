//! placeholder

pub mod retained_tree;
pub mod router;
