//! Pod IPs on loopback: `<prefix>.2 ..= <prefix>.254`. Linux routes all of 127.0.0.0/8 to `lo`, so
//! every pod can bind its own address with the same port, as if it had its own network namespace.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::{Context, Result, bail};

const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

#[derive(Debug)]
pub struct IpPool {
    prefix: [u8; 3],
    in_use: BTreeSet<u8>,
}

/// Parses `127.0.X` into its three octets; only loopback prefixes make sense here.
pub fn parse_prefix(text: &str) -> Result<[u8; 3]> {
    let octets: Vec<u8> = text
        .split('.')
        .map(u8::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("ip prefix {text:?} is not three dotted octets"))?;
    match octets.as_slice() {
        [127, b, c] => Ok([127, *b, *c]),
        [_, _, _] => bail!("ip prefix {text:?} must be inside 127.0.0.0/8 (loopback)"),
        _ => bail!("ip prefix {text:?} must have exactly three octets, like 127.0.1"),
    }
}

impl IpPool {
    pub fn new(prefix: [u8; 3]) -> Self {
        Self {
            prefix,
            in_use: BTreeSet::new(),
        }
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host)
    }

    fn host_of(&self, ip: Ipv4Addr) -> Option<u8> {
        let o = ip.octets();
        (o[..3] == self.prefix && (FIRST_HOST..=LAST_HOST).contains(&o[3])).then_some(o[3])
    }

    /// Takes `preferred` when it belongs to this pool and is free (a pod keeps its IP across an
    /// agent restart), else the lowest free address. `None` when the pool is exhausted.
    pub fn allocate(&mut self, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let host = preferred
            .and_then(|ip| self.host_of(ip))
            .filter(|h| !self.in_use.contains(h))
            .or_else(|| (FIRST_HOST..=LAST_HOST).find(|h| !self.in_use.contains(h)))?;
        self.in_use.insert(host);
        Some(self.addr(host))
    }

    /// Marks an address as unusable (something outside the agent already listens on it). It stays
    /// reserved; a pool of 253 addresses makes that leak harmless.
    pub fn reserve(&mut self, ip: Ipv4Addr) {
        if let Some(h) = self.host_of(ip) {
            self.in_use.insert(h);
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(h) = self.host_of(ip) {
            self.in_use.remove(&h);
        }
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_prefixes_only() {
        assert_eq!(parse_prefix("127.0.7").ok(), Some([127, 0, 7]));
        assert!(parse_prefix("10.0.1").is_err());
        assert!(parse_prefix("127.0").is_err());
        assert!(parse_prefix("127.0.300").is_err());
    }

    #[test]
    fn allocates_lowest_free_and_reuses_released() {
        let mut pool = IpPool::new([127, 0, 5]);
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 0, 5, 2)));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 0, 5, 3)));
        pool.release(Ipv4Addr::new(127, 0, 5, 2));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 0, 5, 2)));
        assert_eq!(pool.in_use(), 2);
    }

    #[test]
    fn honours_a_free_preferred_address_in_range() {
        let mut pool = IpPool::new([127, 0, 5]);
        let want = Ipv4Addr::new(127, 0, 5, 40);
        assert_eq!(pool.allocate(Some(want)), Some(want));
        // taken now, and foreign or out-of-range addresses are ignored
        assert_eq!(pool.allocate(Some(want)), Some(Ipv4Addr::new(127, 0, 5, 2)));
        assert_eq!(
            pool.allocate(Some(Ipv4Addr::new(127, 0, 6, 9))),
            Some(Ipv4Addr::new(127, 0, 5, 3))
        );
        assert_eq!(
            pool.allocate(Some(Ipv4Addr::new(127, 0, 5, 255))),
            Some(Ipv4Addr::new(127, 0, 5, 4))
        );
    }

    #[test]
    fn exhausts_after_253_addresses() {
        let mut pool = IpPool::new([127, 0, 9]);
        for _ in 0..253 {
            assert!(pool.allocate(None).is_some());
        }
        assert_eq!(pool.allocate(None), None);
        pool.release(Ipv4Addr::new(127, 0, 9, 100));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 0, 9, 100)));
    }

    #[test]
    fn reserved_addresses_are_skipped() {
        let mut pool = IpPool::new([127, 0, 5]);
        pool.reserve(Ipv4Addr::new(127, 0, 5, 2));
        assert_eq!(pool.allocate(None), Some(Ipv4Addr::new(127, 0, 5, 3)));
    }
}
