//! Opening a store from a URI: `sqlite://PATH` (the default, `./cloudai.db`) or
//! `mongodb://…` / `mongodb+srv://…`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{QueueError, Result};
use crate::store::{QueueStore, StoreOptions};

/// The store URI used when none is given: a SQLite file in the working directory.
pub const DEFAULT_STORE_URI: &str = "sqlite://cloudai.db";

/// Which backend a URI names, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A MongoDB connection string, passed to the driver as is.
    Mongo(String),
}

/// Parses a store URI. `sqlite://cloudai.db` is relative to the working directory,
/// `sqlite:///abs/path.db` absolute.
pub fn parse_store_uri(uri: &str) -> Result<StoreLocation> {
    let err = |reason: &str| QueueError::InvalidStoreUri {
        uri: redact_store_uri(uri),
        reason: reason.to_string(),
    };
    if let Some(path) = uri.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(err("no file path after sqlite://"));
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(path)))
    } else if uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://") {
        Ok(StoreLocation::Mongo(uri.to_string()))
    } else {
        Err(err(
            "expected sqlite://PATH, sqlite:///ABSOLUTE/PATH, mongodb://HOST[:PORT]/DB or mongodb+srv://…",
        ))
    }
}

/// The URI with any password replaced by `***`, for logs and error messages.
pub fn redact_store_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://").map(|i| i + 3) else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{}{masked}{}", &uri[..scheme_end], &rest[at..])
        }
        None => uri.to_string(),
    }
}

/// Opens (creating if needed) the store a URI names.
pub async fn open_store(uri: &str, opts: StoreOptions) -> Result<Arc<dyn QueueStore>> {
    match parse_store_uri(uri)? {
        StoreLocation::Sqlite(path) => Ok(Arc::new(
            crate::sqlite::SqliteStore::open(&path, opts).await?,
        )),
        StoreLocation::Mongo(uri) => Ok(Arc::new(
            crate::mongo::MongoStore::connect(&uri, opts).await?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_schemes() {
        assert_eq!(
            parse_store_uri("sqlite://cloudai.db").unwrap(),
            StoreLocation::Sqlite("cloudai.db".into())
        );
        assert_eq!(
            parse_store_uri("sqlite:///var/lib/cloudai.db").unwrap(),
            StoreLocation::Sqlite("/var/lib/cloudai.db".into())
        );
        assert_eq!(
            parse_store_uri("mongodb://h:27017/x").unwrap(),
            StoreLocation::Mongo("mongodb://h:27017/x".into())
        );
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_store_uri("mongodb://app:s3cret@db1:27017,db2/cloudai?replicaSet=rs0"),
            "mongodb://app:***@db1:27017,db2/cloudai?replicaSet=rs0"
        );
        assert_eq!(
            redact_store_uri("mongodb://db1:27017/cloudai"),
            "mongodb://db1:27017/cloudai"
        );
        assert_eq!(redact_store_uri("sqlite://a@b.db"), "sqlite://a@b.db");
        assert!(!format!("{}", parse_store_uri("postgres://u:pw@h/x").unwrap_err()).contains("pw"));
    }

    #[test]
    fn rejects_unknown_schemes() {
        for bad in ["", "sqlite://", "postgres://x", "cloudai.db"] {
            assert!(matches!(
                parse_store_uri(bad),
                Err(QueueError::InvalidStoreUri { .. })
            ));
        }
    }
}
