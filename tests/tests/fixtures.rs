//! Readers of recorded, real tool output (tests/fixtures/README.md says how each was made).

use agent::runners::k6::{parse_line, K6Event};

fn fixture(path: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(path),
    )
    .unwrap()
}

#[test]
fn k6_json_output_yields_every_request_with_label_status_and_failure() {
    let events: Vec<K6Event> = fixture("k6/basic.ndjson")
        .lines()
        .filter_map(|l| parse_line(l).unwrap())
        .collect();
    let requests: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            K6Event::Request {
                label,
                status,
                failed,
                error_code,
                latency_us,
                ..
            } => Some((
                label.as_str(),
                *status,
                *failed,
                error_code.as_deref(),
                *latency_us,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        requests.len(),
        18,
        "2 VUs × 6 iterations split, 3 requests each"
    );
    let ok: Vec<_> = requests.iter().filter(|r| r.0 == "item").collect();
    assert_eq!(ok.len(), 6);
    assert!(ok.iter().all(|r| r.1 == 200 && !r.2 && r.4 > 0));
    let s503: Vec<_> = requests.iter().filter(|r| r.1 == 503).collect();
    assert_eq!(s503.len(), 6);
    assert!(s503.iter().all(|r| r.2 && r.3 == Some("1503")));
    let refused: Vec<_> = requests.iter().filter(|r| r.1 == 0).collect();
    assert_eq!(refused.len(), 6);
    assert!(refused.iter().all(|r| r.2 && r.3 == Some("1212")));
    // What the target saw: 12 requests (the refused ones never reached it).
    assert_eq!(requests.iter().filter(|r| r.1 != 0).count(), 12);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, K6Event::Iteration { .. }))
            .count(),
        6
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, K6Event::Check { passed: true, .. }))
            .count(),
        6
    );
    let bytes_in: u64 = events
        .iter()
        .map(|e| {
            if let K6Event::DataIn { bytes, .. } = e {
                *bytes
            } else {
                0
            }
        })
        .sum();
    assert!(bytes_in > 0);
}

#[test]
fn k6_points_with_metadata_parse_the_same() {
    let with = fixture("k6/with_metadata.ndjson");
    let plain = fixture("k6/basic.ndjson")
        .lines()
        .find(|l| l.contains("\"http_req_duration\",\"type\":\"Point\""))
        .unwrap()
        .to_string();
    assert!(with.contains("\"metadata\""));
    assert_eq!(parse_line(&with).unwrap(), parse_line(&plain).unwrap());
}

#[test]
fn recorded_locust_listener_output_reads_back() {
    use agent::runners::{locust, Event};
    let text = fixture("locust/requests.jsonl");
    let events: Vec<Event> = text
        .lines()
        .flat_map(|l| locust::events(l).expect("every recorded line reads"))
        .collect();
    let requests: Vec<(&str, u16, bool, bool)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Request {
                label,
                status,
                failed,
                error,
                ..
            } => Some((label.as_str(), *status, *failed, error.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 12);
    assert!(matches!(events[0], Event::Vus(1)));
    for (label, status, failed, kind) in &requests {
        match *label {
            "item" => assert_eq!((*status, *failed, *kind), (200, false, false)),
            "broken" => assert_eq!((*status, *failed, *kind), (503, true, false)),
            "refused" => assert_eq!((*status, *failed, *kind), (0, true, true)),
            other => panic!("unexpected label {other}"),
        }
    }
}

#[test]
fn recorded_jmeter_jtl_reads_by_column_name() {
    use agent::runners::{jmeter, Event};
    let text = fixture("jmeter/basic.jtl");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    // JMeter 2.13 writes no sentBytes and no Connect column: the reader does without.
    assert!(!header.contains("sentBytes") && !header.contains("Connect"));
    let cols = jmeter::Columns::from_header(header).expect("columns");
    let mut requests = 0;
    for l in lines {
        for e in jmeter::events(&cols, l).expect("every recorded line reads") {
            match e {
                Event::Request {
                    label,
                    status,
                    failed,
                    latency_us,
                    ..
                } => {
                    requests += 1;
                    match label.as_str() {
                        "item" => assert_eq!((status, failed), (200, false)),
                        "missing" => assert_eq!((status, failed), (404, true)),
                        other => panic!("unexpected label {other}"),
                    }
                    assert!(latency_us < 1_000_000);
                }
                Event::Vus(v) => assert!(v <= 2),
                _ => {}
            }
        }
    }
    assert_eq!(requests, 11);
}
