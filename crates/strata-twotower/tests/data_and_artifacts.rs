//! The example sources, configuration validation, and artifact errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::World;
use strata_twotower::*;

/// One example as (user, item, weight, numerics, categoricals).
type Row = (u64, u64, f32, Vec<f32>, Vec<u64>);

fn drain(source: &mut dyn ExampleSource, max_rows: usize) -> Vec<Row> {
    source.reset().unwrap();
    let mut rows = Vec::new();
    while let Some(b) = source.next_batch(max_rows).unwrap() {
        assert!(b.rows() >= 1 && b.rows() <= max_rows);
        for r in 0..b.rows() {
            rows.push((
                b.user_id[r],
                b.item_id[r],
                b.weight.as_ref().map_or(1.0, |w| w[r]),
                b.user
                    .numeric
                    .iter()
                    .chain(&b.item.numeric)
                    .map(|c| c[r])
                    .collect(),
                b.user
                    .categorical
                    .iter()
                    .chain(&b.item.categorical)
                    .map(|c| c[r])
                    .collect(),
            ));
        }
    }
    rows
}

fn key(rows: &[Row]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(format!("{r:?}")).or_insert(0) += 1;
    }
    m
}

#[test]
fn spill_file_returns_every_row_once_per_pass_in_a_seeded_order() {
    let world = World::new(4, 50, 30, 1);
    let mut batch = world.examples(7, 2); // 210 rows
    batch.weight = Some((0..batch.rows()).map(|i| (i % 3) as f32).collect());
    batch.user.numeric[0][5] = f32::NAN;
    let make = |seed| {
        let mut w = SpillWriter::new(&world.user_spec(), &world.item_spec(), None).unwrap();
        // Written in two pushes.
        let mut first = InMemory::new(batch.clone()).unwrap();
        first.reset().unwrap();
        w.push(&first.next_batch(100).unwrap().unwrap()).unwrap();
        w.push(&first.next_batch(1000).unwrap().unwrap()).unwrap();
        assert_eq!(w.rows(), 210);
        w.finish(seed).unwrap().with_buffer(16, 48)
    };
    let mut spill = make(4);
    assert_eq!(spill.rows(), 210);
    let expected = drain(&mut InMemory::new(batch.clone()).unwrap(), 1000);
    let pass1 = drain(&mut spill, 32);
    let pass2 = drain(&mut spill, 32);
    // NaN != NaN, so compare through Debug strings.
    assert_eq!(key(&pass1), key(&expected));
    assert_eq!(key(&pass2), key(&expected));
    assert_ne!(
        format!("{pass1:?}"),
        format!("{pass2:?}"),
        "two passes, one order"
    );
    assert_ne!(
        format!("{pass1:?}"),
        format!("{expected:?}"),
        "not shuffled"
    );
    // The same seed replays the same passes.
    let mut again = make(4);
    assert_eq!(format!("{:?}", drain(&mut again, 32)), format!("{pass1:?}"));
    assert_eq!(format!("{:?}", drain(&mut again, 32)), format!("{pass2:?}"));
}

#[test]
fn spill_writer_refuses_a_batch_that_does_not_match_the_specs() {
    let world = World::new(4, 50, 3, 1);
    let mut w = SpillWriter::new(&world.user_spec(), &world.item_spec(), None).unwrap();
    let mut batch = world.examples(2, 2);
    batch.item.categorical[1].pop();
    let err = w.push(&batch).unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err}");
    assert!(err.to_string().contains("author_id"), "{err}");
    let mut batch = world.examples(2, 2);
    batch.user.numeric.pop();
    assert!(matches!(w.push(&batch), Err(Error::Input(_))));
    assert_eq!(w.rows(), 0, "nothing of a bad batch is written");
}

#[test]
fn a_ragged_batch_is_refused_up_front() {
    let world = World::new(4, 50, 3, 1);
    let mut batch = world.examples(2, 2);
    batch.user.categorical[0].pop();
    assert!(matches!(InMemory::new(batch), Err(Error::Input(_))));
    let mut batch = world.examples(2, 2);
    batch.weight = Some(vec![1.0]);
    assert!(matches!(InMemory::shuffled(batch, 1), Err(Error::Input(_))));
}

#[test]
fn in_memory_shuffles_per_pass_when_asked() {
    let world = World::new(4, 50, 10, 1);
    let batch = world.examples(5, 2);
    let plain = drain(&mut InMemory::new(batch.clone()).unwrap(), 7);
    assert_eq!(
        format!("{plain:?}"),
        format!(
            "{:?}",
            drain(&mut InMemory::new(batch.clone()).unwrap(), 50)
        )
    );
    let mut shuffled = InMemory::shuffled(batch, 3).unwrap();
    let a = drain(&mut shuffled, 7);
    let b = drain(&mut shuffled, 7);
    assert_eq!(key(&a), key(&plain));
    assert_ne!(format!("{a:?}"), format!("{b:?}"));
}

#[test]
fn config_validation_lists_every_problem() {
    let world = World::new(4, 50, 10, 1);
    assert!(world.config().validate().is_ok());
    let mut cfg = TrainConfig::new(TowerSpec::default(), world.item_spec());
    cfg.item.categorical.push(Categorical::new("post_id", 0, 8));
    cfg.dim = 0;
    cfg.batch_size = 1;
    cfg.temperature = 0.0;
    cfg.learning_rate = f64::NAN;
    cfg.hidden = vec![16, 0];
    let Err(Error::Config(problems)) = cfg.validate() else {
        panic!("invalid config accepted");
    };
    let all = problems.join("\n");
    for needle in [
        "user tower has no inputs",
        "\"post_id\" is declared twice",
        "buckets must be",
        "dim must be",
        "batch_size",
        "temperature",
        "learning_rate",
        "hidden[1]",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // train() refuses it before reading any data.
    let mut source = InMemory::new(world.examples(1, 1)).unwrap();
    assert!(matches!(
        train(&cfg, &mut source, None, None, |_| {}),
        Err(Error::Config(_))
    ));
}

#[test]
fn config_from_toml_rejects_unknown_fields_and_fills_defaults() {
    let cfg: TrainConfig = toml::from_str(
        r#"
        epochs = 2
        [user]
        numeric = ["clicks_7d"]
        [item]
        categorical = [{ name = "post_id", buckets = 1000 }]
        "#,
    )
    .unwrap();
    assert_eq!(cfg.dim, 64);
    assert_eq!(cfg.epochs, 2);
    assert_eq!(cfg.item.categorical[0].dim, 16);
    assert!(cfg.log_q);
    assert!(cfg.validate().is_ok());
    let err = toml::from_str::<TrainConfig>("epochz = 2\n[user]\n[item]\n").unwrap_err();
    assert!(err.to_string().contains("epochz"), "{err}");
}

#[test]
fn empty_training_data_is_an_input_error() {
    let world = World::new(4, 50, 1, 1);
    let empty = Batch::for_specs(&world.user_spec(), &world.item_spec());
    let err = train(
        &world.config(),
        &mut InMemory::new(empty).unwrap(),
        None,
        None,
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err}");
}

#[test]
fn damaged_artifacts_are_clear_errors() {
    let world = World::new(4, 50, 10, 1);
    let mut cfg = world.config();
    cfg.epochs = 1;
    let mut progress = Vec::new();
    let (model, report) = train(
        &cfg,
        &mut InMemory::new(world.examples(5, 2)).unwrap(),
        None,
        None,
        |p| progress.push(p.clone()),
    )
    .unwrap();
    assert_eq!(report.rows, 50);
    assert!(progress
        .iter()
        .any(|p| p.phase == Phase::Train && p.epoch == 1 && p.rows_total == 50));
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let weights = dir.path().join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).unwrap();

    // Truncated.
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = TwoTower::load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Artifact { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    // Same length, one byte flipped.
    let mut flipped = bytes.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 0x40;
    std::fs::write(&weights, &flipped).unwrap();
    let err = TwoTower::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");

    // A truncated spec.
    std::fs::write(&weights, &bytes).unwrap();
    assert!(TwoTower::load(dir.path()).is_ok());
    let spec = dir.path().join(SPEC_FILE);
    let json = std::fs::read(&spec).unwrap();
    std::fs::write(&spec, &json[..json.len() / 2]).unwrap();
    let err = TwoTower::load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Artifact { .. }), "{err}");

    // Missing files: an I/O error naming the path.
    let err = TwoTower::load(&dir.path().join("nope")).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("nope"),
        "{err}"
    );

    // A save over an old one replaces it whole.
    std::fs::write(&spec, &json).unwrap();
    model.save(dir.path()).unwrap();
    assert_eq!(TwoTower::load(dir.path()).unwrap(), model);
    assert!(!dir.path().join(format!("{WEIGHTS_FILE}.tmp")).exists());
}
