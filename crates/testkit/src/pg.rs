//! A PostgreSQL database per test, on the server at `BELOFTE_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, trust authentication): created with a
//! name no other test uses, dropped when the handle goes — also when the test panics, as
//! far as `Drop` runs (a SIGKILLed test binary leaves its databases behind, named
//! `belofte_test_…`).
//!
//! ```ignore
//! let db = testkit::pg::TestDb::create().await;
//! let store = Store::open(&db.url).await?;
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor, PgConnection};

/// The variable that points the tests at another PostgreSQL server (any database on it:
/// the test databases are created beside it).
pub const SERVER_VAR: &str = "BELOFTE_TEST_PG";

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A database that exists for as long as this handle does.
pub struct TestDb {
    /// `postgres://…/belofte_test_…`: give it to `database.url`.
    pub url: String,
    name: String,
    server: String,
}

impl TestDb {
    /// Creates the database; panics (failing the test) when the server cannot be reached.
    pub async fn create() -> TestDb {
        TestDb::try_create().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates the database, or says why it could not (`belofte bench` measures PostgreSQL
    /// only where a server answers, and reports the rest as not measured).
    pub async fn try_create() -> Result<TestDb, String> {
        let server = std::env::var(SERVER_VAR).unwrap_or_else(|_| DEFAULT_SERVER.to_string());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "belofte_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = PgConnection::connect(&server)
            .await
            .map_err(|e| format!("PostgreSQL ({SERVER_VAR} or {DEFAULT_SERVER}): {e}"))?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        let _ = conn.close().await;
        Ok(TestDb { url: with_database(&server, &name), name, server })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run on the test's runtime, which cannot block on a future: a thread with
        // a runtime of its own. FORCE ends the connections a store still has open.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&server).await.map_err(|e| e.to_string())?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("testkit: could not drop test database {}: {e}", self.name);
        }
    }
}

/// `server` with its database (the URL's path) replaced by `name`, its query kept.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

#[cfg(test)]
#[test]
fn the_database_of_a_server_url_is_replaced() {
    assert_eq!(with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"), "postgres://postgres@127.0.0.1:5432/t1");
    assert_eq!(with_database("postgres://u:p@db:5432", "t1"), "postgres://u:p@db:5432/t1");
    assert_eq!(with_database("postgresql://db/x?sslmode=disable", "t1"), "postgresql://db/t1?sslmode=disable");
}
