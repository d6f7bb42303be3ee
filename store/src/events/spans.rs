//! Where each event partition keeps the span of event times it holds (see
//! [`crate::partition::TimeSpan`]), so that a search over a time range opens only the
//! partitions that may hold it.
//!
//! The span is kept in a small file in the partition's directory, written before each commit
//! that widens it, so the file may cover more than the committed events but never less. A
//! partition without the file (written by an earlier Vigil, restored from a backup, which
//! copies only the index's own files, or with a file that cannot be read) has its span read
//! from the time column of its segments, whose statistics give each segment's least and
//! greatest time without reading the values.

use std::io::Write;
use std::path::Path;

use tantivy::{DateTime as TantivyDateTime, Searcher};

use super::fields;
use crate::partition::TimeSpan;
use crate::StoreError;

/// The file in a partition's directory. It has no dot, so it is never taken for one of
/// tantivy's segment files.
pub(crate) const SPAN_FILE: &str = "vigil-span";

/// The span recorded in `dir`, if there is a readable one.
pub(crate) fn read(dir: &Path) -> Option<TimeSpan> {
    let text = std::fs::read_to_string(dir.join(SPAN_FILE)).ok()?;
    let span: TimeSpan = serde_json::from_str(&text).ok()?;
    (span.min <= span.max).then_some(span)
}

/// Records `span` in `dir`: written to a temporary file, synced, renamed over the old one and
/// the directory synced, so that the file read after a crash is the old span or the new one.
/// Either covers what the commit that follows makes durable, since the new one is durable
/// before it.
pub(crate) fn write(dir: &Path, span: &TimeSpan) -> Result<(), StoreError> {
    let path = dir.join(SPAN_FILE);
    let temporary = dir.join(format!("{SPAN_FILE}-new"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    let text = serde_json::to_string(span).map_err(StoreError::Serialize)?;
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(text.as_bytes()).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// The span of the event times in the segments `searcher` sees, from their time columns'
/// statistics (which count deleted documents too, so it may be wider); `None` when there
/// are no events.
pub(crate) fn from_columns(searcher: &Searcher) -> Result<Option<TimeSpan>, StoreError> {
    let mut span: Option<TimeSpan> = None;
    for segment in searcher.segment_readers() {
        if segment.max_doc() == 0 {
            continue;
        }
        let Some(column) = segment
            .fast_fields()
            .column_opt::<TantivyDateTime>(fields::TIME)?
        else {
            continue;
        };
        for value in [column.min_value(), column.max_value()] {
            let time = from_tantivy(value);
            let one = TimeSpan::of(time);
            span = Some(span.map_or(one, |span| span.union(one)));
        }
    }
    Ok(span)
}

fn from_tantivy(value: TantivyDateTime) -> chrono::DateTime<chrono::Utc> {
    let nanos = value.into_timestamp_nanos();
    chrono::DateTime::from_timestamp(nanos.div_euclid(1_000_000_000), 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        + chrono::Duration::nanoseconds(nanos.rem_euclid(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn a_written_span_reads_back_and_a_damaged_one_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let span = TimeSpan::of(Utc.with_ymd_and_hms(2026, 11, 28, 5, 30, 0).unwrap());
        write(dir.path(), &span).unwrap();
        assert_eq!(read(dir.path()), Some(span));
        let wider = span.union(TimeSpan::of(
            Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap(),
        ));
        write(dir.path(), &wider).unwrap();
        assert_eq!(read(dir.path()), Some(wider));
        std::fs::write(dir.path().join(SPAN_FILE), "{\"min\": 1").unwrap();
        assert_eq!(read(dir.path()), None);
        let inverted = TimeSpan {
            min: span.max,
            max: span.min,
        };
        std::fs::write(
            dir.path().join(SPAN_FILE),
            serde_json::to_string(&inverted).unwrap(),
        )
        .unwrap();
        assert_eq!(read(dir.path()), None);
    }

    #[test]
    fn tantivy_times_convert_back_exactly() {
        for time in [
            Utc.with_ymd_and_hms(2026, 11, 28, 5, 30, 0).unwrap()
                + chrono::Duration::microseconds(123_456),
            Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::microseconds(5),
        ] {
            assert_eq!(from_tantivy(crate::index::to_tantivy(&time)), time);
        }
    }
}
