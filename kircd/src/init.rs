//! `kircd init`: creates the identity and records the profile.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::identity::Identity;
use crate::{postgres, store};

/// How long init waits for PostgreSQL before leaving the profile to the
/// daemon's first start.
const DATABASE_WAIT: Duration = Duration::from_secs(5);

pub async fn run(config: &Config, force: bool) -> ExitCode {
    let path = &config.identity_file;
    let identity = Identity::generate();
    if let Err(err) = identity.save(path, force) {
        eprintln!("kircd: {err}");
        return ExitCode::FAILURE;
    }
    println!("created the identity {}", path.display());
    println!("actor id:    {}", identity.id());
    println!("fingerprint: {}", identity.id().fingerprint());

    let recorded = async {
        let options = postgres::connect_options(&config.postgres).map_err(|err| err.to_string())?;
        let pool = postgres::pool(options, 1, DATABASE_WAIT);
        let result = async {
            postgres::MIGRATOR
                .run(&pool)
                .await
                .map_err(|err| err.to_string())?;
            store::ensure_profile(&pool, &identity, &config.actor_name)
                .await
                .map_err(|err| err.to_string())
        }
        .await;
        pool.close().await;
        result
    };
    match tokio::time::timeout(DATABASE_WAIT * 2, recorded).await {
        Ok(Ok(())) => println!(
            "profile:     {} in {}",
            config.actor_name, config.postgres.endpoint
        ),
        Ok(Err(err)) => println!(
            "profile:     not recorded yet ({err}); kircd records it when it first reaches {}",
            config.postgres.endpoint
        ),
        Err(_) => println!(
            "profile:     not recorded yet (no answer from {}); kircd records it when it first reaches it",
            config.postgres.endpoint
        ),
    }
    ExitCode::SUCCESS
}
