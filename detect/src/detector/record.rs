//! [`Detector`] fed an event, or a JSON record as its text, parsed only when the engine needs
//! it (see [`crate::Engine::matching_record`]).

use vigil_event::{AsEventRef, Document, Id, LogSource};

use super::{Detector, Evaluation};

impl Detector {
    /// [`Detector::evaluate`] for a JSON record given as its text, parsed by `document` when
    /// [`crate::Engine::matching_record`] needs it (always where rules are found by key, else
    /// only when some rule may match). The document comes back with the evaluation when it was
    /// parsed, for [`crate::Engine::matched_fields`].
    pub fn evaluate_record<'r, E>(
        &mut self,
        stream: &str,
        time: i64,
        event_id: Option<Id>,
        logsource: &LogSource,
        record: &str,
        document: impl FnOnce() -> Result<Document<'r>, E>,
    ) -> Result<(Evaluation, Option<Document<'r>>), E> {
        let plan = self.plans.get(&self.engine, logsource);
        let matches = self
            .engine
            .matching_record_planned(plan, record, document)?;
        let Some(doc) = matches.document else {
            // Nothing matched, so nothing feeds a correlation: only the stream's time moves.
            self.advance_stream(stream, time);
            return Ok((Evaluation::default(), None));
        };
        let evaluation = self.evaluate_hits(stream, time, event_id, matches.hits, doc.root());
        Ok((evaluation, Some(doc)))
    }

    /// [`Detector::evaluate`] for an event, in `stream` at `time`, whether built whole
    /// ([`vigil_event::Event`]) or read off the bus with its record a slice of the message
    /// ([`vigil_event::wire::EventOnBus`]): a JSON record through
    /// [`Detector::evaluate_record`] (parsed only when needed), a text record as its derived
    /// fields. The document comes back when it was built, for
    /// [`crate::Engine::matched_fields`].
    pub fn evaluate_event<'e>(
        &mut self,
        stream: &str,
        time: i64,
        event: &'e impl AsEventRef,
    ) -> Result<(Evaluation, Option<Document<'e>>), serde_json::Error> {
        let event = event.as_event_ref();
        let id = Some(*event.id);
        if let Some(record) = event.json_text() {
            return self.evaluate_record(stream, time, id, event.logsource, record, || {
                event.document_view()
            });
        }
        let doc = event.document_view()?;
        let evaluation = self.evaluate(stream, time, id, event.logsource, &doc);
        Ok((evaluation, Some(doc)))
    }
}
