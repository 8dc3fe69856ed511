//! Who a sandboxed agent may talk to: the allow-list of a provider (or a project's setup) and the
//! decision the egress proxy takes for each connection it is asked to make.
//!
//! The agent's sandbox has no network of its own; its only way out is the worker's proxy, which
//! asks [`AllowList::decide`] before it connects anywhere. Names are resolved by the proxy, never
//! inside the sandbox (a DNS query would itself leak data), and some targets are refused whatever
//! the list says: loopback, link-local, unspecified and multicast addresses, the machine's own
//! addresses (unless an entry names one literally, with its port), and the control plane (the
//! Temporal frontend and CHUM's API), which is how the gate could otherwise be bypassed.
//!
//! Pure: the proxy passes in what it resolved and what it knows about the machine.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One `allow_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// `"*"`: any host the always-refused set does not cover. Logged loudly.
    Any,
    /// A name or an IP literal, with a port (`host:port`) or without (then 443 and 80).
    Host { host: String, port: Option<u16> },
}

impl HostRule {
    /// Parses `api.anthropic.com`, `api.anthropic.com:443`, `192.0.2.7:8080`, `[2001:db8::1]:443`,
    /// or `*`. Hosts are compared case-insensitively.
    pub fn parse(entry: &str) -> Result<HostRule, String> {
        let entry = entry.trim();
        if entry == "*" {
            return Ok(HostRule::Any);
        }
        if entry.is_empty() {
            return Err("an empty entry; write a host name such as \"api.anthropic.com\"".into());
        }
        if entry.contains("://") || entry.contains('/') {
            return Err(format!(
                "{entry:?} is a URL; write only the host (and port), e.g. \"api.anthropic.com\" or \"registry.npmjs.org:443\""
            ));
        }
        if entry.contains('*') {
            return Err(format!(
                "{entry:?}: wildcards are not supported; list each host, or write \"*\" alone for any host"
            ));
        }
        let (host, port) = split_host_port(entry)?;
        if host.parse::<IpAddr>().is_err() && !is_host_name(&host) {
            return Err(format!("{host:?} is neither a host name nor an IP address"));
        }
        Ok(HostRule::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn covers_port(port: Option<u16>, wanted: u16) -> bool {
        match port {
            Some(p) => p == wanted,
            None => wanted == 443 || wanted == 80,
        }
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostRule::Any => f.write_str("*"),
            HostRule::Host { host, port: None } => f.write_str(host),
            HostRule::Host { host, port: Some(p) } if host.contains(':') => write!(f, "[{host}]:{p}"),
            HostRule::Host { host, port: Some(p) } => write!(f, "{host}:{p}"),
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 literal.
fn split_host_port(entry: &str) -> Result<(String, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{entry:?}: {p:?} is not a port number"))
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{entry:?}: an unclosed '['"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host.to_string(), None)),
            None => Err(format!("{entry:?}: unexpected {after:?} after the address")),
        };
    }
    if entry.parse::<Ipv6Addr>().is_ok() {
        return Ok((entry.to_string(), None));
    }
    match entry.rsplit_once(':') {
        Some((host, p)) => Ok((host.to_string(), Some(parse_port(p)?))),
        None => Ok((entry.to_string(), None)),
    }
}

fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// A connection the proxy refused, and why (for the log, the run's record and `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The host (or host:port) is not on the list.
    NotListed,
    /// An IP literal no entry names and no listed name resolves to.
    UnlistedAddress,
    /// Loopback, link-local, unspecified, multicast or broadcast: never reachable from a sandbox.
    SpecialAddress(IpAddr),
    /// One of this machine's own addresses, not named literally with its port.
    OwnAddress(IpAddr),
    /// The Temporal frontend or CHUM's API: the control plane a sandboxed agent must not reach.
    ControlPlane(SocketAddr),
    /// The name did not resolve (at the proxy).
    Unresolved(String),
}

impl Refusal {
    /// A short label for the `/metrics` counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::NotListed => "not_listed",
            Refusal::UnlistedAddress => "unlisted_address",
            Refusal::SpecialAddress(_) => "special_address",
            Refusal::OwnAddress(_) => "own_address",
            Refusal::ControlPlane(_) => "control_plane",
            Refusal::Unresolved(_) => "unresolved",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotListed => f.write_str("not in the allow-list (allow_hosts)"),
            Refusal::UnlistedAddress => {
                f.write_str("an IP address that no allow_hosts entry names and no listed name resolves to")
            }
            Refusal::SpecialAddress(ip) => write!(f, "{ip} is a loopback, link-local or special address"),
            Refusal::OwnAddress(ip) => write!(f, "{ip} is this machine's own address"),
            Refusal::ControlPlane(addr) => write!(f, "{addr} is CHUM's control plane (Temporal or the API)"),
            Refusal::Unresolved(why) => write!(f, "the name does not resolve: {why}"),
        }
    }
}

/// What the proxy knows about the machine: its own addresses and the control plane's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Surroundings {
    /// Addresses of this machine's interfaces.
    pub own_addresses: Vec<IpAddr>,
    /// The Temporal frontend and the API, as resolved from the configuration.
    pub control_plane: Vec<SocketAddr>,
}

impl Surroundings {
    /// Whether `addr` is (or may be) the control plane: the exact address, or its port on any of
    /// this machine's addresses when it listens on loopback or on every address.
    fn is_control_plane(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.control_plane.iter().copied().find(|cp| {
            (canonical(cp.ip()) == canonical(addr.ip()) && cp.port() == addr.port())
                || (cp.port() == addr.port()
                    && (cp.ip().is_loopback() || cp.ip().is_unspecified())
                    && (self
                        .own_addresses
                        .iter()
                        .any(|own| canonical(*own) == canonical(addr.ip()))))
        })
    }
}

/// An `::ffff:a.b.c.d` address as the IPv4 address it is, so it cannot slip past the checks.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn is_special(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4().is_some_and(|v4| v4 == Ipv4Addr::LOCALHOST)
        }
    }
}

/// A provider's (or a project setup's) list of hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<HostRule>,
}

impl AllowList {
    pub fn parse(entries: &[String]) -> Result<AllowList, String> {
        let rules = entries
            .iter()
            .map(|e| HostRule::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowList { rules })
    }

    /// No entry: the sandbox gets no network at all (no proxy).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `"*"` is on the list.
    pub fn allows_any(&self) -> bool {
        self.rules.contains(&HostRule::Any)
    }

    pub fn rules(&self) -> &[HostRule] {
        &self.rules
    }

    /// The names on the list (resolved by the proxy to check IP-literal targets against).
    pub fn names(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter_map(|r| match r {
                HostRule::Host { host, .. } if host.parse::<IpAddr>().is_err() => Some(host.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether the list lets the agent ask for `host:port` at all (before any resolution).
    /// `listed_resolutions` holds what each listed name resolved to, for IP-literal targets.
    fn permits(&self, host: &str, port: u16, listed_resolutions: &[(String, Vec<IpAddr>)]) -> Result<(), Refusal> {
        if self.allows_any() {
            return Ok(());
        }
        let host = host.to_ascii_lowercase();
        let literal = host.parse::<IpAddr>().ok().map(canonical);
        let named = self.rules.iter().any(|r| match r {
            HostRule::Host { host: h, port: p } => {
                HostRule::covers_port(*p, port)
                    && (*h == host || (literal.is_some() && h.parse::<IpAddr>().ok().map(canonical) == literal))
            }
            HostRule::Any => true,
        });
        if named {
            return Ok(());
        }
        let Some(ip) = literal else {
            return Err(Refusal::NotListed);
        };
        let via_name = self.rules.iter().any(|r| match r {
            HostRule::Host { host: h, port: p } => {
                HostRule::covers_port(*p, port)
                    && listed_resolutions
                        .iter()
                        .any(|(name, ips)| name == h && ips.iter().any(|a| canonical(*a) == ip))
            }
            HostRule::Any => false,
        });
        if via_name {
            Ok(())
        } else {
            Err(Refusal::UnlistedAddress)
        }
    }

    /// Whether an entry names this very address and port literally (the only way to reach one of
    /// the machine's own addresses, e.g. a model server on the host).
    fn names_literally(&self, addr: SocketAddr) -> bool {
        self.rules.iter().any(|r| match r {
            HostRule::Host { host, port: Some(p) } => {
                *p == addr.port() && host.parse::<IpAddr>().ok().map(canonical) == Some(canonical(addr.ip()))
            }
            _ => false,
        })
    }

    /// Why `addr` is refused whatever the list says, if it is.
    fn never(&self, addr: SocketAddr, around: &Surroundings) -> Option<Refusal> {
        if let Some(cp) = around.is_control_plane(addr) {
            Some(Refusal::ControlPlane(cp))
        } else if is_special(addr.ip()) {
            Some(Refusal::SpecialAddress(addr.ip()))
        } else if around.own_addresses.iter().any(|own| canonical(*own) == addr.ip()) && !self.names_literally(addr) {
            Some(Refusal::OwnAddress(addr.ip()))
        } else {
            None
        }
    }

    /// The proxy's decision for a request to `host:port`: the addresses it may connect to (in the
    /// resolver's order), or why not. `resolved` is what `host` resolved to (the literal itself
    /// for an IP), `listed_resolutions` what the list's names resolved to.
    pub fn decide(
        &self,
        host: &str,
        port: u16,
        resolved: &[IpAddr],
        listed_resolutions: &[(String, Vec<IpAddr>)],
        around: &Surroundings,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        // An address asked for directly gets the strongest reason: the control plane first.
        if let Ok(ip) = host.parse::<IpAddr>()
            && let Some(refusal) = self.never(SocketAddr::new(canonical(ip), port), around)
        {
            return Err(refusal);
        }
        self.permits(host, port, listed_resolutions)?;
        let mut allowed = Vec::new();
        let mut first_refusal = None;
        for ip in resolved {
            let addr = SocketAddr::new(canonical(*ip), port);
            match self.never(addr, around) {
                None => allowed.push(addr),
                Some(r) => {
                    first_refusal.get_or_insert(r);
                }
            }
        }
        if allowed.is_empty() {
            return Err(first_refusal.unwrap_or_else(|| Refusal::Unresolved("no address".into())));
        }
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn around() -> Surroundings {
        Surroundings {
            own_addresses: vec![ip("127.0.0.1"), ip("192.0.2.2")],
            control_plane: vec!["127.0.0.1:7233".parse().unwrap(), "127.0.0.1:8900".parse().unwrap()],
        }
    }

    #[test]
    fn entries_parse_with_and_without_ports_and_bad_ones_say_why() {
        assert_eq!(
            HostRule::parse("API.Anthropic.com").unwrap(),
            HostRule::Host {
                host: "api.anthropic.com".into(),
                port: None
            }
        );
        assert_eq!(HostRule::parse("192.0.2.2:8080").unwrap().to_string(), "192.0.2.2:8080");
        assert_eq!(
            HostRule::parse("[2001:db8::1]:443").unwrap().to_string(),
            "[2001:db8::1]:443"
        );
        assert_eq!(HostRule::parse("*").unwrap(), HostRule::Any);
        for (bad, says) in [
            ("https://api.anthropic.com", "is a URL"),
            ("*.anthropic.com", "wildcards"),
            ("host:99999", "not a port"),
            ("", "empty"),
            ("bad host", "neither a host name"),
        ] {
            let err = HostRule::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_listed_name_is_reached_on_its_ports_only() {
        let l = list(&["api.anthropic.com"]);
        let public = [ip("203.0.113.9")];
        assert_eq!(
            l.decide("api.anthropic.com", 443, &public, &[], &around()).unwrap(),
            vec!["203.0.113.9:443".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            l.decide("api.anthropic.com", 22, &public, &[], &around()),
            Err(Refusal::NotListed)
        );
        assert_eq!(
            l.decide("example.com", 443, &public, &[], &around()),
            Err(Refusal::NotListed)
        );
    }

    #[test]
    fn loopback_and_the_control_plane_are_refused_whatever_the_list_says() {
        let any = list(&["*"]);
        assert_eq!(
            any.decide("127.0.0.1", 7233, &[ip("127.0.0.1")], &[], &around()),
            Err(Refusal::ControlPlane("127.0.0.1:7233".parse().unwrap()))
        );
        assert_eq!(
            any.decide("localhost", 5432, &[ip("127.0.0.1")], &[], &around()),
            Err(Refusal::SpecialAddress(ip("127.0.0.1")))
        );
        assert_eq!(
            any.decide("::ffff:127.0.0.1", 80, &[ip("::ffff:127.0.0.1")], &[], &around()),
            Err(Refusal::SpecialAddress(ip("127.0.0.1"))),
            "a mapped address is the IPv4 address"
        );
        assert!(matches!(
            any.decide("169.254.169.254", 80, &[ip("169.254.169.254")], &[], &around()),
            Err(Refusal::SpecialAddress(_))
        ));
        // Temporal on loopback is reachable on the machine's own address too.
        assert!(matches!(
            list(&["192.0.2.2:7233"]).decide("192.0.2.2", 7233, &[ip("192.0.2.2")], &[], &around()),
            Err(Refusal::ControlPlane(_))
        ));
        let listed_loopback = list(&["localhost:8900"]);
        assert!(
            listed_loopback
                .decide("localhost", 8900, &[ip("127.0.0.1")], &[], &around())
                .is_err()
        );
    }

    #[test]
    fn the_machines_own_address_only_when_named_literally_with_its_port() {
        let literal = list(&["192.0.2.2:18080"]);
        assert!(
            literal
                .decide("192.0.2.2", 18080, &[ip("192.0.2.2")], &[], &around())
                .is_ok()
        );
        assert_eq!(
            list(&["*"]).decide("192.0.2.2", 18080, &[ip("192.0.2.2")], &[], &around()),
            Err(Refusal::OwnAddress(ip("192.0.2.2")))
        );
        assert_eq!(
            list(&["vm:18080"]).decide("vm", 18080, &[ip("192.0.2.2")], &[], &around()),
            Err(Refusal::OwnAddress(ip("192.0.2.2"))),
            "a name that resolves to the host is not enough"
        );
    }

    #[test]
    fn an_ip_literal_passes_only_when_a_listed_name_resolves_to_it() {
        let l = list(&["api.example.com"]);
        let resolutions = vec![("api.example.com".to_string(), vec![ip("203.0.113.9")])];
        assert!(
            l.decide("203.0.113.9", 443, &[ip("203.0.113.9")], &resolutions, &around())
                .is_ok()
        );
        assert_eq!(
            l.decide("203.0.113.10", 443, &[ip("203.0.113.10")], &resolutions, &around()),
            Err(Refusal::UnlistedAddress)
        );
        assert_eq!(l.names(), vec!["api.example.com"]);
    }

    #[test]
    fn a_name_that_resolves_to_loopback_is_refused_even_when_listed() {
        // DNS rebinding: a listed name whose address is loopback reaches nothing.
        let l = list(&["rebind.example.com"]);
        assert_eq!(
            l.decide("rebind.example.com", 443, &[ip("127.0.0.1")], &[], &around()),
            Err(Refusal::SpecialAddress(ip("127.0.0.1")))
        );
        let mixed = l
            .decide(
                "rebind.example.com",
                443,
                &[ip("127.0.0.1"), ip("203.0.113.5")],
                &[],
                &around(),
            )
            .unwrap();
        assert_eq!(mixed, vec!["203.0.113.5:443".parse::<SocketAddr>().unwrap()]);
    }
}
