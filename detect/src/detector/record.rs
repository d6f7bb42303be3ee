//! [`Detector`] fed a whole [`Event`], or a JSON record as its text, parsed only when the
//! engine needs it (see [`crate::Engine::matching_record`]).

use vigil_event::wire::{EventOnBus, RecordOnBus};
use vigil_event::{Document, Event, Id, LogSource};

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
        let matches = self.engine.matching_record(logsource, record, document)?;
        let Some(doc) = matches.document else {
            // Nothing matched, so nothing feeds a correlation: only the stream's time moves.
            self.advance_stream(stream, time);
            return Ok((Evaluation::default(), None));
        };
        let evaluation = self.evaluate_hits(stream, time, event_id, matches.hits, doc.root());
        Ok((evaluation, Some(doc)))
    }

    /// [`Detector::evaluate`] for an [`Event`], in `stream` at `time`: a JSON record through
    /// [`Detector::evaluate_record`] (parsed only when needed), a text record
    /// as its derived fields. The document comes back when it was built, for
    /// [`crate::Engine::matched_fields`].
    pub fn evaluate_event<'e>(
        &mut self,
        stream: &str,
        time: i64,
        event: &'e Event,
    ) -> Result<(Evaluation, Option<Document<'e>>), serde_json::Error> {
        let json = event.record.is_json().then(|| event.record.as_str());
        self.evaluate_parts(stream, time, event.id, &event.logsource, json, || {
            event.document_view()
        })
    }

    /// [`Detector::evaluate_event`] for an event as read off the bus, its record borrowed from
    /// the message.
    pub fn evaluate_on_bus<'e>(
        &mut self,
        stream: &str,
        time: i64,
        event: &'e EventOnBus<'_>,
    ) -> Result<(Evaluation, Option<Document<'e>>), serde_json::Error> {
        let json = match &event.record {
            RecordOnBus::Json(text) => Some(text.as_ref()),
            RecordOnBus::Text(_) => None,
        };
        self.evaluate_parts(
            stream,
            time,
            event.head.id,
            &event.head.logsource,
            json,
            || event.document_view(),
        )
    }

    /// An event's record through [`Detector::evaluate_record`] when it is `json`, else its
    /// `document` through [`Detector::evaluate`].
    fn evaluate_parts<'e>(
        &mut self,
        stream: &str,
        time: i64,
        id: Id,
        logsource: &LogSource,
        json: Option<&'e str>,
        document: impl FnOnce() -> Result<Document<'e>, serde_json::Error>,
    ) -> Result<(Evaluation, Option<Document<'e>>), serde_json::Error> {
        if let Some(record) = json {
            return self.evaluate_record(stream, time, Some(id), logsource, record, document);
        }
        let doc = document()?;
        let evaluation = self.evaluate(stream, time, Some(id), logsource, &doc);
        Ok((evaluation, Some(doc)))
    }
}
