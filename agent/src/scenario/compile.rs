//! Spec → [`Plan`]: templates resolved to slots, regexes and JSONPaths compiled, and requests
//! that never change pre-built, so an iteration does no parsing.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::Method;
use messages::policy::{Denied, TargetPolicy, UrlVerdict};
use messages::spec::{Body, Capture, CaptureFrom, Check, Spec, Think};
use messages::template::{Part, Template};

use super::data::{DataError, Feeder};
use crate::http::{HttpError, Origin, OutRequest};

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("target URL {url:?}: {reason}")]
    Target { url: String, reason: String },
    #[error("step `{step}`: {reason}")]
    Step { step: String, reason: String },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("data source `{0}` is used by the spec but its file contents were not provided")]
    MissingData(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Vu,
    Iteration,
    Agent,
    Run,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CPart {
    Lit(String),
    Builtin(Builtin),
    /// Index into [`Plan::variables`].
    Var(usize),
    /// Index into the VU's capture slots.
    Capture(usize),
    Data {
        source: usize,
        column: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CTemplate {
    pub parts: Vec<CPart>,
}

impl CTemplate {
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, CPart::Lit(_)))
    }
    pub fn literal(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                CPart::Lit(s) => s.as_str(),
                _ => "",
            })
            .collect()
    }
}

pub enum CCheck {
    Status(Vec<u16>),
    Header {
        name: HeaderName,
        contains: Option<String>,
    },
    BodyContains(String),
    BodyRegex(regex::Regex),
    JsonPath {
        path: serde_json_path::JsonPath,
        equals: Option<serde_json::Value>,
        text: String,
    },
}

pub enum CCapture {
    JsonPath(serde_json_path::JsonPath),
    Regex(regex::Regex),
    Header(HeaderName),
}

pub enum CBody {
    None,
    Raw(CTemplate),
    Json(CTemplate),
    Form(Vec<(String, CTemplate)>),
}

pub struct CStep {
    pub label: u16,
    pub name: String,
    pub method: Method,
    pub url: CTemplate,
    pub query: Vec<(String, CTemplate)>,
    pub headers: Vec<(HeaderName, CTemplate)>,
    pub body: CBody,
    pub checks: Vec<CCheck>,
    /// The status check's codes, which decide whether the request failed.
    pub expect_status: Option<Vec<u16>>,
    pub captures: Vec<(usize, String, CCapture)>,
    pub think: Option<Think>,
    /// Checks or captures read the body, so it must be kept.
    pub keep_body: bool,
    /// Set when nothing in the request is templated.
    pub prebuilt: Option<OutRequest>,
}

pub struct Plan {
    pub labels: Vec<String>,
    pub steps: Vec<CStep>,
    pub base_origin: Origin,
    /// Path of the target URL, prepended to relative step URLs (no trailing slash).
    pub base_path: String,
    /// The policy's check of the target URL: that of every relative URL, unless the policy
    /// has URL-prefix rules (then each is checked whole).
    pub base_verdict: Result<UrlVerdict, Denied>,
    pub policy: Arc<TargetPolicy>,
    pub default_headers: HeaderMap,
    pub variables: Vec<String>,
    pub capture_slots: usize,
    pub feeders: Vec<Arc<Feeder>>,
    pub run_id: String,
    pub agent: u32,
}

/// Compiles `spec` for agent `agent` of `agents`. `data` holds the CSV bytes by source name.
/// A URL `policy` denies is no compile error: its requests fail with `ErrorKind::Policy`, so
/// they are counted like any other failed request.
pub fn compile(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    run_id: &str,
    (agent, agents): (u32, u32),
    policy: &Arc<TargetPolicy>,
) -> Result<Plan, CompileError> {
    compile_with(spec, data, run_id, (agent, agents), policy, true)
}

/// What an agent's compile would refuse, checked before anything runs (`herd validate`, the
/// API's `/validate`, a run's preparation): data files against the spec (each source read,
/// every `{{source.column}}` a column of its header), templates, checks. Secrets are not read:
/// they live on the agents, not where the spec is checked.
pub fn check(spec: &Spec, data: &BTreeMap<String, Vec<u8>>) -> Result<(), CompileError> {
    let policy = Arc::new(TargetPolicy::allow_all());
    compile_with(spec, data, "check", (0, 1), &policy, false).map(|_| ())
}

fn compile_with(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    run_id: &str,
    (agent, agents): (u32, u32),
    policy: &Arc<TargetPolicy>,
    read_secrets: bool,
) -> Result<Plan, CompileError> {
    let base = url::Url::parse(&spec.target.url).map_err(|e| CompileError::Target {
        url: spec.target.url.clone(),
        reason: e.to_string(),
    })?;
    let base_origin = Origin::from_url(&base).map_err(|e: HttpError| CompileError::Target {
        url: spec.target.url.clone(),
        reason: e.message,
    })?;
    let base_path = base.path().trim_end_matches('/').to_string();
    let base_verdict = policy.check_url(&base);

    let mut feeders = Vec::new();
    for (name, src) in &spec.data {
        let bytes = data
            .get(name)
            .ok_or_else(|| CompileError::MissingData(name.clone()))?;
        feeders.push(Arc::new(Feeder::from_csv(name, src, bytes, agent, agents)?));
    }
    let var_names: Vec<&String> = spec.variables.keys().collect();
    let variables: Vec<String> = spec.variables.values().cloned().collect();
    let mut capture_names: Vec<String> = Vec::new();
    for s in &spec.scenario {
        for c in &s.captures {
            if !capture_names.contains(&c.var) {
                capture_names.push(c.var.clone());
            }
        }
    }

    let mut default_headers = HeaderMap::new();
    default_headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("herd/", env!("CARGO_PKG_VERSION"))),
    );
    for (k, v) in &spec.target.headers {
        let (k, v) = header(k, v).map_err(|reason| CompileError::Target {
            url: spec.target.url.clone(),
            reason: format!("header {k:?}: {reason}"),
        })?;
        default_headers.insert(k, v);
    }

    let mut labels: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    for s in &spec.scenario {
        let serr = |reason: String| CompileError::Step {
            step: s.name.clone(),
            reason,
        };
        let label = match labels.iter().position(|l| *l == s.name) {
            Some(i) => i,
            None => {
                labels.push(s.name.clone());
                labels.len() - 1
            }
        };
        let ctx = Ctx {
            var_names: &var_names,
            capture_names: &capture_names,
            feeders: &feeders,
            read_secrets,
        };
        let tpl = |text: &str| ctx.template(text).map_err(serr);
        let r = &s.request;
        let method =
            Method::from_bytes(r.method.as_bytes()).map_err(|e| serr(format!("method: {e}")))?;
        let url = tpl(&r.url)?;
        let query = r
            .query
            .iter()
            .map(|(k, v)| Ok((k.clone(), tpl(v)?)))
            .collect::<Result<Vec<_>, CompileError>>()?;
        let mut headers = Vec::new();
        for (k, v) in &r.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| serr(format!("header name {k:?}: {e}")))?;
            headers.push((name, tpl(v)?));
        }
        let body = match &r.body {
            None => CBody::None,
            Some(Body::Raw(b)) => CBody::Raw(tpl(b)?),
            Some(Body::Json(b)) => CBody::Json(tpl(b)?),
            Some(Body::Form(f)) => CBody::Form(
                f.iter()
                    .map(|(k, v)| Ok((k.clone(), tpl(v)?)))
                    .collect::<Result<Vec<_>, CompileError>>()?,
            ),
        };
        let mut checks = Vec::new();
        let mut expect_status = None;
        let mut keep_body = false;
        for c in &s.checks {
            checks.push(match c {
                Check::Status(codes) => {
                    expect_status = Some(codes.clone());
                    CCheck::Status(codes.clone())
                }
                Check::Header { name, contains } => CCheck::Header {
                    name: HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| serr(format!("header check {name:?}: {e}")))?,
                    contains: contains.clone(),
                },
                Check::BodyContains(s) => {
                    keep_body = true;
                    CCheck::BodyContains(s.clone())
                }
                Check::BodyRegex(re) => {
                    keep_body = true;
                    CCheck::BodyRegex(regex::Regex::new(re).map_err(|e| serr(e.to_string()))?)
                }
                Check::JsonPath { path, equals } => {
                    keep_body = true;
                    CCheck::JsonPath {
                        path: serde_json_path::JsonPath::parse(path)
                            .map_err(|e| serr(e.to_string()))?,
                        equals: match equals {
                            Some(e) => {
                                Some(serde_json::from_str(e).map_err(|e| serr(e.to_string()))?)
                            }
                            None => None,
                        },
                        text: path.clone(),
                    }
                }
            });
        }
        let mut captures = Vec::new();
        for Capture { var, from } in &s.captures {
            let slot = capture_names
                .iter()
                .position(|c| c == var)
                .unwrap_or_default();
            captures.push((
                slot,
                var.clone(),
                match from {
                    CaptureFrom::JsonPath(p) => {
                        keep_body = true;
                        CCapture::JsonPath(
                            serde_json_path::JsonPath::parse(p).map_err(|e| serr(e.to_string()))?,
                        )
                    }
                    CaptureFrom::Regex(re) => {
                        keep_body = true;
                        CCapture::Regex(regex::Regex::new(re).map_err(|e| serr(e.to_string()))?)
                    }
                    CaptureFrom::Header(h) => CCapture::Header(
                        HeaderName::from_bytes(h.as_bytes())
                            .map_err(|e| serr(format!("header {h:?}: {e}")))?,
                    ),
                },
            ));
        }
        let mut step = CStep {
            label: u16::try_from(label).map_err(|_| serr("more than 65535 labels".into()))?,
            name: s.name.clone(),
            method,
            url,
            query,
            headers,
            body,
            checks,
            expect_status,
            captures,
            think: s.think,
            keep_body,
            prebuilt: None,
        };
        let all_static = step.url.is_static()
            && step.query.iter().all(|(_, t)| t.is_static())
            && step.headers.iter().all(|(_, t)| t.is_static())
            && match &step.body {
                CBody::None => true,
                CBody::Raw(t) | CBody::Json(t) => t.is_static(),
                CBody::Form(f) => f.iter().all(|(_, t)| t.is_static()),
            };
        if all_static {
            let plan_view = PlanView {
                base_origin: &base_origin,
                base_path: &base_path,
                base_verdict: &base_verdict,
                policy,
                default_headers: &default_headers,
            };
            let req = build_request(
                &plan_view,
                &step,
                &mut |t: &CTemplate, out: &mut String, _json: bool| out.push_str(&t.literal()),
            )
            .map_err(|e| serr(e.message))?;
            step.prebuilt = Some(req);
        }
        steps.push(step);
    }
    Ok(Plan {
        labels,
        steps,
        base_origin,
        base_path,
        base_verdict,
        policy: policy.clone(),
        default_headers,
        variables,
        capture_slots: capture_names.len(),
        feeders,
        run_id: run_id.to_string(),
        agent,
    })
}

fn header(k: &str, v: &str) -> Result<(HeaderName, HeaderValue), String> {
    Ok((
        HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
        HeaderValue::from_str(v).map_err(|e| e.to_string())?,
    ))
}

struct Ctx<'a> {
    var_names: &'a [&'a String],
    capture_names: &'a [String],
    feeders: &'a [Arc<Feeder>],
    /// False when only checking: a secret then stands for an empty value.
    read_secrets: bool,
}

impl Ctx<'_> {
    fn template(&self, text: &str) -> Result<CTemplate, String> {
        let t = Template::parse(text).map_err(|e| e.to_string())?;
        let mut parts = Vec::new();
        for p in t.parts {
            parts.push(match p {
                Part::Lit(s) => CPart::Lit(s),
                Part::Var(v) => self.resolve(&v)?,
            });
        }
        Ok(CTemplate { parts })
    }

    fn resolve(&self, v: &str) -> Result<CPart, String> {
        // Captures shadow variables: a value learned at run time is the more specific one.
        if let Some(i) = self.capture_names.iter().position(|c| c == v) {
            return Ok(CPart::Capture(i));
        }
        if let Some(i) = self.var_names.iter().position(|n| *n == v) {
            return Ok(CPart::Var(i));
        }
        match v {
            "vu" => return Ok(CPart::Builtin(Builtin::Vu)),
            "iteration" => return Ok(CPart::Builtin(Builtin::Iteration)),
            "agent" => return Ok(CPart::Builtin(Builtin::Agent)),
            "run" => return Ok(CPart::Builtin(Builtin::Run)),
            _ => {}
        }
        if let Some((src, col)) = v.split_once('.') {
            if let Some(si) = self.feeders.iter().position(|f| f.name == src) {
                let f = &self.feeders[si];
                return match f.column(col) {
                    Some(ci) => Ok(CPart::Data {
                        source: si,
                        column: ci,
                    }),
                    None => Err(format!(
                        "data source `{src}` has no column `{col}` (columns: {})",
                        f.columns.join(", ")
                    )),
                };
            }
        }
        if let Some(name) = messages::template::secret_name(v) {
            if !self.read_secrets {
                return Ok(CPart::Lit(String::new()));
            }
            // Read here, once: the value becomes a literal and is never written anywhere.
            let var = messages::template::secret_env(name);
            return std::env::var(&var).map(CPart::Lit).map_err(|_| {
                format!(
                    "secret `{name}` is not set on this agent: set {var} in its environment \
                     (on AWS, from Secrets Manager or SSM in the agent task definition)"
                )
            });
        }
        Err(format!(
            "`{{{{{v}}}}}` is not a variable, capture, data column or builtin"
        ))
    }
}

/// What [`build_request`] needs of a plan (also usable before the plan exists).
pub struct PlanView<'a> {
    pub base_origin: &'a Origin,
    pub base_path: &'a str,
    pub base_verdict: &'a Result<UrlVerdict, Denied>,
    pub policy: &'a TargetPolicy,
    pub default_headers: &'a HeaderMap,
}

/// Builds a step's request, rendering each template with `render`, and checks its URL against
/// the policy: once for a pre-built request, at request time for a templated one (the URL as
/// rendered). A relative URL costs no parsing unless the policy has URL-prefix rules.
pub fn build_request(
    plan: &PlanView<'_>,
    step: &CStep,
    render: &mut dyn FnMut(&CTemplate, &mut String, bool),
) -> Result<OutRequest, HttpError> {
    use crate::http::ErrorKind::InvalidRequest;
    let mut url = String::new();
    render(&step.url, &mut url, false);
    let (origin, mut path, verdict) = if url.starts_with("http://") || url.starts_with("https://") {
        let u = url::Url::parse(&url)
            .map_err(|e| HttpError::new(InvalidRequest, format!("URL {url:?}: {e}")))?;
        let origin = Origin::from_url(&u)?;
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        (origin, path, Some(plan.policy.check_url(&u)))
    } else {
        let sep = if url.starts_with('/') || url.is_empty() {
            ""
        } else {
            "/"
        };
        let mut p = format!("{}{sep}{url}", plan.base_path);
        if p.is_empty() {
            p.push('/');
        }
        (plan.base_origin.clone(), p, None)
    };
    if !step.query.is_empty() {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        let mut v = String::new();
        for (k, t) in &step.query {
            v.clear();
            render(t, &mut v, false);
            ser.append_pair(k, &v);
        }
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(&ser.finish());
    }
    let mut headers = plan.default_headers.clone();
    let mut v = String::new();
    for (name, t) in &step.headers {
        v.clear();
        render(t, &mut v, false);
        let hv = HeaderValue::from_str(&v).map_err(|e| {
            HttpError::new(InvalidRequest, format!("header {name}: value {v:?}: {e}"))
        })?;
        headers.insert(name.clone(), hv);
    }
    let body = match &step.body {
        CBody::None => Bytes::new(),
        CBody::Raw(t) => {
            let mut b = String::new();
            render(t, &mut b, false);
            Bytes::from(b)
        }
        CBody::Json(t) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            let mut b = String::new();
            render(t, &mut b, true);
            Bytes::from(b)
        }
        CBody::Form(f) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, t) in f {
                v.clear();
                render(t, &mut v, false);
                ser.append_pair(k, &v);
            }
            Bytes::from(ser.finish())
        }
    };
    let verdict = if plan.policy.has_prefix_rules() {
        // The whole URL, query included, is what prefixes are matched against.
        let whole = format!("{origin}{path}");
        let u = url::Url::parse(&whole)
            .map_err(|e| HttpError::new(InvalidRequest, format!("URL {whole:?}: {e}")))?;
        plan.policy.check_url(&u)
    } else {
        verdict.unwrap_or_else(|| plan.base_verdict.clone())
    };
    Ok(OutRequest::new(step.method.clone(), origin, path, headers, body)?.checked(verdict))
}
