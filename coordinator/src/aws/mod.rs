//! AWS clients for `herd serve` and the ECS agent: what intake messages mean ([`events`]),
//! agents as ECS Fargate tasks ([`ecs_launcher`]) and how a task learns who it is
//! ([`bootstrap`]), IoT Core credentials ([`iot`]), S3 for specs, results and markers
//! ([`store`], [`spec_source`]). Every client honours an endpoint override (moto, LocalStack),
//! which is how the tests reach these paths for real. The actors that use them for intake and
//! notifications live in `serve`.

pub mod bootstrap;
pub mod ecs_launcher;
pub mod events;
pub mod iot;
pub mod scheduler;
pub mod spec_source;
pub mod store;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Shared SDK configuration for one region. With `endpoint` set (moto, LocalStack) every
/// service goes there.
pub async fn sdk_config(region: &str, endpoint: Option<&str>) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string()));
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

/// S3 with path-style addressing when an endpoint override is in use (moto has no
/// per-bucket DNS names).
pub fn s3_client(conf: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style = conf.endpoint_url().is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(path_style)
            .build(),
    )
}

/// An SDK error with its service message, not only "service error".
pub fn err_text<E: std::error::Error>(e: &E) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
