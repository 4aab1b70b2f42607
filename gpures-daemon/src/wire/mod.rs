//! The wire: [`server`] accepts connections on the Unix socket (peer
//! credentials, connection limits, the frame deadline), [`turns`] shares
//! the database between Unix users round-robin, and [`rpc`] turns each
//! tarpc call into one service call, converting the service's error into
//! `ApiError` in exactly one place.

pub mod rpc;
pub mod server;
pub mod turns;
