//! Broker addresses as users write them: `mqtt://host:port` or `mqtts://host:port`.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker URL {0:?}: expected mqtt://host:port or mqtts://host:port")]
pub struct UrlError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(s: &str) -> Result<BrokerUrl, UrlError> {
        let bad = || UrlError(s.to_string());
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// A plain broker on this machine (the embedded one).
    pub fn local(addr: std::net::SocketAddr) -> BrokerUrl {
        BrokerUrl {
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            BrokerUrl::parse("mqtt://127.0.0.1:1883").unwrap(),
            BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        assert_eq!(BrokerUrl::parse("mqtts://example.com").unwrap().port, 8883);
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:9").unwrap().host, "::1");
        let v6 = BrokerUrl::parse("mqtt://[::1]:9").unwrap();
        assert_eq!(v6.to_string(), "mqtt://[::1]:9");
        assert_eq!(BrokerUrl::parse(&v6.to_string()).unwrap(), v6);
        assert!(BrokerUrl::parse("http://x:1").is_err());
        assert!(BrokerUrl::parse("mqtt://x:port").is_err());
    }
}
