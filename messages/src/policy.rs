//! Where load may go: the target policy, checked on every URL an agent is about to request and
//! on every address it connects to.
//!
//! A policy holds allow and deny [`TargetRule`]s (a host name, `*.` a domain's subdomains, a
//! CIDR, or a URL prefix), the `default` for what no rule decides, and `reserved` ranges (the
//! AWS profile's loopback, link-local, private… [`private_ranges`]). The rules, in order:
//!
//! 1. A **deny** rule that matches wins, always.
//! 2. An **allow CIDR** that covers the address allows it, reserved range or not: listing the
//!    address is the only way to reach a reserved one.
//! 3. A **reserved** range that holds the address denies it. An allow rule naming the *host*
//!    does not lift it: a name can resolve anywhere, an address cannot.
//! 4. An **allow host or URL prefix** rule that matches the URL allows it.
//! 5. Otherwise the **default** (`Allow` or `Deny`).
//!
//! Two checks, because a URL alone cannot tell where a connection goes:
//! - [`TargetPolicy::check_url`] before anything is sent: scheme (http, https), host and
//!   prefix rules, and the address rules at once for a literal IP. It returns whether an allow
//!   rule named the URL ([`UrlVerdict::Named`]) or the address must decide
//!   ([`UrlVerdict::ByAddress`]).
//! - [`TargetPolicy::check_addr`] on the address a connection actually goes to, after DNS: so a
//!   name that resolves to a denied address (DNS rebinding, `localhost`, a metadata alias) is
//!   refused like the address itself.
//!
//! Addresses are compared canonically: an IPv4-mapped IPv6 address (`::ffff:169.254.169.254`)
//! is its IPv4 address, and reserved ranges also catch IPv4 addresses embedded in the NAT64
//! prefix `64:ff9b::/96`. URL hosts arrive normalized by the `url` crate (decimal, octal and hex
//! IPv4 forms are IPv4 addresses, names are lower case and IDNA-encoded); a trailing dot is
//! ignored.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use url::Url;

/// What a target that no rule decides gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Allow,
    Deny,
}

/// A rule given with a policy that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target rule {rule:?}: {reason}")]
pub struct PolicyError {
    pub rule: String,
    pub reason: String,
}

impl PolicyError {
    fn new(rule: &str, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            rule: rule.to_string(),
            reason: reason.into(),
        }
    }
}

/// An IP network: address and prefix length. Built only through [`Cidr::new`] or parsing, so
/// host bits are zero; one read off the wire is matched with its length clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

fn width(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(v4: bool, b: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(b as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

/// The mask of a `len`-bit prefix in a `width`-bit address.
fn mask(len: u8, width: u8) -> u128 {
    let len = len.min(width);
    if len == 0 {
        return 0;
    }
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    all & (u128::MAX << (width - len))
}

/// The address as compared: IPv4-mapped IPv6 is IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// The IPv4 address inside a NAT64 well-known-prefix address (`64:ff9b::a.b.c.d`).
fn nat64(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(a) => {
            let s = a.segments();
            (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
                .then(|| IpAddr::V4(Ipv4Addr::from((bits(ip) & 0xffff_ffff) as u32)))
        }
        IpAddr::V4(_) => None,
    }
}

impl Cidr {
    /// `addr/len`; refused when `len` is too long or `addr` has bits set past the prefix
    /// (`10.0.0.1/8` is more likely a typo than a network). An IPv4-mapped IPv6 network is
    /// its IPv4 network.
    pub fn new(addr: IpAddr, len: u8) -> Result<Cidr, String> {
        if len > width(addr) {
            return Err(format!(
                "/{len} is longer than an {}-bit address",
                width(addr)
            ));
        }
        let (addr, len) = match canonical(addr) {
            v4 @ IpAddr::V4(_) if addr.is_ipv6() => {
                if len < 96 {
                    return Err("an IPv4-mapped network needs a prefix of at least /96".into());
                }
                (v4, len - 96)
            }
            a => (a, len),
        };
        let m = mask(len, width(addr));
        if bits(addr) & !m != 0 {
            let net = from_bits(addr.is_ipv4(), bits(addr) & m);
            return Err(format!(
                "{addr}/{len} has host bits set; the network is {net}/{len}"
            ));
        }
        Ok(Cidr { addr, len })
    }

    /// One address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        let addr = canonical(addr);
        Cidr {
            addr,
            len: width(addr),
        }
    }

    /// Whether `ip` (compared canonically) is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let m = mask(self.len, width(ip));
        bits(ip) & m == bits(self.addr) & m
    }

    /// Whether every address of `other` is in this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.addr.is_ipv4() == self.addr.is_ipv4()
            && self.len <= other.len
            && self.contains(other.addr)
    }

    /// This network without `other`, as the fewest networks (at most one per bit between the
    /// two prefix lengths): what a tool that only takes deny ranges gets.
    pub fn subtract(&self, other: &Cidr) -> Vec<Cidr> {
        if other.covers(self) {
            return Vec::new();
        }
        if !self.covers(other) {
            // Networks nest or are disjoint.
            return vec![*self];
        }
        let (v4, w) = (self.addr.is_ipv4(), width(self.addr));
        let len = self.len + 1;
        let low = Cidr {
            addr: self.addr,
            len,
        };
        let high = Cidr {
            addr: from_bits(v4, bits(self.addr) | (1u128 << (w - len))),
            len,
        };
        let mut out = low.subtract(other);
        out.extend(high.subtract(other));
        out
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/8`, `[fd00::1]` or a bare address (one host).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let ip = |t: &str| -> Result<IpAddr, String> {
            let t = t
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(t);
            t.parse::<IpAddr>()
                .map_err(|_| format!("{t:?} is not an IP address"))
        };
        match s.split_once('/') {
            Some((a, l)) => {
                let len = l
                    .parse::<u8>()
                    .map_err(|_| format!("prefix length {l:?} is not a number"))?;
                Cidr::new(ip(a)?, len)
            }
            None => Ok(Cidr::host(ip(s)?)),
        }
    }
}

/// A host name rule: one name, or (`*.example.com`) every name below a domain (not the
/// domain itself). Stored lower case, IDNA-encoded, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPattern {
    pub name: String,
    pub subdomains: bool,
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').as_bytes();
        let name = self.name.as_bytes();
        if !self.subdomains {
            return host.eq_ignore_ascii_case(name);
        }
        // Bytes, not `str` slicing: a name that is not ASCII must not panic here.
        host.len() > name.len() + 1
            && host[host.len() - name.len() - 1] == b'.'
            && host[host.len() - name.len()..].eq_ignore_ascii_case(name)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subdomains {
            write!(f, "*.{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// One allow or deny rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetRule {
    /// `api.example.com`, or `*.example.com` for the names below it.
    Host(HostPattern),
    /// `10.0.0.0/8`, `fd00:ec2::254`: matched against the connected address (and a URL's
    /// literal IP).
    Cidr(Cidr),
    /// `https://api.example.com/v1/`: URLs whose normalized text starts with it. End it with
    /// `/` to mean a folder (`…/v1` also matches `…/v10`).
    Prefix(String),
}

impl fmt::Display for TargetRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRule::Host(h) => h.fmt(f),
            TargetRule::Cidr(c) => c.fmt(f),
            TargetRule::Prefix(p) => f.write_str(p),
        }
    }
}

impl FromStr for TargetRule {
    type Err = PolicyError;

    /// A URL (`http://…`, `https://…`) is a prefix; an address or `addr/len` a CIDR; anything
    /// else a host name, `*.` for its subdomains.
    fn from_str(s: &str) -> Result<TargetRule, PolicyError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(PolicyError::new(s, "empty"));
        }
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let u = Url::parse(t).map_err(|e| PolicyError::new(s, format!("not a URL: {e}")))?;
            if u.host().is_none() {
                return Err(PolicyError::new(s, "a URL prefix needs a host"));
            }
            return Ok(TargetRule::Prefix(u.as_str().to_string()));
        }
        if lower.contains("://") {
            return Err(PolicyError::new(
                s,
                "only http:// and https:// URLs can be targets",
            ));
        }
        if t.contains('/') || t.contains(':') || t.parse::<IpAddr>().is_ok() {
            return t
                .parse::<Cidr>()
                .map(TargetRule::Cidr)
                .map_err(|e| PolicyError::new(s, e));
        }
        let (subdomains, name) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        if name.contains('*') {
            return Err(PolicyError::new(
                s,
                "a wildcard may only lead, as in `*.example.com`",
            ));
        }
        let name = name.trim_end_matches('.');
        match url::Host::parse(name) {
            Ok(url::Host::Domain(d)) => Ok(TargetRule::Host(HostPattern {
                name: d.trim_end_matches('.').to_string(),
                subdomains,
            })),
            // `url` reads `2130706433` or `0x7f.1` as IPv4: then it is an address rule.
            Ok(url::Host::Ipv4(a)) if !subdomains => Ok(TargetRule::Cidr(Cidr::host(a.into()))),
            Ok(_) => Err(PolicyError::new(s, "`*.` must be followed by a domain")),
            Err(e) => Err(PolicyError::new(s, format!("not a host name: {e}"))),
        }
    }
}

/// What the URL check leaves to the address check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UrlVerdict {
    /// An allow host or prefix rule names this URL: its address needs only to clear the deny
    /// rules and the reserved ranges, not the default.
    Named,
    /// No allow rule names it: the connected address decides (allow CIDRs, reserved ranges,
    /// the default).
    ByAddress,
}

/// Why a URL or an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("denied by the rule `{0}`")]
    Rule(TargetRule),
    #[error("{addr} is in the reserved range {range} (allow it with a rule naming the address, e.g. `{addr}`)")]
    Reserved { addr: IpAddr, range: Cidr },
    #[error("no allow rule matches it and the default is deny")]
    Default,
}

/// What a tool that only takes IP-range and host-name deny lists (k6's `--blacklist-ip` and
/// `--block-hostnames`) can be given of a policy, and what it cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blocklist {
    pub cidrs: Vec<Cidr>,
    /// `name` or `*.domain`.
    pub hosts: Vec<String>,
    /// Parts of the policy the lists cannot express, one line each.
    pub unenforced: Vec<String>,
}

/// The ranges the AWS profile denies unless an allow rule lists the address: this host
/// ("this network", loopback, unspecified), link-local (instance metadata at 169.254.169.254,
/// and `fd00:ec2::254`, inside `fc00::/7`), private and shared address space, benchmarking,
/// IETF protocol assignments, multicast and reserved.
pub fn private_ranges() -> Vec<Cidr> {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fd00:ec2::254/128",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

/// Where load may go. `Default` allows everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TargetPolicy {
    /// What a target no rule decides gets.
    pub default: Access,
    pub allow: Vec<TargetRule>,
    pub deny: Vec<TargetRule>,
    /// Denied unless an allow CIDR covers the address ([`private_ranges`] on AWS).
    pub reserved: Vec<Cidr>,
}

/// A URL's host, as the rules see it.
enum Subject<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

impl TargetRule {
    /// For the URL check: hosts and prefixes, and CIDRs against a literal IP.
    fn matches_url(&self, host: &Subject<'_>, url: &str) -> bool {
        match (self, host) {
            (TargetRule::Host(p), Subject::Name(n)) => p.matches(n),
            (TargetRule::Cidr(c), Subject::Ip(ip)) => c.contains(*ip),
            (TargetRule::Prefix(p), _) => url.starts_with(p.as_str()),
            _ => false,
        }
    }

    fn cidr(&self) -> Option<&Cidr> {
        match self {
            TargetRule::Cidr(c) => Some(c),
            _ => None,
        }
    }
}

/// Reads rules, one per entry; the first unreadable one is the error.
pub fn parse_rules<S: AsRef<str>>(rules: &[S]) -> Result<Vec<TargetRule>, PolicyError> {
    rules.iter().map(|r| r.as_ref().parse()).collect()
}

impl TargetPolicy {
    /// Everything allowed: `herd run`'s default on the user's own machine.
    pub fn allow_all() -> TargetPolicy {
        TargetPolicy::default()
    }

    /// `herd run` / `herd agent --standalone` flags: everything but `deny` when `allow` is
    /// empty; only `allow` (minus `deny`) when it is not, since an allow rule would otherwise
    /// change nothing.
    pub fn from_flags<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<TargetPolicy, PolicyError> {
        let allow = parse_rules(allow)?;
        Ok(TargetPolicy {
            default: if allow.is_empty() {
                Access::Allow
            } else {
                Access::Deny
            },
            allow,
            deny: parse_rules(deny)?,
            reserved: Vec::new(),
        })
    }

    /// True when nothing can be denied except a scheme: the checks then cost nothing.
    pub fn is_open(&self) -> bool {
        self.default == Access::Allow && self.deny.is_empty() && self.reserved.is_empty()
    }

    /// Whether any rule depends on a URL's path (so a relative URL must be checked whole).
    pub fn has_prefix_rules(&self) -> bool {
        self.allow
            .iter()
            .chain(&self.deny)
            .any(|r| matches!(r, TargetRule::Prefix(_)))
    }

    /// The check before a request is sent (see the module docs).
    pub fn check_url(&self, url: &Url) -> Result<UrlVerdict, Denied> {
        match url.scheme() {
            "http" | "https" => {}
            s => return Err(Denied::Scheme(s.to_string())),
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => Subject::Name(d.trim_end_matches('.')),
            Some(url::Host::Ipv4(a)) => Subject::Ip(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Subject::Ip(canonical(IpAddr::V6(a))),
            None => return Err(Denied::NoHost),
        };
        if self.is_open() {
            return Ok(UrlVerdict::ByAddress);
        }
        let text = url.as_str();
        if let Some(r) = self.deny.iter().find(|r| r.matches_url(&host, text)) {
            return Err(Denied::Rule(r.clone()));
        }
        let named = self
            .allow
            .iter()
            .any(|r| r.cidr().is_none() && r.matches_url(&host, text));
        let verdict = if named {
            UrlVerdict::Named
        } else {
            UrlVerdict::ByAddress
        };
        match host {
            Subject::Ip(ip) => self.check_addr(ip, verdict).map(|()| verdict),
            Subject::Name(_) => {
                let address_may_allow = self.allow.iter().any(|r| r.cidr().is_some());
                if !named && self.default == Access::Deny && !address_may_allow {
                    Err(Denied::Default)
                } else {
                    Ok(verdict)
                }
            }
        }
    }

    /// The check on the address a connection goes to (see the module docs).
    pub fn check_addr(&self, ip: IpAddr, verdict: UrlVerdict) -> Result<(), Denied> {
        if self.is_open() {
            return Ok(());
        }
        let ip = canonical(ip);
        let embedded = nat64(ip);
        let hit = |c: &Cidr| c.contains(ip) || embedded.is_some_and(|e| c.contains(e));
        if let Some(r) = self.deny.iter().find(|r| r.cidr().is_some_and(hit)) {
            return Err(Denied::Rule(r.clone()));
        }
        if self
            .allow
            .iter()
            .any(|r| r.cidr().is_some_and(|c| c.contains(ip)))
        {
            return Ok(());
        }
        if let Some(range) = self.reserved.iter().find(|c| hit(c)) {
            return Err(Denied::Reserved {
                addr: ip,
                range: *range,
            });
        }
        match (verdict, self.default) {
            (UrlVerdict::Named, _) | (_, Access::Allow) => Ok(()),
            (UrlVerdict::ByAddress, Access::Deny) => Err(Denied::Default),
        }
    }

    /// The policy as deny lists, for tools that take nothing else (see [`Blocklist`]). Allow
    /// CIDRs are cut out of the reserved ranges; an allow *host* rule cannot be, so such a host
    /// stays blocked when it resolves into a reserved range (stricter, never looser).
    pub fn blocklist(&self) -> Blocklist {
        let mut out = Blocklist::default();
        for r in &self.deny {
            match r {
                TargetRule::Cidr(c) => out.cidrs.push(*c),
                TargetRule::Host(h) => out.hosts.push(h.to_string()),
                TargetRule::Prefix(p) => out
                    .unenforced
                    .push(format!("the deny rule `{p}` (a URL prefix)")),
            }
        }
        for range in &self.reserved {
            let mut left = vec![*range];
            for a in self.allow.iter().filter_map(TargetRule::cidr) {
                left = left.iter().flat_map(|l| l.subtract(a)).collect();
            }
            out.cidrs.extend(left);
        }
        if self.default == Access::Deny {
            out.unenforced
                .push("the default deny (only listed targets allowed)".to_string());
        }
        out
    }
}

impl fmt::Display for TargetPolicy {
    /// One line for logs: `default allow; deny 127.0.0.1/32; 18 reserved ranges`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |rs: &[TargetRule]| {
            rs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "default {}",
            match self.default {
                Access::Allow => "allow",
                Access::Deny => "deny",
            }
        )?;
        if !self.allow.is_empty() {
            write!(f, "; allow {}", list(&self.allow))?;
        }
        if !self.deny.is_empty() {
            write!(f, "; deny {}", list(&self.deny))?;
        }
        if !self.reserved.is_empty() {
            write!(f, "; {} reserved ranges", self.reserved.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
