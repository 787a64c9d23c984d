//! Lopache routes, frozen: conditions with their Redis servers resolved to
//! indexes, and destinations with their read/write servers and key prefix.
//! Servers are de-duplicated (URL without prefix), so a rollout keyspace on
//! the same Redis as the default shares the shard's connection to it, and
//! their commands can share one pipeline.

use super::raw::{DriverSpec, RawCondition, RawDestination, RawRoute};
use super::{ConfigError, Driver};
use crate::redis::url::RedisUrl;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    PathPrefix(String),
    /// The SET `<prefix><host>` on `server` holds one of the path's patterns.
    PathMatches {
        prefix: String,
        server: usize,
    },
    /// CRC-32 of the cookie's value, mod 100, is at most `max_segment_id`.
    InSegment {
        cookie: String,
        max_segment_id: u32,
    },
}

/// Where a request's backend is looked up, and where dead marks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Index into [`RouteTable::servers`] for lookups.
    pub read: usize,
    /// Index into [`RouteTable::servers`] for dead marks.
    pub write: usize,
    /// Key prefix of this keyspace (from the read URL).
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub condition: Condition,
    pub destination: Destination,
}

/// All routes in order, the default destination (the top-level driver), and
/// the distinct Redis servers they use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub servers: Vec<RedisUrl>,
    pub routes: Vec<Route>,
    pub default: Destination,
}

impl RouteTable {
    /// Every destination: the default one first, then one per route, in
    /// order (the route cache keeps one map per destination in this order).
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        std::iter::once(&self.default).chain(self.routes.iter().map(|r| &r.destination))
    }

    /// The distinct servers routes are read from, in index order.
    pub fn read_servers(&self) -> Vec<usize> {
        let mut servers: Vec<usize> = self.destinations().map(|d| d.read).collect();
        servers.sort_unstable();
        servers.dedup();
        servers
    }

    pub fn build(
        default: &Driver,
        raw: &[RawRoute],
        parse_driver: impl Fn(&DriverSpec, &str) -> Result<Driver, ConfigError>,
    ) -> Result<RouteTable, ConfigError> {
        let mut table = RouteTable {
            servers: Vec::new(),
            routes: Vec::new(),
            default: Destination {
                read: 0,
                write: 0,
                prefix: String::new(),
            },
        };
        table.default = table.destination(default);
        for (i, route) in raw.iter().enumerate() {
            let RawDestination::RandomBackendForHost { driver } = &route.destination;
            let key = format!("routes[{i}].destination.random_backend_for_host.driver");
            let driver = parse_driver(driver, &key)?;
            let destination = table.destination(&driver);
            let condition = table.condition(
                &route.condition,
                default,
                &format!("routes[{i}].condition"),
                &parse_driver,
            )?;
            table.routes.push(Route {
                condition,
                destination,
            });
        }
        Ok(table)
    }

    /// The index of `url`'s server, adding it if new.
    fn server(&mut self, url: &RedisUrl) -> usize {
        let mut bare = url.clone();
        bare.prefix.clear();
        match self.servers.iter().position(|s| *s == bare) {
            Some(i) => i,
            None => {
                self.servers.push(bare);
                self.servers.len() - 1
            }
        }
    }

    fn destination(&mut self, driver: &Driver) -> Destination {
        Destination {
            read: self.server(&driver.read),
            write: self.server(&driver.write),
            prefix: driver.prefix().to_string(),
        }
    }

    fn condition(
        &mut self,
        raw: &RawCondition,
        default: &Driver,
        key: &str,
        parse_driver: &impl Fn(&DriverSpec, &str) -> Result<Driver, ConfigError>,
    ) -> Result<Condition, ConfigError> {
        let list = |table: &mut RouteTable, items: &[RawCondition], name: &str| {
            items
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    table.condition(c, default, &format!("{key}.{name}[{i}]"), parse_driver)
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match raw {
            RawCondition::And(items) => Condition::And(list(self, items, "and")?),
            RawCondition::Or(items) => Condition::Or(list(self, items, "or")?),
            RawCondition::Not(inner) => Condition::Not(Box::new(self.condition(
                inner,
                default,
                &format!("{key}.not"),
                parse_driver,
            )?)),
            RawCondition::PathPrefix(p) => Condition::PathPrefix(p.clone()),
            RawCondition::PathMatches { prefix, driver } => {
                let server = match driver {
                    Some(d) => {
                        let parsed = parse_driver(d, &format!("{key}.path_matches.driver"))?;
                        self.server(&parsed.read)
                    }
                    None => self.server(&default.read),
                };
                Condition::PathMatches {
                    prefix: prefix.clone(),
                    server,
                }
            }
            RawCondition::IncludedInSegment {
                cookie,
                max_segment_id,
            } => Condition::InSegment {
                cookie: cookie.clone(),
                max_segment_id: *max_segment_id,
            },
        })
    }
}
