//! The address policy of the probe: which IP addresses a probe may connect to.
//!
//! The probe fetches URLs that any client supplied, from inside the service's network, so it must not
//! become a way to reach what the caller could not. Every address a connection would use goes through
//! [`AddressPolicy::check`]: IP literals in a URL (and in every redirect hop) before the request, and
//! every address a host name resolves to inside the resolver that the HTTP client connects through, so
//! the checked addresses are the ones the connection uses (no DNS rebinding window).
//!
//! Refused, with the rule name reported in `refused_by`:
//!
//! | rule | IPv4 | IPv6 |
//! |---|---|---|
//! | `lambda-runtime-api` | inside Lambda, the host of `AWS_LAMBDA_RUNTIME_API` (127.0.0.1), every port, whatever the flags | |
//! | `unspecified` | 0.0.0.0/8 (0.0.0.0 reaches the host itself on Linux) | :: |
//! | `loopback` (unless `allow_loopback`) | 127.0.0.0/8; `localhost`, `localhost.` and `*.localhost` by name, never resolved | ::1 |
//! | `link-local` | 169.254.0.0/16 (cloud metadata, ECS task metadata) | fe80::/10 |
//! | `cloud-metadata` | 100.100.100.200 (Alibaba), 168.63.129.16 (Azure), 192.0.0.192 (Oracle) | fd00:ec2::/32 (AWS IMDS, EKS Pod Identity), fd20:ce::254 (GCP), fd00:42::42 (Scaleway) |
//! | `multicast` | 224.0.0.0/4 | ff00::/8 |
//! | `broadcast` | 255.255.255.255 | |
//! | `reserved` | 240.0.0.0/4 | |
//! | `nat64-local` | | 64:ff9b:1::/48 (where the IPv4 address sits depends on the network's prefix length) |
//! | `teredo` | | 2001::/32 (the IPv4 client address is obfuscated; no registry is reached through Teredo) |
//! | `deny-list` | whatever `--probe-deny` lists (`private` stands for 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) | |
//!
//! IPv6 addresses that carry an IPv4 address are judged as that IPv4 address (and as themselves by the
//! deny-list): IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::/48`. Private ranges (10/8,
//! 172.16/12, 192.168/16, 100.64/10, fc00::/7) stay allowed unless the deny-list names them:
//! self-hosted registries commonly live there. The metadata addresses that sit inside otherwise
//! allowed ranges are refused by name.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};

/// What the probe may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Let probes reach 127.0.0.0/8, ::1 and localhost names (local development, tests).
    pub allow_loopback: bool,
    /// Ranges the operator refuses on top of the built-in rules (`--probe-deny`).
    pub deny: Vec<IpNet>,
    /// Inside Lambda: the runtime API's host, refused on every port whatever `allow_loopback` says.
    pub runtime_api: Option<RuntimeApi>,
}

/// The host of the Lambda Runtime API, from `AWS_LAMBDA_RUNTIME_API` (`127.0.0.1:9001`, or a URL such
/// as `http://127.0.0.1:9000/.rt` under emulators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeApi {
    Addr(IpAddr),
    /// A host name; refused by name (and a localhost name also as 127.0.0.1 and ::1).
    Name(String),
}

impl RuntimeApi {
    /// Reads the host out of the value of `AWS_LAMBDA_RUNTIME_API`; `None` when it names none.
    pub fn parse(value: &str) -> Option<RuntimeApi> {
        let value = value.trim();
        let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        let host = if let Some(bracketed) = authority.strip_prefix('[') {
            bracketed.split(']').next().unwrap_or_default()
        } else {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        };
        if host.is_empty() {
            return None;
        }
        Some(match host.parse::<IpAddr>() {
            Ok(ip) => RuntimeApi::Addr(ip),
            Err(_) => RuntimeApi::Name(host.trim_end_matches('.').to_ascii_lowercase()),
        })
    }

    fn refuses(&self, addr: IpAddr) -> bool {
        match self {
            RuntimeApi::Addr(ip) => *ip == addr,
            RuntimeApi::Name(name) => {
                is_localhost_name(name)
                    && (addr == IpAddr::V4(Ipv4Addr::LOCALHOST)
                        || addr == IpAddr::V6(Ipv6Addr::LOCALHOST))
            }
        }
    }
}

/// Why an address was refused: the rule's stable name and the range in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Stable name, reported as `refused_by`: "link-local", "loopback", ...
    pub name: &'static str,
    /// The range and why it is refused, e.g. "link-local (169.254.0.0/16), which includes cloud metadata endpoints".
    pub description: Cow<'static, str>,
}

/// A target the policy refused. Travels through reqwest's error source chain when the refusal
/// happens inside the resolver, and is dug out again to word the probe result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    /// The refused address as connected to (an IPv4-mapped address keeps its IPv6 spelling); `None`
    /// when a host name was refused as such.
    pub addr: Option<IpAddr>,
    /// The host name that resolved to it, or that was refused by name.
    pub host: Option<String>,
    /// The IPv4 address an IPv6 address carries, and the form that carries it, when it was judged as
    /// that address.
    pub carried: Option<(Ipv4Addr, &'static str)>,
    pub rule: Rule,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused by the probe policy: ")?;
        let which = match (&self.host, self.addr) {
            (Some(host), Some(addr)) => {
                write!(f, "{host} resolves to {addr}")?;
                ", which"
            }
            (None, Some(addr)) => {
                write!(f, "{addr}")?;
                ""
            }
            (Some(host), None) => {
                write!(f, "{host}")?;
                ""
            }
            (None, None) => {
                f.write_str("the target")?;
                ""
            }
        };
        if let Some((v4, form)) = self.carried {
            write!(f, "{which} carries {v4} ({form}), which")?;
        } else {
            f.write_str(which)?;
        }
        write!(f, " is {}", self.rule.description)
    }
}

const fn rule(name: &'static str, description: &'static str) -> Rule {
    Rule {
        name,
        description: Cow::Borrowed(description),
    }
}

const RUNTIME_API: Rule = rule(
    "lambda-runtime-api",
    "the Lambda Runtime API's address (AWS_LAMBDA_RUNTIME_API), never probed inside Lambda whatever the flags say",
);
const LINK_LOCAL_V4: Rule = rule(
    "link-local",
    "link-local (169.254.0.0/16), which includes cloud metadata endpoints",
);
const LINK_LOCAL_V6: Rule = rule("link-local", "link-local (fe80::/10)");
const LOOPBACK_V4: Rule = rule(
    "loopback",
    "loopback (127.0.0.0/8), allowed only with --probe-allow-loopback",
);
const LOOPBACK_V6: Rule = rule(
    "loopback",
    "loopback (::1), allowed only with --probe-allow-loopback",
);
const LOOPBACK_NAME: Rule = rule(
    "loopback",
    "a localhost name, loopback by definition (RFC 6761) and never resolved; allowed only with --probe-allow-loopback",
);
const UNSPECIFIED_V4: Rule = rule(
    "unspecified",
    "unspecified (0.0.0.0/8), which reaches the probing host itself",
);
const UNSPECIFIED_V6: Rule = rule(
    "unspecified",
    "unspecified (::), which reaches the probing host itself",
);
const MULTICAST_V4: Rule = rule("multicast", "multicast (224.0.0.0/4)");
const MULTICAST_V6: Rule = rule("multicast", "multicast (ff00::/8)");
const BROADCAST: Rule = rule("broadcast", "the broadcast address");
const RESERVED: Rule = rule("reserved", "reserved (240.0.0.0/4)");
const NAT64_LOCAL: Rule = rule(
    "nat64-local",
    "in the NAT64 local-use prefix (64:ff9b:1::/48), where the IPv4 address it stands for depends on the network's prefix length",
);
const TEREDO: Rule = rule(
    "teredo",
    "a teredo tunnel address (2001::/32), whose IPv4 client address is obfuscated; no registry is reached through teredo",
);

/// Cloud metadata services at addresses inside otherwise allowed ranges.
const METADATA_V4: [(Ipv4Addr, Rule); 3] = [
    (
        Ipv4Addr::new(100, 100, 100, 200),
        rule(
            "cloud-metadata",
            "a cloud metadata endpoint (Alibaba Cloud)",
        ),
    ),
    (
        Ipv4Addr::new(168, 63, 129, 16),
        rule(
            "cloud-metadata",
            "a cloud metadata endpoint (Azure's WireServer)",
        ),
    ),
    (
        Ipv4Addr::new(192, 0, 0, 192),
        rule("cloud-metadata", "a cloud metadata endpoint (Oracle Cloud)"),
    ),
];
const METADATA_V6: [(Ipv6Addr, u8, Rule); 3] = [
    (
        Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0),
        32,
        rule(
            "cloud-metadata",
            "a cloud metadata endpoint (AWS's fd00:ec2::/32: instance metadata, EKS Pod Identity, DNS)",
        ),
    ),
    (
        Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254),
        128,
        rule("cloud-metadata", "a cloud metadata endpoint (Google Cloud)"),
    ),
    (
        Ipv6Addr::new(0xfd00, 0x0042, 0, 0, 0, 0, 0, 0x0042),
        128,
        rule("cloud-metadata", "a cloud metadata endpoint (Scaleway)"),
    ),
];

/// `localhost`, `localhost.` and every name under `.localhost`: loopback by definition (RFC 6761).
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// What `private` stands for in the deny-list: the ranges that stay allowed by default.
pub fn private_ranges() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
    ]
    .iter()
    .map(|s| s.parse().expect("a valid CIDR"))
    .collect()
}

/// Parses one deny-list item: a CIDR range (`10.0.0.0/8`, `fd00::/8`), a single address, or `private`.
pub fn parse_deny_item(item: &str) -> Result<Vec<IpNet>, String> {
    let item = item.trim();
    if item.eq_ignore_ascii_case("private") {
        return Ok(private_ranges());
    }
    if let Ok(net) = item.parse::<IpNet>() {
        return Ok(vec![net.trunc()]);
    }
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Ok(vec![IpNet::from(ip)]);
    }
    Err(format!(
        "{item:?} is not a CIDR range (such as 10.0.0.0/8 or fd00::/8), an IP address, or the word private"
    ))
}

impl AddressPolicy {
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            allow_loopback,
            ..Self::default()
        }
    }

    /// Ok when a probe may connect to `addr`; otherwise the refusal, naming the rule.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refusal> {
        match self.judge(addr) {
            None => Ok(()),
            Some((rule, carried)) => Err(Refusal {
                addr: Some(addr),
                host: None,
                carried,
                rule,
            }),
        }
    }

    /// Ok when a probe may look `host` up at all; refuses localhost names (unless loopback is allowed)
    /// and, inside Lambda, the runtime API's host name.
    pub fn check_name(&self, host: &str) -> Result<(), Refusal> {
        let refused = |rule: Rule| Refusal {
            addr: None,
            host: Some(host.to_owned()),
            carried: None,
            rule,
        };
        if let Some(RuntimeApi::Name(name)) = &self.runtime_api
            && host
                .strip_suffix('.')
                .unwrap_or(host)
                .eq_ignore_ascii_case(name)
        {
            return Err(refused(RUNTIME_API));
        }
        if is_localhost_name(host) && !self.allow_loopback {
            return Err(refused(LOOPBACK_NAME));
        }
        Ok(())
    }

    /// The rule that refuses `addr`, if any.
    pub fn rule_for(&self, addr: IpAddr) -> Option<Rule> {
        self.judge(addr).map(|(rule, _)| rule)
    }

    fn judge(&self, addr: IpAddr) -> Option<(Rule, Option<(Ipv4Addr, &'static str)>)> {
        if let Some(api) = &self.runtime_api
            && api.refuses(addr)
        {
            return Some((RUNTIME_API, None));
        }
        let verdict = match addr {
            IpAddr::V4(v4) => self.rule_for_v4(v4).map(|r| (r, None)),
            IpAddr::V6(v6) => match carried_ipv4(v6) {
                Some((v4, form)) => self.rule_for_v4(v4).map(|r| (r, Some((v4, form)))),
                None => self.rule_for_v6(v6).map(|r| (r, None)),
            },
        };
        verdict.or_else(|| self.denied(addr))
    }

    fn rule_for_v4(&self, ip: Ipv4Addr) -> Option<Rule> {
        if let Some(api) = &self.runtime_api
            && api.refuses(IpAddr::V4(ip))
        {
            return Some(RUNTIME_API);
        }
        let [a, _, _, _] = ip.octets();
        if a == 0 {
            Some(UNSPECIFIED_V4)
        } else if ip.is_loopback() {
            (!self.allow_loopback).then_some(LOOPBACK_V4)
        } else if ip.is_link_local() {
            Some(LINK_LOCAL_V4)
        } else if let Some((_, rule)) = METADATA_V4.iter().find(|(m, _)| *m == ip) {
            Some(rule.clone())
        } else if ip.is_multicast() {
            Some(MULTICAST_V4)
        } else if ip.is_broadcast() {
            Some(BROADCAST)
        } else if a >= 240 {
            Some(RESERVED)
        } else {
            None
        }
    }

    fn rule_for_v6(&self, ip: Ipv6Addr) -> Option<Rule> {
        let s = ip.segments();
        if ip.is_unspecified() {
            Some(UNSPECIFIED_V6)
        } else if ip.is_loopback() {
            (!self.allow_loopback).then_some(LOOPBACK_V6)
        } else if s[0] & 0xffc0 == 0xfe80 {
            Some(LINK_LOCAL_V6)
        } else if let Some((_, _, rule)) = METADATA_V6
            .iter()
            .find(|(net, len, _)| Ipv6Net::new(*net, *len).is_ok_and(|n| n.contains(&ip)))
        {
            Some(rule.clone())
        } else if ip.is_multicast() {
            Some(MULTICAST_V6)
        } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
            Some(NAT64_LOCAL)
        } else if s[0] == 0x2001 && s[1] == 0 {
            Some(TEREDO)
        } else {
            None
        }
    }

    /// The deny-list, checked against the address and the IPv4 address it carries.
    fn denied(&self, addr: IpAddr) -> Option<(Rule, Option<(Ipv4Addr, &'static str)>)> {
        let carried = match addr {
            IpAddr::V6(v6) => carried_ipv4(v6),
            IpAddr::V4(_) => None,
        };
        self.deny.iter().find_map(|net| {
            let rule = || Rule {
                name: "deny-list",
                description: Cow::Owned(format!("in {net}, on the deny-list (--probe-deny)")),
            };
            if net.contains(&addr) {
                Some((rule(), None))
            } else if let Some((v4, form)) = carried
                && matches!(net, IpNet::V4(n) if n.contains(&v4))
            {
                Some((rule(), Some((v4, form))))
            } else {
                None
            }
        })
    }
}

/// The IPv4 address an IPv6 address stands for, and the form that carries it: IPv4-mapped
/// (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96, except :: and ::1,
/// which are IPv6's own unspecified and loopback), NAT64 (64:ff9b::/96, which a NAT64 gateway forwards
/// to that IPv4 address) and 6to4 (2002::/16, the IPv4 address in bits 16 to 47).
fn carried_ipv4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some((v4(hi, lo), "IPv4-mapped")),
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some((v4(hi, lo), "IPv4-translated")),
        [0, 0, 0, 0, 0, 0, hi, lo] if !ip.is_unspecified() && !ip.is_loopback() => {
            Some((v4(hi, lo), "IPv4-compatible"))
        }
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some((v4(hi, lo), "NAT64")),
        [0x2002, hi, lo, ..] => Some((v4(hi, lo), "6to4")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_by(policy: &AddressPolicy, s: &str) -> Option<&'static str> {
        policy.rule_for(s.parse().unwrap()).map(|r| r.name)
    }

    #[test]
    fn refuses_the_listed_ranges_at_their_edges() {
        let p = AddressPolicy::new(false);
        for (addr, rule) in [
            ("169.254.0.0", "link-local"),
            ("169.254.169.254", "link-local"),
            ("169.254.170.2", "link-local"),
            ("169.254.255.255", "link-local"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("100.100.100.200", "cloud-metadata"),
            ("168.63.129.16", "cloud-metadata"),
            ("192.0.0.192", "cloud-metadata"),
            ("fd00:ec2::", "cloud-metadata"),
            ("fd00:ec2::23", "cloud-metadata"),
            ("fd00:ec2::254", "cloud-metadata"),
            ("fd00:ec2:ffff:ffff:ffff:ffff:ffff:ffff", "cloud-metadata"),
            ("fd20:ce::254", "cloud-metadata"),
            ("fd00:42::42", "cloud-metadata"),
            ("127.0.0.1", "loopback"),
            ("127.0.0.0", "loopback"),
            ("127.255.255.254", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("0.255.255.255", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.0", "multicast"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.255", "multicast"),
            ("ff02::1", "multicast"),
            ("ff00::", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.0", "reserved"),
            ("255.255.255.254", "reserved"),
            ("64:ff9b:1::", "nat64-local"),
            ("64:ff9b:1::a9fe:a9fe", "nat64-local"),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "nat64-local"),
            ("2001::", "teredo"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", "teredo"),
        ] {
            assert_eq!(refused_by(&p, addr), Some(rule), "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_are_judged_as_the_ipv4_address_they_carry() {
        let p = AddressPolicy::new(false);
        for (addr, rule, form) in [
            ("::ffff:169.254.169.254", "link-local", "IPv4-mapped"),
            ("::ffff:127.0.0.1", "loopback", "IPv4-mapped"),
            ("::ffff:0.0.0.0", "unspecified", "IPv4-mapped"),
            ("::ffff:0:169.254.169.254", "link-local", "IPv4-translated"),
            ("::ffff:0:127.0.0.1", "loopback", "IPv4-translated"),
            ("::169.254.169.254", "link-local", "IPv4-compatible"),
            ("::0.0.0.2", "unspecified", "IPv4-compatible"),
            ("64:ff9b::169.254.169.254", "link-local", "NAT64"),
            ("64:ff9b::168.63.129.16", "cloud-metadata", "NAT64"),
            ("64:ff9b::7f00:1", "loopback", "NAT64"),
            ("2002:a9fe:a9fe::", "link-local", "6to4"),
            (
                "2002:a9fe:a9fe:ffff:ffff:ffff:ffff:ffff",
                "link-local",
                "6to4",
            ),
            ("2002:7f00:1::1", "loopback", "6to4"),
            ("2002:c000:00c0::", "cloud-metadata", "6to4"),
            ("2002:e000:1::", "multicast", "6to4"),
        ] {
            let refusal = p.check(addr.parse().unwrap()).unwrap_err();
            assert_eq!(refusal.rule.name, rule, "{addr}");
            assert_eq!(refusal.carried.map(|c| c.1), Some(form), "{addr}");
        }
        // the carried address decides: allowed IPv4 inside these forms is allowed
        for addr in [
            "::ffff:10.0.0.1",
            "::ffff:0:10.0.0.1",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
            "64:ff9b:0:0:0:1:0:1",
        ] {
            assert_eq!(refused_by(&p, addr), None, "{addr}");
        }
    }

    #[test]
    fn allows_private_and_public_ranges_next_to_the_refused_ones() {
        let p = AddressPolicy::new(false);
        for addr in [
            "10.13.21.22",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.10",
            "100.64.0.1",
            "100.100.100.199",
            "100.100.100.201",
            "168.63.129.15",
            "168.63.129.17",
            "192.0.0.191",
            "192.0.0.193",
            "169.253.255.255",
            "169.255.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "1.0.0.0",
            "223.255.255.255",
            "8.8.8.8",
            "fd12:3456::1",
            "fc00::1",
            "fd00:ec1:ffff::1",
            "fd00:ec3::",
            "fd20:ce::253",
            "fd00:42::41",
            "2001:db8::1",
            "2001:1::1",
            "2000:ffff::1",
            "64:ff9b:2::1",
            "fec0::1",
            "fe7f::1",
            "fec0::",
        ] {
            assert_eq!(refused_by(&p, addr), None, "{addr}");
        }
    }

    #[test]
    fn loopback_only_with_the_flag() {
        let p = AddressPolicy::new(true);
        for addr in [
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "2002:7f00:1::",
            "64:ff9b::7f00:1",
        ] {
            assert_eq!(refused_by(&p, addr), None, "{addr}");
        }
        // the flag opens loopback only
        assert_eq!(refused_by(&p, "169.254.169.254"), Some("link-local"));
        assert_eq!(refused_by(&p, "0.0.0.0"), Some("unspecified"));
    }

    #[test]
    fn localhost_names_are_loopback_without_resolving() {
        let strict = AddressPolicy::new(false);
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "a.localhost",
            "x.y.Localhost.",
        ] {
            let refusal = strict.check_name(host).unwrap_err();
            assert_eq!(refusal.rule.name, "loopback", "{host}");
            assert_eq!(refusal.addr, None);
        }
        for host in [
            "localhost.example.com",
            "mylocalhost",
            "localhostx",
            "example.com",
        ] {
            assert!(strict.check_name(host).is_ok(), "{host}");
        }
        assert!(AddressPolicy::new(true).check_name("a.localhost").is_ok());
    }

    #[test]
    fn the_lambda_runtime_api_is_refused_whatever_the_flags() {
        for (value, want) in [
            (
                "127.0.0.1:9001",
                Some(RuntimeApi::Addr("127.0.0.1".parse().unwrap())),
            ),
            (
                "http://127.0.0.1:9000/.rt",
                Some(RuntimeApi::Addr("127.0.0.1".parse().unwrap())),
            ),
            ("[::1]:9001", Some(RuntimeApi::Addr("::1".parse().unwrap()))),
            (
                "Runtime.Local:9001",
                Some(RuntimeApi::Name("runtime.local".into())),
            ),
            ("", None),
        ] {
            assert_eq!(RuntimeApi::parse(value), want, "{value}");
        }
        let p = AddressPolicy {
            allow_loopback: true,
            runtime_api: RuntimeApi::parse("127.0.0.1:9001"),
            ..AddressPolicy::default()
        };
        for addr in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
        ] {
            assert_eq!(refused_by(&p, addr), Some("lambda-runtime-api"), "{addr}");
        }
        // the rest of loopback stays as the flag says
        assert_eq!(refused_by(&p, "127.0.0.2"), None);
        let named = AddressPolicy {
            allow_loopback: true,
            runtime_api: RuntimeApi::parse("localhost:9001"),
            ..AddressPolicy::default()
        };
        assert_eq!(refused_by(&named, "127.0.0.1"), Some("lambda-runtime-api"));
        assert_eq!(refused_by(&named, "::1"), Some("lambda-runtime-api"));
        assert_eq!(
            named.check_name("LOCALHOST.").unwrap_err().rule.name,
            "lambda-runtime-api"
        );
        let other = AddressPolicy {
            runtime_api: RuntimeApi::parse("runtime.internal:9001"),
            ..AddressPolicy::default()
        };
        assert_eq!(
            other.check_name("runtime.internal").unwrap_err().rule.name,
            "lambda-runtime-api"
        );
    }

    #[test]
    fn the_deny_list_refuses_more_and_says_so() {
        let mut deny = Vec::new();
        for item in ["private", "203.0.113.0/24", "2001:db8::/32", "198.51.100.7"] {
            deny.extend(parse_deny_item(item).unwrap());
        }
        let p = AddressPolicy {
            deny,
            ..AddressPolicy::default()
        };
        for (addr, denied) in [
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("172.16.0.0", true),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("192.168.0.1", true),
            ("100.64.0.0", true),
            ("100.127.255.255", true),
            ("100.128.0.0", false),
            ("fc00::", true),
            ("fdff:ffff::1", true),
            ("fe00::", false),
            ("203.0.113.255", true),
            ("203.0.114.0", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("198.51.100.7", true),
            ("198.51.100.8", false),
            ("::ffff:10.1.2.3", true),
            ("2002:0a01:0203::", true),
            ("64:ff9b::c0a8:0101", true),
        ] {
            let got = refused_by(&p, addr);
            assert_eq!(got == Some("deny-list"), denied, "{addr}: {got:?}");
        }
        let r = p.check("10.1.2.3".parse().unwrap()).unwrap_err();
        assert_eq!(
            r.to_string(),
            "refused by the probe policy: 10.1.2.3 is in 10.0.0.0/8, on the deny-list (--probe-deny)"
        );
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0", "privat"] {
            assert!(parse_deny_item(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_deny_item("10.1.2.3/8").unwrap(),
            vec!["10.0.0.0/8".parse().unwrap()]
        );
    }

    #[test]
    fn refusal_reads_as_a_sentence() {
        let p = AddressPolicy::new(false);
        let r = p.check("169.254.169.254".parse().unwrap()).unwrap_err();
        assert_eq!(
            r.to_string(),
            "refused by the probe policy: 169.254.169.254 is link-local (169.254.0.0/16), which includes cloud metadata endpoints"
        );
        let r = Refusal {
            host: Some("metadata.test".into()),
            ..r
        };
        assert!(
            r.to_string()
                .contains("metadata.test resolves to 169.254.169.254, which is link-local")
        );
        let r = p.check("2002:a9fe:a9fe::".parse().unwrap()).unwrap_err();
        assert_eq!(
            r.to_string(),
            "refused by the probe policy: 2002:a9fe:a9fe:: carries 169.254.169.254 (6to4), which is link-local (169.254.0.0/16), which includes cloud metadata endpoints"
        );
        let r = p.check_name("registry.localhost").unwrap_err();
        assert!(
            r.to_string()
                .starts_with("refused by the probe policy: registry.localhost is a localhost name"),
            "{r}"
        );
    }
}
