use std::collections::HashMap;

use vigil_event::LogSource;

/// How a source's records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// One JSON object per line.
    Json,
    /// One line of free text per record.
    Text,
    /// Common or combined access log lines, parsed into named fields.
    AccessLog,
    /// VPC flow log records in the default text format, parsed into named fields.
    VpcFlow,
}

/// What Vigil knows about a kind of log: its name, logsource, format and where its time is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// The source kind recorded on each event, such as `cloudtrail`.
    pub kind: String,
    pub logsource: LogSource,
    pub format: RecordFormat,
    /// Top-level fields that may hold the event time, tried in order.
    pub time_fields: Vec<String>,
}

impl SourceSpec {
    fn new(kind: &str, logsource: LogSource, format: RecordFormat, time_fields: &[&str]) -> Self {
        SourceSpec {
            kind: kind.to_owned(),
            logsource,
            format,
            time_fields: time_fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    /// A source Vigil has no preset for: JSON lines, no logsource, common time field names.
    pub fn generic() -> Self {
        SourceSpec::new(
            "http",
            LogSource::default(),
            RecordFormat::Json,
            &["timestamp", "@timestamp", "time", "eventTime", "asctime"],
        )
    }
}

/// The sources Vigil recognises by name.
#[derive(Debug, Clone)]
pub struct SourceCatalog {
    specs: HashMap<String, SourceSpec>,
}

impl SourceCatalog {
    /// The presets for the logs Vigil ships rules and parsers for.
    pub fn builtin() -> Self {
        let cloudtrail = SourceSpec::new(
            "cloudtrail",
            LogSource::new(Some("aws"), Some("cloudtrail"), None),
            RecordFormat::Json,
            &["eventTime"],
        );
        let kubernetes_audit = SourceSpec::new(
            "kubernetes-audit",
            LogSource::new(Some("kubernetes"), Some("audit"), None),
            RecordFormat::Json,
            &["requestReceivedTimestamp", "stageTimestamp"],
        );
        let flask_app = SourceSpec::new(
            "flask-app",
            LogSource::new(Some("python"), Some("flask"), Some("application")),
            RecordFormat::Json,
            &["timestamp", "asctime", "time"],
        );
        let access_log = SourceSpec::new(
            "access-log",
            LogSource::new(None, None, Some("webserver")),
            RecordFormat::AccessLog,
            &[],
        );
        let mut specs = HashMap::new();
        for (names, spec) in [
            (&["cloudtrail"][..], cloudtrail),
            (&["kubernetes-audit", "k8s-audit"][..], kubernetes_audit),
            (&["flask-app", "flask"][..], flask_app),
            (&["flask-access", "access-log"][..], access_log),
        ] {
            for name in names {
                specs.insert((*name).to_owned(), spec.clone());
            }
        }
        SourceCatalog { specs }
    }

    /// Adds or replaces the spec for source `name`.
    pub fn insert(&mut self, name: impl Into<String>, spec: SourceSpec) {
        self.specs.insert(name.into(), spec);
    }

    /// The spec for source `name`, or the generic one.
    pub fn resolve(&self, name: &str) -> SourceSpec {
        self.specs
            .get(name)
            .cloned()
            .unwrap_or_else(SourceSpec::generic)
    }
}

impl Default for SourceCatalog {
    fn default() -> Self {
        SourceCatalog::builtin()
    }
}
