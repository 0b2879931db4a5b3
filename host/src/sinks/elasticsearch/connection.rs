//! How the sink reaches the cluster: the CA to trust, a client certificate, and the
//! `Authorization` header (basic auth or an API key), with the secrets read from the
//! environment or files at start and marked sensitive so no log or error shows them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{AUTHORIZATION, HeaderValue};
use elasticsearch::http::transport::TransportBuilder;

use super::config::ElasticsearchConfig;
use crate::util::{Invalid, SecretRef};

/// Adds the TLS settings and credentials of `cfg` to `transport`. Errors name the key (relative
/// to the sink) and the file or variable, never a secret.
pub(super) fn secure(
    cfg: &ElasticsearchConfig,
    mut transport: TransportBuilder,
) -> Result<TransportBuilder, Invalid> {
    if let Some(header) = authorization(cfg)? {
        transport = transport.header(AUTHORIZATION, header);
    }
    if let Some(path) = &cfg.ca_file {
        let pem = read("ca_file", path)?;
        let ca = Certificate::from_pem(&pem).map_err(|e| {
            Invalid::new(
                "ca_file",
                format!("{}: not a PEM certificate: {e}", path.display()),
            )
        })?;
        transport = transport.cert_validation(CertificateValidation::Full(ca));
    }
    if !cfg.tls_verify {
        tracing::warn!(
            url = %cfg.url,
            "elasticsearch sink: TLS certificate verification is OFF (tls_verify = false): \
             anyone on the path can read and change what is sent"
        );
        transport = transport.cert_validation(CertificateValidation::None);
    }
    if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
        // rustls takes the key and the certificate chain from one PEM buffer.
        let mut pem = read("key_file", key)?;
        pem.push(b'\n');
        pem.extend(read("cert_file", cert)?);
        transport = transport.auth(Credentials::Certificate(ClientCertificate::Pem(pem)));
    }
    Ok(transport)
}

fn read(key: &str, path: &std::path::Path) -> Result<Vec<u8>, Invalid> {
    std::fs::read(path)
        .map_err(|e| Invalid::new(key, format!("cannot read {}: {e}", path.display())))
}

/// `Basic base64(user:password)` or `ApiKey base64(id:key)`, if configured.
fn authorization(cfg: &ElasticsearchConfig) -> Result<Option<HeaderValue>, Invalid> {
    let value = if let Some(key) = cfg.api_key_ref().read()? {
        let key = key.expose().trim();
        // `id:key` as created; otherwise the encoded form Kibana and Elastic Cloud hand out.
        let encoded = if key.contains(':') {
            BASE64.encode(key)
        } else {
            key.to_string()
        };
        format!("ApiKey {encoded}")
    } else if let Some(password) = cfg.password_ref().read()? {
        let user = match (&cfg.username, &cfg.username_env) {
            (Some(user), _) => user.clone(),
            (None, var) => SecretRef::new("username", var, &None)
                .read()?
                .map(|u| u.expose().to_string())
                .unwrap_or_default(),
        };
        format!(
            "Basic {}",
            BASE64.encode(format!("{user}:{}", password.expose()))
        )
    } else {
        return Ok(None);
    };
    let mut header = HeaderValue::from_str(&value).map_err(|_| {
        let key = if cfg.api_key_ref().is_set() {
            "api_key_env"
        } else {
            "password_env"
        };
        Invalid::new(key, "holds characters an HTTP header cannot carry")
    })?;
    header.set_sensitive(true);
    Ok(Some(header))
}
