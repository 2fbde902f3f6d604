//! `SqsIntake`: long-polls the coordinator's queue. Each message is decoded
//! ([`crate::aws::events::decode`]) and handed to [`Runs`]; while that is under way its visibility
//! is extended, and it is deleted only once its effect is durable (run started and marked,
//! rejection sent, cancel delivered). A message herd cannot understand is made visible again
//! after a second (`POISON_RETRY_S`), so it reaches the queue's redrive policy (the DLQ) after
//! maxReceiveCount quick receives, with a log line saying why. A transient failure (S3
//! unreachable) is not deleted either, so it comes back after the visibility timeout.

use std::time::Duration;

use actix::prelude::*;
use aws_sdk_sqs::types::Message;
use aws_sdk_sqs::Client;

use super::registry::{CancelRuns, Runs, Submit, Submitted, TaskEvent};
use crate::aws::err_text;
use crate::aws::events::{decode, Accept, Intent, PipelineTrust};

pub struct SqsIntake {
    h: Handling,
}

impl SqsIntake {
    pub fn new(
        client: Client,
        queue_url: String,
        visibility_s: i32,
        spec_bucket: String,
        spec_prefix: String,
        pipeline: PipelineTrust,
        runs: Addr<Runs>,
    ) -> SqsIntake {
        SqsIntake {
            h: Handling {
                client,
                queue_url,
                visibility_s,
                spec_bucket,
                spec_prefix,
                pipeline: std::sync::Arc::new(pipeline),
                runs,
            },
        }
    }
}

impl Actor for SqsIntake {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        actix::spawn(poll(self.h.clone()));
    }
}

/// What each message's handling needs; cloned into its task.
#[derive(Clone)]
struct Handling {
    client: Client,
    queue_url: String,
    visibility_s: i32,
    spec_bucket: String,
    spec_prefix: String,
    pipeline: std::sync::Arc<PipelineTrust>,
    runs: Addr<Runs>,
}

async fn poll(h: Handling) {
    tracing::info!(queue = %h.queue_url, "listening for run requests on SQS");
    let mut failing = 0u32;
    loop {
        let got = h
            .client
            .receive_message()
            .queue_url(&h.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(20)
            .visibility_timeout(h.visibility_s)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await;
        match got {
            Ok(out) => {
                failing = 0;
                for m in out.messages().iter().cloned() {
                    actix::spawn(handle(h.clone(), m));
                }
            }
            Err(e) => {
                failing += 1;
                let wait = Duration::from_millis(500 * u64::from(failing.min(20)));
                tracing::error!(error = %err_text(&e), retry_in = ?wait, "SQS ReceiveMessage failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// What to do with the message once handled.
enum Disposition {
    Delete,
    /// Leave it: it becomes visible again (retry, or the DLQ after maxReceiveCount).
    Keep,
    /// Not understood: make it visible again soon, so it reaches the DLQ after
    /// maxReceiveCount quick receives instead of holding a slot for minutes.
    Poison,
}

/// Seconds a poison message stays hidden between receives.
const POISON_RETRY_S: i32 = 1;

async fn handle(h: Handling, m: Message) {
    let Some(receipt) = m.receipt_handle().map(str::to_string) else {
        return;
    };
    let id = m.message_id().unwrap_or("?").to_string();
    let receives = m
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        })
        .cloned()
        .unwrap_or_default();
    // Keep the message invisible while it is being handled, however long that takes.
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let ext = {
        let h = h.clone();
        let receipt = receipt.clone();
        actix::spawn(async move {
            let every = Duration::from_secs((h.visibility_s as u64 / 2).max(5));
            loop {
                tokio::select! {
                    _ = &mut done_rx => break,
                    _ = tokio::time::sleep(every) => {
                        if let Err(e) = h.client.change_message_visibility()
                            .queue_url(&h.queue_url).receipt_handle(&receipt)
                            .visibility_timeout(h.visibility_s).send().await {
                            tracing::warn!(error = %err_text(&e), "extending a message's visibility failed");
                        }
                    }
                }
            }
        })
    };
    let body = m.body().unwrap_or_default();
    let accept = Accept {
        spec_bucket: &h.spec_bucket,
        spec_prefix: &h.spec_prefix,
        pipeline: &h.pipeline,
    };
    let disposition = match decode(body, accept) {
        Err(poison) => {
            tracing::error!(message = %id, receives = %receives, reason = %poison,
                "cannot understand this message; leaving it for the queue's dead-letter queue");
            Disposition::Poison
        }
        Ok(Intent::Ignore(why)) => {
            tracing::info!(message = %id, %why, "ignored");
            Disposition::Delete
        }
        Ok(Intent::Start(req)) => {
            let origin = req.origin.clone();
            match h.runs.send(Submit(req)).await {
                Ok(Ok(Submitted::Started(run))) => {
                    tracing::info!(message = %id, %origin, %run, "run started");
                    Disposition::Delete
                }
                Ok(Ok(Submitted::Duplicate(run))) => {
                    tracing::info!(message = %id, %origin, ?run, "already handled; deleting the duplicate");
                    Disposition::Delete
                }
                Ok(Ok(Submitted::Rejected(_))) => Disposition::Delete,
                Ok(Err(e)) => {
                    tracing::warn!(message = %id, %origin, error = %e, "could not start the run now; the message will come again");
                    Disposition::Keep
                }
                Err(e) => {
                    tracing::error!(message = %id, error = %e, "run registry unreachable");
                    Disposition::Keep
                }
            }
        }
        Ok(Intent::Cancel {
            run_id,
            correlation_id,
            reason,
        }) => {
            match h
                .runs
                .send(CancelRuns {
                    run_id,
                    correlation_id,
                    reason,
                })
                .await
            {
                Ok(_) => Disposition::Delete,
                Err(_) => Disposition::Keep,
            }
        }
        Ok(Intent::TaskStopped {
            task_arn,
            run_id,
            reason,
        }) => match h
            .runs
            .send(TaskEvent {
                task_arn,
                run_id,
                reason,
            })
            .await
        {
            Ok(()) => Disposition::Delete,
            Err(_) => Disposition::Keep,
        },
    };
    let _ = done_tx.send(());
    let _ = ext.await;
    if let Disposition::Poison = disposition {
        if let Err(e) = h
            .client
            .change_message_visibility()
            .queue_url(&h.queue_url)
            .receipt_handle(&receipt)
            .visibility_timeout(POISON_RETRY_S)
            .send()
            .await
        {
            tracing::warn!(message = %id, error = %err_text(&e), "could not release a poison message");
        }
    }
    if let Disposition::Delete = disposition {
        if let Err(e) = h
            .client
            .delete_message()
            .queue_url(&h.queue_url)
            .receipt_handle(&receipt)
            .send()
            .await
        {
            tracing::warn!(message = %id, error = %err_text(&e), "deleting a handled message failed (it may be delivered again; the idempotency key makes that harmless)");
        }
    }
}
