//! Outbound HTTP (webhooks, chat) behind a guard against server-side
//! request forgery: a URL that is registered by one user and called by
//! closeloop must not reach closeloop's own network.
//!
//! Every address a request would connect to is checked **after** DNS
//! resolution (a name is resolved by the guard, never by the caller) and on
//! every redirect hop: loopback, private (RFC 1918, unique-local), link-local
//! (which holds the cloud metadata service, 169.254.169.254), shared
//! (100.64.0.0/10), unspecified, multicast and reserved addresses are
//! refused, as are IPv4 addresses wrapped in IPv6 (`::ffff:10.0.0.1`,
//! `64:ff9b::/96`). An operator allow-list (`--outbound-allow CIDR,...`,
//! `CLOSELOOP_OUTBOUND_ALLOW`) lets chosen ranges through, e.g.
//! `127.0.0.0/8` for a receiver on the same machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::email::SendError;

/// A CIDR range, `10.1.0.0/16` or `fd00::/8` (a bare address is `/32` or
/// `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR range (e.g. 10.0.0.0/8 or fd00::/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// Which addresses outbound requests may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Ranges let through although the guard would refuse them.
    pub allow: Vec<Cidr>,
}

impl Policy {
    /// The policy of `--outbound-allow` (comma-separated CIDR ranges).
    pub fn parse(allow: &str) -> Result<Policy, String> {
        let allow = allow
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--outbound-allow: {e}"))?;
        Ok(Policy { allow })
    }

    /// Why `ip` may not be reached, or `None` when it may.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow.iter().any(|c| c.contains(ip)) {
            return None;
        }
        let why = match ip {
            IpAddr::V4(v4) => special_v4(v4),
            IpAddr::V6(v6) => special_v6(v6),
        }?;
        // An IPv4 address wrapped in IPv6 is allowed when its IPv4 form is.
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = embedded_v4(v6)
            && self.allow.iter().any(|c| c.contains(IpAddr::V4(v4)))
        {
            return None;
        }
        Some(why)
    }

    /// Checks a URL before it is registered or called: http or https, a
    /// host, and not an address (or `localhost`) the guard refuses. A name
    /// is checked again, after resolution, on every call.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(url.trim())
            .map_err(|e| format!("{url:?} is not an absolute URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "{url:?}: only http and https URLs can be called (not {}:)",
                u.scheme()
            ));
        }
        match u.host() {
            None => Err(format!("{url:?} has no host")),
            Some(url::Host::Ipv4(ip)) => self.check_ip(url, IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(url, IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    self.check_ip(url, IpAddr::V4(Ipv4Addr::LOCALHOST))
                } else {
                    Ok(())
                }
            }
        }
        .map(|()| u)
    }

    fn check_ip(&self, url: &str, ip: IpAddr) -> Result<(), String> {
        match self.refuses(ip) {
            None => Ok(()),
            Some(why) => Err(refusal(url, ip, why)),
        }
    }
}

fn refusal(what: &str, ip: IpAddr, why: &str) -> String {
    format!(
        "{what}: {ip} is a {why} address, which outbound requests may not reach \
         (an operator can allow it with --outbound-allow CIDR)"
    )
}

/// Why an IPv4 address is special, if it is.
fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local (cloud metadata)"
    } else if o[0] == 0 {
        "unspecified"
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        "shared (carrier-grade NAT)"
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        "reserved (IETF protocol)"
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        "reserved (benchmarking)"
    } else if ip.is_multicast() {
        "multicast"
    } else if o[0] >= 240 {
        "reserved"
    } else {
        return None;
    })
}

/// The IPv4 address inside an IPv4-mapped, -compatible or NAT64 IPv6 one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[..6] == [0; 6] && u32::from(tail) > 1) {
        Some(tail)
    } else {
        None
    }
}

/// Why an IPv6 address is special, if it is.
fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address wrapped in IPv6 is what its IPv4 form is.
    if let Some(v4) = embedded_v4(ip) {
        return special_v4(v4);
    }
    let s0 = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if (s0 & 0xfe00) == 0xfc00 {
        "private (unique-local)"
    } else if (s0 & 0xffc0) == 0xfe80 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    })
}

/// The guard refused an address (found in a request error's sources, so a
/// refusal is told from a failure worth retrying).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Resolves names for the HTTP client, keeping only addresses the policy
/// lets through.
struct GuardedResolver {
    policy: Arc<Policy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.refuses(a.ip()) {
                    None => true,
                    Some(why) => {
                        refused.get_or_insert((a.ip(), why));
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = match refused {
                    Some((ip, why)) => Box::new(Refused(refusal(&host, ip, why))),
                    None => format!("{host} has no address").into(),
                };
                return Err(e);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Longest wait for one outbound request, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The guarded HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    policy: Arc<Policy>,
}

impl Http {
    pub fn new(policy: Policy) -> Result<Http, String> {
        Ok(Http {
            client: client(policy.clone())?,
            policy: Arc::new(policy),
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A POST to `url`, checked first (an address literal never reaches
    /// the resolver, and the allow-list may have changed since the URL was
    /// registered).
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        let u = self.policy.check_url(url).map_err(Refused)?;
        Ok(self.client.post(u))
    }
}

/// The guarded client underneath [`Http`]: names resolved through the
/// guard, every redirect hop checked, at most 5 redirects, no proxy,
/// [`TIMEOUT`] per request.
pub fn client(policy: Policy) -> Result<reqwest::Client, String> {
    let policy = Arc::new(policy);
    let hops = policy.clone();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error(Refused("more than 5 redirects".into()));
            }
            match hops.check_url(attempt.url().as_str()) {
                Ok(_) => attempt.follow(),
                Err(e) => attempt.error(Refused(format!("redirected to {e}"))),
            }
        }))
        .no_proxy()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("closeloop/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A receiver's answer other than 2xx, for the caller to classify (retry
/// or give up: webhooks and chat differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub status: u16,
    /// `<what> answered HTTP <status> <reason>: <start of the body>`.
    pub message: String,
    /// Seconds its `Retry-After` asked for.
    pub retry_after: Option<u64>,
}

impl Rejected {
    /// Worth trying again (after `retry_after` when given).
    pub fn retry(self) -> SendError {
        SendError::Transient {
            code: Some(self.status),
            message: self.message,
            retry_after: self.retry_after,
        }
    }

    /// Retrying cannot help.
    pub fn give_up(self) -> SendError {
        SendError::Permanent {
            code: Some(self.status),
            message: self.message,
        }
    }
}

/// Sends `request` (built by [`Http::post`]): the 2xx status, or how the
/// receiver rejected it; a request that got no answer is an error already
/// classified (the guard's refusal: give up; anything else: retry). `what`
/// names the receiver in messages (`endpoint`, `slack webhook`).
pub async fn call(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<Result<u16, Rejected>, SendError> {
    let resp = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            if let Some(refusal) = refused(&e) {
                return Err(SendError::Permanent {
                    code: None,
                    message: refusal,
                });
            }
            let mut message = format!("{what}: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message = format!("{message}: {s}");
                src = s.source();
            }
            return Err(SendError::Transient {
                code: None,
                message,
                retry_after: None,
            });
        }
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(Ok(status.as_u16()));
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, std::time::SystemTime::now()));
    let reason = status.canonical_reason().unwrap_or("");
    let mut text = resp.text().await.unwrap_or_default();
    text.truncate(200);
    let message = format!(
        "{what} answered HTTP {} {reason}: {}",
        status.as_u16(),
        text.trim()
    )
    .trim_end_matches([':', ' '])
    .to_string();
    Ok(Err(Rejected {
        status: status.as_u16(),
        message,
        retry_after,
    }))
}

/// Seconds a `Retry-After` value asks for: delta-seconds, or an HTTP date
/// (counted from `now`).
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).as_secs())
}

/// The guard's refusal inside request error `e`, if that is why it failed.
pub fn refused(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        let p = Policy::default();
        for (a, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00:ec2::254", "private (unique-local)"),
            ("fe80::1", "link-local"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
        ] {
            assert_eq!(p.refuses(ip(a)), Some(why), "{a}");
        }
        for a in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(p.refuses(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn the_allow_list_lets_chosen_ranges_through() {
        let p = Policy::parse("127.0.0.0/8, fd00::/8").unwrap();
        assert_eq!(p.refuses(ip("127.0.0.1")), None);
        assert_eq!(p.refuses(ip("127.9.9.9")), None);
        assert_eq!(p.refuses(ip("::ffff:127.0.0.1")), None);
        assert_eq!(p.refuses(ip("fd12::1")), None);
        assert_eq!(p.refuses(ip("10.0.0.1")), Some("private"));
        assert_eq!(p.refuses(ip("::1")), Some("loopback"));
        assert!(Policy::parse("10.0.0.0/33").is_err());
        assert!(Policy::parse("nonsense").is_err());
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
    }

    #[test]
    fn urls_are_checked_for_scheme_host_and_literal_addresses() {
        let p = Policy::default();
        assert!(p.check_url("https://crm.example/hooks").is_ok());
        for (u, says) in [
            ("ftp://crm.example/x", "only http and https"),
            ("not a url", "not an absolute URL"),
            ("http://127.0.0.1:8080/x", "loopback"),
            ("http://[::1]/x", "loopback"),
            ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
            ("http://localhost:9000/", "loopback"),
            ("http://10.0.0.5/", "--outbound-allow"),
        ] {
            let e = p.check_url(u).unwrap_err();
            assert!(e.contains(says), "{u}: {e}");
        }
        let local = Policy::parse("127.0.0.0/8").unwrap();
        assert!(local.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(local.check_url("http://localhost:8080/x").is_ok());
    }

    /// A name is checked after resolution: `localhost` resolves (from
    /// /etc/hosts, no network) to a loopback address, which the client
    /// refuses before connecting, unless allowed.
    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let guarded = client(Policy::default()).unwrap();
        let e = guarded.get("http://localhost:9/").send().await.unwrap_err();
        let why = refused(&e).unwrap_or_else(|| panic!("not refused by the guard: {e:?}"));
        assert!(why.contains("loopback"), "{why}");
        let allowed = client(Policy::parse("127.0.0.0/8, ::1").unwrap()).unwrap();
        let e = allowed.get("http://localhost:9/").send().await.unwrap_err();
        assert_eq!(refused(&e), None, "connecting was tried: {e:?}");
        // An address literal is checked before the request.
        let http = Http::new(Policy::default()).unwrap();
        let Err(Refused(why)) = http.post("http://127.0.0.1:9/") else {
            panic!("an address literal went through");
        };
        assert!(why.contains("loopback"), "{why}");
    }
}
