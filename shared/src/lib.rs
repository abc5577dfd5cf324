//! Types that `extregd` and `nu_plugin_ext` both speak: the REST records,
//! the JSON error body, and the validation of names and versions.
//!
//! **This crate does no I/O and has no async runtime.** Everything here is
//! plain data plus pure functions, so both sides (and their tests) agree on
//! one definition.

pub mod artifact;
pub mod constraint;
pub mod error;
pub mod lockfile;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod protocol;
pub mod types;
pub mod validate;

pub use constraint::{Constraint, ConstraintError};
pub use error::{ErrorBody, ErrorKind, Field};
pub use types::*;
pub use validate::{parse_version, validate_name, ValidationError, MAX_NAME_LEN};
