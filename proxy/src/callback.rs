//! Usage callbacks (webhooks) of delegated keys. A callback URL is chosen by whoever signed the
//! key, so without care it aims the gateway at the gateway's own network (SSRF). Callbacks are
//! off unless the operator turns them on; the host is resolved, every address checked (loopback,
//! private, link-local and other non-public ranges are refused, IPv4-mapped IPv6 included,
//! unless the operator allow-lists the host or a CIDR), the request goes to the checked
//! addresses only (no second lookup, no proxy) and a redirect is never followed.
use common::config::ConfigError;
use reqwest::{redirect::Policy, Url};
use serde_json::Value;
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a callback was not delivered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    #[error("usage callbacks are turned off (auth.callbacks)")]
    Disabled,
    #[error("invalid callback URL: {0}")]
    Url(String),
    #[error(
        "the callback host {host} resolves to {addr}, which is not public and not allow-listed"
    )]
    Refused { host: String, addr: IpAddr },
    #[error("cannot resolve the callback host {0}")]
    Resolve(String),
    #[error("sending the callback failed: {0}")]
    Send(String),
    #[error("the callback answered a redirect ({0}); redirects are not followed")]
    Redirect(u16),
    #[error("the callback answered {0}")]
    Status(u16),
}

/// The operator's callback settings, checked once at start.
#[derive(Debug, Clone)]
pub struct CallbackPolicy {
    enabled: bool,
    /// Host names allowed whatever they resolve to (lowercase).
    hosts: Vec<String>,
    /// Address ranges allowed although not public.
    nets: Vec<Net>,
}

/// An address range (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (
                addr.parse::<IpAddr>().ok()?,
                Some(prefix.parse::<u8>().ok()?),
            ),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let canonical = addr.to_canonical();
        let (max, offset) = match (addr, canonical) {
            (IpAddr::V4(_), _) => (32, 0),
            // An IPv4-mapped range (`::ffff:10.0.0.0/104`) is the IPv4 range it maps.
            (IpAddr::V6(_), IpAddr::V4(_)) => (32, 96),
            (IpAddr::V6(_), IpAddr::V6(_)) => (128, 0),
        };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix.checked_sub(offset)?,
        };
        (prefix <= max).then_some(Self {
            addr: canonical,
            prefix,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, bits) = match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                (u128::from(u32::from(net)), u128::from(u32::from(ip)), 32u32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => (u128::from(net), u128::from(ip), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= 128 || (net >> shift) == (ip >> shift)
    }
}

impl CallbackPolicy {
    /// From `auth.callbacks` (`enabled`) and `auth.callback_allow` (host names, addresses or
    /// CIDRs).
    pub fn new(enabled: bool, allow: &[String]) -> Result<Self, ConfigError> {
        let mut policy = Self {
            enabled,
            hosts: vec![],
            nets: vec![],
        };
        for entry in allow {
            let entry = entry.trim();
            if let Some(net) = Net::parse(entry) {
                policy.nets.push(net);
            } else if !entry.is_empty()
                && !entry.contains('/')
                && entry
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                policy.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(ConfigError::Invalid(format!(
                    "auth.callback_allow: {entry:?} is neither a host name, an address nor a CIDR"
                )));
            }
        }
        Ok(policy)
    }

    /// Whether callbacks are on at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Resolves `url`'s host and checks every address; returns the addresses to connect to.
    pub async fn check(&self, url: &Url) -> Result<Vec<SocketAddr>, CallbackError> {
        if !self.enabled {
            return Err(CallbackError::Disabled);
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CallbackError::Url(
                "the scheme must be http or https".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| CallbackError::Url("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| CallbackError::Url("no port".into()))?;
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|_| CallbackError::Resolve(host.clone()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(CallbackError::Resolve(host));
        }
        if self.hosts.contains(&host) {
            return Ok(addrs);
        }
        for addr in &addrs {
            let ip = addr.ip();
            if !is_public(ip) && !self.nets.iter().any(|net| net.contains(ip)) {
                return Err(CallbackError::Refused { host, addr: ip });
            }
        }
        Ok(addrs)
    }

    /// Posts `body` to `url` if the policy allows it, to the checked addresses only.
    pub async fn deliver(&self, url: &str, body: &Value) -> Result<(), CallbackError> {
        let url = Url::parse(url).map_err(|e| CallbackError::Url(e.to_string()))?;
        let addrs = self.check(&url).await?;
        let mut client = reqwest::Client::builder()
            .redirect(Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .timeout(TIMEOUT);
        if let Some(domain) = url.domain() {
            // Pins the name to the addresses just checked: no second lookup can change them.
            client = client.resolve_to_addrs(domain, &addrs);
        }
        let client = client
            .build()
            .map_err(|e| CallbackError::Send(e.to_string()))?;
        let response = client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| CallbackError::Send(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(CallbackError::Redirect(status.as_u16()));
        }
        if !status.is_success() {
            return Err(CallbackError::Status(status.as_u16()));
        }
        Ok(())
    }
}

/// Whether `ip` is a public unicast address (IPv4-mapped and -embedding IPv6 judged by their
/// IPv4 address).
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = || {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    };
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::/96) carry an IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..6] == [0; 6] {
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded_v4());
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[0] == 0x2002) // 6to4: may carry any IPv4 address
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> CallbackPolicy {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        CallbackPolicy::new(true, &allow).unwrap()
    }

    #[test]
    fn non_public_addresses_are_recognised_in_every_form() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn loopback_and_names_resolving_to_it_are_refused_unless_allow_listed() {
        let refuse = policy(&[]);
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]:9/x",
            "http://[::ffff:7f00:1]:9/x",
            "http://localhost:9/x",
            "http://169.254.169.254/latest",
        ] {
            let checked = refuse.check(&Url::parse(url).unwrap()).await;
            assert!(
                matches!(checked, Err(CallbackError::Refused { .. })),
                "{url}: {checked:?}"
            );
        }
        let by_net = policy(&["127.0.0.0/8"]);
        let url = Url::parse("http://127.0.0.1:9/x").unwrap();
        assert_eq!(
            by_net.check(&url).await,
            Ok(vec!["127.0.0.1:9".parse().unwrap()])
        );
        let by_name = policy(&["LocalHost"]);
        assert!(by_name
            .check(&Url::parse("http://localhost:9/x").unwrap())
            .await
            .is_ok());
        let defaults = crate::config::Config::default().auth;
        let off = CallbackPolicy::new(defaults.callbacks, &defaults.callback_allow).unwrap();
        assert_eq!(off.check(&url).await, Err(CallbackError::Disabled));
    }

    #[test]
    fn allow_list_entries_are_validated() {
        assert!(CallbackPolicy::new(true, &["10.0.0.0/33".into()]).is_err());
        assert!(CallbackPolicy::new(true, &["http://x".into()]).is_err());
        let net = Net::parse("::ffff:10.0.0.0/104");
        assert_eq!(
            net.map(|n| (n.addr, n.prefix)),
            Some(("10.0.0.0".parse().unwrap(), 8))
        );
        assert!(net.is_some_and(|n| n.contains("::ffff:10.9.8.7".parse().unwrap())));
        assert!(net.is_some_and(|n| !n.contains("11.0.0.1".parse().unwrap())));
    }
}
