//! Why rules did or did not match one event, for rule authors: a detection rule search by
//! search, field by field and value by value ([`rule`]), and whether the event counts towards a
//! correlation, with the group-by values the detector reads from it ([`correlation`]); and,
//! for the alert a match raises, which fields and values made it ([`matched`]).

mod correlation;
mod matched;
mod rule;

pub use correlation::{
    explain_correlation, CorrelationExplanation, FieldValues, ReferenceExplanation, ReferenceKind,
    RuleLibrary, RuleVerdict, ThresholdShown, SEQUENCE_NOTE,
};
pub use matched::{MatchedRef, MAX_MATCHED_CHARS, MAX_MATCHED_FIELDS};
pub use rule::{
    explain, AlternativeExplanation, Explained, ItemExplanation, RuleExplanation,
    SearchExplanation, Skipped, ValueExplanation,
};
