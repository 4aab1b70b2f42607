//! Host plumbing: the embedded PostgreSQL cluster ([`pg`]) and opening the
//! configured database ([`database`]), the Unix socket ([`socket`]), systemd
//! integration ([`systemd`]) and small safe wrappers over Unix calls
//! ([`unix`]).

pub mod database;
pub mod pg;
pub mod socket;
pub mod systemd;
pub mod unix;
