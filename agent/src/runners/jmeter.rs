//! JMeter: a JTL CSV results file written with its header (`print_field_names`) and flushed per
//! sample (`autoflush`), read by column name — `timeStamp`, `elapsed`, `label`,
//! `responseCode`, `success`, `bytes`, `sentBytes`, `Latency`, `Connect`, `allThreads` — so
//! plans that save fewer or more columns, and JMeter versions without `sentBytes`/`Connect`,
//! read the same.

use messages::spec::Engine;

use super::{
    users_shape, Command, Entry, Event, Launch, LineError, OutputReader, Runner, RunnerError,
};

/// A JTL line herd cannot read.
#[derive(Debug, thiserror::Error)]
pub enum JtlParseError {
    #[error(
        "the JTL header lacks {} (write it as CSV with print_field_names=true): {line:?}",
        .missing.join(", ")
    )]
    MissingColumns {
        missing: Vec<&'static str>,
        line: String,
    },
    #[error("bad CSV line: {0}")]
    Csv(csv::Error),
    #[error("an empty JTL line")]
    Empty,
    #[error("no {what} column in {line:?}")]
    NoColumn { what: &'static str, line: String },
    #[error("{what} is not a number in {line:?}")]
    NotANumber { what: &'static str, line: String },
}

/// Why a plan cannot carry this agent's share.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the plan has {0} thread groups; herd runs plans with exactly one (it sets its threads and duration)")]
    ThreadGroups(usize),
    #[error("the plan's thread group has no {0}")]
    NoProperty(&'static str),
    #[error("{0}")]
    Pattern(regex::Error),
}

/// Column positions, from the header line.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    time: Option<usize>,
    elapsed: Option<usize>,
    label: Option<usize>,
    code: Option<usize>,
    success: Option<usize>,
    bytes: Option<usize>,
    sent: Option<usize>,
    threads: Option<usize>,
    width: usize,
}

impl Columns {
    /// Reads the header; errors name the columns herd cannot do without.
    pub fn from_header(line: &str) -> Result<Columns, JtlParseError> {
        let names = fields(line.trim_end_matches(['\r', '\n']))?;
        let at = |n: &str| names.iter().position(|x| x == n);
        let c = Columns {
            time: at("timeStamp"),
            elapsed: at("elapsed"),
            label: at("label"),
            code: at("responseCode"),
            success: at("success"),
            bytes: at("bytes"),
            sent: at("sentBytes"),
            threads: at("allThreads"),
            width: names.len(),
        };
        let missing: Vec<&'static str> = [
            ("timeStamp", c.time),
            ("elapsed", c.elapsed),
            ("label", c.label),
            ("success", c.success),
        ]
        .iter()
        .filter(|(_, i)| i.is_none())
        .map(|(n, _)| *n)
        .collect();
        if missing.is_empty() {
            Ok(c)
        } else {
            Err(JtlParseError::MissingColumns {
                missing,
                line: line.to_string(),
            })
        }
    }
}

/// Splits one CSV line; quoted fields (messages with commas) go through the csv crate.
fn fields(line: &str) -> Result<Vec<String>, JtlParseError> {
    if !line.contains('"') {
        return Ok(line.split(',').map(str::to_string).collect());
    }
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    match r.records().next() {
        Some(Ok(rec)) => Ok(rec.iter().map(str::to_string).collect()),
        Some(Err(e)) => Err(JtlParseError::Csv(e)),
        None => Ok(Vec::new()),
    }
}

/// One JTL sample line → runner events.
pub fn events(cols: &Columns, line: &str) -> Result<Vec<Event>, JtlParseError> {
    let f = fields(line.trim_end_matches(['\r', '\n']))?;
    if f.len() < cols.width.min(f.len().max(1)) || f.is_empty() {
        return Err(JtlParseError::Empty);
    }
    let get = |i: Option<usize>| i.and_then(|i| f.get(i)).map(String::as_str);
    let num = |i: Option<usize>, what: &'static str| -> Result<u64, JtlParseError> {
        get(i)
            .ok_or_else(|| JtlParseError::NoColumn {
                what,
                line: line.to_string(),
            })?
            .trim()
            .parse::<u64>()
            .map_err(|_| JtlParseError::NotANumber {
                what,
                line: line.to_string(),
            })
    };
    let start = num(cols.time, "timeStamp")?;
    let elapsed = num(cols.elapsed, "elapsed")?;
    let label = get(cols.label).unwrap_or("unnamed").to_string();
    let code_text = get(cols.code).unwrap_or("");
    let status = code_text.trim().parse::<u16>().unwrap_or(0);
    let failed = get(cols.success) != Some("true");
    let error = (status == 0 && failed).then(|| {
        if code_text.contains("Timeout") {
            crate::http::ErrorKind::Timeout
        } else if code_text.contains("SSL") {
            crate::http::ErrorKind::Tls
        } else {
            crate::http::ErrorKind::Connect
        }
    });
    let mut out = Vec::with_capacity(2);
    if let Some(t) = get(cols.threads).and_then(|t| t.trim().parse::<u64>().ok()) {
        out.push(Event::Vus(t));
    }
    out.push(Event::Request {
        // JMeter stamps the start; bucket by the end, like the other tools.
        at_ms: start + elapsed,
        label,
        status,
        failed,
        error,
        latency_us: elapsed * 1000,
        bytes_in: get(cols.bytes)
            .and_then(|b| b.trim().parse().ok())
            .unwrap_or(0),
        bytes_out: get(cols.sent)
            .and_then(|b| b.trim().parse().ok())
            .unwrap_or(0),
    });
    Ok(out)
}

/// The plan with this agent's share: its one thread group gets `threads`, started over
/// `ramp_secs`, for `secs` in all (scheduler on, loops forever). A plan with several enabled thread groups is refused: herd
/// could not split it exactly.
pub fn share_plan(
    plan: &str,
    threads: u64,
    ramp_secs: u64,
    secs: u64,
) -> Result<String, PlanError> {
    let groups = plan.matches("testclass=\"ThreadGroup\"").count();
    if groups != 1 {
        return Err(PlanError::ThreadGroups(groups));
    }
    let set =
        |text: String, kind: &str, name: &'static str, value: &str| -> Result<String, PlanError> {
            let re = regex::Regex::new(&format!(r#"<{kind} name="{name}">[^<]*</{kind}>"#))
                .map_err(PlanError::Pattern)?;
            let with = format!(r#"<{kind} name="{name}">{value}</{kind}>"#);
            if re.is_match(&text) {
                Ok(re.replace_all(&text, regex::NoExpand(&with)).into_owned())
            } else {
                Err(PlanError::NoProperty(name))
            }
        };
    let mut p = plan.to_string();
    p = set(
        p,
        "stringProp",
        "ThreadGroup.num_threads",
        &threads.to_string(),
    )?;
    p = set(p, "stringProp", "ThreadGroup.duration", &secs.to_string())?;
    p = set(
        p,
        "stringProp",
        "ThreadGroup.ramp_time",
        &ramp_secs.to_string(),
    )?;
    p = set(p, "boolProp", "ThreadGroup.scheduler", "true")?;
    p = set(p, "stringProp", "LoopController.loops", "-1")?;
    Ok(p)
}

/// JMeter as a [`Runner`].
pub struct Jmeter;

impl Runner for Jmeter {
    fn tool(&self) -> &'static str {
        "jmeter"
    }

    fn path_var(&self) -> &'static str {
        "HERD_JMETER"
    }

    fn install_hint(&self) -> &'static str {
        "apt-get install jmeter (or a JMeter 5.x), or set HERD_JMETER to bin/jmeter"
    }

    /// No conventional plan name exists, so a folder must hold exactly one top-level plan.
    fn entry(&self) -> Entry {
        Entry {
            preferred: None,
            ext: ".jmx",
        }
    }

    /// JMeter expresses only threads ramped up, then held (see [`users_shape`]), written
    /// into a copy of the plan by [`share_plan`]; the `herd.*` properties let a plan address
    /// the target and tell agents apart.
    fn command(&self, l: &Launch<'_>) -> Result<Option<Command>, RunnerError> {
        let (spec, share, dir) = (l.spec, l.share, l.dir);
        let shape = users_shape(Engine::Jmeter, &share.executor)?;
        let vus = shape.users;
        if vus == 0 {
            return Ok(None);
        }
        let plan = std::fs::read_to_string(dir.join(l.script_file))
            .map_err(|e| RunnerError::Setup(format!("reading the plan: {e}")))?;
        let plan = share_plan(
            &plan,
            vus,
            shape.ramp_ms.div_ceil(1000),
            shape.total_ms.div_ceil(1000).max(1),
        )?;
        let plan_file = dir.join("herd-plan.jmx");
        std::fs::write(&plan_file, plan)
            .map_err(|e| RunnerError::Setup(format!("writing the plan: {e}")))?;
        let output = dir.join("results.jtl");
        let url = http::Uri::try_from(spec.target.url.as_str())
            .map_err(|e| RunnerError::Setup(format!("target {}: {e}", spec.target.url)))?;
        let scheme = url.scheme_str().unwrap_or("http").to_string();
        let host = url.host().unwrap_or("127.0.0.1").to_string();
        let port = url
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let mut args: Vec<String> = vec![
            "-n".into(),
            "-t".into(),
            plan_file.display().to_string(),
            "-l".into(),
            output.display().to_string(),
            "-j".into(),
            dir.join("jmeter.log").display().to_string(),
            "-Jjmeter.save.saveservice.output_format=csv".into(),
            "-Jjmeter.save.saveservice.print_field_names=true".into(),
            "-Jjmeter.save.saveservice.autoflush=true".into(),
            "-Jjmeter.save.saveservice.thread_counts=true".into(),
            "-Jjmeter.save.saveservice.bytes=true".into(),
            format!("-Jherd.target={}", spec.target.url),
            format!("-Jherd.protocol={scheme}"),
            format!("-Jherd.host={host}"),
            format!("-Jherd.port={port}"),
            format!("-Jherd.agent={}", share.index),
            format!("-Jherd.agents={}", share.count),
        ];
        // Plugins shipped with the plan (a script folder with lib/ext/*.jar and lib/*.jar).
        if dir.join("lib/ext").is_dir() {
            args.push(format!("-Jsearch_paths={}", dir.join("lib/ext").display()));
        }
        if dir.join("lib").is_dir() {
            args.push(format!("-Juser.classpath={}", dir.join("lib").display()));
        }
        args.extend(
            spec.runner
                .as_ref()
                .map(|r| r.args.clone())
                .unwrap_or_default(),
        );
        // JMeter appends to an existing results file without a header; start from nothing.
        let _ = std::fs::remove_file(&output);
        Ok(Some(Command {
            program: l.program.to_path_buf(),
            args,
            env: Vec::new(),
            output,
            cwd: dir.to_path_buf(),
        }))
    }

    fn reader(&self) -> Box<dyn OutputReader> {
        Box::new(Reader { columns: None })
    }
}

/// A JTL is read by column name, and the names come only in its first line.
struct Reader {
    columns: Option<Columns>,
}

impl OutputReader for Reader {
    fn events(&mut self, line: &str) -> Result<Vec<Event>, LineError> {
        match &self.columns {
            Some(c) => Ok(events(c, line)?),
            None => {
                self.columns = Some(Columns::from_header(line)?);
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Event;
    use super::*;

    #[test]
    fn columns_by_name_with_and_without_the_optional_ones() {
        let full = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect";
        let c = Columns::from_header(full).expect("header");
        let e = events(&c, "1795649000000,12,item,200,OK,Thread Group 1-1,text,true,,70,120,2,2,http://x/items/7,11,0,1").expect("line");
        assert!(matches!(e[0], Event::Vus(2)));
        match &e[1] {
            Event::Request {
                at_ms,
                label,
                status,
                failed,
                latency_us,
                bytes_in,
                bytes_out,
                ..
            } => {
                assert_eq!(
                    (
                        *at_ms,
                        label.as_str(),
                        *status,
                        *failed,
                        *latency_us,
                        *bytes_in,
                        *bytes_out
                    ),
                    (1795649000012, "item", 200, false, 12_000, 70, 120)
                );
            }
            _ => panic!("not a request"),
        }
        // 2.13's default: no sentBytes, no Connect, no allThreads; a message with a comma.
        let old = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,bytes,Latency";
        let c = Columns::from_header(old).expect("header");
        let e = events(&c, "1795649000000,3,refused,\"Non HTTP response code: java.net.ConnectException\",\"Non HTTP response message: Connection refused, really\",TG 1-1,text,false,1500,0").expect("line");
        match &e[0] {
            Event::Request {
                status,
                failed,
                error,
                bytes_out,
                ..
            } => {
                assert_eq!(
                    (*status, *failed, error.is_some(), *bytes_out),
                    (0, true, true, 0)
                );
            }
            _ => panic!("not a request"),
        }
        assert!(Columns::from_header("a,b,c")
            .expect_err("no columns")
            .to_string()
            .contains("timeStamp, elapsed, label, success"));
        assert!(events(&c, "x,y").is_err());
    }

    #[test]
    fn the_plan_gets_the_share() {
        let plan = include_str!("../../../loadtest-specs/jmeter/shop.jmx");
        let p = share_plan(plan, 7, 5, 42).expect("one thread group");
        assert!(p.contains(r#"<stringProp name="ThreadGroup.ramp_time">5</stringProp>"#));
        assert!(p.contains(r#"<stringProp name="ThreadGroup.num_threads">7</stringProp>"#));
        assert!(p.contains(r#"<stringProp name="ThreadGroup.duration">42</stringProp>"#));
        assert!(p.contains(r#"<boolProp name="ThreadGroup.scheduler">true</boolProp>"#));
        let none = plan.replace(
            "testclass=\"ThreadGroup\"",
            "testclass=\"SetupThreadGroup\"",
        );
        assert!(share_plan(&none, 1, 0, 1)
            .expect_err("no group")
            .to_string()
            .contains("0 thread groups"));
    }

    /// Users and the run result read these messages; the typed errors must say what the
    /// strings said.
    #[test]
    fn errors_read_as_they_always_did() {
        let msg = |e: &dyn std::fmt::Display| e.to_string();
        assert_eq!(
            msg(&Columns::from_header("a,b,c\n").expect_err("no columns")),
            r#"the JTL header lacks timeStamp, elapsed, label, success (write it as CSV with print_field_names=true): "a,b,c\n""#
        );
        let c = Columns::from_header("timeStamp,elapsed,label,success").expect("header");
        assert_eq!(
            msg(&events(&c, "x,y").expect_err("text time")),
            r#"timeStamp is not a number in "x,y""#
        );
        let c = Columns::from_header("label,success,timeStamp,elapsed").expect("header");
        assert_eq!(
            msg(&events(&c, "a,true").expect_err("short line")),
            r#"no timeStamp column in "a,true""#
        );

        let plan = include_str!("../../../loadtest-specs/jmeter/shop.jmx");
        let two = plan.replacen(
            "testclass=\"ThreadGroup\"",
            "testclass=\"ThreadGroup\"/><x testclass=\"ThreadGroup\"",
            1,
        );
        let e = share_plan(&two, 1, 0, 1).expect_err("two groups");
        let text = "the plan has 2 thread groups; herd runs plans with exactly one (it sets its threads and duration)";
        assert_eq!(msg(&e), text);
        assert_eq!(msg(&RunnerError::from(e)), text);
        let no_duration = plan.replace("ThreadGroup.duration", "ThreadGroup.delay");
        assert_eq!(
            msg(&share_plan(&no_duration, 1, 0, 1).expect_err("no duration")),
            "the plan's thread group has no ThreadGroup.duration"
        );
    }
}
