//! Which kind of record a CloudWatch log group carries, so each is parsed into its real shape
//! with the right logsource.

use std::collections::HashMap;

use crate::parse::parse_vpc_flow;
use crate::SourceSpec;

/// A configured mapping for one log group, overriding recognition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupOverride {
    pub log_group: String,
    pub spec: SourceSpec,
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
        let trimmed = message.trim_start();
        // CloudTrail names the log groups it creates so, and writes each account and region
        // to its own stream, `<account>_CloudTrail_<region>`. What such a group holds is
        // CloudTrail whatever keys a record has: one without `eventVersion` or `eventID` is
        // still read with its logsource, so AWS rules see it.
        if trimmed.starts_with('{') && is_cloudtrail_log(log_group, log_stream) {
            return SourceSpec::cloudtrail();
        }
        if trimmed.starts_with('{') {
            return recognise_json(trimmed);
        }
        if parse_vpc_flow(message).is_ok() {
            return SourceSpec::vpc_flow();
        }
        let mut text = SourceSpec::generic();
        text.format = crate::RecordFormat::Text;
        text.kind = "cloudwatch".into();
        text
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

/// Tells CloudTrail, audit and WAF records from other JSON by the keys only they carry.
///
/// The keys are read with the record parser's top level, whose verdict ingest applies: a
/// shape derived with serde would refuse a repeated key or a lone surrogate anywhere in its
/// keys, and the record would lose its logsource, and every rule for it, to one padded key.
fn recognise_json(message: &str) -> SourceSpec {
    let generic = || {
        let mut generic = SourceSpec::generic();
        generic.kind = "cloudwatch".into();
        generic
    };
    let Ok(top) = vigil_event::json::check_object(message) else {
        return generic();
    };
    // A key whose value is null counts as absent, as an `Option` field reads it.
    let has = |key: &str| top.get(key).is_some_and(|raw| raw != "null");
    let kind = top
        .get("kind")
        .and_then(|raw| serde_json::from_str::<String>(raw).ok());
    if has("eventVersion") && has("eventSource") {
        SourceSpec::cloudtrail()
    } else if kind.as_deref() == Some("Event") && has("auditID") {
        SourceSpec::kubernetes_audit()
    } else if has("webaclId") {
        SourceSpec::waf()
    } else {
        generic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordFormat;

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
        let spec = r.recognise("/app/flask", "web-1", app);
        assert_eq!(
            (spec.kind.as_str(), spec.format),
            ("cloudwatch", RecordFormat::Json)
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
    fn overrides_win() {
        let r = LogGroupRecogniser::new([LogGroupOverride {
            log_group: "/app/flask".into(),
            spec: SourceSpec::flask_app(),
        }]);
        assert_eq!(r.recognise("/app/flask", "web-1", "{}").kind, "flask-app");
    }
}
