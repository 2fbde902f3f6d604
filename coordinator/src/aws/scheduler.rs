//! Schedules on EventBridge Scheduler (AWS profile, `[aws.scheduler]`): each herd schedule is
//! an EventBridge schedule that sends, at every occurrence, a `RunRequested` pipeline event to
//! the intake queue — the way AWS's own load-testing solution schedules tests. So schedules
//! fire whether or not a coordinator is running at that moment; the intake makes each
//! occurrence one run (the event id names the schedule and the occurrence's time).

use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target};
use serde_json::json;

use crate::config::{SchedulerConfig, PIPELINE_SOURCE};
use crate::store::catalog::{Schedule, When};

/// A five-field cron as EventBridge Scheduler's six-field `cron(…)`: one of day-of-month and
/// day-of-week must be `?`, weekdays count 1–7 from Sunday (not 0–6), and a year field is added.
pub fn aws_cron(expr: &str) -> Result<String, String> {
    let f: Vec<&str> = expr.split_whitespace().collect();
    let [min, hour, dom, month, dow] = f[..] else {
        return Err(format!("cron {expr:?}: five fields"));
    };
    let (dom, dow) = match (dom, dow) {
        (d, "*") => (d.to_string(), "?".to_string()),
        ("*", w) => ("?".to_string(), shift_weekdays(w)),
        _ => {
            return Err(format!(
                "cron {expr:?}: EventBridge Scheduler takes a day of the month or a day of the week, not both"
            ))
        }
    };
    Ok(format!("cron({min} {hour} {dom} {month} {dow} *)"))
}

/// POSIX weekdays (0 or 7 = Sunday) as EventBridge's (1 = Sunday … 7 = Saturday); names and
/// steps are left as they are.
fn shift_weekdays(field: &str) -> String {
    field
        .split(',')
        .map(|part| {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            let shifted: Vec<String> = range
                .split('-')
                .map(|d| match d.parse::<u8>() {
                    Ok(n) => ((n % 7) + 1).to_string(),
                    Err(_) => d.to_string(),
                })
                .collect();
            let mut out = shifted.join("-");
            if let Some(s) = step {
                out.push('/');
                out.push_str(s);
            }
            out
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The schedule's expression and zone for EventBridge Scheduler.
pub fn expression(s: &Schedule) -> Result<String, String> {
    match &s.when {
        When::Cron(c) => aws_cron(c),
        When::Once(at_ms) => {
            let tz: chrono_tz::Tz = s
                .timezone
                .parse()
                .map_err(|_| format!("timezone {:?}: not an IANA zone", s.timezone))?;
            let t = chrono::DateTime::from_timestamp_millis(i64::try_from(*at_ms).unwrap_or(0))
                .ok_or("at: out of range")?
                .with_timezone(&tz);
            Ok(format!("at({})", t.format("%Y-%m-%dT%H:%M:%S")))
        }
    }
}

/// The event each occurrence sends: a pipeline `RunRequested` whose id is the schedule and
/// the occurrence's time (`<aws.scheduler.scheduled-time>`, filled in by the Scheduler).
pub fn input(s: &Schedule, spec_text: &str, account: &str, region: &str) -> String {
    json!({
        "version": "0",
        "id": format!("schedule-{}-<aws.scheduler.scheduled-time>", s.id),
        "source": PIPELINE_SOURCE,
        "detail-type": "RunRequested",
        "account": account,
        "time": "<aws.scheduler.scheduled-time>",
        "region": region,
        "resources": [],
        "detail": {
            "spec": spec_text,
            "correlation_id": format!("schedule:{}", s.id),
        },
    })
    .to_string()
}

/// The account of an ARN (`arn:aws:iam::123456789012:role/x`).
fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

pub struct EbScheduler {
    client: aws_sdk_scheduler::Client,
    cfg: SchedulerConfig,
    queue_arn: String,
    account: String,
    region: String,
}

impl EbScheduler {
    pub fn new(
        conf: &aws_config::SdkConfig,
        cfg: SchedulerConfig,
        queue_arn: String,
        region: String,
    ) -> anyhow::Result<EbScheduler> {
        let account = account_of(&cfg.role_arn)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "[aws.scheduler] role_arn {:?}: not an IAM role ARN",
                    cfg.role_arn
                )
            })?
            .to_string();
        Ok(EbScheduler {
            client: aws_sdk_scheduler::Client::new(conf),
            cfg,
            queue_arn,
            account,
            region,
        })
    }

    fn target(&self, s: &Schedule, spec_text: &str) -> Result<Target, String> {
        Target::builder()
            .arn(&self.queue_arn)
            .role_arn(&self.cfg.role_arn)
            .input(input(s, spec_text, &self.account, &self.region))
            .build()
            .map_err(|e| e.to_string())
    }

    /// Makes (or, `update`, replaces) the schedule in EventBridge Scheduler.
    pub async fn put(&self, s: &Schedule, spec_text: &str, update: bool) -> Result<(), String> {
        let expr = expression(s)?;
        let target = self.target(s, spec_text)?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| e.to_string())?;
        let state = if s.enabled {
            ScheduleState::Enabled
        } else {
            ScheduleState::Disabled
        };
        let description = format!("herd schedule {} ({})", s.id, s.name);
        // Create and update take the same whole definition (their builders are two types).
        macro_rules! definition {
            ($call:expr) => {
                $call
                    .name(&s.id)
                    .group_name(&self.cfg.group)
                    .schedule_expression(expr)
                    .schedule_expression_timezone(&s.timezone)
                    .flexible_time_window(window)
                    .target(target)
                    .state(state)
                    .description(description)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| crate::aws::err_text(&e))
            };
        }
        let r = if update {
            definition!(self.client.update_schedule())
        } else {
            definition!(self.client.create_schedule())
        };
        r.map_err(|e| format!("EventBridge Scheduler: {e}"))
    }

    pub async fn delete(&self, id: &str) -> Result<(), String> {
        match self
            .client
            .delete_schedule()
            .name(id)
            .group_name(&self.cfg.group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if crate::aws::err_text(&e).contains("ResourceNotFound") => Ok(()),
            Err(e) => Err(format!(
                "EventBridge Scheduler: {}",
                crate::aws::err_text(&e)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_crons_become_eventbridge_six_field_ones() {
        assert_eq!(
            aws_cron("0 9 * * MON-FRI").unwrap(),
            "cron(0 9 ? * MON-FRI *)"
        );
        assert_eq!(aws_cron("*/15 * * * *").unwrap(), "cron(*/15 * * * ? *)");
        assert_eq!(aws_cron("30 2 1 * *").unwrap(), "cron(30 2 1 * ? *)");
        // POSIX Sunday is 0 (or 7); EventBridge's is 1.
        assert_eq!(aws_cron("0 0 * * 0").unwrap(), "cron(0 0 ? * 1 *)");
        assert_eq!(aws_cron("0 0 * * 1-5,7").unwrap(), "cron(0 0 ? * 2-6,1 *)");
        assert_eq!(aws_cron("0 0 * * 1/2").unwrap(), "cron(0 0 ? * 2/2 *)");
        assert!(aws_cron("0 0 1 * MON").is_err(), "both days");
        assert!(aws_cron("0 0 * *").is_err());
    }

    #[test]
    fn the_account_comes_from_the_role_arn() {
        assert_eq!(
            account_of("arn:aws:iam::123456789012:role/herd-scheduler"),
            Some("123456789012")
        );
        assert_eq!(account_of("nope"), None);
    }
}
