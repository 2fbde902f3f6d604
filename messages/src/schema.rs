//! JSON Schemas of the documents herd writes for others to read, generated from the types
//! themselves. The committed copies in `docs/schemas/` are what users code against; the test
//! below fails when a type and its committed schema drift apart (regenerate with
//! `HERD_UPDATE_SCHEMAS=1 cargo test -p herd-messages schema`).

use schemars::schema_for;

use crate::outcome::{Notification, RunCompleted, RunRejected};
use crate::summary::Summary;

/// (file name under `docs/schemas/`, schema) for every generated document.
pub fn documents() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "run-completed.schema.json",
            schema_for!(RunCompleted).to_value(),
        ),
        (
            "run-rejected.schema.json",
            schema_for!(RunRejected).to_value(),
        ),
        (
            "notification.schema.json",
            schema_for!(Notification).to_value(),
        ),
        ("summary.schema.json", schema_for!(Summary).to_value()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_schemas_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas");
        let update = std::env::var_os("HERD_UPDATE_SCHEMAS").is_some();
        for (name, schema) in documents() {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(&schema).expect("schema as JSON") + "\n";
            if update {
                std::fs::write(&path, &text).expect("write schema");
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                committed, text,
                "docs/schemas/{name} is not what the type generates: if the change is meant, run \
                 HERD_UPDATE_SCHEMAS=1 cargo test -p herd-messages schema and commit the file"
            );
        }
    }

    #[test]
    fn a_run_completed_validates_its_own_shape() {
        let doc = serde_json::json!({
            "run_id": "r", "spec": "s", "correlation_id": null, "source": "inbox/s.yaml",
            "state": "cancelled", "reason": "stop", "verdict": "failed", "requests": 1,
            "errors": 0, "rps": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "agents_lost": 0,
            "thresholds": [], "results": null,
            "results_error": "results not written: writing /r/summary.json: No space left on device"
        });
        let back: RunCompleted = serde_json::from_value(doc.clone()).expect("parses");
        assert_eq!(serde_json::to_value(&back).expect("serializes"), doc);
        let mut extra = doc;
        extra["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<RunCompleted>(extra).is_err());
    }
}
