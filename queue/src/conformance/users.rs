//! Cases about API users and the worker join token (auth): unique names and token hashes,
//! lookups by hash, rotation, removal, the set-once join token, durability.

use super::{now, passed, Harness};
use crate::error::QueueError;
use crate::store::StoreOptions;
use crate::users::{Role, UserRecord};

fn user(name: &str, role: Role, hash: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        role,
        token_hash: format!("hmac-sha256:{hash}"),
        created_at: now(),
        quota: None,
    }
}

/// Users round-trip, are found by name and by token hash, and keep names and hashes
/// unique; rotation replaces the hash; removal forgets the user; a reopened store sees
/// all of it.
pub async fn users_add_find_rotate_remove(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    assert!(store.list_users().await.unwrap().is_empty());
    assert_eq!(store.get_user("alice").await.unwrap(), None);

    let bob = user("bob", Role::Viewer, "bbbbbbbbbbbbbbbb");
    let alice = user("alice", Role::Submitter, "aaaaaaaaaaaaaaaa");
    store.add_user(&bob).await.unwrap();
    store.add_user(&alice).await.unwrap();
    assert_eq!(store.get_user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(
        store
            .user_by_token_hash(&bob.token_hash)
            .await
            .unwrap()
            .map(|u| u.name),
        Some("bob".into())
    );
    assert_eq!(
        store
            .user_by_token_hash("hmac-sha256:nobody-has-this")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.list_users().await.unwrap(),
        vec![alice.clone(), bob.clone()],
        "users are listed by name"
    );

    let same_name = user("alice", Role::Admin, "cccccccccccccccc");
    assert!(matches!(
        store.add_user(&same_name).await,
        Err(QueueError::UserExists(ref n)) if n == "alice"
    ));
    let same_hash = user("carol", Role::Admin, "aaaaaaaaaaaaaaaa");
    assert!(matches!(
        store.add_user(&same_hash).await,
        Err(QueueError::Invalid { .. })
    ));
    let bad_name = user("no spaces", Role::Admin, "dddddddddddddddd");
    assert!(matches!(
        store.add_user(&bad_name).await,
        Err(QueueError::Invalid { .. })
    ));
    assert_eq!(
        store.list_users().await.unwrap().len(),
        2,
        "failed adds change nothing"
    );
    assert_eq!(store.get_user("alice").await.unwrap(), Some(alice.clone()));

    let rotated = "hmac-sha256:eeeeeeeeeeeeeeee";
    assert!(store.set_user_token_hash("alice", rotated).await.unwrap());
    assert_eq!(
        store.user_by_token_hash(&alice.token_hash).await.unwrap(),
        None
    );
    let found = store.user_by_token_hash(rotated).await.unwrap().unwrap();
    assert_eq!(
        (found.name.as_str(), found.role),
        ("alice", Role::Submitter)
    );
    assert!(!store.set_user_token_hash("nobody", rotated).await.unwrap());
    assert!(matches!(
        store.set_user_token_hash("bob", rotated).await,
        Err(QueueError::Invalid { .. })
    ));

    assert!(store.remove_user("bob").await.unwrap());
    assert!(!store.remove_user("bob").await.unwrap());
    assert_eq!(
        store.user_by_token_hash(&bob.token_hash).await.unwrap(),
        None
    );
    drop(store);

    let store = h.open(StoreOptions::default()).await;
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name, "alice");
    assert_eq!(users[0].token_hash, rotated);
    passed(store.as_ref(), "users_add_find_rotate_remove");
}

/// A quota is stored with the user (added with one or set later), survives a token
/// rotation and a reopen, and can be removed; an unknown user's quota is not set.
pub async fn user_quotas_round_trip(h: &dyn Harness) {
    use crate::quota::Quota;
    let store = h.open(StoreOptions::default()).await;
    let quota = Quota {
        cpu_millis: Some(16_000),
        memory_bytes: Some(64 << 30),
        gpus: Some(2),
        running: Some(100),
    };
    let ci = UserRecord {
        quota: Some(quota),
        ..user("ci", Role::Submitter, "qqqqqqqqqqqqqqqq")
    };
    store.add_user(&ci).await.unwrap();
    store
        .add_user(&user("dev", Role::Submitter, "rrrrrrrrrrrrrrrr"))
        .await
        .unwrap();
    assert_eq!(
        store.get_user("ci").await.unwrap().unwrap().quota,
        Some(quota)
    );
    assert_eq!(store.get_user("dev").await.unwrap().unwrap().quota, None);

    let running_only = Quota {
        running: Some(3),
        ..Quota::default()
    };
    assert!(store
        .set_user_quota("dev", Some(running_only))
        .await
        .unwrap());
    assert!(!store.set_user_quota("nobody", Some(quota)).await.unwrap());
    assert!(store
        .set_user_token_hash("ci", "hmac-sha256:ssssssssssssssss")
        .await
        .unwrap());
    drop(store);

    let store = h.open(StoreOptions::default()).await;
    let by_name: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.name, u.quota))
        .collect();
    assert_eq!(
        by_name,
        vec![
            ("ci".into(), Some(quota)),
            ("dev".into(), Some(running_only))
        ],
        "quotas survive a rotation and a reopen"
    );
    assert!(store.set_user_quota("ci", None).await.unwrap());
    assert_eq!(store.get_user("ci").await.unwrap().unwrap().quota, None);
    passed(store.as_ref(), "user_quotas_round_trip");
}

/// The join token hash is absent at first, set once by `only_if_absent` (a second such
/// call keeps the first), replaced by rotation, and durable.
pub async fn join_token_set_once_then_rotate(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    assert_eq!(store.join_token_hash().await.unwrap(), None);
    let first = "hmac-sha256:1111111111111111";
    let second = "hmac-sha256:2222222222222222";
    assert!(store.set_join_token_hash(first, true).await.unwrap());
    assert!(!store.set_join_token_hash(second, true).await.unwrap());
    assert_eq!(
        store.join_token_hash().await.unwrap().as_deref(),
        Some(first)
    );
    assert_eq!(store.previous_join_token().await.unwrap(), None);
    // A rotation with a grace keeps the replaced hash, with the end of its grace (to the
    // millisecond, as stores keep times).
    let until =
        chrono::DateTime::from_timestamp_millis(now().timestamp_millis() + 600_000).unwrap();
    store.set_previous_join_token(first, until).await.unwrap();
    assert!(store.set_join_token_hash(second, false).await.unwrap());
    assert_eq!(
        store.join_token_hash().await.unwrap().as_deref(),
        Some(second)
    );
    assert_eq!(
        store.previous_join_token().await.unwrap(),
        Some((first.to_string(), until))
    );
    assert!(matches!(
        store.set_join_token_hash("", false).await,
        Err(QueueError::Invalid { .. })
    ));
    drop(store);
    let store = h.open(StoreOptions::default()).await;
    assert_eq!(
        store.join_token_hash().await.unwrap().as_deref(),
        Some(second)
    );
    assert_eq!(
        store.previous_join_token().await.unwrap(),
        Some((first.to_string(), until)),
        "the grace survives a reopen"
    );
    passed(store.as_ref(), "join_token_set_once_then_rotate");
}

/// Many masters starting at once: exactly one `only_if_absent` write wins, and the stored
/// hash is the winner's.
pub async fn join_token_concurrent_creation_has_one_winner(h: &dyn Harness) {
    let store = h.open(StoreOptions::default()).await;
    let tries = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let hash = format!("hmac-sha256:{i:016}");
            let won = store.set_join_token_hash(&hash, true).await.unwrap();
            (won, hash)
        })
    });
    let results = futures::future::join_all(tries).await;
    let winners: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap())
        .filter(|(won, _)| *won)
        .map(|(_, h)| h)
        .collect();
    assert_eq!(winners.len(), 1, "one creator wins: {winners:?}");
    assert_eq!(
        store.join_token_hash().await.unwrap(),
        Some(winners[0].clone())
    );
    passed(
        store.as_ref(),
        "join_token_concurrent_creation_has_one_winner",
    );
}
