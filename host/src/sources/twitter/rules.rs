//! Stream-rule reconciliation at start (`GET`/`POST /2/tweets/search/stream/rules`): the rules
//! become exactly the configured keywords, each request retried with backoff.

use anyhow::{Context, bail};
use reqwest::{Client, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::backoff::{Backoffs, Failure, body_excerpt, rate_limit_reset};
use super::config::TwitterConfig;
use crate::util::error_chain;

const RULES_PATH: &str = "/2/tweets/search/stream/rules";
/// Attempts of one rules request before start-up fails.
const RULES_ATTEMPTS: u32 = 5;

/// What a rules request needs: the options, the HTTP client and the bearer token.
pub(super) struct Rules<'a> {
    pub(super) cfg: &'a TwitterConfig,
    pub(super) client: &'a Client,
    pub(super) token: &'a str,
}

/// What [`Rules::reconcile`] changed, for the source's counters.
pub(super) struct RulesChange {
    pub(super) kept: usize,
    pub(super) added: usize,
    pub(super) deleted: usize,
}

impl Rules<'_> {
    /// Makes the stream rules exactly the configured keywords (`value = tag = keyword`).
    pub(super) async fn reconcile(&self) -> anyhow::Result<RulesChange> {
        let wanted = self.cfg.wanted_rules();
        let listed = self.request(Method::GET, None).await?;
        let existing: Vec<ExistingRule> = match listed.get("data") {
            Some(data) => serde_json::from_value(data.clone())
                .context("twitter source: unexpected rules list from the API")?,
            None => Vec::new(),
        };
        let mut kept: Vec<&str> = Vec::new();
        let mut delete: Vec<&ExistingRule> = Vec::new();
        for rule in &existing {
            let wanted_here = wanted.contains(&rule.value)
                && rule.tag.as_deref() == Some(rule.value.as_str())
                && !kept.contains(&rule.value.as_str());
            if wanted_here {
                kept.push(&rule.value);
            } else {
                delete.push(rule);
            }
        }
        let add: Vec<&String> = wanted
            .iter()
            .filter(|w| !kept.contains(&w.as_str()))
            .collect();

        if !delete.is_empty() {
            let ids: Vec<&str> = delete.iter().map(|r| r.id.as_str()).collect();
            let body = json!({"delete": {"ids": ids}});
            let answer = self.request(Method::POST, Some(body)).await?;
            let deleted = answer
                .pointer("/meta/summary/deleted")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if deleted as usize != ids.len() {
                let errors = answer.get("errors").cloned().unwrap_or_default();
                tracing::warn!(
                    "twitter rules: asked to delete {} rules, {deleted} deleted: {errors}",
                    ids.len()
                );
            }
        }
        if !add.is_empty() {
            let rules: Vec<Value> = add.iter().map(|k| json!({"value": k, "tag": k})).collect();
            let answer = self
                .request(Method::POST, Some(json!({ "add": rules })))
                .await?;
            let rejected: Vec<String> = answer
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| e.get("title").and_then(Value::as_str) != Some("DuplicateRule"))
                .map(Value::to_string)
                .collect();
            if !rejected.is_empty() {
                bail!(
                    "twitter source: the API rejected rules: {}",
                    rejected.join("; ")
                );
            }
        }
        let describe = |v: &[&str]| format!("[{}]", v.join(", "));
        let deleted: Vec<&str> = delete.iter().map(|r| r.value.as_str()).collect();
        let added: Vec<&str> = add.iter().map(|s| s.as_str()).collect();
        if delete.is_empty() && add.is_empty() {
            tracing::info!("twitter rules up to date: {}", describe(&kept));
        } else {
            tracing::info!(
                "twitter rules reconciled: kept {}, deleted {}, added {}",
                describe(&kept),
                describe(&deleted),
                describe(&added)
            );
        }
        Ok(RulesChange {
            kept: kept.len(),
            added: add.len(),
            deleted: delete.len(),
        })
    }

    /// A rules request, retried with backoff on transient failures; auth failures and
    /// rejected requests are errors at once.
    async fn request(&self, method: Method, body: Option<Value>) -> anyhow::Result<Value> {
        let url = self.cfg.url(RULES_PATH)?;
        let mut backoff = Backoffs::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .bearer_auth(self.token)
                .timeout(self.cfg.request_timeout);
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let (failure, why) = match request.send().await {
                Err(e) => (Failure::Network, error_chain(&e)),
                Ok(response) => {
                    let status = response.status();
                    let reset_at = rate_limit_reset(response.headers());
                    if status.is_success() {
                        let bytes = response.bytes().await.with_context(|| {
                            format!("twitter source: reading the answer of {method} {RULES_PATH}")
                        })?;
                        return serde_json::from_slice(&bytes).with_context(|| {
                            format!("twitter source: {method} {RULES_PATH} did not answer JSON")
                        });
                    }
                    let text = body_excerpt(response).await;
                    let what = format!("HTTP {status} from {method} {RULES_PATH}: {text}");
                    match status {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
                            "twitter source: {what} (the bearer token in ${} was rejected)",
                            self.cfg.bearer_token_env
                        ),
                        StatusCode::TOO_MANY_REQUESTS => (Failure::RateLimited { reset_at }, what),
                        s if s.is_server_error() => (Failure::Http, what),
                        _ => bail!("twitter source: {what}"),
                    }
                }
            };
            if attempt >= RULES_ATTEMPTS {
                bail!("twitter source: {method} {RULES_PATH} failed {attempt} times; last: {why}");
            }
            let wait = backoff.next(failure, self.cfg.backoff_scale, self.cfg.max_backoff);
            tracing::warn!(
                "twitter rules request failed: {why}; retrying in {}",
                humantime::format_duration(wait)
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[derive(Deserialize)]
struct ExistingRule {
    id: String,
    value: String,
    #[serde(default)]
    tag: Option<String>,
}
