//! `[auth]` in `vigil.toml`: how long sessions last, how sign-in failures are throttled, and
//! the single sign-on proxy Vigil may trust.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::policy::Role;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Whether `VIGIL_API_TOKEN` or the `api-token` file is accepted as an admin token. On so
    /// that deployments from before users and scoped tokens keep running; turn it off once
    /// every sender has a token of its own.
    pub bootstrap_token: bool,
    /// A session unused for this long ends.
    pub session_idle_seconds: u64,
    /// A session ends this long after sign-in, used or not.
    pub session_max_seconds: u64,
    pub throttle: ThrottleConfig,
    /// Trust a single sign-on proxy's user header; off unless configured.
    pub proxy: Option<ProxyConfig>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            bootstrap_token: true,
            session_idle_seconds: 30 * 60,
            session_max_seconds: 12 * 60 * 60,
            throttle: ThrottleConfig::default(),
            proxy: None,
        }
    }
}

/// `[auth.throttle]`: failures are counted per account and per client address. Once more than
/// `free_failures` have failed, each further attempt waits twice as long as the one before, from
/// `backoff_base_ms` up to the lockout; at `lockout_failures` the account (or address) is
/// refused for `lockout_seconds`, right password or not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    pub free_failures: u32,
    pub backoff_base_ms: u64,
    pub lockout_failures: u32,
    /// Per client address, which may be many people behind one NAT: a higher bar.
    pub address_lockout_failures: u32,
    pub lockout_seconds: u64,
    /// Failures older than this are forgotten.
    pub window_seconds: u64,
    /// Accounts and addresses tracked at once; the stalest are forgotten past it, so a
    /// sender cycling through made-up names cannot grow memory without bound.
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_failures: 3,
            backoff_base_ms: 1_000,
            lockout_failures: 10,
            address_lockout_failures: 50,
            lockout_seconds: 15 * 60,
            window_seconds: 15 * 60,
            max_tracked: 100_000,
        }
    }
}

/// `[auth.proxy]`: a proxy such as oauth2-proxy that signs people in and names them in a
/// header. The header is believed only on connections from `trusted` addresses; from
/// anywhere else it is ignored, so a client cannot name itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The proxy's addresses or networks: `["10.0.4.17/32"]`.
    pub trusted: Vec<IpNet>,
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// A comma-separated list of the user's groups, mapped to roles by `roles`.
    #[serde(default = "default_groups_header")]
    pub groups_header: String,
    /// Group name to role; a user in several groups gets the highest role.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The role of a named user in none of the mapped groups; none refuses them.
    #[serde(default)]
    pub default_role: Option<Role>,
}

fn default_user_header() -> String {
    "x-forwarded-user".into()
}

fn default_groups_header() -> String {
    "x-forwarded-groups".into()
}

impl ProxyConfig {
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    /// The role for a user in `groups` (the header's value), if any.
    pub fn role_for(&self, groups: &str) -> Option<Role> {
        groups
            .split(',')
            .map(str::trim)
            .filter_map(|group| self.roles.get(group).copied())
            .max()
            .or(self.default_role)
    }
}

impl AccessConfig {
    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        const DAY: u64 = 24 * 60 * 60;
        if self.session_idle_seconds == 0 || self.session_idle_seconds > 30 * DAY {
            return Err("auth.session_idle_seconds: use 1 to 2592000 (30 days)".into());
        }
        if self.session_max_seconds < self.session_idle_seconds
            || self.session_max_seconds > 90 * DAY
        {
            return Err(
                "auth.session_max_seconds: use at least session_idle_seconds and at most 7776000 (90 days)"
                    .into(),
            );
        }
        let t = &self.throttle;
        if t.lockout_failures == 0 || t.free_failures >= t.lockout_failures {
            return Err("auth.throttle: free_failures must be below lockout_failures, which must be at least 1".into());
        }
        if t.address_lockout_failures < t.lockout_failures {
            return Err(
                "auth.throttle.address_lockout_failures must be at least lockout_failures".into(),
            );
        }
        if t.lockout_seconds == 0 || t.lockout_seconds > DAY || t.window_seconds == 0 {
            return Err(
                "auth.throttle: lockout_seconds must be 1 to 86400, window_seconds at least 1"
                    .into(),
            );
        }
        if t.max_tracked < 16 {
            return Err("auth.throttle.max_tracked must be at least 16".into());
        }
        if let Some(proxy) = &self.proxy {
            if proxy.trusted.is_empty() {
                return Err(
                    "auth.proxy.trusted names no address: list the proxy's addresses".into(),
                );
            }
            for header in [&proxy.user_header, &proxy.groups_header] {
                if valid_header_name(header).is_none() {
                    return Err(format!("auth.proxy: {header:?} is not a header name"));
                }
            }
        }
        Ok(())
    }
}

fn valid_header_name(name: &str) -> Option<()> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_mistakes_named() {
        assert!(AccessConfig::default().validate().is_ok());
        let config = AccessConfig {
            session_max_seconds: 10,
            ..AccessConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .contains("session_max_seconds"));
        let config = AccessConfig {
            proxy: Some(ProxyConfig {
                trusted: vec![],
                user_header: default_user_header(),
                groups_header: default_groups_header(),
                roles: BTreeMap::new(),
                default_role: None,
            }),
            ..AccessConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("trusted"));
    }

    #[test]
    fn proxy_groups_map_to_the_highest_role() {
        let proxy = ProxyConfig {
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            user_header: default_user_header(),
            groups_header: default_groups_header(),
            roles: BTreeMap::from([
                ("soc".to_owned(), Role::Analyst),
                ("secops-admins".to_owned(), Role::Admin),
            ]),
            default_role: None,
        };
        assert!(proxy.trusts("10.1.2.3".parse().unwrap()));
        assert!(!proxy.trusts("192.0.2.1".parse().unwrap()));
        assert_eq!(proxy.role_for("soc, secops-admins"), Some(Role::Admin));
        assert_eq!(proxy.role_for("soc"), Some(Role::Analyst));
        assert_eq!(proxy.role_for("everyone"), None);
    }
}
