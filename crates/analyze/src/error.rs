//! The crate's error type. The engine itself never fails on input (bad packets are
//! counted as skipped); only configuration can be wrong.

/// What can go wrong setting up an [`Analyzer`](crate::Analyzer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`](crate::Config) field is out of range.
    #[error("invalid analyzer config: {field} {why}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}
