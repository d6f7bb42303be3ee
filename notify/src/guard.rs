//! Keeps receivers and actions away from link-local and cloud-metadata addresses.
//!
//! A receiver's URL comes from config and an action's from a playbook template, so either can
//! name `169.254.169.254`, where a cloud instance hands out its credentials to whoever asks.
//! The guard refuses such addresses twice: once when the URL is checked (a literal IP or a
//! well-known metadata host name), and again at every connection, through a DNS resolver that
//! drops refused addresses from each answer, so a name that resolves somewhere harmless at
//! load and to the metadata service later (DNS rebinding) still cannot reach it. Redirects
//! are not followed and proxies are not used, since either would resolve names out of the
//! guard's sight. Loopback and private ranges are allowed: receivers run there, and tests use
//! them. `allow_link_local = true` on a receiver lifts the guard for it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why the guard refused an address or a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("{host} is a link-local or cloud-metadata address, which receivers and actions may not reach unless allow_link_local = true")]
    Refused { host: String },
    #[error("{host} resolves only to link-local or cloud-metadata addresses, which receivers and actions may not reach unless allow_link_local = true")]
    ResolvesOnlyToRefused { host: String },
    #[error("cannot resolve {host}: {reason}")]
    Lookup { host: String, reason: String },
    #[error("the URL has no host")]
    NoHost,
}

/// Host names that are cloud metadata services whatever they resolve to.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Whether connecting to `ip` would reach a link-local or cloud-metadata address.
pub fn is_refused(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_refused_v4(v4),
        IpAddr::V6(v6) => {
            // fe80::/10, link-local.
            (v6.segments()[0] & 0xffc0) == 0xfe80
                // AWS's IPv6 instance metadata service.
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && {
                    let octets = v6.octets();
                    is_refused_v4(Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]))
                })
        }
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    // 169.254.0.0/16 holds AWS's, GCP's and Azure's metadata services.
    ip.is_link_local()
        // Alibaba Cloud's metadata service.
        || ip == Ipv4Addr::new(100, 100, 100, 200)
        // Oracle Cloud's metadata service (besides 169.254.169.254).
        || ip == Ipv4Addr::new(192, 0, 0, 192)
}

/// A host name and the addresses it stands for, consulted before DNS: for tests, which must
/// not depend on (or send traffic to) real names.
pub type StaticHosts = BTreeMap<String, Vec<IpAddr>>;

/// The guard for one receiver or action.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow_link_local: bool,
    static_hosts: Option<Arc<StaticHosts>>,
}

impl Guard {
    pub fn new(allow_link_local: bool) -> Self {
        Guard {
            allow_link_local,
            static_hosts: None,
        }
    }

    /// Resolves the names in `hosts` to their addresses without DNS; other names still go to
    /// DNS. The guard applies to these addresses as to any others.
    pub fn with_static_hosts(mut self, hosts: StaticHosts) -> Self {
        self.static_hosts = Some(Arc::new(hosts));
        self
    }

    pub fn allows_link_local(&self) -> bool {
        self.allow_link_local
    }

    /// Whether the guard lets a connection to `ip` through.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_link_local || !is_refused(ip)
    }

    /// Checks what can be checked of `url` without DNS: a literal IP address, or a host name
    /// that is a metadata service by name. Host names are checked again at each connection.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), GuardError> {
        // The URL parser has already turned `0xa9fea9fe` and the like into dotted form.
        match url.host_str() {
            None | Some("") => Err(GuardError::NoHost),
            Some(host) => self.check_host(host),
        }
    }

    /// Checks a host as given in config (a name or a literal address), without DNS.
    pub fn check_host(&self, host: &str) -> Result<(), GuardError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_ip(ip);
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if !self.allow_link_local && METADATA_HOSTS.contains(&name.as_str()) {
            return Err(GuardError::Refused {
                host: host.to_owned(),
            });
        }
        Ok(())
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), GuardError> {
        if self.allows(ip) {
            Ok(())
        } else {
            Err(GuardError::Refused {
                host: ip.to_string(),
            })
        }
    }

    /// Resolves `host` and keeps only the addresses the guard allows; an error when none is
    /// left. For clients other than reqwest (SMTP), which connect to what this returns.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardError> {
        self.check_host(host)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<IpAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![ip]
        } else if let Some(ips) = self
            .static_hosts
            .as_ref()
            .and_then(|hosts| hosts.get(&host.to_ascii_lowercase()))
        {
            ips.clone()
        } else {
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| GuardError::Lookup {
                    host: host.to_owned(),
                    reason: e.to_string(),
                })?
                .map(|addr| addr.ip())
                .collect()
        };
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|ip| self.allows(*ip))
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        if allowed.is_empty() {
            if found.is_empty() {
                return Err(GuardError::Lookup {
                    host: host.to_owned(),
                    reason: "no addresses".into(),
                });
            }
            tracing::warn!(%host, "refused a connection to a link-local or metadata address");
            return Err(GuardError::ResolvesOnlyToRefused {
                host: host.to_owned(),
            });
        }
        Ok(allowed)
    }

    /// A reqwest client builder that resolves through this guard, follows no redirects and
    /// uses no proxy. Receivers and actions build their clients from it.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        crate::install_tls_provider();
        reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                guard: self.clone(),
            }))
            // A redirect would resend the request (and its headers) somewhere not checked.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy resolves names itself, out of the guard's sight.
            .no_proxy()
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
    }
}

/// reqwest's resolver through the guard: every answer loses its refused addresses.
#[derive(Debug)]
struct GuardedResolver {
    guard: Guard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        let resolving: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
            // The port is replaced by the URL's; 0 only satisfies the lookup.
            let addrs = guard.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        });
        resolving
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused_loopback_is_not() {
        for refused in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "100.100.100.200",
        ] {
            assert!(is_refused(ip(refused)), "{refused}");
        }
        for allowed in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "fd00:ec2::253",
            "169.253.255.255",
        ] {
            assert!(!is_refused(ip(allowed)), "{allowed}");
        }
        assert!(Guard::new(true).allows(ip("169.254.169.254")));
    }

    #[test]
    fn urls_naming_metadata_are_refused_at_load() {
        let guard = Guard::new(false);
        let check = |url: &str| guard.check_url(&reqwest::Url::parse(url).unwrap());
        assert!(check("http://169.254.169.254/latest/meta-data/").is_err());
        assert!(check("http://[fd00:ec2::254]/").is_err());
        assert!(check("http://[::ffff:a9fe:a9fe]/").is_err());
        assert!(check("http://metadata.google.internal./computeMetadata").is_err());
        assert!(check("http://127.0.0.1:8080/hook").is_ok());
        assert!(check("https://hooks.example.com/x").is_ok());
        let allowed = Guard::new(true);
        assert!(allowed
            .check_url(&reqwest::Url::parse("http://169.254.169.254/").unwrap())
            .is_ok());
    }

    #[tokio::test]
    async fn resolving_drops_refused_addresses() {
        let guard = Guard::new(false).with_static_hosts(StaticHosts::from([
            ("rebind.test".to_owned(), vec![ip("169.254.169.254")]),
            (
                "mixed.test".to_owned(),
                vec![ip("169.254.169.254"), ip("127.0.0.1")],
            ),
        ]));
        let error = guard.resolve("rebind.test", 80).await.unwrap_err();
        assert!(
            matches!(error, GuardError::ResolvesOnlyToRefused { .. }),
            "{error}"
        );
        assert_eq!(
            guard.resolve("mixed.test", 80).await.unwrap(),
            vec!["127.0.0.1:80".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            guard.resolve("localhost", 25).await.unwrap()[0].port(),
            25,
            "real names still resolve"
        );
    }
}
