//! The AWS profile's history: one DynamoDB table (`[history] dynamodb_table`, made by the
//! stack), single-table design — every record is an item under `pk`/`sk`, and two global
//! indexes list them in order:
//!
//! | record | pk | sk | gsi1 (g1pk / g1sk) | gsi2 (g2pk / g2sk) |
//! | --- | --- | --- | --- | --- |
//! | run | `RUN#{id}` | `RUN` | `RUNS` / `{accepted_ms:020}#{id}` | `RUNSPEC#{spec}` / same |
//! | token | `TOKEN#{id}` | `TOKEN` | `TOKENS` / `{created_ms:020}#{id}` | |
//! | spec version | `SPEC#{name}` | `V#{version:010}` | | |
//! | spec head | `SPEC#{name}` | `HEAD` | `SPECS` / `{name}` | |
//! | baseline | `SPEC#{name}` | `BASELINE` | `BASELINES` / `{name}` | |
//! | schedule | `SCHEDULE#{id}` | `SCHEDULE` | `SCHEDULES` / `{created_ms:020}#{id}` | |
//!
//! The trait is synchronous (see `store`): each call runs the SDK's future on this store's own
//! runtime, on a thread of its own, so it may be called from anywhere — the history's thread,
//! or a command inside another runtime.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::{
    parse_verdict, verdict_str, Accepted, Cursor, Finished, Page, RunFilter, RunRow, RunStatus,
    StoreError, MAX_PAGE,
};

/// Pages of a query read for one `list` call at most (each up to 1 MB): a filter that matches
/// little ends the page early, with a cursor to go on from.
pub const MAX_QUERY_PAGES: usize = 100;

pub type Item = HashMap<String, AttributeValue>;

/// One query: key condition, optional filter, values (`:name` → value).
pub(super) struct Query<'a> {
    pub index: Option<&'a str>,
    pub key_condition: &'a str,
    pub filter: Option<&'a str>,
    pub names: Option<HashMap<String, String>>,
    pub values: Vec<(&'a str, AttributeValue)>,
    pub forward: bool,
    pub cap: usize,
}

pub struct DynamoStore {
    pub(super) table: String,
    pub(super) client: Client,
    /// Always Some until dropped.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for DynamoStore {
    fn drop(&mut self) {
        // Dropped anywhere — also inside another runtime (`herd token` runs in one), where
        // dropping a runtime the ordinary way panics.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s(i: &Item, k: &str) -> Option<String> {
    i.get(k).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn get_n(i: &Item, k: &str) -> Option<u64> {
    i.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn get_f(i: &Item, k: &str) -> Option<f64> {
    i.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn sort_key(ms: u64, id: &str) -> String {
    format!("{ms:020}#{id}")
}

fn f(v: f64) -> AttributeValue {
    // DynamoDB numbers are decimal: a NaN or infinity (no request seen) is kept as 0.
    AttributeValue::N(if v.is_finite() {
        v.to_string()
    } else {
        "0".into()
    })
}

impl DynamoStore {
    /// Connects to `table` in `region` (through `endpoint`, for moto or LocalStack) and checks
    /// that it exists, naming it when it does not.
    pub fn connect(
        table: &str,
        region: &str,
        endpoint: Option<&str>,
    ) -> Result<DynamoStore, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("herd-history-dynamodb")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Open {
                path: table.into(),
                reason: e.to_string(),
            })?;
        let (region, endpoint, name) = (
            region.to_string(),
            endpoint.map(str::to_string),
            table.to_string(),
        );
        let connected = on_thread(&rt, async move {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region));
            if let Some(e) = endpoint {
                loader = loader.endpoint_url(e);
            }
            let client = Client::new(&loader.load().await);
            client
                .describe_table()
                .table_name(&name)
                .send()
                .await
                .map_err(|e| StoreError::Open {
                    path: format!("DynamoDB table {name}"),
                    reason: DisplayErrorContext(&e).to_string(),
                })?;
            Ok::<_, StoreError>(client)
        });
        let client = match connected {
            Ok(c) => c,
            Err(e) => {
                rt.shutdown_background();
                return Err(e);
            }
        };
        Ok(DynamoStore {
            table: table.to_string(),
            client,
            rt: Some(rt),
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs `fut` to its end on this store's runtime.
    pub(super) fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        match &self.rt {
            Some(rt) => on_thread(rt, fut),
            None => Err(StoreError::Unavailable("the store is closed".into())),
        }
    }

    pub(super) fn err<E: std::error::Error + 'static>(&self, e: E) -> StoreError {
        sdk_err(&self.table, e)
    }

    /// The items a query gives, its pages followed: at most `cap`, and at most
    /// [`MAX_QUERY_PAGES`] pages — when that bound stops it, also the key it stopped at.
    pub(super) fn query(&self, q: Query<'_>) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let (client, table) = (self.client.clone(), self.table.clone());
        let index = q.index.map(str::to_string);
        let cond = q.key_condition.to_string();
        let filter = q.filter.map(str::to_string);
        let names = q.names;
        let values: HashMap<String, AttributeValue> = q
            .values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let (forward, cap) = (q.forward, q.cap);
        self.run(async move {
            let mut out = Vec::new();
            let mut start: Option<Item> = None;
            for _ in 0..MAX_QUERY_PAGES {
                let r = client
                    .query()
                    .table_name(&table)
                    .set_index_name(index.clone())
                    .key_condition_expression(&cond)
                    .set_filter_expression(filter.clone())
                    .set_expression_attribute_names(names.clone())
                    .set_expression_attribute_values(Some(values.clone()))
                    .scan_index_forward(forward)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| sdk_err(&table, e))?;
                out.extend(r.items.unwrap_or_default());
                if out.len() >= cap {
                    out.truncate(cap);
                    return Ok((out, None));
                }
                match r.last_evaluated_key {
                    Some(k) => start = Some(k),
                    None => return Ok((out, None)),
                }
            }
            Ok((out, start))
        })
    }

    /// Every item a query gives (its pages followed), at most `cap`.
    pub(super) fn query_all(
        &self,
        index: Option<&str>,
        key_condition: &str,
        values: Vec<(&str, AttributeValue)>,
        forward: bool,
        cap: usize,
    ) -> Result<Vec<Item>, StoreError> {
        self.query(Query {
            index,
            key_condition,
            filter: None,
            names: None,
            values,
            forward,
            cap,
        })
        .map(|(items, _)| items)
    }

    fn decode_run(&self, i: &Item) -> Result<RunRow, StoreError> {
        let run_id = get_s(i, "run_id").unwrap_or_default();
        let corrupt = |what: &str| StoreError::Corrupt {
            path: format!("DynamoDB table {}", self.table),
            run_id: run_id.clone(),
            reason: what.to_string(),
        };
        let state = get_s(i, "state").ok_or_else(|| corrupt("no state"))?;
        let status =
            RunStatus::parse(&state).ok_or_else(|| corrupt(&format!("state {state:?}")))?;
        let accepted = Accepted {
            run_id: run_id.clone(),
            spec: get_s(i, "spec").unwrap_or_default(),
            source: get_s(i, "source").unwrap_or_default(),
            correlation_id: get_s(i, "correlation_id"),
            accepted_at_ms: get_n(i, "accepted_at_ms").unwrap_or(0),
            agents: u32::try_from(get_n(i, "agents").unwrap_or(0)).unwrap_or(u32::MAX),
            spec_text: get_s(i, "spec_text").unwrap_or_default(),
        };
        let finished = match status {
            RunStatus::Queued | RunStatus::Running => None,
            RunStatus::Ended(state) => {
                let v = get_s(i, "verdict").unwrap_or_default();
                Some(Finished {
                    run_id: run_id.clone(),
                    ended_at_ms: get_n(i, "ended_at_ms").unwrap_or(0),
                    state,
                    reason: get_s(i, "reason"),
                    verdict: parse_verdict(&v).ok_or_else(|| corrupt(&format!("verdict {v:?}")))?,
                    requests: get_n(i, "requests").unwrap_or(0),
                    errors: get_n(i, "errors").unwrap_or(0),
                    rps: get_f(i, "rps").unwrap_or(0.0),
                    p95_ms: get_f(i, "p95_ms").unwrap_or(0.0),
                    p99_ms: get_f(i, "p99_ms").unwrap_or(0.0),
                    agents_lost: u32::try_from(get_n(i, "agents_lost").unwrap_or(0))
                        .unwrap_or(u32::MAX),
                    results: get_s(i, "results"),
                    results_error: get_s(i, "results_error"),
                    summary: get_s(i, "summary").unwrap_or_default(),
                })
            }
        };
        Ok(RunRow {
            accepted,
            status,
            finished,
        })
    }

    pub(super) fn put_run(&self, run: &Accepted) -> Result<(), StoreError> {
        let key = sort_key(run.accepted_at_ms, &run.run_id);
        let mut item: Item = HashMap::from([
            ("pk".into(), s(format!("RUN#{}", run.run_id))),
            ("sk".into(), s("RUN")),
            ("g1pk".into(), s("RUNS")),
            ("g1sk".into(), s(key.clone())),
            ("g2pk".into(), s(format!("RUNSPEC#{}", run.spec))),
            ("g2sk".into(), s(key)),
            ("run_id".into(), s(&run.run_id)),
            ("spec".into(), s(&run.spec)),
            ("source".into(), s(&run.source)),
            ("accepted_at_ms".into(), n(run.accepted_at_ms)),
            ("agents".into(), n(u64::from(run.agents))),
            ("spec_text".into(), s(&run.spec_text)),
            ("state".into(), s("running")),
        ]);
        if let Some(c) = &run.correlation_id {
            item.insert("correlation_id".into(), s(c));
        }
        let (client, table) = (self.client.clone(), self.table.clone());
        let r = self.run(async move {
            Ok(client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await)
        })?;
        match r {
            Ok(_) => Ok(()),
            // Already there (a resumed run): left as it is.
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    pub(super) fn set_status(&self, run_id: &str, status: RunStatus) -> Result<(), StoreError> {
        let (client, table) = (self.client.clone(), self.table.clone());
        let pk = format!("RUN#{run_id}");
        let r = self.run(async move {
            Ok(client
                .update_item()
                .table_name(table)
                .key("pk", s(pk))
                .key("sk", s("RUN"))
                .update_expression("SET #st = :s")
                .condition_expression("#st IN (:q, :r)")
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":s", s(status.as_str()))
                .expression_attribute_values(":q", s("queued"))
                .expression_attribute_values(":r", s("running"))
                .send()
                .await)
        })?;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(StoreError::NotRecorded(run_id.into())),
            Err(e) => Err(self.err(e)),
        }
    }

    pub(super) fn end_run(&self, run: &Finished) -> Result<(), StoreError> {
        let mut values: Vec<(&str, AttributeValue)> = vec![
            (":state", s(run.state.as_str())),
            (":ended", n(run.ended_at_ms)),
            (":verdict", s(verdict_str(run.verdict))),
            (":requests", n(run.requests)),
            (":errors", n(run.errors)),
            (":rps", f(run.rps)),
            (":p95", f(run.p95_ms)),
            (":p99", f(run.p99_ms)),
            (":lost", n(u64::from(run.agents_lost))),
            (":summary", s(&run.summary)),
        ];
        let mut set = String::from(
            "SET #st = :state, ended_at_ms = :ended, verdict = :verdict, requests = :requests, \
             #er = :errors, rps = :rps, p95_ms = :p95, p99_ms = :p99, agents_lost = :lost, \
             summary = :summary",
        );
        for (field, v) in [
            ("reason", &run.reason),
            ("results", &run.results),
            ("results_error", &run.results_error),
        ] {
            if let Some(v) = v {
                set.push_str(&format!(", {field} = :{field}"));
                values.push((
                    match field {
                        "reason" => ":reason",
                        "results" => ":results",
                        _ => ":results_error",
                    },
                    s(v),
                ));
            }
        }
        let values: HashMap<String, AttributeValue> = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let (client, table) = (self.client.clone(), self.table.clone());
        let pk = format!("RUN#{}", run.run_id);
        let r = self.run(async move {
            Ok(client
                .update_item()
                .table_name(table)
                .key("pk", s(pk))
                .key("sk", s("RUN"))
                .update_expression(set)
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#st", "state")
                .expression_attribute_names("#er", "errors")
                .set_expression_attribute_values(Some(values))
                .send()
                .await)
        })?;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(StoreError::NotRecorded(run.run_id.clone())),
            Err(e) => Err(self.err(e)),
        }
    }

    pub(super) fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let (client, table, sk) = (self.client.clone(), self.table.clone(), sk.to_string());
        let r = self.run(async move {
            Ok(client
                .get_item()
                .table_name(table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .consistent_read(true)
                .send()
                .await)
        })?;
        r.map(|o| o.item).map_err(|e| self.err(e))
    }

    pub(super) fn get_run(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        self.get_item(format!("RUN#{run_id}"), "RUN")?
            .map(|i| self.decode_run(&i))
            .transpose()
    }

    pub(super) fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(StoreError::Limit(limit));
        }
        let (index, pk_name, sk_name, pk) = match &filter.spec {
            Some(spec) => ("gsi2", "g2pk", "g2sk", format!("RUNSPEC#{spec}")),
            None => ("gsi1", "g1pk", "g1sk", "RUNS".to_string()),
        };
        // The tighter of the cursor and `before`: both exclusive upper bounds.
        let mut upper = filter
            .accepted_before_ms
            .map(|b| format!("{b:020}#"))
            .unwrap_or_else(|| "~".into());
        if let Some(c) = after {
            upper = upper.min(sort_key(c.accepted_at_ms, &c.run_id));
        }
        let mut filters = Vec::new();
        let mut values: HashMap<String, AttributeValue> =
            HashMap::from([(":pk".into(), s(pk)), (":upper".into(), s(upper))]);
        let mut names: HashMap<String, String> = HashMap::new();
        if let Some(st) = filter.status {
            filters.push("#st = :st");
            names.insert("#st".into(), "state".into());
            values.insert(":st".into(), s(st.as_str()));
        }
        if let Some(v) = filter.verdict {
            filters.push("verdict = :v");
            values.insert(":v".into(), s(verdict_str(v)));
        }
        if let Some(from) = filter.accepted_from_ms {
            filters.push("accepted_at_ms >= :from");
            values.insert(":from".into(), n(from));
        }
        let cond = format!("{pk_name} = :pk AND {sk_name} < :upper");
        let filter_expr = (!filters.is_empty()).then(|| filters.join(" AND "));
        let (items, stopped) = self.query(Query {
            index: Some(index),
            key_condition: &cond,
            filter: filter_expr.as_deref(),
            names: (!names.is_empty()).then_some(names),
            values: values
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect(),
            forward: false,
            cap: limit as usize + 1,
        })?;
        let cut_at = stopped.and_then(|k| get_s(&k, sk_name));
        let mut rows = items
            .iter()
            .map(|i| self.decode_run(i))
            .collect::<Result<Vec<_>, _>>()?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(|r| Cursor {
                accepted_at_ms: r.accepted.accepted_at_ms,
                run_id: r.accepted.run_id.clone(),
            })
        } else {
            // Stopped reading before the end: go on from where it stopped.
            cut_at.and_then(|k| {
                let (ms, id) = k.split_once('#')?;
                Some(Cursor {
                    accepted_at_ms: ms.parse().ok()?,
                    run_id: id.to_string(),
                })
            })
        };
        Ok(Page { rows, next })
    }

    pub(super) fn prune_runs(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let keep: std::collections::HashSet<String> = self
            .query_all(
                Some("gsi1"),
                "g1pk = :p",
                vec![(":p", s("BASELINES"))],
                true,
                super::catalog::MAX_SPECS,
            )?
            .iter()
            .filter_map(|i| get_s(i, "run_id"))
            .collect();
        let old = self.query_all(
            Some("gsi1"),
            "g1pk = :p AND g1sk < :c",
            vec![(":p", s("RUNS")), (":c", s(format!("{cutoff_ms:020}#")))],
            true,
            100_000,
        )?;
        let mut n = 0;
        for i in old {
            let (Some(pk), Some(run)) = (get_s(&i, "pk"), get_s(&i, "run_id")) else {
                continue;
            };
            if keep.contains(&run) {
                continue;
            }
            self.delete(pk, "RUN")?;
            n += 1;
        }
        Ok(n)
    }

    pub(super) fn delete(&self, pk: String, sk: &str) -> Result<bool, StoreError> {
        let (client, table, sk) = (self.client.clone(), self.table.clone(), sk.to_string());
        let r = self.run(async move {
            Ok(client
                .delete_item()
                .table_name(table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await)
        })?;
        r.map(|o| o.attributes.is_some()).map_err(|e| self.err(e))
    }
}

/// An SDK error, with its service's words, naming the table.
fn sdk_err<E: std::error::Error + 'static>(table: &str, e: E) -> StoreError {
    StoreError::Open {
        path: format!("DynamoDB table {table}"),
        reason: DisplayErrorContext(&e).to_string(),
    }
}

/// Whether an SDK error is a failed condition (the item was, or was not, there).
pub(super) fn is_condition_failed<E: std::error::Error + 'static>(e: &E) -> bool {
    DisplayErrorContext(e)
        .to_string()
        .contains("ConditionalCheckFailed")
}

/// Runs `fut` on `rt` from a thread of its own, so the caller may be inside another runtime.
fn on_thread<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let handle = rt.handle().clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || handle.block_on(fut))
            .join()
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "a DynamoDB call panicked".to_string(),
                ))
            })
    })
}
