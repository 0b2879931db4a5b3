//! BigQuery: load jobs from finalized GCS objects, or streaming inserts.
//!
//! [`BigQueryLoader::load`] makes sure the dataset and table exist (creating them from the
//! derived or given schema, partitioned by day when configured), widens the table with the
//! new nullable fields a sample of records shows, runs a `NEWLINE_DELIMITED_JSON` load job from
//! the objects' `gs://` URIs and follows it until it is `DONE`. A failed job is returned as a
//! [`LoadFailed`] error carrying BigQuery's own reason and messages.
//!
//! # No duplicate rows on retry
//!
//! The job id is derived from the table, the object names and their sizes. Before it starts a
//! job, the loader looks the id up (`jobs.get`), and BigQuery itself refuses a second job with
//! an id it has seen (`409 Already Exists`; bqemulator does not, hence the look-up). So a load
//! retried after a crash, of the same objects, finds the first job and reports its outcome
//! instead of loading the rows again ([`LoadReport::deduplicated`]). When a job failed for a transient reason
//! (`backendError`, `internalError`, `rateLimitExceeded`, ...), it is retried under the id with
//! `_r1`, `_r2`, ... appended: load jobs are atomic, so the failed one loaded nothing.
//!
//! # Streaming
//!
//! [`BigQueryLoader::insert`] sends records with `tabledata.insertAll` (500 rows a request,
//! `skipInvalidRows`), each with the tweet id as `insertId` (`id_str`, `data.id` or `id`; else
//! the record key; else a hash of the value), which BigQuery uses to drop retried rows for
//! about a minute. Rows BigQuery refuses come back with their index and reason.
//!
//! # Refused credentials
//!
//! The client renews its access token when it expires. A token can also stop working before
//! then (revoked, or the key rotated): BigQuery answers 401. `load` and `insert` then build a
//! new client, which asks for a new token, and try once more; a second 401 is the error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_load::JobConfigurationLoad;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_reference::TableReference;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use serde::Deserialize;
use serde_json::Value;

use super::schema::{self, DeriveOptions, Field, SchemaBuilder};
use crate::clients::gcp::{Credentials, FinishedObject, outage_backoff};
use crate::event::{Positions, Record, Rejected, StageOutput};
use crate::sinks::api::{Sink, SinkContext, SinkSettings};
use crate::telemetry::{Readiness, RequestMetrics};
use crate::util::{Backoff, Invalid, json_key};

/// `[sinks.NAME.bigquery]` (or a `type = "bigquery"` sink).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigQueryConfig {
    /// REST v2 base URL, e.g. `http://127.0.0.1:9050/bigquery/v2` for bqemulator. Unset:
    /// Google's.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub project: String,
    pub dataset: String,
    pub table: String,
    /// Dataset location used when the dataset is created and for job look-ups (e.g. `EU`).
    #[serde(default)]
    pub location: Option<String>,
    /// Partition the table by day on this `TIMESTAMP`/`DATE` column (a column name, e.g.
    /// `_timestamp` for the enrich plugin's `@timestamp`); `"_PARTITIONTIME"` partitions by
    /// load time. Only used when the table is created.
    #[serde(default)]
    pub partition_by_day: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Rows a load job may skip as bad before it fails (`bq load --max_bad_records`).
    #[serde(default)]
    pub max_bad_records: u32,
    /// Drop values for columns the table does not have instead of failing the row.
    #[serde(default = "yes")]
    pub ignore_unknown_values: bool,
    /// `"derive"` (from the records that leave the chain) or the path of a schema JSON file
    /// (`bq show --schema` format).
    #[serde(default)]
    pub schema: SchemaSetting,
    #[serde(default = "yes")]
    pub create_if_missing: bool,
    /// Add new fields seen in the records to the table (`derive` only; never changes types).
    #[serde(default = "yes")]
    pub widen: bool,
    /// JSON keys whose RFC 3339 values make `TIMESTAMP` columns when deriving.
    #[serde(default = "default_timestamp_fields")]
    pub timestamp_fields: Vec<String>,
    /// `"anonymous"` (emulators), `"default"` (ADC) or a service-account key file; unset:
    /// anonymous with an `endpoint`, ADC without.
    #[serde(default)]
    pub credentials: Option<String>,
    /// A job that is not `DONE` after this long is an error (it keeps its id, so the next try
    /// follows the same job).
    #[serde(default = "default_job_timeout", with = "humantime_serde")]
    pub job_timeout: Duration,
    /// How long failing requests (connection errors, 5xx, transient job failures) are retried.
    #[serde(default = "default_retry_for", with = "humantime_serde")]
    pub retry_for: Duration,
    /// Prefix of load job ids.
    #[serde(default = "default_job_prefix")]
    pub job_prefix: String,
    /// Streaming inserts: comma-separated JSON dot paths tried in order for the `insertId`
    /// (BigQuery drops a row whose id it saw in the last minute or so); a record where none is
    /// present uses its key, else a hash of its value.
    #[serde(default = "default_id_field")]
    pub id_field: String,
}

fn default_id_field() -> String {
    "id_str,data.id,id".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Load jobs from the GCS objects.
    #[default]
    Load,
    /// `insertAll` streaming.
    Stream,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SchemaSetting {
    #[default]
    Derive,
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SchemaSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(if s == "derive" {
            SchemaSetting::Derive
        } else {
            SchemaSetting::File(PathBuf::from(s))
        })
    }
}

impl BigQueryConfig {
    /// Checks the settings without touching the network (`host check`); the error names the
    /// offending key, relative to the sink's BigQuery table.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (key, value) in [
            ("project", &self.project),
            ("dataset", &self.dataset),
            ("table", &self.table),
        ] {
            if value.trim().is_empty() {
                return Err(Invalid::new(key, "must not be empty"));
            }
        }
        // BigQuery's own rule for dataset names; a load or insert would fail on it much later.
        if !self
            .dataset
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(Invalid::new(
                "dataset",
                format!("{:?}: only letters, digits and underscores", self.dataset),
            ));
        }
        if self.job_timeout.is_zero() {
            return Err(Invalid::new("job_timeout", "must be greater than zero"));
        }
        json_key::check_paths("id_field", &self.id_field)?;
        Credentials::from_setting(self.credentials.as_deref(), self.endpoint.is_some()).check()
    }
}

fn yes() -> bool {
    true
}
fn default_timestamp_fields() -> Vec<String> {
    DeriveOptions::default().timestamp_fields
}
fn default_job_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_retry_for() -> Duration {
    Duration::from_secs(300)
}
fn default_job_prefix() -> String {
    "sluice".to_string()
}

impl BigQueryConfig {
    pub fn new(
        project: impl Into<String>,
        dataset: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        BigQueryConfig {
            endpoint: None,
            project: project.into(),
            dataset: dataset.into(),
            table: table.into(),
            location: None,
            partition_by_day: None,
            mode: Mode::Load,
            max_bad_records: 0,
            ignore_unknown_values: true,
            schema: SchemaSetting::Derive,
            create_if_missing: true,
            widen: true,
            timestamp_fields: default_timestamp_fields(),
            credentials: None,
            job_timeout: default_job_timeout(),
            retry_for: default_retry_for(),
            job_prefix: default_job_prefix(),
            id_field: default_id_field(),
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub job_id: String,
    /// Rows in the loaded objects (from the objects, not from BigQuery).
    pub rows: u64,
    /// `statistics.load.outputRows` and `badRecords` as BigQuery reported them.
    pub output_rows: Option<u64>,
    pub bad_records: Option<u64>,
    /// BigQuery's messages for skipped rows (the job still succeeded).
    pub errors: Vec<String>,
    /// Fields added to the table before the load (dotted paths).
    pub added_fields: Vec<String>,
    /// The job existed already (a retried load): its outcome was reported, nothing reloaded.
    pub deduplicated: bool,
    pub elapsed: Duration,
}

/// A load job that finished with an error, with BigQuery's own words.
#[derive(Debug, Clone)]
pub struct LoadFailed {
    pub job_id: String,
    /// `errorResult.reason`, e.g. `invalid`.
    pub reason: String,
    pub message: String,
    /// Every entry of `status.errors` as `reason: message (location)`.
    pub errors: Vec<String>,
}

impl std::fmt::Display for LoadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bigquery load job {} failed: {}: {}",
            self.job_id, self.reason, self.message
        )?;
        for e in self.errors.iter().take(5) {
            write!(f, "; {e}")?;
        }
        if self.errors.len() > 5 {
            write!(f, "; ... ({} errors)", self.errors.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadFailed {}

impl LoadFailed {
    /// BigQuery's transient reasons: the same load may succeed when tried again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.reason.as_str(),
            "backendError" | "internalError" | "rateLimitExceeded" | "timeout" | "jobBackendError"
        )
    }
}

/// Loads into one table. See the module docs.
pub struct BigQueryLoader {
    config: BigQueryConfig,
    client: Client,
    builder: SchemaBuilder,
    given: Option<Vec<Field>>,
    /// The table's schema as last read or written; `None` until the table was looked at.
    table_fields: Option<Vec<Field>>,
    dataset_ok: bool,
    /// `id_field`, parsed.
    id_paths: Vec<Vec<String>>,
    /// Load jobs or insert requests, for `/metrics` (unregistered unless a pipeline set it).
    pub requests: RequestMetrics,
    readiness: Readiness,
}

impl BigQueryLoader {
    pub async fn open(config: BigQueryConfig) -> anyhow::Result<Self> {
        let given = match &config.schema {
            SchemaSetting::Derive => None,
            SchemaSetting::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("bigquery: reading schema {}", path.display()))?;
                Some(
                    schema::from_bq_json(&text)
                        .with_context(|| format!("bigquery: schema {}", path.display()))?,
                )
            }
        };
        let client = build_client(&config).await?;
        let builder = SchemaBuilder::new(DeriveOptions {
            timestamp_fields: config.timestamp_fields.clone(),
        });
        Ok(BigQueryLoader {
            id_paths: json_key::parse_paths(&config.id_field),
            config,
            client,
            builder,
            given,
            table_fields: None,
            dataset_ok: false,
            requests: RequestMetrics::default(),
            readiness: Readiness::default(),
        })
    }

    pub fn config(&self) -> &BigQueryConfig {
        &self.config
    }

    /// The underlying client (queries in tests and tools).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a GoogleSQL query and returns its rows as cell values (BigQuery returns every
    /// scalar as a string; `null` for NULL). For checks and tools, not for large results.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Vec<Vec<Value>>> {
        use gcp_bigquery_client::model::query_request::QueryRequest;
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        request.location = self.config.location.clone();
        let response = self
            .client
            .job()
            .query(&self.config.project, request)
            .await
            .map_err(|e| bq_err(e, "bigquery query"))?;
        if let Some(errors) = response.errors.filter(|e| !e.is_empty()) {
            let msgs: Vec<String> = errors.iter().filter_map(|e| e.message.clone()).collect();
            anyhow::bail!("bigquery query failed: {}", msgs.join("; "));
        }
        Ok(response
            .rows
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                row.columns
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.value.unwrap_or(Value::Null))
                    .collect()
            })
            .collect())
    }

    /// Adds a record (as it left the chain) to the derived schema used by the next load.
    pub fn observe(&mut self, record: &Value) {
        self.builder.add(record);
    }

    /// The table schema as this loader last knew it.
    pub fn table_schema(&self) -> Option<&[Field]> {
        self.table_fields.as_deref()
    }

    /// Loads `objects` in one job; `sample` are records from them (as they left the chain)
    /// for schema derivation and widening.
    pub async fn load(
        &mut self,
        objects: &[FinishedObject],
        sample: &[Value],
    ) -> anyhow::Result<LoadReport> {
        match self.load_once(objects, sample).await {
            Err(e) if e.is::<Unauthenticated>() => {
                self.renew_client(&e).await?;
                self.load_once(objects, sample).await
            }
            done => done,
        }
    }

    async fn load_once(
        &mut self,
        objects: &[FinishedObject],
        sample: &[Value],
    ) -> anyhow::Result<LoadReport> {
        let started = Instant::now();
        if objects.is_empty() {
            return Ok(LoadReport::default());
        }
        let added_fields = self.prepare_table(sample).await?;
        let base_id = job_id(&self.config, objects);
        let rows = objects.iter().map(|o| o.rows).sum();
        let mut waits = backoff();
        loop {
            let attempt = waits.failures();
            let id = if attempt == 0 {
                base_id.clone()
            } else {
                format!("{base_id}_r{attempt}")
            };
            let (job, deduplicated) = self.run_job(&id, objects).await?;
            let status = job.status.clone().unwrap_or_default();
            let errors: Vec<String> = status
                .errors
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}{}",
                        e.reason.as_deref().unwrap_or("error"),
                        e.message.as_deref().unwrap_or(""),
                        e.location
                            .as_deref()
                            .map(|l| format!(" ({l})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            if let Some(er) = status.error_result {
                let failed = LoadFailed {
                    job_id: id.clone(),
                    reason: er.reason.unwrap_or_else(|| "error".into()),
                    message: er.message.unwrap_or_default(),
                    errors,
                };
                if failed.is_transient() && started.elapsed() < self.config.retry_for {
                    tracing::warn!("{failed}; retrying with a new job id");
                    tokio::time::sleep(waits.next_wait()).await;
                    continue;
                }
                return Err(failed.into());
            }
            let stats = job.statistics.and_then(|s| s.load);
            let num = |s: Option<String>| s.and_then(|s| s.parse::<u64>().ok());
            return Ok(LoadReport {
                job_id: id,
                rows,
                output_rows: stats.as_ref().and_then(|s| num(s.output_rows.clone())),
                bad_records: stats.as_ref().and_then(|s| num(s.bad_records.clone())),
                errors,
                added_fields,
                deduplicated,
                elapsed: started.elapsed(),
            });
        }
    }

    /// Streams records with `insertAll`; returns the rows BigQuery refused as (index in
    /// `records`, reason). Records that are not JSON objects are refused without a request.
    pub async fn insert(&mut self, records: &[Record]) -> anyhow::Result<Vec<(usize, String)>> {
        match self.insert_once(records).await {
            Err(e) if e.is::<Unauthenticated>() => {
                self.renew_client(&e).await?;
                self.insert_once(records).await
            }
            done => done,
        }
    }

    /// A new client, hence a new access token, after BigQuery refused the one in use.
    async fn renew_client(&mut self, refused: &anyhow::Error) -> anyhow::Result<()> {
        tracing::warn!("{refused:#}; renewing the credentials and trying once more");
        self.requests.retries.inc();
        self.client = build_client(&self.config).await?;
        Ok(())
    }

    async fn insert_once(&mut self, records: &[Record]) -> anyhow::Result<Vec<(usize, String)>> {
        let mut refused = Vec::new();
        let mut rows: Vec<(usize, Value)> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match serde_json::from_slice::<Value>(&r.value) {
                Ok(v @ Value::Object(_)) => rows.push((i, v)),
                Ok(_) => refused.push((i, "not a JSON object".to_string())),
                Err(e) => refused.push((i, format!("not JSON: {e}"))),
            }
        }
        if rows.is_empty() {
            return Ok(refused);
        }
        let sample: Vec<Value> = rows.iter().map(|(_, v)| v.clone()).collect();
        self.prepare_table(&sample).await?;
        let schema = self.table_fields.clone().unwrap_or_default();
        let mut scratch = Vec::new();
        for chunk in rows.chunks(500) {
            let mut request = TableDataInsertAllRequest::new();
            if self.config.ignore_unknown_values {
                request.ignore_unknown_values();
            }
            request.skip_invalid_rows();
            let batch: Vec<TableDataInsertAllRequestRows> = chunk
                .iter()
                .map(|(i, v)| TableDataInsertAllRequestRows {
                    insert_id: Some(insert_id(&records[*i], &self.id_paths, &mut scratch)),
                    json: schema::conform(&schema::normalize_record(v), &schema),
                })
                .collect();
            request.add_rows(batch)?;
            let response = self
                .retrying("insertAll", || {
                    self.client.tabledata().insert_all(
                        &self.config.project,
                        &self.config.dataset,
                        &self.config.table,
                        request.clone(),
                    )
                })
                .await?;
            for e in response.insert_errors.unwrap_or_default() {
                let Some(idx) = e.index.and_then(|i| usize::try_from(i).ok()) else {
                    continue;
                };
                let Some((orig, _)) = chunk.get(idx) else {
                    continue;
                };
                let reason = e
                    .errors
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {}",
                            p.reason.as_deref().unwrap_or("error"),
                            p.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                refused.push((*orig, reason));
            }
        }
        refused.sort_by_key(|(i, _)| *i);
        Ok(refused)
    }

    /// The schema `load`/`insert` would use for these records: the given one, or the table's
    /// (if known) widened with what `sample` adds, or what `sample` derives.
    pub fn preview_schema(&self, sample: &[Value]) -> Vec<Field> {
        if let Some(g) = &self.given {
            return g.clone();
        }
        let mut b = self.builder.clone();
        for v in sample {
            b.add(v);
        }
        match &self.table_fields {
            Some(t) => schema::widen(t, &b.fields()).0,
            None => b.fields(),
        }
    }

    /// Creates the dataset and table when missing and widens the table; returns the fields
    /// added.
    async fn prepare_table(&mut self, sample: &[Value]) -> anyhow::Result<Vec<String>> {
        for v in sample {
            self.builder.add(v);
        }
        let wanted = match &self.given {
            Some(g) => g.clone(),
            None => self.builder.fields(),
        };
        if !self.dataset_ok {
            self.ensure_dataset().await?;
            self.dataset_ok = true;
        }
        if self.table_fields.is_none() {
            self.table_fields = Some(self.get_or_create_table(&wanted).await?);
        }
        let current = self.table_fields.clone().unwrap_or_default();
        if self.given.is_some() || !self.config.widen {
            return Ok(Vec::new());
        }
        let (merged, added) = schema::widen(&current, &wanted);
        if added.is_empty() {
            return Ok(added);
        }
        let c = &self.config;
        let mut patch = Table::new(&c.project, &c.dataset, &c.table, table_schema(&merged)?);
        patch.time_partitioning = None;
        let result = self
            .retrying("tables.patch", || {
                self.client
                    .table()
                    .patch(&c.project, &c.dataset, &c.table, patch.clone())
            })
            .await;
        match result {
            Ok(t) => {
                self.table_fields = Some(fields_of(&t)?);
                tracing::info!(table = %c.table, added = ?added, "bigquery table widened");
                Ok(added)
            }
            Err(e) => {
                // Someone else may have changed the table: read it again next time.
                self.table_fields = None;
                Err(e.context(format!(
                    "bigquery: adding {} to {}.{}",
                    added.join(", "),
                    c.dataset,
                    c.table
                )))
            }
        }
    }

    async fn ensure_dataset(&self) -> anyhow::Result<()> {
        let c = &self.config;
        match self.client.dataset().get(&c.project, &c.dataset).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(bq_err(
                    e,
                    &format!("bigquery: reading dataset {}", c.dataset),
                ));
            }
        }
        anyhow::ensure!(
            c.create_if_missing,
            "bigquery: dataset {}.{} does not exist (create_if_missing = false)",
            c.project,
            c.dataset
        );
        let mut ds = Dataset::new(&c.project, &c.dataset);
        ds.location = c.location.clone();
        match self.client.dataset().create(ds).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(bq_err(
                e,
                &format!("bigquery: creating dataset {}", c.dataset),
            )),
        }
    }

    async fn get_or_create_table(&self, wanted: &[Field]) -> anyhow::Result<Vec<Field>> {
        let c = &self.config;
        match self
            .client
            .table()
            .get(&c.project, &c.dataset, &c.table, None)
            .await
        {
            Ok(t) => return fields_of(&t),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(bq_err(e, &format!("bigquery: reading table {}", c.table))),
        }
        anyhow::ensure!(
            c.create_if_missing,
            "bigquery: table {}.{}.{} does not exist (create_if_missing = false)",
            c.project,
            c.dataset,
            c.table
        );
        if wanted.is_empty() {
            return Err(NoSchema(format!(
                "bigquery: cannot create {}.{}: no schema (no records with fields seen yet)",
                c.dataset, c.table
            ))
            .into());
        }
        let mut table = Table::new(&c.project, &c.dataset, &c.table, table_schema(wanted)?);
        if let Some(field) = &c.partition_by_day {
            let mut tp = TimePartitioning::per_day();
            if field != "_PARTITIONTIME" {
                let f = schema::find(wanted, field).with_context(|| {
                    format!(
                        "bigquery: partition_by_day = {field:?} is not a top-level column of \
                         the schema for {}.{} (column names: {})",
                        c.dataset,
                        c.table,
                        wanted
                            .iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                anyhow::ensure!(
                    matches!(
                        f.field_type,
                        schema::FieldType::Timestamp
                            | schema::FieldType::Other(schema::OtherType::Date)
                            | schema::FieldType::Other(schema::OtherType::Datetime)
                    ),
                    "bigquery: partition_by_day column {field:?} is {}, not TIMESTAMP or DATE \
                     (derived TIMESTAMPs come from `timestamp_fields` with RFC 3339 values)",
                    f.field_type
                );
                tp = tp.field(field);
            }
            table = table.time_partitioning(tp);
        }
        match self.client.table().create(table).await {
            Ok(t) => fields_of(&t).or_else(|_| Ok(wanted.to_vec())),
            Err(e) if is_conflict(&e) => {
                let t = self
                    .client
                    .table()
                    .get(&c.project, &c.dataset, &c.table, None)
                    .await
                    .map_err(|e| bq_err(e, "bigquery: reading table"))?;
                fields_of(&t)
            }
            Err(e) => Err(bq_err(e, &format!("bigquery: creating table {}", c.table))),
        }
    }

    /// Inserts the job (or finds the one with this id) and polls it until `DONE`.
    async fn run_job(&self, id: &str, objects: &[FinishedObject]) -> anyhow::Result<(Job, bool)> {
        let c = &self.config;
        let job = Job {
            job_reference: Some(JobReference {
                job_id: Some(id.to_string()),
                location: c.location.clone(),
                project_id: Some(c.project.clone()),
            }),
            configuration: Some(JobConfiguration {
                load: Some(JobConfigurationLoad {
                    source_uris: Some(objects.iter().map(|o| o.uri.clone()).collect()),
                    source_format: Some("NEWLINE_DELIMITED_JSON".into()),
                    ignore_unknown_values: Some(c.ignore_unknown_values),
                    max_bad_records: Some(c.max_bad_records.min(i32::MAX as u32) as i32),
                    write_disposition: Some("WRITE_APPEND".into()),
                    create_disposition: Some("CREATE_NEVER".into()),
                    destination_table: Some(TableReference::new(&c.project, &c.dataset, &c.table)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        let mut deduplicated = false;
        // Look the id up first: real BigQuery would answer a second insert with 409, but
        // emulators (bqemulator) run it again.
        let existing = match self
            .client
            .job()
            .get_job(&c.project, id, c.location.as_deref())
            .await
        {
            Ok(j) => Some(j),
            Err(e) if is_not_found(&e) => None,
            Err(e) if is_transient(&e) => None, // the insert below retries and decides
            Err(e) => return Err(bq_err(e, &format!("bigquery: looking up job {id}"))),
        };
        let mut current = if let Some(j) = existing {
            deduplicated = true;
            j
        } else {
            loop {
                match self.client.job().insert(&c.project, job.clone()).await {
                    Ok(j) => break j,
                    Err(e) if is_conflict(&e) => {
                        deduplicated = true;
                        break self.get_job(id).await?;
                    }
                    Err(e) if is_transient(&e) && started.elapsed() + delay < c.retry_for => {
                        tracing::warn!(job = id, error = %e, "bigquery job insert failed, retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => return Err(bq_err(e, &format!("bigquery: starting load job {id}"))),
                }
            }
        };
        let mut poll = Duration::from_millis(100);
        while current.status.as_ref().and_then(|s| s.state.as_deref()) != Some("DONE") {
            anyhow::ensure!(
                started.elapsed() < c.job_timeout,
                "bigquery: load job {id} not done after {:?}",
                c.job_timeout
            );
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_secs(2));
            current = self.get_job(id).await?;
        }
        Ok((current, deduplicated))
    }

    async fn get_job(&self, id: &str) -> anyhow::Result<Job> {
        let c = &self.config;
        self.retrying("jobs.get", || {
            self.client
                .job()
                .get_job(&c.project, id, c.location.as_deref())
        })
        .await
    }

    /// Runs `call` again on connection errors and 5xx until `retry_for` has passed.
    async fn retrying<T, F, Fut>(&self, what: &str, call: F) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, BQError>>,
    {
        let started = Instant::now();
        let mut waits = backoff();
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && started.elapsed() < self.config.retry_for => {
                    let wait = waits.next_wait();
                    let attempt = waits.failures();
                    tracing::warn!(error = %e, attempt, "bigquery {what} failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(bq_err(e, &format!("bigquery {what}"))),
            }
        }
    }
}

#[async_trait::async_trait]
impl SinkSettings for BigQueryConfig {
    /// A `type = "bigquery"` sink: streaming inserts only.
    fn validate(&self) -> Result<(), Invalid> {
        BigQueryConfig::validate(self)?;
        if self.mode != Mode::Stream {
            return Err(Invalid::new(
                "mode",
                "a `type = \"bigquery\"` sink streams (`mode = \"stream\"`); load jobs come \
                 from a gcs sink with `[sinks.NAME.bigquery]`",
            ));
        }
        Ok(())
    }

    async fn open(&self, cx: &SinkContext) -> anyhow::Result<Box<dyn Sink>> {
        let mut loader = BigQueryLoader::open(self.clone()).await?;
        loader.requests = cx.telemetry.requests(&cx.stage, "insert");
        loader.readiness = cx.telemetry.readiness(&cx.stage, "connecting to BigQuery");
        loader.readiness.ready();
        Ok(Box::new(loader))
    }
}

#[async_trait::async_trait]
impl Sink for BigQueryLoader {
    /// Streaming inserts, retried with backoff while BigQuery is unreachable (the batch is
    /// kept and the source held back); rows BigQuery refuses are returned.
    async fn write(&mut self, out: &StageOutput, _: &Positions) -> anyhow::Result<Vec<Rejected>> {
        let mut waits = outage_backoff();
        loop {
            let started = Instant::now();
            let inserted = self.insert(&out.records).await;
            self.requests.observe(inserted.is_ok(), started.elapsed());
            match inserted {
                Ok(refused) => {
                    self.readiness.ready();
                    return Ok(refused
                        .into_iter()
                        .map(|(index, reason)| Rejected { index, reason })
                        .collect());
                }
                Err(e) => {
                    let wait = waits.next_wait();
                    tracing::error!("bigquery insert: {e:#}; retrying in {wait:?}");
                    self.readiness
                        .not_ready(format!("BigQuery inserts failing: {e:#}"));
                    self.requests.retries.inc();
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Waits between tries of a failing BigQuery request.
fn backoff() -> Backoff {
    Backoff::doubling(Duration::from_millis(400), Duration::from_secs(10))
}

/// `sluice_<table>_<first object name>_<hash>`: letters, digits, `_` and `-` only, at most
/// 1024 characters; the hash covers the table and every object's URI, rows and size.
pub fn job_id(config: &BigQueryConfig, objects: &[FinishedObject]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&config.project);
    eat(&config.dataset);
    eat(&config.table);
    for o in objects {
        eat(&o.uri);
        eat(&o.rows.to_string());
        eat(&o.bytes.to_string());
    }
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(max)
            .collect()
    };
    let first = objects.first().map(|o| o.name.as_str()).unwrap_or("");
    let first = first.trim_end_matches(".gz").trim_end_matches(".ndjson");
    format!(
        "{}_{}_{}_{h:016x}",
        clean(&config.job_prefix, 64),
        clean(&config.table, 128),
        clean(first, 600)
    )
}

/// The first of `id_field`'s paths present in the record; else its key; else a hash of its
/// value. `scratch` is reused across rows.
fn insert_id(record: &Record, paths: &[Vec<String>], scratch: &mut Vec<u8>) -> String {
    if json_key::find(&record.value, paths, scratch) {
        return String::from_utf8_lossy(scratch).into_owned();
    }
    if let Some(k) = record
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        && !k.is_empty()
    {
        return k.to_string();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &record.value {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("h{h:016x}")
}

fn table_schema(fields: &[Field]) -> anyhow::Result<TableSchema> {
    let v = serde_json::to_value(fields)?;
    let fields: Vec<TableFieldSchema> =
        serde_json::from_value(v).context("bigquery: converting the schema")?;
    Ok(TableSchema::new(fields))
}

fn fields_of(table: &Table) -> anyhow::Result<Vec<Field>> {
    let v = serde_json::to_value(table.schema.fields.clone().unwrap_or_default())?;
    serde_json::from_value(v).context("bigquery: reading the table schema")
}

fn status_code(e: &BQError) -> Option<i64> {
    match e {
        BQError::ResponseError { error } => Some(error.error.code),
        BQError::RequestError(r) => r.status().map(|s| i64::from(s.as_u16())),
        _ => None,
    }
}

fn is_not_found(e: &BQError) -> bool {
    status_code(e) == Some(404)
}

fn is_conflict(e: &BQError) -> bool {
    status_code(e) == Some(409)
}

fn is_transient(e: &BQError) -> bool {
    match e {
        BQError::RequestError(r) => {
            r.is_connect() || r.is_timeout() || r.status().is_none_or(|s| s.is_server_error())
        }
        BQError::ResponseError { error } => {
            matches!(error.error.code, 408 | 429 | 500..=599)
        }
        _ => false,
    }
}

/// An error with BigQuery's message (the client's `Debug` form is hard to read). A 401 is an
/// [`Unauthenticated`], which `load` and `insert` answer with new credentials.
fn bq_err(e: BQError, what: &str) -> anyhow::Error {
    match e {
        BQError::ResponseError { error } => {
            let reasons: Vec<String> = error
                .error
                .errors
                .iter()
                .filter_map(|m| m.get("reason").cloned())
                .collect();
            let message = format!(
                "{what}: HTTP {} {}: {}{}",
                error.error.code,
                error.error.status,
                error.error.message,
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join(", "))
                }
            );
            if error.error.code == 401 {
                anyhow::Error::new(Unauthenticated(message))
            } else {
                anyhow::Error::msg(message)
            }
        }
        other => anyhow::Error::new(other).context(what.to_string()),
    }
}

/// The table does not exist and no record has shown its columns yet: a load of objects this
/// host did not write (taken over from another) passes their rows as the sample.
#[derive(Debug)]
pub struct NoSchema(String);

impl std::fmt::Display for NoSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoSchema {}

/// BigQuery refused the access token (HTTP 401): revoked, or expired early.
#[derive(Debug)]
struct Unauthenticated(String);

impl std::fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unauthenticated {}

/// A token source for emulators, which check no credentials.
#[derive(Clone)]
struct NoAuth;

#[async_trait::async_trait]
impl gcp_bigquery_client::auth::Authenticator for NoAuth {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok("emulator".to_string())
    }
}

async fn build_client(config: &BigQueryConfig) -> anyhow::Result<Client> {
    let mut b = gcp_bigquery_client::client_builder::ClientBuilder::new();
    if let Some(url) = &config.endpoint {
        b.with_v2_base_url(url.trim_end_matches('/').to_string());
    }
    let creds = Credentials::from_setting(config.credentials.as_deref(), config.endpoint.is_some());
    let client = match creds {
        Credentials::Anonymous => b.build_from_authenticator(Arc::new(NoAuth)).await,
        Credentials::Default => b.build_from_application_default_credentials().await,
        Credentials::ServiceAccountFile(path) => {
            let path = path.to_string_lossy().into_owned();
            b.build_from_service_account_key_file(&path).await
        }
    };
    client.map_err(|e| bq_err(e, "bigquery: creating the client"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, rows: u64) -> FinishedObject {
        FinishedObject {
            uri: format!("gs://b/{name}"),
            name: name.to_string(),
            rows,
            bytes: rows * 10,
            stream: "t-0".into(),
            first: 0,
            last: rows - 1,
        }
    }

    #[test]
    fn job_ids_are_stable_and_valid() {
        let c = BigQueryConfig::new("p", "d", "tweets");
        let a = job_id(&c, &[obj("twitter/dt=2023-07-14/t-0-1-2.ndjson.gz", 2)]);
        assert_eq!(
            a,
            job_id(&c, &[obj("twitter/dt=2023-07-14/t-0-1-2.ndjson.gz", 2)])
        );
        assert!(
            a.starts_with("sluice_tweets_twitter_dt_2023-07-14_t-0-1-2_"),
            "{a}"
        );
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert_ne!(
            a,
            job_id(&c, &[obj("twitter/dt=2023-07-14/t-0-1-2.ndjson.gz", 3)])
        );
        let other = BigQueryConfig::new("p", "d", "other");
        assert_ne!(
            a,
            job_id(&other, &[obj("twitter/dt=2023-07-14/t-0-1-2.ndjson.gz", 2)])
        );
    }

    #[test]
    fn insert_ids_follow_id_field_then_the_key() {
        let r = |v: &str, k: Option<&str>| Record {
            key: k.map(|k| k.as_bytes().to_vec()),
            value: v.as_bytes().to_vec(),
            headers: Vec::new(),
            timestamp: None,
        };
        let paths = json_key::parse_paths(&default_id_field());
        let id = |v: &str, k| insert_id(&r(v, k), &paths, &mut Vec::new());
        assert_eq!(id(r#"{"id":1,"id_str":"1"}"#, None), "1");
        assert_eq!(id(r#"{"data":{"id":"7"}}"#, Some("k")), "7");
        assert_eq!(id(r#"{"id":9}"#, None), "9");
        assert_eq!(id(r#"{"x":1}"#, Some("k")), "k");
        assert_eq!(id(r#"{"x":1}"#, None), id(r#"{"x":1}"#, None));
        let custom = json_key::parse_paths("user.id");
        let rec = r(r#"{"id_str":"1","user":{"id":42}}"#, None);
        assert_eq!(insert_id(&rec, &custom, &mut Vec::new()), "42");
    }

    #[test]
    fn config_defaults() {
        let c: BigQueryConfig = serde_json::from_value(serde_json::json!({
            "project": "p", "dataset": "d", "table": "t", "schema": "schemas/tweets.json"
        }))
        .unwrap();
        assert!(c.ignore_unknown_values && c.create_if_missing && c.widen);
        assert_eq!(c.mode, Mode::Load);
        assert_eq!(c.schema, SchemaSetting::File("schemas/tweets.json".into()));
        let c: BigQueryConfig = serde_json::from_value(serde_json::json!({
            "project": "p", "dataset": "d", "table": "t", "mode": "stream"
        }))
        .unwrap();
        assert_eq!((c.mode, c.schema), (Mode::Stream, SchemaSetting::Derive));
    }
}
