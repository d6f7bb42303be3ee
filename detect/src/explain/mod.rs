//! Why rules did or did not match one event, for rule authors: a detection rule search by
//! search, field by field and value by value ([`rule`]), and whether the event counts towards a
//! correlation, with the group-by values the detector reads from it ([`correlation`]).

mod correlation;
mod rule;

pub use correlation::{
    explain_correlation, CorrelationExplanation, FieldValues, ReferenceExplanation, ReferenceKind,
    RuleLibrary, RuleVerdict, ThresholdShown, SEQUENCE_NOTE,
};
pub use rule::{
    explain, AlternativeExplanation, Explained, ItemExplanation, RuleExplanation,
    SearchExplanation, Skipped, ValueExplanation,
};
