//! AWS MSK IAM authentication: the SASL/OAUTHBEARER token is a SigV4-presigned
//! `kafka-cluster:Connect` URL, encoded in base64url.
//!
//! librdkafka asks for tokens synchronously, on whichever thread polls the client, and that is
//! a tokio worker for the stream consumer. Fetching credentials is async and may go to the
//! network (IMDS, STS), so it never happens there: the signer keeps the newest credentials in
//! memory, a tokio task refreshes them before they expire, and signing only reads and hashes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// How long a token's signature is valid, and so the lifetime librdkafka is given: it asks
/// for a new token at 80% of it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// The SigV4 service name MSK checks signatures against.
const SERVICE: &str = "kafka-cluster";
/// MSK logs this with each connection, which tells Vigil's connections apart from others'.
const USER_AGENT: &str = concat!("vigil/", env!("CARGO_PKG_VERSION"));
/// Credentials are refreshed this long before they expire, so a token never outlives them by
/// much, and a failed refresh has time for retries.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Long-lived credentials (keys in a profile) are still re-read this often, so that rotated
/// keys are picked up without a restart.
const MAX_REFRESH: Duration = Duration::from_secs(900);
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why MSK IAM authentication cannot start, or cannot sign a token.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// No region was configured and the AWS environment names none.
    #[error(
        "MSK IAM authentication needs an AWS region: set bus.kafka.region, or AWS_REGION in \
         the environment"
    )]
    NoRegion,
    /// The region cannot be part of a host name, so it cannot be signed for.
    #[error("invalid AWS region {0:?} for MSK IAM authentication")]
    InvalidRegion(String),
    /// The AWS credential chain found nothing to sign with.
    #[error(
        "MSK IAM authentication found no AWS credentials ({0}): set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or AWS_ROLE_ARN with \
         AWS_WEB_IDENTITY_TOKEN_FILE, or run Vigil with an instance, task or pod role"
    )]
    NoCredentials(String),
    /// The credentials in memory expired, and refreshing them has failed so far.
    #[error("the AWS credentials for MSK IAM expired and could not be refreshed; see the log")]
    Expired,
    /// SigV4 refused the inputs.
    #[error("cannot sign the MSK IAM token: {0}")]
    Signing(String),
}

/// A signed MSK IAM token and when it stops being valid.
#[derive(Debug, Clone)]
pub struct IamToken {
    /// The OAUTHBEARER token: the presigned URL in base64url without padding.
    pub token: String,
    /// Signing time plus [`TOKEN_LIFETIME`], in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Signs a token for `region` with `credentials`, as of `now`.
pub fn sign_token(
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
) -> Result<IamToken, IamError> {
    check_region(region)?;
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| IamError::Signing(e.to_string()))?
        .into();
    let mut url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::empty(),
        SignableBody::empty(),
    )
    .map_err(|e| IamError::Signing(e.to_string()))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| IamError::Signing(e.to_string()))?
        .into_parts();
    let (_, query) = instructions.into_parts();
    for (name, value) in &query {
        push_param(&mut url, name, value);
    }
    // Added after signing, as MSK expects: it is not part of what the signature covers.
    push_param(&mut url, "User-Agent", USER_AGENT);
    let signed_at = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| IamError::Signing("the clock is before 1970".into()))?;
    let expires_at = signed_at + TOKEN_LIFETIME;
    Ok(IamToken {
        token: URL_SAFE_NO_PAD.encode(url),
        expires_at_ms: i64::try_from(expires_at.as_millis()).unwrap_or(i64::MAX),
    })
}

/// A region becomes part of the host name signed for; anything else could make the signer
/// panic on an invalid URI inside a librdkafka callback.
fn check_region(region: &str) -> Result<(), IamError> {
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(IamError::InvalidRegion(region.to_owned()))
    }
}

fn push_param(url: &mut String, name: &str, value: &str) {
    url.push('&');
    url.push_str(&encode(name));
    url.push('=');
    url.push_str(&encode(value));
}

/// SigV4's URI encoding: everything but RFC 3986's unreserved characters is escaped.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Signs MSK IAM tokens with credentials from the standard AWS chain (environment, profile,
/// web identity, ECS, IMDS), refreshed in the background before they expire.
pub struct MskIamSigner {
    region: String,
    credentials: RwLock<Credentials>,
    signed: AtomicU64,
}

impl std::fmt::Debug for MskIamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIamSigner")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MskIamSigner {
    /// Loads the AWS configuration, with `region` if given and the environment's otherwise,
    /// and fetches credentials once, so that a missing region or missing credentials stop
    /// start-up. Must run inside a tokio runtime, which the refresh task is spawned on.
    pub async fn load(region: Option<String>) -> Result<Arc<Self>, IamError> {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        Self::from_sdk_config(&loader.load().await).await
    }

    /// As [`MskIamSigner::load`], from an AWS configuration already loaded.
    pub async fn from_sdk_config(config: &SdkConfig) -> Result<Arc<Self>, IamError> {
        let region = config.region().ok_or(IamError::NoRegion)?.to_string();
        check_region(&region)?;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| IamError::NoCredentials("no credential provider".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| IamError::NoCredentials(error_chain(&e)))?;
        let signer = Arc::new(MskIamSigner::new(region, credentials));
        tokio::spawn(refresh(Arc::downgrade(&signer), provider));
        Ok(signer)
    }

    /// A signer over fixed credentials, which are never refreshed.
    pub fn new(region: String, credentials: Credentials) -> Self {
        MskIamSigner {
            region,
            credentials: RwLock::new(credentials),
            signed: AtomicU64::new(0),
        }
    }

    /// The region tokens are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A token signed now with the credentials in memory; never blocks on the network.
    pub fn token(&self) -> Result<IamToken, IamError> {
        let now = SystemTime::now();
        let credentials = self.current();
        if credentials.expiry().is_some_and(|expiry| expiry <= now) {
            return Err(IamError::Expired);
        }
        let token = sign_token(&credentials, &self.region, now)?;
        self.signed.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }

    /// How many tokens this signer has handed out, which shows librdkafka asking for them.
    pub fn tokens_signed(&self) -> u64 {
        self.signed.load(Ordering::Relaxed)
    }

    fn current(&self) -> Credentials {
        self.credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Keeps the signer's credentials fresh until the signer is dropped.
async fn refresh(signer: Weak<MskIamSigner>, provider: SharedCredentialsProvider) {
    let mut delay = match signer.upgrade() {
        Some(signer) => refresh_delay(&signer.current(), SystemTime::now()),
        None => return,
    };
    loop {
        tokio::time::sleep(delay).await;
        let fetched = provider.provide_credentials().await;
        let Some(signer) = signer.upgrade() else {
            return;
        };
        delay = match fetched {
            Ok(credentials) => {
                let delay = refresh_delay(&credentials, SystemTime::now());
                *signer
                    .credentials
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = credentials;
                tracing::debug!(next_in = ?delay, "refreshed AWS credentials for MSK IAM");
                delay
            }
            Err(error) => {
                let error = error_chain(&error);
                tracing::warn!(%error, "cannot refresh AWS credentials for MSK IAM; will retry");
                RETRY_AFTER
            }
        };
    }
}

/// When to fetch credentials next: ahead of their expiry, and at least now and then.
fn refresh_delay(credentials: &Credentials, now: SystemTime) -> Duration {
    match credentials.expiry() {
        None => MAX_REFRESH,
        Some(expiry) => expiry
            .duration_since(now)
            .unwrap_or_default()
            .saturating_sub(REFRESH_MARGIN)
            .clamp(Duration::from_secs(10), MAX_REFRESH),
    }
}

/// The SDK's errors say little at the top level; their sources say which provider failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<String>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    const KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SESSION: &str = "session/token+with=reserved chars";
    const REGION: &str = "eu-west-1";
    /// 2026-01-02T03:04:05Z.
    const SIGNED_AT: u64 = 1_767_323_045;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(SIGNED_AT)
    }

    fn credentials(session: Option<&str>) -> Credentials {
        Credentials::new(KEY_ID, SECRET, session.map(str::to_owned), None, "test")
    }

    /// The token decoded into its URL's host, path and query parameters, in order and still
    /// percent-encoded.
    fn decode(token: &str) -> (String, String, Vec<(String, String)>) {
        assert!(!token.contains('='), "base64url without padding");
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(token).unwrap()).unwrap();
        let rest = url.strip_prefix("https://").expect("an https URL");
        let (host, rest) = rest.split_once('/').unwrap();
        let (path, query) = rest.split_once('?').unwrap();
        let params = query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        (host.to_owned(), format!("/{path}"), params)
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// SigV4 for a presigned GET, written out from the specification rather than through
    /// aws-sigv4: the canonical query, request, string to sign and the derived key.
    fn expected_signature(session: Option<&str>) -> (String, String) {
        let escape = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let mut query = vec![
            ("Action".to_owned(), "kafka-cluster%3AConnect".to_owned()),
            ("X-Amz-Algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
            (
                "X-Amz-Credential".to_owned(),
                escape(&format!(
                    "{KEY_ID}/20260102/{REGION}/kafka-cluster/aws4_request"
                )),
            ),
            ("X-Amz-Date".to_owned(), "20260102T030405Z".to_owned()),
            ("X-Amz-Expires".to_owned(), "900".to_owned()),
            ("X-Amz-SignedHeaders".to_owned(), "host".to_owned()),
        ];
        if let Some(session) = session {
            query.push(("X-Amz-Security-Token".to_owned(), escape(session)));
        }
        query.sort();
        let canonical_query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let empty_body = hex(&Sha256::digest(b""));
        let canonical_request = format!(
            "GET\n/\n{canonical_query}\nhost:kafka.{REGION}.amazonaws.com\n\nhost\n{empty_body}"
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20260102T030405Z\n20260102/{REGION}/kafka-cluster/aws4_request\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let key = hmac(format!("AWS4{SECRET}").as_bytes(), "20260102");
        let key = hmac(&key, REGION);
        let key = hmac(&key, "kafka-cluster");
        let key = hmac(&key, "aws4_request");
        (canonical_query, hex(&hmac(&key, &string_to_sign)))
    }

    fn check_token(session: Option<&str>) {
        let token = sign_token(&credentials(session), REGION, at()).unwrap();
        assert_eq!(
            token.expires_at_ms,
            i64::try_from((SIGNED_AT + 900) * 1000).unwrap()
        );
        let (host, path, params) = decode(&token.token);
        assert_eq!(host, "kafka.eu-west-1.amazonaws.com");
        assert_eq!(path, "/");
        assert_eq!(
            params[0],
            ("Action".into(), "kafka-cluster%3AConnect".into())
        );
        assert_eq!(param(&params, "X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(
            param(&params, "X-Amz-Credential"),
            Some("AKIDEXAMPLE%2F20260102%2Feu-west-1%2Fkafka-cluster%2Faws4_request")
        );
        assert_eq!(param(&params, "X-Amz-Date"), Some("20260102T030405Z"));
        assert_eq!(param(&params, "X-Amz-Expires"), Some("900"));
        assert_eq!(param(&params, "X-Amz-SignedHeaders"), Some("host"));
        let user_agent = params.last().unwrap();
        assert_eq!(user_agent.0, "User-Agent");
        assert!(user_agent.1.starts_with("vigil%2F"), "{user_agent:?}");
        match session {
            Some(session) => assert_eq!(
                param(&params, "X-Amz-Security-Token"),
                Some(
                    session
                        .replace('/', "%2F")
                        .replace('+', "%2B")
                        .replace('=', "%3D")
                        .replace(' ', "%20")
                        .as_str()
                )
            ),
            None => assert_eq!(param(&params, "X-Amz-Security-Token"), None),
        }

        let (canonical_query, signature) = expected_signature(session);
        let mut signed: Vec<_> = params
            .iter()
            .filter(|(k, _)| k != "X-Amz-Signature" && k != "User-Agent")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        signed.sort();
        assert_eq!(signed.join("&"), canonical_query);
        assert_eq!(param(&params, "X-Amz-Signature"), Some(signature.as_str()));
    }

    #[test]
    fn token_is_a_presigned_connect_url_for_long_term_keys() {
        check_token(None);
    }

    #[test]
    fn token_carries_and_signs_the_session_token_of_temporary_credentials() {
        check_token(Some(SESSION));
    }

    #[test]
    fn a_different_secret_gives_a_different_signature() {
        let other = Credentials::new(KEY_ID, "another secret", None, None, "test");
        let (_, _, params) = decode(&sign_token(&other, REGION, at()).unwrap().token);
        let (_, expected) = expected_signature(None);
        assert_ne!(param(&params, "X-Amz-Signature"), Some(expected.as_str()));
    }

    #[test]
    fn regions_that_are_not_host_labels_are_refused() {
        for region in ["", "eu-west-1/../x", "EU West", "eu-west-1.evil.com"] {
            let error = sign_token(&credentials(None), region, at()).unwrap_err();
            assert!(
                matches!(error, IamError::InvalidRegion(_)),
                "{region}: {error}"
            );
        }
    }

    #[test]
    fn expired_credentials_sign_nothing() {
        let expired = Credentials::new(
            KEY_ID,
            SECRET,
            Some(SESSION.into()),
            Some(SystemTime::now() - Duration::from_secs(1)),
            "test",
        );
        let signer = MskIamSigner::new(REGION.into(), expired);
        assert!(matches!(signer.token(), Err(IamError::Expired)));
        assert_eq!(signer.tokens_signed(), 0);
    }

    #[test]
    fn credentials_are_refreshed_ahead_of_expiry() {
        let now = at();
        let expiring = |secs| {
            Credentials::new(
                KEY_ID,
                SECRET,
                None,
                Some(now + Duration::from_secs(secs)),
                "test",
            )
        };
        assert_eq!(
            refresh_delay(&expiring(3600), now),
            Duration::from_secs(900)
        );
        assert_eq!(refresh_delay(&expiring(600), now), Duration::from_secs(300));
        assert_eq!(refresh_delay(&expiring(60), now), Duration::from_secs(10));
        assert_eq!(refresh_delay(&credentials(None), now), MAX_REFRESH);
    }

    #[tokio::test]
    async fn no_region_is_one_clear_error() {
        let config = SdkConfig::builder().build();
        let error = MskIamSigner::from_sdk_config(&config).await.unwrap_err();
        assert!(matches!(error, IamError::NoRegion));
        let message = error.to_string();
        assert!(message.contains("bus.kafka.region"), "{message}");
        assert!(message.contains("AWS_REGION"), "{message}");
    }

    #[tokio::test]
    async fn no_credentials_is_one_clear_error() {
        let config = SdkConfig::builder().region(Region::new(REGION)).build();
        let error = MskIamSigner::from_sdk_config(&config).await.unwrap_err();
        assert!(matches!(error, IamError::NoCredentials(_)));
        assert!(error.to_string().contains("AWS_ACCESS_KEY_ID"), "{error}");
    }

    #[tokio::test]
    async fn a_loaded_signer_signs_for_its_region() {
        let config = SdkConfig::builder()
            .region(Region::new("us-east-2"))
            .credentials_provider(SharedCredentialsProvider::new(credentials(None)))
            .build();
        let signer = MskIamSigner::from_sdk_config(&config).await.unwrap();
        let (host, _, _) = decode(&signer.token().unwrap().token);
        assert_eq!(host, "kafka.us-east-2.amazonaws.com");
        assert_eq!(signer.tokens_signed(), 1);
    }
}
