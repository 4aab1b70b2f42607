//! The screens, one [`Component`] each: [`login`], [`timeline`], [`mine`],
//! [`status`], [`report`], [`admin`].

pub mod admin;
pub mod login;
pub mod mine;
pub mod report;
pub mod status;
pub mod timeline;

pub use super::component::Component;
