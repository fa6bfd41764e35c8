//! The train_gpt example's parts: the generated corpus and the training loop.

pub mod corpus;
pub mod train;
