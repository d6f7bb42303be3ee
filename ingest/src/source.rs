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

    /// AWS CloudTrail records, one JSON object each.
    pub fn cloudtrail() -> Self {
        SourceSpec::new(
            "cloudtrail",
            LogSource::new(Some("aws"), Some("cloudtrail"), None),
            RecordFormat::Json,
            &["eventTime"],
        )
    }

    /// Kubernetes audit events (`audit.k8s.io/v1`, and `v1beta1`'s `timestamp`).
    ///
    /// The category is `application` because SigmaHQ's Kubernetes rules state it in about
    /// half their logsources and leave it out in the rest; with it on the event, both apply.
    pub fn kubernetes_audit() -> Self {
        SourceSpec::new(
            "kubernetes-audit",
            LogSource::new(Some("kubernetes"), Some("audit"), Some("application")),
            RecordFormat::Json,
            &["requestReceivedTimestamp", "stageTimestamp", "timestamp"],
        )
    }

    /// The Flask app's JSON logs, as python-json-logger and structlog write them.
    pub fn flask_app() -> Self {
        SourceSpec::new(
            "flask-app",
            LogSource::new(Some("python"), Some("flask"), Some("application")),
            RecordFormat::Json,
            &["timestamp", "asctime", "time", "@timestamp"],
        )
    }

    /// The preset for JSON records whose logsource is exactly `logsource` (CloudTrail,
    /// Kubernetes audit, the Flask app's logs, WAF), for callers told what their records are
    /// rather than left to recognise them.
    pub fn json_preset(logsource: &LogSource) -> Option<Self> {
        [
            SourceSpec::cloudtrail(),
            SourceSpec::kubernetes_audit(),
            SourceSpec::flask_app(),
            SourceSpec::waf(),
        ]
        .into_iter()
        .find(|spec| spec.logsource == *logsource)
    }

    /// Common or combined web access logs.
    pub fn access_log() -> Self {
        SourceSpec::new(
            "access-log",
            LogSource::new(None, None, Some("webserver")),
            RecordFormat::AccessLog,
            &[],
        )
    }

    /// VPC flow logs in the default format.
    pub fn vpc_flow() -> Self {
        SourceSpec::new(
            "vpc-flow",
            LogSource::new(Some("aws"), Some("vpcflowlogs"), None),
            RecordFormat::VpcFlow,
            &[],
        )
    }

    /// Vigil's own audit log, which Vigil forwards into its pipeline as JSON lines (one
    /// serialized entry each) so that rules can watch Vigil itself.
    pub fn vigil_audit() -> Self {
        SourceSpec::new(
            vigil_event::AUDIT_SOURCE,
            LogSource::new(Some("vigil"), Some("audit"), None),
            RecordFormat::Json,
            &["time"],
        )
    }

    /// AWS WAF logs, one JSON object each with epoch-millisecond `timestamp`.
    pub fn waf() -> Self {
        SourceSpec::new(
            "waf",
            LogSource::new(Some("aws"), Some("waf"), None),
            RecordFormat::Json,
            &["timestamp"],
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
        let mut specs = HashMap::new();
        for (names, spec) in [
            (&["cloudtrail"][..], SourceSpec::cloudtrail()),
            (
                &["kubernetes-audit", "k8s-audit"][..],
                SourceSpec::kubernetes_audit(),
            ),
            (&["flask-app", "flask"][..], SourceSpec::flask_app()),
            (
                &["flask-access", "access-log"][..],
                SourceSpec::access_log(),
            ),
            (&["vpc-flow"][..], SourceSpec::vpc_flow()),
            (&["waf"][..], SourceSpec::waf()),
            (&[vigil_event::AUDIT_SOURCE][..], SourceSpec::vigil_audit()),
        ] {
            for name in names {
                specs.insert((*name).to_owned(), spec.clone());
            }
        }
        SourceCatalog { specs }
    }

    /// The spec a preset names: a built-in source name, or `json` or `text`.
    pub fn preset(&self, name: &str) -> Option<SourceSpec> {
        match name {
            "json" => Some(SourceSpec::generic()),
            "text" => Some(SourceSpec {
                format: RecordFormat::Text,
                ..SourceSpec::generic()
            }),
            _ => self.specs.get(name).cloned(),
        }
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
