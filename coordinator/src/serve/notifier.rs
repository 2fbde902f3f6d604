//! `Notifier`: tells the outside world how runs ended — `RunCompleted` (verdict, headline
//! numbers, where the results are) and `RunRejected` (a spec that could not run, with every
//! error). On AWS to an SNS topic and as EventBridge events (`source: herd`) a pipeline rule
//! can gate a deployment on; locally as whole, fsync'd lines in `notifications.jsonl` (in the
//! results folder unless `notifications` names another file).

use std::path::PathBuf;

use actix::prelude::*;
use messages::outcome::Notification;

use crate::aws::err_text;
use crate::aws::events::HERD_SOURCE;

pub enum Sink {
    Local(PathBuf),
    Aws {
        sns: aws_sdk_sns::Client,
        topic_arn: Option<String>,
        events: aws_sdk_eventbridge::Client,
        bus: String,
    },
}

pub struct Notifier {
    sink: std::sync::Arc<Sink>,
}

impl Notifier {
    pub fn new(sink: Sink) -> Notifier {
        Notifier {
            sink: std::sync::Arc::new(sink),
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;
}

/// A notification could not be delivered (each sink that failed, with its error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct NotifyError(pub Vec<String>);

#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), NotifyError>")]
pub struct Notify(pub Notification);

impl Handler<Notify> for Notifier {
    type Result = ResponseFuture<Result<(), NotifyError>>;

    fn handle(&mut self, msg: Notify, _ctx: &mut Context<Self>) -> Self::Result {
        let sink = self.sink.clone();
        Box::pin(async move {
            let r = send(&sink, &msg.0).await;
            match &r {
                Ok(()) => {
                    tracing::info!(kind = msg.0.kind(), detail = %msg.0.detail_json(), "notified")
                }
                Err(e) => tracing::error!(kind = msg.0.kind(), error = %e, "notification failed"),
            }
            r
        })
    }
}

async fn send(sink: &Sink, msg: &Notification) -> Result<(), NotifyError> {
    let text = msg.detail_json();
    let kind = msg.kind();
    match sink {
        Sink::Local(path) => {
            // The notification (`{"RunCompleted": {…}}`) with when it was written beside it.
            let mut doc =
                serde_json::to_value(msg).map_err(|e| NotifyError(vec![e.to_string()]))?;
            if let serde_json::Value::Object(m) = &mut doc {
                m.insert("at".into(), chrono::Utc::now().to_rfc3339().into());
            }
            let line = doc.to_string();
            // The whole line, fsync'd, or nothing: a reader never sees a torn one. On a blocking
            // thread: an fsync must not stall the runs sharing this one.
            let path = path.clone();
            tokio::task::spawn_blocking(move || crate::journal::append_line(&path, &line))
                .await
                .map_err(|e| NotifyError(vec![format!("appending a notification: {e}")]))?
                .map_err(|e| NotifyError(vec![e.to_string()]))
        }
        Sink::Aws {
            sns,
            topic_arn,
            events,
            bus,
        } => {
            let mut errors = Vec::new();
            if let Some(arn) = topic_arn {
                let attr = aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(kind)
                    .build()
                    .map_err(|e| NotifyError(vec![e.to_string()]))?;
                if let Err(e) = sns
                    .publish()
                    .topic_arn(arn)
                    .subject(format!("herd {kind}"))
                    .message(&text)
                    .message_attributes("type", attr)
                    .send()
                    .await
                {
                    errors.push(format!("SNS {arn}: {}", err_text(&e)));
                }
            }
            let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(HERD_SOURCE)
                .detail_type(kind)
                .detail(&text)
                .event_bus_name(bus)
                .build();
            match events.put_events().entries(entry).send().await {
                Ok(out) if out.failed_entry_count() > 0 => errors.push(format!(
                    "EventBridge {bus}: {:?}",
                    out.entries()
                        .iter()
                        .filter_map(|e| e.error_message())
                        .collect::<Vec<_>>()
                )),
                Ok(_) => {}
                Err(e) => errors.push(format!("EventBridge {bus}: {}", err_text(&e))),
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(NotifyError(errors))
            }
        }
    }
}
