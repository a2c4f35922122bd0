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
//! | `link-local` | 169.254.0.0/16 (cloud metadata, ECS task metadata) | fe80::/10 |
//! | `cloud-metadata` | 100.100.100.200 (Alibaba Cloud) | fd00:ec2::254 (AWS IMDS over IPv6) |
//! | `loopback` (unless `allow_loopback`) | 127.0.0.0/8 (the Lambda runtime API lives here) | ::1 |
//! | `unspecified` | 0.0.0.0/8 (0.0.0.0 reaches the host itself on Linux) | :: |
//! | `multicast` | 224.0.0.0/4 | ff00::/8 |
//! | `broadcast` | 255.255.255.255 | |
//! | `reserved` | 240.0.0.0/4 | |
//!
//! IPv6 addresses that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
//! NAT64 `64:ff9b::a.b.c.d`) are judged as that IPv4 address. Private ranges (10/8, 172.16/12,
//! 192.168/16, 100.64/10, fc00::/7) stay allowed: self-hosted registries commonly live there. The two
//! metadata addresses that sit inside otherwise allowed ranges are refused by name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the probe may connect to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Let probes reach 127.0.0.0/8 and ::1 (local development, tests).
    pub allow_loopback: bool,
}

/// Why an address was refused: the rule's stable name and the range in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable name, reported as `refused_by`: "link-local", "loopback", ...
    pub name: &'static str,
    /// The range and why it is refused, e.g. "link-local (169.254.0.0/16), which includes cloud metadata endpoints".
    pub description: &'static str,
}

/// An address the policy refused. Travels through reqwest's error source chain when the refusal
/// happens inside the resolver, and is dug out again to word the probe result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    /// The refused address as connected to (an IPv4-mapped address keeps its IPv6 spelling).
    pub addr: IpAddr,
    /// The host name that resolved to it, when it came from DNS.
    pub host: Option<String>,
    pub rule: Rule,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(host) => write!(
                f,
                "refused by the probe policy: {host} resolves to {}, which is {}",
                self.addr, self.rule.description
            ),
            None => write!(
                f,
                "refused by the probe policy: {} is {}",
                self.addr, self.rule.description
            ),
        }
    }
}

const LINK_LOCAL_V4: Rule = Rule {
    name: "link-local",
    description: "link-local (169.254.0.0/16), which includes cloud metadata endpoints",
};
const LINK_LOCAL_V6: Rule = Rule {
    name: "link-local",
    description: "link-local (fe80::/10)",
};
const METADATA: Rule = Rule {
    name: "cloud-metadata",
    description: "a cloud metadata endpoint",
};
const LOOPBACK_V4: Rule = Rule {
    name: "loopback",
    description: "loopback (127.0.0.0/8), allowed only with --probe-allow-loopback",
};
const LOOPBACK_V6: Rule = Rule {
    name: "loopback",
    description: "loopback (::1), allowed only with --probe-allow-loopback",
};
const UNSPECIFIED_V4: Rule = Rule {
    name: "unspecified",
    description: "unspecified (0.0.0.0/8), which reaches the probing host itself",
};
const UNSPECIFIED_V6: Rule = Rule {
    name: "unspecified",
    description: "unspecified (::), which reaches the probing host itself",
};
const MULTICAST_V4: Rule = Rule {
    name: "multicast",
    description: "multicast (224.0.0.0/4)",
};
const MULTICAST_V6: Rule = Rule {
    name: "multicast",
    description: "multicast (ff00::/8)",
};
const BROADCAST: Rule = Rule {
    name: "broadcast",
    description: "the broadcast address",
};
const RESERVED: Rule = Rule {
    name: "reserved",
    description: "reserved (240.0.0.0/4)",
};

/// Alibaba Cloud's metadata service, inside the otherwise allowed shared range 100.64.0.0/10.
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
/// AWS's instance metadata service over IPv6, inside the otherwise allowed unique-local range fc00::/7.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

impl AddressPolicy {
    pub fn new(allow_loopback: bool) -> Self {
        Self { allow_loopback }
    }

    /// Ok when a probe may connect to `addr`; otherwise the refusal, naming the rule.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refusal> {
        match self.rule_for(addr) {
            None => Ok(()),
            Some(rule) => Err(Refusal {
                addr,
                host: None,
                rule,
            }),
        }
    }

    /// The rule that refuses `addr`, if any.
    pub fn rule_for(&self, addr: IpAddr) -> Option<Rule> {
        match addr {
            IpAddr::V4(v4) => self.rule_for_v4(v4),
            IpAddr::V6(v6) => match embedded_ipv4(v6) {
                Some(v4) => self.rule_for_v4(v4),
                None => self.rule_for_v6(v6),
            },
        }
    }

    fn rule_for_v4(&self, ip: Ipv4Addr) -> Option<Rule> {
        let [a, _, _, _] = ip.octets();
        if a == 0 {
            Some(UNSPECIFIED_V4)
        } else if ip.is_loopback() {
            (!self.allow_loopback).then_some(LOOPBACK_V4)
        } else if ip.is_link_local() {
            Some(LINK_LOCAL_V4)
        } else if ip == ALIBABA_METADATA {
            Some(METADATA)
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
        if ip.is_unspecified() {
            Some(UNSPECIFIED_V6)
        } else if ip.is_loopback() {
            (!self.allow_loopback).then_some(LOOPBACK_V6)
        } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
            Some(LINK_LOCAL_V6)
        } else if ip == AWS_METADATA_V6 {
            Some(METADATA)
        } else if ip.is_multicast() {
            Some(MULTICAST_V6)
        } else {
            None
        }
    }
}

/// The IPv4 address an IPv6 address stands for, when it carries one: IPv4-mapped (::ffff:0:0/96),
/// IPv4-compatible (::/96, except :: and ::1, which are IPv6's own unspecified and loopback) and
/// NAT64 (64:ff9b::/96, which a NAT64 gateway forwards to that IPv4 address).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_unspecified() && !ip.is_loopback() {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_by(policy: AddressPolicy, s: &str) -> Option<&'static str> {
        policy.rule_for(s.parse().unwrap()).map(|r| r.name)
    }

    #[test]
    fn refuses_the_listed_ranges() {
        let p = AddressPolicy::new(false);
        for (addr, rule) in [
            ("169.254.169.254", "link-local"),
            ("169.254.170.2", "link-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::169.254.169.254", "link-local"),
            ("64:ff9b::169.254.169.254", "link-local"),
            ("100.100.100.200", "cloud-metadata"),
            ("fd00:ec2::254", "cloud-metadata"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
        ] {
            assert_eq!(refused_by(p, addr), Some(rule), "{addr}");
        }
    }

    #[test]
    fn allows_private_and_public_ranges() {
        let p = AddressPolicy::new(false);
        for addr in [
            "10.13.21.22",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.10",
            "100.64.0.1",
            "8.8.8.8",
            "fd12:3456::1",
            "fc00::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "fec0::1",
        ] {
            assert_eq!(refused_by(p, addr), None, "{addr}");
        }
    }

    #[test]
    fn loopback_only_with_the_flag() {
        let p = AddressPolicy::new(true);
        assert_eq!(refused_by(p, "127.0.0.1"), None);
        assert_eq!(refused_by(p, "::1"), None);
        assert_eq!(refused_by(p, "::ffff:127.0.0.1"), None);
        // the flag opens loopback only
        assert_eq!(refused_by(p, "169.254.169.254"), Some("link-local"));
        assert_eq!(refused_by(p, "0.0.0.0"), Some("unspecified"));
    }

    #[test]
    fn refusal_reads_as_a_sentence() {
        let r = AddressPolicy::new(false)
            .check("169.254.169.254".parse().unwrap())
            .unwrap_err();
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
    }
}
