use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).expect("a test URL")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a test address")
}

fn rules(rs: &[&str]) -> Vec<TargetRule> {
    parse_rules(rs).expect("test rules parse")
}

/// The AWS profile's default: everything public, nothing private.
fn aws() -> TargetPolicy {
    TargetPolicy {
        reserved: private_ranges(),
        ..TargetPolicy::default()
    }
}

fn denied_url(p: &TargetPolicy, u: &str) -> Denied {
    match p.check_url(&url(u)) {
        Err(d) => d,
        Ok(v) => panic!("{u} was allowed ({v:?}) under {p}"),
    }
}

#[test]
fn rules_read_as_hosts_cidrs_and_prefixes() {
    let r = rules(&[
        "api.example.com",
        "*.Example.COM.",
        "10.0.0.0/8",
        "fd00:ec2::254",
        "[::1]",
        "192.168.1.7",
        "https://API.example.com:443/v1/../v2/",
    ]);
    assert_eq!(
        r.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "api.example.com",
            "*.example.com",
            "10.0.0.0/8",
            "fd00:ec2::254/128",
            "::1/128",
            "192.168.1.7/32",
            "https://api.example.com/v2/",
        ]
    );
    // The `url` crate's IPv4 forms are addresses, not names.
    assert_eq!(rules(&["0x7f.1"])[0].to_string(), "127.0.0.1/32");
    // IPv4-mapped networks are IPv4 networks.
    assert_eq!(
        rules(&["::ffff:169.254.0.0/112"])[0].to_string(),
        "169.254.0.0/16"
    );
}

#[test]
fn unreadable_rules_say_why() {
    for (bad, why) in [
        ("", "empty"),
        ("10.0.0.1/8", "host bits set; the network is 10.0.0.0/8"),
        ("10.0.0.0/33", "longer than an 32-bit address"),
        ("10.0.0.0/x", "not a number"),
        ("ftp://example.com/", "only http:// and https://"),
        ("api.*.example.com", "wildcard may only lead"),
        ("exa mple.com", "not a host name"),
        ("example.com:8080", "not an IP address"),
    ] {
        let e = bad.parse::<TargetRule>().expect_err(bad);
        assert!(e.to_string().contains(why), "{bad}: {e}");
    }
}

#[test]
fn an_open_policy_allows_any_http_url_and_address() {
    let p = TargetPolicy::allow_all();
    assert!(p.is_open());
    for u in ["http://127.0.0.1:8080/", "https://169.254.169.254/latest"] {
        assert_eq!(p.check_url(&url(u)), Ok(UrlVerdict::ByAddress), "{u}");
    }
    assert_eq!(p.check_addr(ip("::1"), UrlVerdict::ByAddress), Ok(()));
    assert_eq!(
        denied_url(&p, "file:///etc/passwd"),
        Denied::Scheme("file".into())
    );
}

#[test]
fn the_aws_default_denies_metadata_loopback_and_private_ranges() {
    let p = aws();
    for u in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://127.0.0.1:8080/",
        "http://10.1.2.3/",
        "http://172.31.0.2/",
        "http://192.168.0.1/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        // IPv4-mapped IPv6 is the IPv4 address.
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        // NAT64 of the metadata address.
        "http://[64:ff9b::a9fe:a9fe]/",
        // Decimal, octal and hex forms, which `url` normalizes to IPv4.
        "http://2852039166/",
        "http://0251.0376.0251.0376/",
        "http://0xa9fea9fe/",
        "http://0x7f.1/",
    ] {
        assert!(
            matches!(denied_url(&p, u), Denied::Reserved { .. }),
            "{u}: {:?}",
            p.check_url(&url(u))
        );
    }
    assert_eq!(
        denied_url(&p, "http://2852039166/").to_string(),
        "169.254.169.254 is in the reserved range 169.254.0.0/16 (allow it with a rule naming the address, e.g. `169.254.169.254`)"
    );
    // Public addresses and names pass; a name is decided by its address later.
    assert_eq!(
        p.check_url(&url("http://93.184.215.14/")),
        Ok(UrlVerdict::ByAddress)
    );
    assert_eq!(
        p.check_url(&url("https://api.example.com/")),
        Ok(UrlVerdict::ByAddress)
    );
    // The connected-address check: `localhost` or a rebinding name resolving inward.
    for a in ["127.0.0.1", "::1", "169.254.169.254", "::ffff:10.0.0.1"] {
        assert!(
            matches!(
                p.check_addr(ip(a), UrlVerdict::ByAddress),
                Err(Denied::Reserved { .. })
            ),
            "{a}"
        );
    }
    assert_eq!(
        p.check_addr(ip("93.184.215.14"), UrlVerdict::ByAddress),
        Ok(())
    );
}

#[test]
fn only_an_allow_rule_naming_the_address_lifts_a_reserved_range() {
    let p = TargetPolicy {
        allow: rules(&["10.1.2.0/24", "internal.example.com"]),
        ..aws()
    };
    assert_eq!(
        p.check_url(&url("http://10.1.2.3/")),
        Ok(UrlVerdict::ByAddress)
    );
    assert!(p.check_url(&url("http://10.1.3.3/")).is_err());
    // The name is allowed, but it cannot carry a request into a reserved range it resolved to.
    assert_eq!(
        p.check_url(&url("http://internal.example.com/")),
        Ok(UrlVerdict::Named)
    );
    assert!(p
        .check_addr(ip("169.254.169.254"), UrlVerdict::Named)
        .is_err());
    assert_eq!(p.check_addr(ip("10.1.2.9"), UrlVerdict::Named), Ok(()));
}

#[test]
fn deny_rules_win_over_allow_rules() {
    let p = TargetPolicy::from_flags(
        &["*.example.com", "10.0.0.0/8"],
        &[
            "admin.example.com",
            "10.9.0.0/16",
            "https://api.example.com/internal/",
        ],
    )
    .expect("flags parse");
    assert_eq!(
        denied_url(&p, "https://admin.example.com/"),
        Denied::Rule(rules(&["admin.example.com"]).remove(0))
    );
    assert!(p.check_url(&url("http://10.9.1.1/")).is_err());
    assert!(p.check_addr(ip("10.9.1.1"), UrlVerdict::Named).is_err());
    assert_eq!(
        denied_url(&p, "https://api.example.com/internal/keys").to_string(),
        "denied by the rule `https://api.example.com/internal/`"
    );
    assert_eq!(
        p.check_url(&url("https://api.example.com/public")),
        Ok(UrlVerdict::Named)
    );
}

#[test]
fn allow_flags_make_an_allow_list() {
    let p = TargetPolicy::from_flags(&["api.example.com", "https://cdn.example.net/assets/"], &[])
        .expect("flags parse");
    assert_eq!(p.default, Access::Deny);
    assert_eq!(
        p.check_url(&url("https://API.example.com./x")),
        Ok(UrlVerdict::Named)
    );
    assert_eq!(
        p.check_url(&url("https://cdn.example.net/assets/a.css")),
        Ok(UrlVerdict::Named)
    );
    assert_eq!(
        denied_url(&p, "https://cdn.example.net/private"),
        Denied::Default
    );
    assert_eq!(
        denied_url(&p, "https://other.example.com/"),
        Denied::Default
    );
    // A prefix is a folder only when it ends with `/`, and never another host.
    assert!(p
        .check_url(&url("https://cdn.example.net.evil.io/assets/"))
        .is_err());
    // A named URL may connect wherever its name resolves (there are no reserved ranges
    // here); an unnamed one only to allowed addresses.
    assert_eq!(p.check_addr(ip("203.0.113.5"), UrlVerdict::Named), Ok(()));
    assert_eq!(
        p.check_addr(ip("203.0.113.5"), UrlVerdict::ByAddress),
        Err(Denied::Default)
    );
    // Deny flags alone keep everything else allowed.
    let p = TargetPolicy::from_flags::<&str>(&[], &["127.0.0.1/32"]).expect("flags parse");
    assert_eq!(p.default, Access::Allow);
    assert!(p.check_url(&url("http://127.0.0.1:9/")).is_err());
    assert!(p
        .check_addr(ip("::ffff:127.0.0.1"), UrlVerdict::ByAddress)
        .is_err());
    assert_eq!(p.check_addr(ip("127.0.0.2"), UrlVerdict::ByAddress), Ok(()));
}

#[test]
fn a_default_deny_with_allow_cidrs_leaves_names_to_their_address() {
    let p = TargetPolicy {
        default: Access::Deny,
        allow: rules(&["203.0.113.0/24"]),
        ..TargetPolicy::default()
    };
    assert_eq!(
        p.check_url(&url("https://api.example.com/")),
        Ok(UrlVerdict::ByAddress)
    );
    assert_eq!(
        p.check_addr(ip("203.0.113.7"), UrlVerdict::ByAddress),
        Ok(())
    );
    assert_eq!(
        p.check_addr(ip("198.51.100.7"), UrlVerdict::ByAddress),
        Err(Denied::Default)
    );
}

#[test]
fn host_patterns_match_names_not_lookalikes() {
    let sub = HostPattern {
        name: "example.com".into(),
        subdomains: true,
    };
    assert!(sub.matches("a.example.com") && sub.matches("a.b.EXAMPLE.com."));
    assert!(!sub.matches("example.com") && !sub.matches("badexample.com"));
    assert!(!sub.matches("é.example.co") && !sub.matches(""));
    let exact = HostPattern {
        name: "example.com".into(),
        subdomains: false,
    };
    assert!(exact.matches("Example.com.") && !exact.matches("a.example.com"));
}

#[test]
fn cidrs_contain_and_subtract_exactly() {
    let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
    assert!(c.contains(ip("10.255.0.1")) && c.contains(ip("::ffff:10.0.0.1")));
    assert!(!c.contains(ip("11.0.0.0")) && !c.contains(ip("::a00:1")));
    let all4: Cidr = "0.0.0.0/0".parse().expect("cidr");
    assert!(all4.contains(ip("255.255.255.255")) && !all4.contains(ip("::1")));
    let hole: Cidr = "10.1.2.0/24".parse().expect("cidr");
    let left = c.subtract(&hole);
    assert_eq!(left.len(), 16);
    assert!(left.iter().all(|l| !l.contains(ip("10.1.2.9"))));
    for probe in ["10.0.0.1", "10.1.3.0", "10.1.1.255", "10.255.255.255"] {
        assert!(left.iter().any(|l| l.contains(ip(probe))), "{probe}");
    }
    assert_eq!(hole.subtract(&c), vec![]);
    let other: Cidr = "192.168.0.0/16".parse().expect("cidr");
    assert_eq!(c.subtract(&other), vec![c]);
    // A network read off the wire with an impossible length never panics.
    let odd = Cidr {
        addr: ip("10.0.0.0"),
        len: 200,
    };
    assert!(odd.contains(ip("10.0.0.0")) && !odd.contains(ip("10.0.0.1")));
}

#[test]
fn the_blocklist_for_tools_cuts_allowed_networks_out_and_names_what_it_cannot_say() {
    let p = TargetPolicy {
        allow: rules(&["10.1.2.0/24"]),
        deny: rules(&[
            "*.corp.example",
            "203.0.113.0/24",
            "https://x.example/admin",
        ]),
        ..aws()
    };
    let b = p.blocklist();
    assert_eq!(b.hosts, ["*.corp.example"]);
    assert!(b.cidrs.contains(&"203.0.113.0/24".parse().expect("cidr")));
    assert!(b.cidrs.iter().any(|c| c.contains(ip("169.254.169.254"))));
    assert!(b.cidrs.iter().any(|c| c.contains(ip("10.1.3.1"))));
    assert!(!b.cidrs.iter().any(|c| c.contains(ip("10.1.2.1"))));
    assert_eq!(b.unenforced.len(), 1);
    assert!(b.unenforced[0].contains("https://x.example/admin"));
    let allow_list = TargetPolicy::from_flags(&["a.example"], &[]).expect("flags parse");
    assert!(allow_list.blocklist().unenforced[0].contains("default deny"));
    assert_eq!(TargetPolicy::allow_all().blocklist(), Blocklist::default());
}

#[test]
fn a_policy_survives_the_wire() {
    let p = TargetPolicy {
        allow: rules(&["10.1.2.0/24", "*.example.com", "https://a.example/x/"]),
        deny: rules(&["fd00:ec2::254"]),
        ..aws()
    };
    let cfg = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&p, cfg).expect("encode");
    let (back, _): (TargetPolicy, usize) =
        bincode::serde::decode_from_slice(&bytes, cfg).expect("decode");
    assert_eq!(back, p);
}
