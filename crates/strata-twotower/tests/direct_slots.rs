//! Direct slots (ADR 0058): a user's bag of followed authors and a post's author, in one
//! shared table, appended to the towers' outputs instead of feeding the MLPs, so the score
//! holds their plain dot product. The bag recalls new posts of followed authors, a missing
//! (pooled) author gives a zero direct part, both serving paths agree, the model round-trips
//! and mistakes are refused offline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::FollowWorld;
use strata_twotower::*;

const AUTHORS: usize = 400;
const USERS: usize = 600;
const SLOTS: usize = 6;
const DIRECT: usize = 32;

/// One numeric (activity, no signal) for the MLP, and the followed bag (direct, shared).
fn user_spec(direct: bool) -> TowerSpec {
    TowerSpec {
        numeric: vec!["activity".into()],
        categorical: (1..=SLOTS)
            .map(|k| {
                let mut c = Categorical::new(format!("followed_{k}"), 1024, DIRECT);
                c.pool = Some("followed".into());
                c.share = Some("author_id".into());
                c.direct = direct;
                c
            })
            .collect(),
    }
}

/// The post id for the MLP, and the author as a pool of one (0: missing, zeros) in the
/// direct part.
fn item_spec(direct: bool) -> TowerSpec {
    let mut author = Categorical::new("author_id", 1024, DIRECT);
    author.pool = Some("author".into());
    author.direct = direct;
    TowerSpec {
        numeric: vec![],
        categorical: vec![Categorical::new("post_id", 16384, 8), author],
    }
}

/// Users follow 2–6 of the authors and click posts of the authors they follow.
fn follows(seed: u64) -> FollowWorld {
    FollowWorld::new(AUTHORS, USERS, SLOTS, 2, seed)
}

/// `per_user` clicks per user on posts `first..first + posts` of the authors they follow.
fn clicks(world: &FollowWorld, first: u64, posts: u64, per_user: usize, seed: u64) -> Batch {
    world.clicks(
        &user_spec(true),
        &item_spec(true),
        (first, posts),
        per_user,
        seed,
    )
}

fn catalogue(world: &FollowWorld, first: u64, posts: u64) -> ItemTable {
    world.catalogue(&item_spec(true), first, posts)
}

fn config(direct: bool) -> TrainConfig {
    let mut cfg = TrainConfig::new(user_spec(direct), item_spec(direct));
    cfg.hidden = vec![32];
    cfg.dim = 8;
    cfg.epochs = 3;
    cfg.batch_size = 128;
    cfg.learning_rate = 0.01;
    cfg.temperature = 0.1;
    cfg.seed = 9;
    cfg
}

#[test]
fn a_direct_bag_of_followed_authors_recalls_their_new_posts() {
    let world = follows(21);
    // Training on posts 0..8000; validation on 8000 new posts the post_id table never saw.
    let mut train_src = InMemory::shuffled(clicks(&world, 0, 8000, 10, 1), 3).unwrap();
    let mut valid_src = InMemory::new(clicks(&world, 8000, 8000, 2, 2)).unwrap();
    let items = catalogue(&world, 8000, 8000);
    let (model, report) = train(
        &config(true),
        &mut train_src,
        Some(&mut valid_src),
        Some(&items),
        |_| {},
    )
    .unwrap();
    let valid = report.valid.unwrap();
    // 20 posts per author in the catalogue, 2–6 followed (40–120 posts): a perfect list
    // holds most of them in its 100; random gets 100 / 8000.
    assert!(
        valid.recall_at_100 > 0.5,
        "recall@100 {} (popularity {:?})",
        valid.recall_at_100,
        report.popularity
    );
    assert_eq!(model.dim(), 8 + DIRECT);

    // The plain-Rust user tower and the batch path agree.
    let activity = [0.3f32];
    let cats = [7, 30, 99, 0, 0, 0];
    let one = model.user_vector(&activity, &cats).unwrap();
    let mut cols = Columns::for_spec(model.user_spec());
    cols.numeric[0].push(0.3);
    for (c, v) in cats.iter().enumerate() {
        cols.categorical[c].push(*v);
    }
    let batch = model.user_vectors(&cols).unwrap();
    assert_eq!(one.len(), batch.len());
    for (a, b) in one.iter().zip(&batch) {
        assert!((a - b).abs() < 1e-5, "{one:?} vs {batch:?}");
    }
    // A post without an author (missing in its pool of one) has a zero direct part.
    let mut posts = Columns::for_spec(model.item_spec());
    posts.categorical[0].extend([8001, 8001]);
    posts.categorical[1].extend([0, world.author_of(8001)]);
    let v = model.item_vectors(&posts).unwrap();
    let dim = model.dim();
    assert!(v[8..dim].iter().all(|&x| x == 0.0));
    assert!(v[dim + 8..2 * dim].iter().any(|&x| x != 0.0));

    // Round trip; the flag is in the saved spec.
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = TwoTower::load(dir.path()).unwrap();
    assert_eq!(loaded, model);
    assert_eq!(loaded.user_vector(&activity, &cats).unwrap(), one);
    let spec = std::fs::read_to_string(dir.path().join(SPEC_FILE)).unwrap();
    assert!(spec.contains("\"direct\": true"));
}

#[test]
fn a_model_without_direct_slots_saves_no_direct_flag() {
    let world = follows(3);
    let mut src = InMemory::shuffled(clicks(&world, 0, 800, 1, 1), 3).unwrap();
    let mut cfg = config(false);
    cfg.epochs = 1;
    let (model, _) = train(
        &cfg,
        &mut src,
        None,
        Some(&catalogue(&world, 0, 800)),
        |_| {},
    )
    .unwrap();
    assert_eq!(model.dim(), 8);
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let spec = std::fs::read_to_string(dir.path().join(SPEC_FILE)).unwrap();
    // Files of models that do not use the flag read as before (older builds too).
    assert!(!spec.contains("direct"));
}

#[test]
fn training_with_direct_slots_is_deterministic() {
    let world = follows(4);
    let run = || {
        let mut src = InMemory::shuffled(clicks(&world, 0, 1200, 2, 1), 3).unwrap();
        let mut cfg = config(true);
        cfg.epochs = 1;
        train(
            &cfg,
            &mut src,
            None,
            Some(&catalogue(&world, 0, 1200)),
            |_| {},
        )
        .unwrap()
        .0
    };
    assert_eq!(run(), run());
}

#[test]
fn direct_slot_mistakes_are_refused_offline() {
    let problems = |cfg: TrainConfig| match cfg.validate() {
        Err(Error::Config(p)) => p.join("; "),
        other => panic!("expected a config error, got {other:?}"),
    };
    // Only one tower has a direct slot.
    let mut cfg = config(true);
    cfg.item.categorical[1].direct = false;
    assert!(problems(cfg).contains("same widths in the same order"));
    // A pool with direct and MLP members.
    let mut cfg = config(true);
    cfg.user.categorical[2].direct = false;
    assert!(problems(cfg).contains("mixes direct and MLP members"));
    // A tower whose every input is direct.
    let mut cfg = config(true);
    cfg.user.numeric.clear();
    assert!(problems(cfg).contains("every input is direct"));
    // Well formed: the MLP sees the numeric only; the bag is the direct part.
    let cfg = config(true);
    cfg.validate().unwrap();
    assert_eq!(cfg.user.input_width(), 1);
    assert_eq!(cfg.user.direct_width(), DIRECT);
    assert_eq!(cfg.item.input_width(), 8);
}
