//! `security`: how a Kafka client (source, sink or dead letter) encrypts and authenticates:
//! TLS with the CA to trust and an optional client certificate, SASL PLAIN or SCRAM. Secrets
//! come from environment variables or files, and a client that the broker refuses
//! (authentication, an unknown CA, a certificate for another host) stops the start with the
//! cause and the key to fix instead of retrying forever.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::util::secret::inline_secret;
use crate::util::{ConfigValue, Invalid, SecretRef};

/// `[...security]` of a Kafka source, sink or dead letter.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSecurity {
    pub protocol: Protocol,
    /// With `sasl_plaintext` and `sasl_ssl`.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// The SASL user: written here, or read from an environment variable.
    pub username: Option<String>,
    pub username_env: Option<String>,
    /// The SASL password, from an environment variable or a file.
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the brokers' certificates; unset: the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Passphrase of an encrypted `key_file`.
    pub key_password_env: Option<String>,
    pub key_password_file: Option<PathBuf>,
    /// Check that the broker's certificate names the host connected to. Turning it off lets
    /// anyone with a certificate from the CA pose as the broker.
    pub verify_hostname: bool,
    /// Never accepted: present so the refusal can say what to write instead.
    password: Option<IgnoredAny>,
    key_password: Option<IgnoredAny>,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        Self {
            protocol: Protocol::Plaintext,
            sasl_mechanism: None,
            username: None,
            username_env: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password_env: None,
            key_password_file: None,
            verify_hostname: true,
            password: None,
            key_password: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaSecurity {
    fn password(&self) -> SecretRef<'_> {
        SecretRef::new("password", &self.password_env, &self.password_file)
    }

    fn key_password(&self) -> SecretRef<'_> {
        SecretRef::new(
            "key_password",
            &self.key_password_env,
            &self.key_password_file,
        )
    }

    /// The same settings with relative file paths taken from `base` (the pipeline file's
    /// directory).
    pub fn relative_to(&self, base: &Path) -> Self {
        let join = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        Self {
            password_file: join(&self.password_file),
            ca_file: join(&self.ca_file),
            cert_file: join(&self.cert_file),
            key_file: join(&self.key_file),
            key_password_file: join(&self.key_password_file),
            ..self.clone()
        }
    }

    /// Checks the settings without reading files or the environment. Keys are relative to
    /// the `security` table.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.password.is_some() {
            return Err(inline_secret("password"));
        }
        if self.key_password.is_some() {
            return Err(inline_secret("key_password"));
        }
        self.password().validate()?;
        self.key_password().validate()?;
        let protocol = self.protocol.as_str();
        if self.protocol.sasl() {
            if self.sasl_mechanism.is_none() {
                return Err(Invalid::new(
                    "sasl_mechanism",
                    format!(
                        "protocol `{protocol}` needs one: \"PLAIN\", \"SCRAM-SHA-256\" or \"SCRAM-SHA-512\""
                    ),
                ));
            }
            match (&self.username, &self.username_env) {
                (None, None) => {
                    return Err(Invalid::new(
                        "username",
                        format!("protocol `{protocol}` needs `username` or `username_env`"),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(Invalid::new(
                        "username_env",
                        "set `username` or `username_env`, not both",
                    ));
                }
                _ => {}
            }
            if !self.password().is_set() {
                return Err(Invalid::new(
                    "password_env",
                    format!("protocol `{protocol}` needs `password_env` or `password_file`"),
                ));
            }
        } else {
            let sasl_only = [
                ("sasl_mechanism", self.sasl_mechanism.is_some()),
                ("username", self.username.is_some()),
                ("username_env", self.username_env.is_some()),
                ("password_env", self.password_env.is_some()),
                ("password_file", self.password_file.is_some()),
            ];
            if let Some((key, _)) = sasl_only.iter().find(|(_, set)| *set) {
                return Err(Invalid::new(
                    *key,
                    format!(
                        "SASL is off with protocol `{protocol}`: use \"sasl_ssl\" (or \"sasl_plaintext\")"
                    ),
                ));
            }
        }
        if !self.protocol.tls() {
            let tls_only = [
                ("ca_file", self.ca_file.is_some()),
                ("cert_file", self.cert_file.is_some()),
                ("key_file", self.key_file.is_some()),
            ];
            if let Some((key, _)) = tls_only.iter().find(|(_, set)| *set) {
                return Err(Invalid::new(
                    *key,
                    format!("TLS is off with protocol `{protocol}`: use \"ssl\" or \"sasl_ssl\""),
                ));
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Invalid::new(
                "key_file",
                "set both `cert_file` and `key_file` (mutual TLS), or neither",
            ));
        }
        if self.key_password().is_set() && self.key_file.is_none() {
            return Err(Invalid::new(
                "key_password_env",
                "is for an encrypted `key_file`, which is not set",
            ));
        }
        Ok(())
    }

    /// Sets librdkafka's `security.protocol`, `sasl.*` and `ssl.*`, reading the secrets.
    /// Errors name keys relative to the `security` table.
    pub fn apply(&self, c: &mut ClientConfig) -> Result<(), Invalid> {
        self.apply_settings(c)?;
        match (&self.username, &self.username_env) {
            (Some(user), _) => {
                c.set("sasl.username", user);
            }
            (None, Some(var)) => {
                let user = SecretRef::new("username", &self.username_env, &None)
                    .read()?
                    .ok_or_else(|| Invalid::new("username_env", format!("names ${var}")))?;
                c.set("sasl.username", user.expose());
            }
            (None, None) => {}
        }
        if let Some(password) = self.password().read()? {
            c.set("sasl.password", password.expose());
        }
        for (key, file, setting) in [
            ("ca_file", &self.ca_file, "ssl.ca.location"),
            ("cert_file", &self.cert_file, "ssl.certificate.location"),
            ("key_file", &self.key_file, "ssl.key.location"),
        ] {
            if let Some(path) = file {
                // librdkafka's own message for a missing file names neither the file nor the key.
                std::fs::File::open(path).map_err(|e| {
                    Invalid::new(key, format!("cannot read {}: {e}", path.display()))
                })?;
                c.set(setting, path.to_string_lossy());
            }
        }
        if let Some(pass) = self.key_password().read()? {
            c.set("ssl.key.password", pass.expose());
        }
        Ok(())
    }

    /// What [`Self::apply`] sets except the user, the secrets and the files: for `host check`,
    /// which runs without them.
    pub fn apply_settings(&self, c: &mut ClientConfig) -> Result<(), Invalid> {
        self.validate()?;
        c.set("security.protocol", self.protocol.as_str());
        if let Some(m) = self.sasl_mechanism {
            c.set("sasl.mechanism", m.as_str());
            if self.protocol == Protocol::SaslPlaintext {
                tracing::warn!(
                    mechanism = m.as_str(),
                    "Kafka: SASL over plaintext (security.protocol = \"sasl_plaintext\"): \
                     traffic is not encrypted{}",
                    if m == SaslMechanism::Plain {
                        " and the password crosses the network as it is"
                    } else {
                        ""
                    }
                );
            }
        }
        if self.protocol.tls() {
            if self.verify_hostname {
                c.set("ssl.endpoint.identification.algorithm", "https");
            } else {
                tracing::warn!(
                    "Kafka: broker hostname verification is OFF (security.verify_hostname = \
                     false): any holder of a certificate from the trusted CA can pose as the broker"
                );
                c.set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        Ok(())
    }
}

/// librdkafka properties that hold secrets, or that `security` sets: refused in `properties`.
const SECRET_PROPERTIES: &[(&str, &str)] = &[
    ("sasl.password", "security.password_env"),
    ("ssl.key.password", "security.key_password_env"),
    ("ssl.keystore.password", "security.key_password_env"),
    ("ssl.key.pem", "security.key_file"),
    ("sasl.oauthbearer.client.secret", "security.password_env"),
    ("sasl.oauthbearer.config", "security"),
];
const SECURITY_PROPERTIES: &[(&str, &str)] = &[
    ("security.protocol", "security.protocol"),
    ("sasl.mechanism", "security.sasl_mechanism"),
    ("sasl.mechanisms", "security.sasl_mechanism"),
    ("sasl.username", "security.username"),
    ("ssl.ca.location", "security.ca_file"),
    ("ssl.certificate.location", "security.cert_file"),
    ("ssl.key.location", "security.key_file"),
    (
        "ssl.endpoint.identification.algorithm",
        "security.verify_hostname",
    ),
];

/// Refuses secrets and security settings in a client's free-form `properties`.
pub fn check_properties(properties: &BTreeMap<String, ConfigValue>) -> Result<(), Invalid> {
    for key in properties.keys() {
        let k = key.trim();
        let field = format!("properties.\"{k}\"");
        if let Some((_, instead)) = SECRET_PROPERTIES.iter().find(|(p, _)| *p == k) {
            return Err(Invalid::new(
                field,
                format!("a secret is not written in the pipeline file: use `{instead}`"),
            ));
        }
        if let Some((_, instead)) = SECURITY_PROPERTIES.iter().find(|(p, _)| *p == k) {
            return Err(Invalid::new(field, format!("set it with `{instead}`")));
        }
    }
    Ok(())
}

/// How long a secured client's first connection may take before the start goes on without
/// it (the broker may just be down: the client keeps trying, like a plaintext one).
const CHECK_TIMEOUT: Duration = Duration::from_secs(8);

/// For a TLS or SASL client: connects once with `config` (from [`super::client_config`]) and
/// fails, naming the cause and the key to fix, if the broker refuses it: wrong credentials,
/// a certificate from an unknown CA or for another host, a client certificate it requires.
/// librdkafka would otherwise retry such a client forever. Blocks for up to 8 s.
pub fn check_connection(
    config: &ClientConfig,
    brokers: &str,
    security: &KafkaSecurity,
) -> anyhow::Result<()> {
    if security.protocol == Protocol::Plaintext {
        return Ok(());
    }
    let (code, reason) = match probe(config, CHECK_TIMEOUT)? {
        Probed::Connected => return Ok(()),
        Probed::Silent => {
            tracing::warn!(
                brokers,
                "Kafka did not answer within {CHECK_TIMEOUT:?}; starting anyway, the client keeps trying"
            );
            return Ok(());
        }
        Probed::Refused(code, reason) => (code, reason),
    };
    // librdkafka words an unknown CA and a certificate for another host the same way: if the
    // handshake passes without the hostname check, the name is the problem.
    let mut advice = hint(code, &reason);
    if code == RDKafkaErrorCode::SSL && security.verify_hostname && reason.contains("verify") {
        let mut lenient = config.clone();
        lenient.set("ssl.endpoint.identification.algorithm", "none");
        if !matches!(
            probe(&lenient, Duration::from_secs(3))?,
            Probed::Refused(RDKafkaErrorCode::SSL, _)
        ) {
            advice = "the CA is right, but the broker's certificate does not name the host in \
                    `brokers`: connect by a name the certificate carries";
        }
    }
    anyhow::bail!("Kafka at {brokers} refused the connection: {reason} ({advice})")
}

enum Probed {
    Connected,
    Refused(RDKafkaErrorCode, String),
    /// No answer and no refusal in time (a broker that is down, a network that drops).
    Silent,
}

/// Asks for metadata until a broker answers, refuses, or `timeout` passes.
fn probe(config: &ClientConfig, timeout: Duration) -> anyhow::Result<Probed> {
    let probe: BaseProducer<Probe> = config
        .create_with_context(Probe::default())
        .map_err(|e| anyhow::anyhow!("Kafka client settings: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        probe.poll(Duration::from_millis(50));
        let refused = probe.context().refused.lock().unwrap().take();
        if let Some((code, reason)) = refused {
            return Ok(Probed::Refused(code, reason));
        }
        if probe
            .client()
            .fetch_metadata(None, Duration::from_millis(200))
            .is_ok()
        {
            return Ok(Probed::Connected);
        }
        if Instant::now() >= deadline {
            return Ok(Probed::Silent);
        }
    }
}

/// The key most likely to fix a refusal.
fn hint(code: RDKafkaErrorCode, reason: &str) -> &'static str {
    let reason = reason.to_ascii_lowercase();
    match code {
        RDKafkaErrorCode::SSL if reason.contains("verify") => {
            "check `security.ca_file`: it must hold the CA that signed the broker's certificate, \
             and the certificate must name the host in `brokers`"
        }
        RDKafkaErrorCode::SSL if reason.contains("certificate") => {
            "the broker may require a client certificate: check `security.cert_file` and \
             `security.key_file`"
        }
        RDKafkaErrorCode::SSL => "check `security.protocol` and the TLS settings",
        RDKafkaErrorCode::UnsupportedSASLMechanism | RDKafkaErrorCode::IllegalSASLState => {
            "check `security.sasl_mechanism` against what the broker enables"
        }
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::GroupAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => {
            "the user is known but not allowed: check the broker's ACLs for it"
        }
        _ => {
            "check `security.username` (or `username_env`), `security.password_env` (or \
             `password_file`) and `security.sasl_mechanism`"
        }
    }
}

/// The probe's client context: keeps the first refusal, stays quiet otherwise (the real
/// client logs what matters).
#[derive(Default)]
struct Probe {
    refused: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ProducerContext for Probe {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

impl ClientContext for Probe {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}

    fn error(&self, error: KafkaError, reason: &str) {
        let Some(code) = error.rdkafka_error_code() else {
            return;
        };
        // A TLS alert from the broker (e.g. a client certificate it requires and did not get)
        // arrives as a transport failure after the handshake.
        let code =
            if code == RDKafkaErrorCode::BrokerTransportFailure && reason.contains("SSL alert") {
                RDKafkaErrorCode::SSL
            } else {
                code
            };
        let refusal = matches!(
            code,
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnsupportedSASLMechanism
                | RDKafkaErrorCode::IllegalSASLState
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
        );
        let mut refused = self.refused.lock().unwrap();
        if refusal && refused.is_none() {
            *refused = Some((code, reason.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> KafkaSecurity {
        let v: serde_json::Value = serde_json::from_str(toml).unwrap();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn sasl_ssl_with_scram_sets_librdkafka() {
        let dir = std::env::temp_dir().join(format!("sluice-kafka-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("SLUICE_TEST_KAFKA_PW", "s3cret-pw") };
        let s = parse(&format!(
            r#"{{"protocol":"sasl_ssl","sasl_mechanism":"SCRAM-SHA-512","username":"u",
                "password_env":"SLUICE_TEST_KAFKA_PW","ca_file":{:?}}}"#,
            ca.to_str().unwrap()
        ));
        let mut c = ClientConfig::new();
        s.apply(&mut c).unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("s3cret-pw"));
        assert_eq!(
            c.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        assert!(!format!("{s:?}").contains("s3cret-pw"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refusals_name_the_key() {
        let key = |json: &str| parse(json).validate().unwrap_err().key;
        assert_eq!(key(r#"{"protocol":"sasl_ssl","password":"x"}"#), "password");
        assert_eq!(
            key(r#"{"protocol":"sasl_ssl","username":"u","password_env":"P"}"#),
            "sasl_mechanism"
        );
        assert_eq!(
            key(r#"{"protocol":"sasl_ssl","sasl_mechanism":"PLAIN","password_env":"P"}"#),
            "username"
        );
        assert_eq!(
            key(r#"{"protocol":"ssl","username":"u","password_env":"P"}"#),
            "username"
        );
        assert_eq!(key(r#"{"ca_file":"ca.pem"}"#), "ca_file");
        assert_eq!(key(r#"{"protocol":"ssl","cert_file":"c.pem"}"#), "key_file");
        assert!(
            parse(r#"{"protocol":"ssl","ca_file":"ca.pem"}"#)
                .validate()
                .is_ok()
        );
        assert!(parse("{}").validate().is_ok());

        let props: BTreeMap<String, ConfigValue> =
            [("sasl.password".to_string(), ConfigValue::Str("x".into()))].into();
        let e = check_properties(&props).unwrap_err();
        assert_eq!(e.key, "properties.\"sasl.password\"");
        assert!(e.message.contains("security.password_env"));
        assert!(!e.to_string().contains("\"x\""));
    }
}
