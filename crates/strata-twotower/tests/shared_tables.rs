//! Shared embedding tables and pooled bags: a user tower that sees only the accounts a user
//! follows (a bag over four columns, in the item tower's `author_id` space) recalls new posts
//! of those accounts; the pool ignores order and missing values; the shared table is saved
//! once and the model round-trips; bad declarations are refused offline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::FollowWorld;
use strata_twotower::*;

const AUTHORS: usize = 120;
const USERS: usize = 300;
const SLOTS: usize = 4;

fn user_spec(share: bool) -> TowerSpec {
    TowerSpec {
        numeric: vec![],
        categorical: (1..=SLOTS)
            .map(|k| {
                let mut c = Categorical::new(format!("followed_{k}"), 256, 8);
                c.pool = Some("followed".into());
                if share {
                    c.share = Some("author_id".into());
                }
                c
            })
            .collect(),
    }
}

fn item_spec() -> TowerSpec {
    TowerSpec {
        numeric: vec![],
        categorical: vec![
            Categorical::new("post_id", 8192, 8),
            Categorical::new("author_id", 256, 8),
        ],
    }
}

/// Users follow 1–4 authors (slots past the follows are 0, missing) and click posts of the
/// authors they follow.
fn follow_world(seed: u64) -> FollowWorld {
    FollowWorld::new(AUTHORS, USERS, SLOTS, 1, seed)
}

/// `per_user` clicks per user on the new posts `first..first + posts` by followed authors.
fn clicks(world: &FollowWorld, first: u64, posts: u64, per_user: usize, seed: u64) -> Batch {
    world.clicks(
        &user_spec(true),
        &item_spec(),
        (first, posts),
        per_user,
        seed,
    )
}

fn config(share: bool) -> TrainConfig {
    let mut cfg = TrainConfig::new(user_spec(share), item_spec());
    cfg.hidden = vec![32];
    cfg.dim = 16;
    cfg.epochs = 4;
    cfg.batch_size = 128;
    cfg.learning_rate = 0.01;
    cfg.temperature = 0.1;
    cfg.seed = 5;
    cfg
}

#[test]
fn a_shared_pooled_bag_of_followed_authors_recalls_their_new_posts() {
    let world = follow_world(11);
    // Training: posts 0..2400; validation: 2400 new posts the post_id table never saw.
    let train_batch = clicks(&world, 0, 2400, 12, 1);
    let valid_batch = clicks(&world, 2400, 2400, 3, 2);
    let mut train_src = InMemory::shuffled(train_batch, 3).unwrap();
    let mut valid_src = InMemory::new(valid_batch).unwrap();
    let items = world.catalogue(&item_spec(), 2400, 2400);
    let (model, report) = train(
        &config(true),
        &mut train_src,
        Some(&mut valid_src),
        Some(&items),
        |_| {},
    )
    .unwrap();
    let valid = report.valid.unwrap();
    // 20 posts per author in the catalogue, 1–4 followed: a perfect list holds them all in
    // its 100; random would get about 100 / 2400.
    assert!(
        valid.recall_at_100 > 0.6,
        "recall@100 {} (popularity {:?})",
        valid.recall_at_100,
        report.popularity
    );

    // The pool: order and gaps do not matter; all missing is allowed.
    let a = model.user_vector(&[], &[7, 30, 0, 0]).unwrap();
    let b = model.user_vector(&[], &[0, 30, 0, 7]).unwrap();
    assert_eq!(a, b);
    let c = model.user_vector(&[], &[7, 0, 0, 0]).unwrap();
    assert_ne!(a, c);
    let none = model.user_vector(&[], &[0, 0, 0, 0]).unwrap();
    assert_eq!(none.len(), 16);

    // The shared table is saved once (with the user tower's copy) and round-trips.
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = TwoTower::load(dir.path()).unwrap();
    assert_eq!(loaded, model);
    assert_eq!(loaded.user_vector(&[], &[7, 30, 0, 0]).unwrap(), a);
    let tensors =
        candle_core::safetensors::load(dir.path().join(WEIGHTS_FILE), &candle_core::Device::Cpu)
            .unwrap();
    let user_tables: Vec<_> = tensors
        .keys()
        .filter(|k| k.starts_with("user.emb."))
        .collect();
    assert_eq!(
        user_tables,
        vec!["user.emb.0"],
        "one copy for the four slots"
    );
}

#[test]
fn training_with_a_shared_table_is_deterministic() {
    let world = follow_world(4);
    let run = || {
        let mut src = InMemory::shuffled(clicks(&world, 0, 1200, 4, 1), 3).unwrap();
        let items = world.catalogue(&item_spec(), 0, 1200);
        let mut cfg = config(true);
        cfg.epochs = 1;
        train(&cfg, &mut src, None, Some(&items), |_| {}).unwrap().0
    };
    assert_eq!(run(), run());
}

#[test]
fn sharing_and_pooling_mistakes_are_refused_offline() {
    let problems = |cfg: TrainConfig| match cfg.validate() {
        Err(Error::Config(p)) => p.join("; "),
        other => panic!("expected a config error, got {other:?}"),
    };
    // A table the item tower does not have.
    let mut cfg = config(true);
    cfg.user.categorical[0].share = Some("writer_id".into());
    assert!(problems(cfg).contains("not an item categorical"));
    // Another shape than the item's.
    let mut cfg = config(true);
    cfg.user.categorical[1].buckets = 100;
    assert!(problems(cfg).contains("buckets 100"));
    // Sharing from the item side.
    let mut cfg = config(true);
    cfg.item.categorical[0].share = Some("author_id".into());
    assert!(problems(cfg).contains("only user features can share"));
    // A pool split by another feature.
    let mut cfg = config(false);
    cfg.user
        .categorical
        .insert(2, Categorical::new("country", 8, 8));
    assert!(problems(cfg).contains("must be neighbours"));
    // A pool of mixed widths.
    let mut cfg = config(false);
    cfg.user.categorical[3].dim = 4;
    assert!(problems(cfg).contains("mixes widths"));
    // Well formed: the four slots are one input of 8.
    let cfg = config(true);
    cfg.validate().unwrap();
    assert_eq!(cfg.user.input_width(), 8);
}
