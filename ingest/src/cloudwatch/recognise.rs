//! Which kind of record a CloudWatch log group carries, so each is parsed into its real shape
//! with the right logsource: what the log group and stream names say, then the record's own
//! shape ([`crate::recognise_record`]).

use std::collections::{BTreeMap, HashMap};

use crate::{recognise_record, RecordFormat, RecordShape, SourceCatalog, SourceSpec};

/// A configured mapping for one log group, overriding recognition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupOverride {
    pub log_group: String,
    pub spec: SourceSpec,
}

/// A `log group = preset` setting names no preset Vigil has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset {preset:?} for log group {log_group:?}")]
pub struct UnknownPreset {
    pub log_group: String,
    pub preset: String,
}

/// Resolves `log group = preset` settings (a CloudWatch source's or the Firehose endpoint's
/// `overrides`) into the specs that override recognition.
pub fn log_group_overrides(
    settings: &BTreeMap<String, String>,
) -> Result<Vec<LogGroupOverride>, UnknownPreset> {
    let catalog = SourceCatalog::builtin();
    settings
        .iter()
        .map(|(log_group, preset)| {
            let spec = catalog.preset(preset).ok_or_else(|| UnknownPreset {
                log_group: log_group.clone(),
                preset: preset.clone(),
            })?;
            Ok(LogGroupOverride {
                log_group: log_group.clone(),
                spec,
            })
        })
        .collect()
}

/// Recognises log groups by name and stream, then by the shape of their messages.
#[derive(Debug, Clone, Default)]
pub struct LogGroupRecogniser {
    overrides: HashMap<String, SourceSpec>,
}

impl LogGroupRecogniser {
    pub fn new(overrides: impl IntoIterator<Item = LogGroupOverride>) -> Self {
        LogGroupRecogniser {
            overrides: overrides
                .into_iter()
                .map(|o| (o.log_group, o.spec))
                .collect(),
        }
    }

    /// The spec for a message of `log_group`/`log_stream`.
    pub fn recognise(&self, log_group: &str, log_stream: &str, message: &str) -> SourceSpec {
        if let Some(spec) = self.overrides.get(log_group) {
            return spec.clone();
        }
        // EKS writes each control-plane log to its own stream in /aws/eks/<cluster>/cluster.
        if log_stream.starts_with("kube-apiserver-audit") {
            return SourceSpec::kubernetes_audit();
        }
        // AWS requires WAF log groups to start with this prefix.
        if log_group.starts_with("aws-waf-logs-") {
            return SourceSpec::waf();
        }
        let shape = recognise_record(message);
        // CloudTrail names the log groups it creates so, and writes each account and region
        // to its own stream, `<account>_CloudTrail_<region>`. What such a group holds is
        // CloudTrail whatever keys a record has: one without `eventVersion` or `eventID` is
        // still read with its logsource, so AWS rules see it.
        if shape.is_json() && is_cloudtrail_log(log_group, log_stream) {
            return SourceSpec::cloudtrail();
        }
        shape.known_spec().unwrap_or_else(|| {
            // Records of no known kind are named after where they came from. Broken JSON is
            // read as JSON, so the quarantine says what is wrong with it.
            let mut spec = SourceSpec::generic();
            spec.kind = "cloudwatch".into();
            if let RecordShape::Text(_) = shape {
                spec.format = RecordFormat::Text;
            }
            spec
        })
    }
}

/// Whether a log group, or the stream within it, is named as CloudTrail names those it writes.
fn is_cloudtrail_log(log_group: &str, log_stream: &str) -> bool {
    log_group.starts_with("aws-cloudtrail-logs-") || is_cloudtrail_stream(log_stream)
}

/// `123456789012_CloudTrail_eu-west-1`, or with an organization id in front for an
/// organization trail: `o-abc123_123456789012_CloudTrail_eu-west-1`.
fn is_cloudtrail_stream(log_stream: &str) -> bool {
    let Some((account, region)) = log_stream.split_once("_CloudTrail_") else {
        return false;
    };
    let account = account.rsplit('_').next().unwrap_or_default();
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_log_group_kind() {
        let r = LogGroupRecogniser::default();
        let trail =
            r#"{"eventVersion":"1.10","eventSource":"iam.amazonaws.com","eventName":"CreateUser"}"#;
        assert_eq!(
            r.recognise("aws-cloudtrail-logs-1", "123_CloudTrail_eu-west-1", trail)
                .kind,
            "cloudtrail"
        );
        let audit = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a"}"#;
        assert_eq!(
            r.recognise("/aws/eks/prod/cluster", "kube-apiserver-audit-abc", audit)
                .kind,
            "kubernetes-audit"
        );
        assert_eq!(r.recognise("/k8s", "s", audit).kind, "kubernetes-audit");
        assert_eq!(
            r.recognise("aws-waf-logs-prod", "s", r#"{"timestamp":1}"#)
                .kind,
            "waf"
        );
        let flow =
            "2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1795860000 1795860060 ACCEPT OK";
        assert_eq!(
            r.recognise("vpc-flow", "eni-1-all", flow).format,
            RecordFormat::VpcFlow
        );
        let app = r#"{"levelname":"INFO","message":"hi"}"#;
        assert_eq!(
            r.recognise("/app/flask", "web-1", app),
            SourceSpec::flask_app()
        );
        let structlog = r#"{"event":"login_failed","level":"warning","logger":"usermgmt.auth"}"#;
        assert_eq!(
            r.recognise("/app/api", "web-1", structlog).kind,
            "flask-app"
        );
        let other = r#"{"msg":"hi"}"#;
        let spec = r.recognise("/app/flask", "web-1", other);
        assert_eq!(
            (spec.kind.as_str(), spec.format),
            ("cloudwatch", RecordFormat::Json)
        );
        let access = r#"1.2.3.4 - - [28/Nov/2026:09:03:11 +0000] "GET / HTTP/1.1" 200 1 "-" "x""#;
        assert_eq!(
            r.recognise("/app/nginx", "web-1", access),
            SourceSpec::access_log()
        );
        let spec = r.recognise("/app/flask", "web-1", "plain text line");
        assert_eq!(spec.format, RecordFormat::Text);
    }

    #[test]
    fn json_in_a_cloudtrail_log_is_cloudtrail_without_the_usual_keys() {
        let r = LogGroupRecogniser::default();
        let stripped = r#"{"eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging"}"#;
        for (group, stream) in [
            ("aws-cloudtrail-logs-123456789012-1a2b3c4d", "anything"),
            ("/org/trail", "123456789012_CloudTrail_eu-west-1"),
            (
                "/org/trail",
                "o-a1b2c3d4e5_123456789012_CloudTrail_us-east-1",
            ),
        ] {
            for message in [stripped, "{}", r#"{"eventName":"GetObject"}"#] {
                let spec = r.recognise(group, stream, message);
                assert_eq!(spec.kind, "cloudtrail", "{group} {stream} {message}");
                assert_eq!(spec.logsource.product.as_deref(), Some("aws"));
                assert_eq!(spec.logsource.service.as_deref(), Some("cloudtrail"));
            }
        }
        // Elsewhere the keys decide, as before, and a stream must be named as CloudTrail names
        // them...
        assert_eq!(
            r.recognise("/app/flask", "web-1", stripped).kind,
            "cloudwatch"
        );
        assert_eq!(
            r.recognise("/org/trail", "1234_CloudTrail_eu-west-1", stripped)
                .kind,
            "cloudwatch"
        );
        // ...and text in a CloudTrail log group is not forced into JSON.
        let spec = r.recognise("aws-cloudtrail-logs-1", "s", "plain text line");
        assert_eq!(spec.format, RecordFormat::Text);
        // An override names the kind of its log group, whatever the record.
        let r = LogGroupRecogniser::new([LogGroupOverride {
            log_group: "/org/trail".into(),
            spec: SourceSpec::cloudtrail(),
        }]);
        let spec = r.recognise("/org/trail", "web-1", stripped);
        assert_eq!(spec.logsource.service.as_deref(), Some("cloudtrail"));
    }

    #[test]
    fn padded_keys_do_not_hide_what_a_record_is() {
        let r = LogGroupRecogniser::default();
        for trail in [
            r#"{"eventVersion":"1.10","eventSource":"cloudtrail.amazonaws.com","eventVersion":"1.10"}"#,
            r#"{"eventVersion":"1.10","k\ud800":1,"eventSource":"cloudtrail.amazonaws.com"}"#,
            r#"{"eventVersion":"1.10","eventSource":"cloudtrail.amazonaws.com","pad":1e400}"#,
        ] {
            assert_eq!(
                r.recognise("/org/custom", "s", trail).kind,
                "cloudtrail",
                "{trail}"
            );
        }
        let audit = r#"{"kind":"Event","auditID":"a","\udc00":[],"kind":"Event"}"#;
        assert_eq!(r.recognise("/k8s", "s", audit).kind, "kubernetes-audit");
        // A null key is absent, and broken JSON is generic.
        for other in [
            r#"{"eventVersion":null,"eventSource":"cloudtrail.amazonaws.com"}"#,
            r#"{"eventVersion":"1.10","eventSource":"x","#,
            r#"{"kind":"\ud800","auditID":"a"}"#,
        ] {
            assert_eq!(
                r.recognise("/org/custom", "s", other).kind,
                "cloudwatch",
                "{other}"
            );
        }
    }

    #[test]
    fn override_settings_name_known_presets() {
        let settings = BTreeMap::from([
            ("/app/flask".to_owned(), "flask".to_owned()),
            ("/app/raw".to_owned(), "text".to_owned()),
        ]);
        let overrides = log_group_overrides(&settings).unwrap();
        assert_eq!(overrides[0].spec, SourceSpec::flask_app());
        assert_eq!(overrides[1].spec.format, RecordFormat::Text);
        let settings = BTreeMap::from([("/org/trail".to_owned(), "cloudtrial".to_owned())]);
        let error = log_group_overrides(&settings).unwrap_err().to_string();
        assert_eq!(
            error,
            r#"unknown preset "cloudtrial" for log group "/org/trail""#
        );
    }

    #[test]
    fn overrides_win() {
        let r = LogGroupRecogniser::new([LogGroupOverride {
            log_group: "/app/flask".into(),
            spec: SourceSpec::flask_app(),
        }]);
        assert_eq!(r.recognise("/app/flask", "web-1", "{}").kind, "flask-app");
    }
}
