//! The store's two backends, for the tests that must hold on both: a SQLite file in a
//! temporary folder, or a PostgreSQL database of its own (`testkit::pg::TestDb`), both gone
//! when the test ends.
#![allow(dead_code)]

use belofte::store::Store;

pub struct Db {
    /// For `database.url`.
    pub url: String,
    _kept: Kept,
}

enum Kept {
    Dir(testkit::TempDir),
    Pg(testkit::pg::TestDb),
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = testkit::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("belofte.db").display());
        Db { url, _kept: Kept::Dir(dir) }
    }

    pub async fn postgres() -> Db {
        let db = testkit::pg::TestDb::create().await;
        Db { url: db.url.clone(), _kept: Kept::Pg(db) }
    }

    /// The store, as the daemon opens it.
    pub async fn open(&self) -> Store {
        Store::open(&self.url).await.expect("store opens")
    }

    /// Another handle on the same database, without SQLite's single-instance lock (as
    /// `belofte bounce` opens it): a second instance beside the first.
    pub async fn open_beside(&self) -> Store {
        Store::open_beside_daemon(&self.url).await.expect("store opens")
    }
}

/// Each named `async fn NAME(db: &Db)` of the test file as two tests, `on_sqlite::NAME`
/// and `on_postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::backends::Db::sqlite().await).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::backends::Db::postgres().await).await
                }
            )*
        }
    };
}
