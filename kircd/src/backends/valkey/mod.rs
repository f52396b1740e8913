//! The actor's own Valkey: an auto-reconnecting connection manager and the
//! health probe. The live layer (`live/`) keeps presence, typing, rate
//! buckets and sessions in it; the daemon keeps working while it is away.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo};
use secrecy::ExposeSecret;

use crate::backends::supervise::Probe;
use crate::config::ValkeyConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Valkey(#[from] redis::RedisError),
}

impl Error {
    /// What the user can do about it, for `kircd doctor`.
    pub fn fix(&self) -> &'static str {
        let Error::Valkey(err) = self;
        if err.kind() == redis::ErrorKind::AuthenticationFailed
            || err.to_string().contains("NOAUTH")
        {
            "check the password (valkey.password_file or KIRC_VALKEY_PASSWORD) and the user in valkey.url"
        } else {
            "check valkey.url and that the server is running (local stack: dev/stack up valkey)"
        }
    }
}

/// A client for `config` (the password from its own setting if given).
pub fn client(config: &ValkeyConfig) -> Result<Client, Error> {
    let mut info = config.url.expose_secret().into_connection_info()?;
    if let Some(password) = &config.password {
        let settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose_secret());
        info = info.set_redis_settings(settings);
    }
    Ok(Client::open(info)?)
}

/// A connection manager that connects on first use and reconnects by itself.
pub fn connect(config: &ValkeyConfig, timeout: Duration) -> Result<ConnectionManager, Error> {
    let client = client(config)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    Ok(ConnectionManager::new_lazy_with_config(
        client,
        manager_config,
    )?)
}

/// What a check of the server found.
#[derive(Debug, Clone)]
pub struct ServerReport {
    pub version: String,
    /// The `notify-keyspace-events` setting, if the server lets us read it.
    pub keyspace_events: Option<String>,
}

/// Pings the server and reads its version.
pub async fn inspect(connection: &mut ConnectionManager) -> Result<ServerReport, Error> {
    let info: redis::InfoDict = redis::cmd("INFO")
        .arg("server")
        .query_async(connection)
        .await?;
    let version = info
        .get::<String>("valkey_version")
        .or_else(|| info.get::<String>("redis_version"))
        .unwrap_or_default();
    // Managed services may refuse CONFIG; that is not a failure.
    let keyspace_events = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async::<Vec<String>>(connection)
        .await
        .ok()
        .and_then(|pair| pair.into_iter().nth(1));
    Ok(ServerReport {
        version,
        keyspace_events,
    })
}

#[derive(Clone)]
pub struct ValkeyProbe {
    connection: ConnectionManager,
}

impl std::fmt::Debug for ValkeyProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValkeyProbe").finish_non_exhaustive()
    }
}

impl ValkeyProbe {
    pub fn new(connection: ConnectionManager) -> Self {
        ValkeyProbe { connection }
    }
}

impl Probe for ValkeyProbe {
    async fn probe(&mut self) -> Result<(), String> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.connection)
            .await
            .map(drop)
            .map_err(|err| Error::from(err).to_string())
    }
}
