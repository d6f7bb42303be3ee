//! The client context every rdkafka client Vigil creates carries, so that each can answer
//! librdkafka's OAUTHBEARER token requests.

use std::error::Error;
use std::ffi::CString;
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, OAuthToken};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::ClientContext;

use crate::iam::MskIamSigner;

/// MSK does not use the principal name of an IAM token, but librdkafka needs one.
const PRINCIPAL: &str = "vigil";

/// Signs OAUTHBEARER tokens with MSK IAM when configured; otherwise plain.
#[derive(Clone, Default)]
pub(crate) struct AuthContext {
    iam: Option<Arc<MskIamSigner>>,
}

impl AuthContext {
    pub(crate) fn msk_iam(signer: Arc<MskIamSigner>) -> Self {
        AuthContext { iam: Some(signer) }
    }

    /// Gives a new client its first token at once. Clients that poll their main queue would
    /// ask for one themselves, but the admin client never does, and the short-lived readers
    /// fetch metadata before they ever poll; without this they would time out unauthenticated.
    #[allow(unsafe_code, reason = "librdkafka takes the token through its C API")]
    pub(crate) fn prime<C: ClientContext>(
        &self,
        config: &ClientConfig,
        client: &Client<C>,
    ) -> Result<(), String> {
        let Some(signer) = &self.iam else {
            return Ok(());
        };
        // `properties` may have replaced the mechanism (a test broker without SASL, say).
        if !config
            .get("sasl.mechanism")
            .is_some_and(|m| m.eq_ignore_ascii_case("OAUTHBEARER"))
        {
            return Ok(());
        }
        let token = signer.token().map_err(|e| e.to_string())?;
        let value = CString::new(token.token).map_err(|e| e.to_string())?;
        let principal = CString::new(PRINCIPAL).map_err(|e| e.to_string())?;
        let mut error = [0 as std::ffi::c_char; 512];
        // SAFETY: the client pointer is live for the borrow of `client`; the strings and the
        // error buffer outlive the call, which copies what it keeps; no extensions are passed.
        let code = unsafe {
            rdsys::rd_kafka_oauthbearer_set_token(
                client.native_ptr(),
                value.as_ptr(),
                token.expires_at_ms,
                principal.as_ptr(),
                std::ptr::null_mut(),
                0,
                error.as_mut_ptr(),
                error.len(),
            )
        };
        if code == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            // SAFETY: librdkafka writes a NUL-terminated message into the buffer on failure,
            // and the buffer was zeroed, so it is terminated either way.
            let message = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) };
            Err(format!(
                "librdkafka refused the MSK IAM token: {}",
                message.to_string_lossy()
            ))
        }
    }
}

impl ClientContext for AuthContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn Error>> {
        let signer = self.iam.as_ref().ok_or(
            "sasl.mechanism OAUTHBEARER is supported only with bus.kafka.auth = \"msk-iam\"",
        )?;
        let token = signer.token().map_err(|error| {
            tracing::warn!(%error, "cannot sign an MSK IAM token");
            error
        })?;
        Ok(OAuthToken {
            token: token.token,
            principal_name: PRINCIPAL.to_owned(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

impl ConsumerContext for AuthContext {}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use aws_credential_types::Credentials;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    use super::*;
    use crate::{Auth, Config};

    /// An IAM reader whose broker address has nothing listening: enough for librdkafka to
    /// start SASL/OAUTHBEARER and ask for a token, without TLS or a broker.
    fn reader(auth: &AuthContext) -> (ClientConfig, BaseConsumer<AuthContext>) {
        let mut options = Config {
            brokers: "127.0.0.1:9".into(),
            auth: Auth::MskIam,
            region: Some("eu-west-1".into()),
            ..Config::default()
        };
        options
            .properties
            .insert("security.protocol".into(), "SASL_PLAINTEXT".into());
        let config = options.reader_config();
        let consumer = config.create_with_context(auth.clone()).unwrap();
        (config, consumer)
    }

    fn signer() -> Arc<MskIamSigner> {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        Arc::new(MskIamSigner::new("eu-west-1".into(), credentials))
    }

    #[test]
    fn librdkafka_accepts_the_primed_token_and_asks_the_context_for_more() {
        let signer = signer();
        let auth = AuthContext::msk_iam(signer.clone());
        let (config, consumer) = reader(&auth);
        auth.prime(&config, consumer.client()).unwrap();
        assert_eq!(signer.tokens_signed(), 1);
        // The refresh librdkafka queued when the client started reaches the context on poll.
        let deadline = Instant::now() + Duration::from_secs(10);
        while signer.tokens_signed() < 2 {
            assert!(
                Instant::now() < deadline,
                "librdkafka never asked for a token"
            );
            let _ = consumer.poll(Duration::from_millis(100));
        }
    }

    #[test]
    fn a_client_without_oauthbearer_is_left_alone() {
        let signer = signer();
        let auth = AuthContext::msk_iam(signer.clone());
        let config = Config::default().reader_config();
        let consumer: BaseConsumer<AuthContext> = config.create_with_context(auth.clone()).unwrap();
        auth.prime(&config, consumer.client()).unwrap();
        assert_eq!(signer.tokens_signed(), 0);
    }

    #[test]
    fn without_iam_the_context_refuses_to_invent_a_token() {
        let Err(error) = AuthContext::default().generate_oauth_token(None) else {
            panic!("a token without a signer");
        };
        assert!(error.to_string().contains("msk-iam"), "{error}");
    }
}
