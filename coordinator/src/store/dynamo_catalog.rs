//! The DynamoDB history's tokens, specs, baselines and schedules (item layout: `dynamo.rs`),
//! and its `RunStore`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::catalog::{
    Baseline, Schedule, ScheduledSpec, SpecEntry, SpecVersion, When, MAX_SCHEDULES, MAX_SPECS,
    MAX_VERSIONS,
};
use super::dynamo::{get_n, get_s, is_condition_failed, n, s, sort_key, DynamoStore, Item};
use super::tokens::{Role, TokenRecord, MAX_TOKENS};
use super::{Accepted, Cursor, Finished, Page, RunFilter, RunRow, RunStatus, RunStore, StoreError};

impl DynamoStore {
    fn put(&self, item: Item, condition: Option<&str>) -> Result<bool, StoreError> {
        let (client, table) = (self.client.clone(), self.table.clone());
        let condition = condition.map(str::to_string);
        let r = self.run(async move {
            Ok(client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(condition)
                .send()
                .await)
        })?;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    fn count(&self, g1pk: &str, cap: usize) -> Result<usize, StoreError> {
        Ok(self
            .query_all(Some("gsi1"), "g1pk = :p", vec![(":p", s(g1pk))], true, cap)?
            .len())
    }

    fn corrupt(&self, what: &str, id: &str, reason: &str) -> StoreError {
        StoreError::Corrupt {
            path: format!("DynamoDB table {}", self.table),
            run_id: format!("{what} {id}"),
            reason: reason.to_string(),
        }
    }

    fn decode_token(&self, i: &Item) -> Result<TokenRecord, StoreError> {
        let id = get_s(i, "id").unwrap_or_default();
        let role = get_s(i, "role")
            .as_deref()
            .and_then(Role::parse)
            .ok_or_else(|| self.corrupt("token", &id, "role"))?;
        let hash: [u8; 32] = i
            .get("hash")
            .and_then(|v| v.as_b().ok())
            .and_then(|b| b.as_ref().try_into().ok())
            .ok_or_else(|| self.corrupt("token", &id, "hash"))?;
        Ok(TokenRecord {
            id,
            hash,
            role,
            name: get_s(i, "name").unwrap_or_default(),
            created_at_ms: get_n(i, "created_at_ms").unwrap_or(0),
            revoked_at_ms: get_n(i, "revoked_at_ms"),
        })
    }

    fn decode_version(i: &Item) -> SpecVersion {
        SpecVersion {
            name: get_s(i, "name").unwrap_or_default(),
            version: u32::try_from(get_n(i, "version").unwrap_or(0)).unwrap_or(0),
            text: get_s(i, "text").unwrap_or_default(),
            created_at_ms: get_n(i, "created_at_ms").unwrap_or(0),
            created_by: get_s(i, "created_by").unwrap_or_default(),
        }
    }

    fn latest_version(&self, name: &str) -> Result<Option<SpecVersion>, StoreError> {
        Ok(self
            .query_all(
                None,
                "pk = :p AND begins_with(sk, :v)",
                vec![(":p", s(format!("SPEC#{name}"))), (":v", s("V#"))],
                false,
                1,
            )?
            .first()
            .map(Self::decode_version))
    }

    fn decode_schedule(&self, i: &Item) -> Result<Schedule, StoreError> {
        let id = get_s(i, "id").unwrap_or_default();
        let spec = match (get_s(i, "spec_name"), get_s(i, "spec_text")) {
            (Some(n), None) => ScheduledSpec::Stored(n),
            (None, Some(t)) => ScheduledSpec::Inline(t),
            _ => return Err(self.corrupt("schedule", &id, "spec")),
        };
        let when = match (get_s(i, "cron"), get_n(i, "at_ms")) {
            (Some(c), None) => When::Cron(c),
            (None, Some(a)) => When::Once(a),
            _ => return Err(self.corrupt("schedule", &id, "when")),
        };
        Ok(Schedule {
            id,
            name: get_s(i, "name").unwrap_or_default(),
            spec,
            when,
            timezone: get_s(i, "timezone").unwrap_or_else(|| "UTC".into()),
            enabled: i
                .get("enabled")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            created_at_ms: get_n(i, "created_at_ms").unwrap_or(0),
            created_by: get_s(i, "created_by").unwrap_or_default(),
            last_fired_ms: get_n(i, "last_fired_ms"),
            last_error: get_s(i, "last_error"),
        })
    }

    fn update(
        &self,
        pk: String,
        sk: &str,
        set: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let (client, table, sk) = (self.client.clone(), self.table.clone(), sk.to_string());
        let (set, condition) = (set.to_string(), condition.to_string());
        let values: HashMap<String, AttributeValue> = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let values = (!values.is_empty()).then_some(values);
        let r = self.run(async move {
            Ok(client
                .update_item()
                .table_name(table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .update_expression(set)
                .condition_expression(condition)
                .set_expression_attribute_values(values)
                .send()
                .await)
        })?;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }
}

impl RunStore for DynamoStore {
    fn record_accepted(&self, run: &Accepted) -> Result<(), StoreError> {
        self.put_run(run)
    }
    fn record_status(&self, run_id: &str, status: RunStatus) -> Result<(), StoreError> {
        self.set_status(run_id, status)
    }
    fn record_ended(&self, run: &Finished) -> Result<(), StoreError> {
        self.end_run(run)
    }
    fn get(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        self.get_run(run_id)
    }
    fn list(
        &self,
        filter: &RunFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        self.list_runs(filter, after, limit)
    }
    fn prune(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        self.prune_runs(cutoff_ms)
    }

    fn put_spec(
        &self,
        name: &str,
        text: &str,
        by: &str,
        at_ms: u64,
    ) -> Result<SpecVersion, StoreError> {
        let latest = self.latest_version(name)?;
        let next = match &latest {
            Some(v) if v.text == text => return Ok(v.clone()),
            Some(v) if v.version >= MAX_VERSIONS => {
                return Err(StoreError::Full(format!(
                    "spec {name} has {MAX_VERSIONS} versions already"
                )))
            }
            Some(v) => v.version + 1,
            None => {
                if self.count("SPECS", MAX_SPECS)? >= MAX_SPECS {
                    return Err(StoreError::Full(format!(
                        "the history holds {MAX_SPECS} specs already"
                    )));
                }
                1
            }
        };
        let pk = format!("SPEC#{name}");
        let version: Item = HashMap::from([
            ("pk".into(), s(&pk)),
            ("sk".into(), s(format!("V#{next:010}"))),
            ("name".into(), s(name)),
            ("version".into(), n(u64::from(next))),
            ("text".into(), s(text)),
            ("created_at_ms".into(), n(at_ms)),
            ("created_by".into(), s(by)),
        ]);
        let head: Item = HashMap::from([
            ("pk".into(), s(&pk)),
            ("sk".into(), s("HEAD")),
            ("g1pk".into(), s("SPECS")),
            ("g1sk".into(), s(name)),
            ("name".into(), s(name)),
            ("latest".into(), n(u64::from(next))),
            ("updated_at_ms".into(), n(at_ms)),
        ]);
        let (client, table) = (self.client.clone(), self.table.clone());
        let put = |item: Item, cond: Option<&str>| -> Result<TransactWriteItem, StoreError> {
            let p = Put::builder()
                .table_name(&table)
                .set_item(Some(item))
                .set_condition_expression(cond.map(str::to_string))
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(TransactWriteItem::builder().put(p).build())
        };
        // Both or neither, and a version written by another coordinator meanwhile is not
        // overwritten.
        let items = vec![
            put(version, Some("attribute_not_exists(pk)"))?,
            put(head, None)?,
        ];
        let r = self.run(async move {
            Ok(client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await)
        })?;
        r.map_err(|e| self.err(e))?;
        Ok(SpecVersion {
            name: name.into(),
            version: next,
            text: text.into(),
            created_at_ms: at_ms,
            created_by: by.into(),
        })
    }

    fn spec(&self, name: &str, version: Option<u32>) -> Result<Option<SpecVersion>, StoreError> {
        match version {
            None => self.latest_version(name),
            Some(v) => Ok(self
                .get_item(format!("SPEC#{name}"), &format!("V#{v:010}"))?
                .map(|i| Self::decode_version(&i))),
        }
    }

    fn spec_versions(&self, name: &str) -> Result<Vec<SpecVersion>, StoreError> {
        Ok(self
            .query_all(
                None,
                "pk = :p AND begins_with(sk, :v)",
                vec![(":p", s(format!("SPEC#{name}"))), (":v", s("V#"))],
                false,
                MAX_VERSIONS as usize,
            )?
            .iter()
            .map(|i| SpecVersion {
                text: String::new(),
                ..Self::decode_version(i)
            })
            .collect())
    }

    fn specs(&self) -> Result<Vec<SpecEntry>, StoreError> {
        let heads = self.query_all(
            Some("gsi1"),
            "g1pk = :p",
            vec![(":p", s("SPECS"))],
            true,
            MAX_SPECS,
        )?;
        let baselines: HashMap<String, String> = self
            .query_all(
                Some("gsi1"),
                "g1pk = :p",
                vec![(":p", s("BASELINES"))],
                true,
                MAX_SPECS,
            )?
            .iter()
            .filter_map(|i| Some((get_s(i, "spec")?, get_s(i, "run_id")?)))
            .collect();
        Ok(heads
            .iter()
            .map(|i| {
                let name = get_s(i, "name").unwrap_or_default();
                SpecEntry {
                    baseline: baselines.get(&name).cloned(),
                    latest: u32::try_from(get_n(i, "latest").unwrap_or(0)).unwrap_or(0),
                    updated_at_ms: get_n(i, "updated_at_ms").unwrap_or(0),
                    name,
                }
            })
            .collect())
    }

    fn set_baseline(&self, b: &Baseline) -> Result<(), StoreError> {
        let item: Item = HashMap::from([
            ("pk".into(), s(format!("SPEC#{}", b.spec))),
            ("sk".into(), s("BASELINE")),
            ("g1pk".into(), s("BASELINES")),
            ("g1sk".into(), s(&b.spec)),
            ("spec".into(), s(&b.spec)),
            ("run_id".into(), s(&b.run_id)),
            ("set_at_ms".into(), n(b.set_at_ms)),
            ("set_by".into(), s(&b.set_by)),
        ]);
        self.put(item, None).map(|_| ())
    }

    fn baseline(&self, spec: &str) -> Result<Option<Baseline>, StoreError> {
        Ok(self
            .get_item(format!("SPEC#{spec}"), "BASELINE")?
            .map(|i| Baseline {
                spec: spec.into(),
                run_id: get_s(&i, "run_id").unwrap_or_default(),
                set_at_ms: get_n(&i, "set_at_ms").unwrap_or(0),
                set_by: get_s(&i, "set_by").unwrap_or_default(),
            }))
    }

    fn add_schedule(&self, sc: &Schedule) -> Result<(), StoreError> {
        if self.count("SCHEDULES", MAX_SCHEDULES)? >= MAX_SCHEDULES {
            return Err(StoreError::Full(format!(
                "the history holds {MAX_SCHEDULES} schedules already"
            )));
        }
        let mut item: Item = HashMap::from([
            ("pk".into(), s(format!("SCHEDULE#{}", sc.id))),
            ("sk".into(), s("SCHEDULE")),
            ("g1pk".into(), s("SCHEDULES")),
            ("g1sk".into(), s(sort_key(sc.created_at_ms, &sc.id))),
            ("id".into(), s(&sc.id)),
            ("name".into(), s(&sc.name)),
            ("timezone".into(), s(&sc.timezone)),
            ("enabled".into(), AttributeValue::Bool(sc.enabled)),
            ("created_at_ms".into(), n(sc.created_at_ms)),
            ("created_by".into(), s(&sc.created_by)),
        ]);
        match &sc.spec {
            ScheduledSpec::Stored(name) => item.insert("spec_name".into(), s(name)),
            ScheduledSpec::Inline(text) => item.insert("spec_text".into(), s(text)),
        };
        match &sc.when {
            When::Cron(c) => item.insert("cron".into(), s(c)),
            When::Once(at) => item.insert("at_ms".into(), n(*at)),
        };
        if let Some(l) = sc.last_fired_ms {
            item.insert("last_fired_ms".into(), n(l));
        }
        self.put(item, Some("attribute_not_exists(pk)")).map(|_| ())
    }

    fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.query_all(
            Some("gsi1"),
            "g1pk = :p",
            vec![(":p", s("SCHEDULES"))],
            true,
            MAX_SCHEDULES,
        )?
        .iter()
        .map(|i| self.decode_schedule(i))
        .collect()
    }

    fn remove_schedule(&self, id: &str) -> Result<bool, StoreError> {
        self.delete(format!("SCHEDULE#{id}"), "SCHEDULE")
    }

    fn set_schedule_enabled(&self, id: &str, enabled: bool) -> Result<bool, StoreError> {
        self.update(
            format!("SCHEDULE#{id}"),
            "SCHEDULE",
            "SET enabled = :e",
            "attribute_exists(pk)",
            vec![(":e", AttributeValue::Bool(enabled))],
        )
    }

    fn record_fired(
        &self,
        id: &str,
        at_ms: u64,
        error: Option<&str>,
        still_enabled: bool,
    ) -> Result<(), StoreError> {
        let mut values = vec![
            (":at", n(at_ms)),
            (":e", AttributeValue::Bool(still_enabled)),
        ];
        let set = match error {
            Some(e) => {
                values.push((":err", s(e)));
                "SET last_fired_ms = :at, enabled = :e, last_error = :err"
            }
            None => "SET last_fired_ms = :at, enabled = :e REMOVE last_error",
        };
        self.update(
            format!("SCHEDULE#{id}"),
            "SCHEDULE",
            set,
            "attribute_exists(pk)",
            values,
        )
        .map(|_| ())
    }

    fn create_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        if self.count("TOKENS", MAX_TOKENS)? >= MAX_TOKENS {
            return Err(StoreError::TooManyTokens);
        }
        let item: Item = HashMap::from([
            ("pk".into(), s(format!("TOKEN#{}", t.id))),
            ("sk".into(), s("TOKEN")),
            ("g1pk".into(), s("TOKENS")),
            ("g1sk".into(), s(sort_key(t.created_at_ms, &t.id))),
            ("id".into(), s(&t.id)),
            ("hash".into(), AttributeValue::B(t.hash.to_vec().into())),
            ("role".into(), s(t.role.as_str())),
            ("name".into(), s(&t.name)),
            ("created_at_ms".into(), n(t.created_at_ms)),
        ]);
        self.put(item, Some("attribute_not_exists(pk)")).map(|_| ())
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get_item(format!("TOKEN#{id}"), "TOKEN")?
            .map(|i| self.decode_token(&i))
            .transpose()
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.query_all(
            Some("gsi1"),
            "g1pk = :p",
            vec![(":p", s("TOKENS"))],
            false,
            MAX_TOKENS,
        )?
        .iter()
        .map(|i| self.decode_token(i))
        .collect()
    }

    fn revoke_token(&self, id: &str, at_ms: u64) -> Result<bool, StoreError> {
        self.update(
            format!("TOKEN#{id}"),
            "TOKEN",
            "SET revoked_at_ms = :at",
            "attribute_exists(pk) AND attribute_not_exists(revoked_at_ms)",
            vec![(":at", n(at_ms))],
        )
    }
}
