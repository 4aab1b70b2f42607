//! The screens, one [`Component`] each: [`login`], [`timeline`], [`mine`],
//! [`status`], [`admin`].

pub mod admin;
pub mod login;
pub mod mine;
pub mod status;
pub mod timeline;

pub use super::component::Component;
