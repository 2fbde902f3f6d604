//! `target`: the base URL, default headers and HTTP client options.

use super::fields::{
    boolean, child, nonempty_string, one_of, positive_duration, string_pairs, uint, within, Errs,
    Map,
};
use crate::spec::limits::SpecLimits;
use crate::spec::model::{HttpOptions, HttpVersion, Target};
use crate::spec::node::{Kind, Node};

pub(super) fn target(n: &Node, path: &str, lim: &SpecLimits, errs: &mut Errs) -> Option<Target> {
    if let Kind::Str(_) = n.kind {
        let url = base_url(n, path, errs)?;
        return Some(Target {
            url,
            headers: Vec::new(),
            http: HttpOptions::default(),
            builtin: false,
        });
    }
    let mut m = Map::new(n, path, errs)?;
    let builtin = m
        .get("builtin")
        .and_then(|(n, p)| boolean(n, &p, errs))
        .unwrap_or(false);
    let url = match m.get("url") {
        Some((n, p)) => base_url(n, &p, errs),
        None if builtin => Some(String::new()),
        None => {
            errs.at(
                &child(path, "url"),
                n.pos,
                "is required (or set `builtin: true` to start herd's own target)",
            );
            None
        }
    };
    if builtin && m.has("url") {
        errs.at(
            &child(path, "builtin"),
            n.pos,
            "`builtin: true` starts herd's own target and sets the URL; remove `url`",
        );
    }
    let headers = m
        .get("headers")
        .map(|(n, p)| string_pairs(n, &p, errs))
        .unwrap_or_default();
    let http = m
        .get("http")
        .map(|(n, p)| http_options(n, &p, lim, errs))
        .unwrap_or_default();
    // HTTP/2 without TLS is h2c; `http2` on an http:// target would quietly speak HTTP/1.1.
    if http.version == HttpVersion::Http2
        && url.as_deref().is_some_and(|u| u.starts_with("http://"))
    {
        errs.at(
            &child(&child(path, "http"), "version"),
            n.pos,
            "http2 is HTTP/2 over TLS and this target is http://: use an https:// URL, or `h2c` for cleartext HTTP/2 (prior knowledge)",
        );
    }
    m.finish(errs, " in target");
    Some(Target {
        url: url?,
        headers,
        http,
        builtin,
    })
}

fn base_url(n: &Node, path: &str, errs: &mut Errs) -> Option<String> {
    let s = nonempty_string(n, path, errs)?;
    match url::Url::parse(&s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            Some(s.trim_end_matches('/').to_string())
        }
        Ok(u) => {
            errs.at(
                path,
                n.pos,
                format!(
                    "{s:?} must be an http:// or https:// URL with a host (scheme is {:?})",
                    u.scheme()
                ),
            );
            None
        }
        Err(e) => {
            errs.at(path, n.pos, format!("{s:?} is not a URL: {e}"));
            None
        }
    }
}

fn http_options(n: &Node, path: &str, lim: &SpecLimits, errs: &mut Errs) -> HttpOptions {
    let mut o = HttpOptions::default();
    let Some(mut m) = Map::new(n, path, errs) else {
        return o;
    };
    if let Some((n, p)) = m.get("version") {
        let v = one_of(
            n,
            &p,
            errs,
            &[
                ("auto", HttpVersion::Auto),
                ("http1", HttpVersion::Http1),
                ("http2", HttpVersion::Http2),
                ("h2c", HttpVersion::H2c),
            ],
        );
        o.version = v.unwrap_or(o.version);
    }
    if let Some(v) = m
        .get("timeout")
        .and_then(|(n, p)| positive_duration(n, &p, lim, errs))
    {
        o.timeout_ms = v;
    }
    if let Some(v) = m
        .get("connect_timeout")
        .and_then(|(n, p)| positive_duration(n, &p, lim, errs))
    {
        o.connect_timeout_ms = v;
    }
    if let Some(v) = m.get("redirects").and_then(|(n, p)| {
        let v = uint(n, &p, errs)?;
        let max = u64::from(lim.redirects);
        within(v, max, "redirects", "redirects", n, &p, errs)
    }) {
        // Within `lim.redirects`, a u32.
        o.max_redirects = u32::try_from(v).unwrap_or(lim.redirects);
    }
    if let Some(v) = m.get("insecure").and_then(|(n, p)| boolean(n, &p, errs)) {
        o.insecure = v;
    }
    if let Some(v) = m.get("cookies").and_then(|(n, p)| boolean(n, &p, errs)) {
        o.cookies = v;
    }
    m.finish(errs, " in target.http");
    o
}
