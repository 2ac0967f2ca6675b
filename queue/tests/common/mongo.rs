//! The MongoDB test harness shared by the Mongo test files: one fresh database per
//! harness on the server `CLOUDAI_TEST_MONGODB_URI` names, dropped with the harness.

use std::sync::Arc;

use cloudai_queue::conformance::Harness;
use cloudai_queue::mongo::MongoStore;
use cloudai_queue::{QueueStore, StoreOptions};

const URI_VAR: &str = "CLOUDAI_TEST_MONGODB_URI";

/// `uri` with its database path replaced by `db` (options kept).
pub fn with_database(uri: &str, db: &str) -> String {
    let (scheme, rest) = uri.split_once("://").expect("uri has a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, tail) = rest.split_at(end);
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{hosts}/{db}{query}")
}

/// Says once per test binary whether the suite runs (and against which server) or skips.
/// Written straight to stderr, past the test harness's output capture, so it shows in CI.
fn announce(uri: Option<&str>) {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let line = match uri {
            Some(uri) => format!(
                "mongodb suite: running against {} over the wire protocol\n",
                redact(uri)
            ),
            None => format!(
                "skipped: mongodb suite: {URI_VAR} is not set (start a server with .ci/secantus.sh)\n"
            ),
        };
        let _ = std::io::stderr().write_all(line.as_bytes());
    });
}

/// `uri` without its credentials, for output.
pub fn redact(uri: &str) -> String {
    match (uri.split_once("://"), uri.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &uri[at..]),
        _ => uri.to_string(),
    }
}

/// One fresh database on the test server.
pub struct MongoHarness {
    pub uri: String,
    pub db: String,
}

impl MongoHarness {
    pub fn from_env() -> Option<Self> {
        let base = std::env::var(URI_VAR).ok();
        announce(base.as_deref());
        let base = base?;
        let db = format!("cloudai_test_{}", uuid::Uuid::new_v4().simple());
        Some(MongoHarness {
            uri: with_database(&base, &db),
            db,
        })
    }

    pub async fn connect(&self, opts: StoreOptions) -> MongoStore {
        MongoStore::connect(&self.uri, opts)
            .await
            .expect("connect to the test mongodb server")
    }
}

#[async_trait::async_trait]
impl Harness for MongoHarness {
    async fn open(&self, opts: StoreOptions) -> Arc<dyn QueueStore> {
        Arc::new(self.connect(opts).await)
    }
}

impl Drop for MongoHarness {
    fn drop(&mut self) {
        // Drop the test database on a thread of its own: Drop cannot await.
        let (uri, db) = (self.uri.clone(), self.db.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = mongodb::Client::with_uri_str(&uri).await.ok()?;
                client.database(&db).drop().await.ok()
            })
        })
        .join();
    }
}
