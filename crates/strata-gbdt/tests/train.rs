//! End-to-end training checks on synthetic problems (small: each trains in well under a second).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use strata_gbdt::metrics::{auc, ndcg_at};
use strata_gbdt::{
    train, Dataset, DatasetBuilder, FeatureSpec, Model, Objective, Params, DEFAULT_TABLE_LIMIT,
};

/// A deterministic generator for the test data (SplitMix64).
struct Gen(u64);
impl Gen {
    fn u(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Columns, labels.
type Table = (Vec<Vec<f32>>, Vec<f32>);

fn build(specs: &[FeatureSpec], params: &Params, t: &Table, like: Option<&Dataset>) -> Dataset {
    let mut b = match like {
        Some(d) => DatasetBuilder::like(d),
        None => DatasetBuilder::new(specs.to_vec(), params).unwrap(),
    };
    // Two batches, to exercise streaming.
    let n = t.1.len();
    let half = n / 2;
    for (a, z) in [(0, half), (half, n)] {
        let cols: Vec<&[f32]> = t.0.iter().map(|c| &c[a..z]).collect();
        b.push_columns(&cols, &t.1[a..z], None, None).unwrap();
    }
    b.finish().unwrap()
}

fn rows_of(t: &Table) -> Vec<f32> {
    let n = t.1.len();
    let mut rows = Vec::with_capacity(n * t.0.len());
    for i in 0..n {
        for c in &t.0 {
            rows.push(c[i]);
        }
    }
    rows
}

fn predict_all(m: &Model, t: &Table) -> Vec<f32> {
    let rows = rows_of(t);
    let mut out = vec![0.0; t.1.len()];
    m.predict_batch(&rows, t.0.len(), &mut out).unwrap();
    out
}

/// y = xor(x0 > 0.5, x1 > 0.5) with 10 % label noise, plus a noise feature.
fn xor(n: usize, seed: u64) -> Table {
    let mut g = Gen(seed);
    let mut cols = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut y = Vec::new();
    for _ in 0..n {
        let (a, b, c) = (g.u(), g.u(), g.u());
        let mut l = (a > 0.5) != (b > 0.5);
        if g.u() < 0.1 {
            l = !l;
        }
        cols[0].push(a);
        cols[1].push(b);
        cols[2].push(c);
        y.push(l as u8 as f32);
    }
    (cols, y)
}

fn num_specs(n: usize) -> Vec<FeatureSpec> {
    (0..n)
        .map(|i| FeatureSpec::numeric(format!("x{i}")))
        .collect()
}

#[test]
fn learns_xor() {
    let params = Params {
        num_trees: 50,
        threads: 2,
        ..Params::default()
    };
    let specs = num_specs(3);
    let tr = build(&specs, &params, &xor(5000, 1), None);
    let test = xor(2000, 2);
    let (m, report) = train(&params, &tr, None, &mut |_| {}).unwrap();
    assert_eq!(report.trees, 50);
    let a = auc(&predict_all(&m, &test), &test.1);
    // Noise caps the achievable AUC at about 0.9.
    assert!(a > 0.85, "xor auc {a}");
    let imp = m.feature_importance();
    // The noise feature only picks up overfitting splits.
    assert!(
        imp[0].gain > 3.0 * imp[2].gain && imp[1].gain > 3.0 * imp[2].gain,
        "{imp:?}"
    );
}

#[test]
fn learns_an_additive_problem_and_early_stops_on_validation() {
    let mut g = Gen(7);
    let gen = |g: &mut Gen, n: usize| -> Table {
        let mut cols = vec![Vec::new(); 5];
        let mut y = Vec::new();
        for _ in 0..n {
            let x: Vec<f32> = (0..5).map(|_| g.u()).collect();
            let z = 3.0 * x[0] - 2.0 * x[1] + (6.0 * x[2]).sin() - 0.5;
            let p = 1.0 / (1.0 + (-2.0 * z).exp());
            y.push((g.u() < p) as u8 as f32);
            for (c, v) in cols.iter_mut().zip(x) {
                c.push(v);
            }
        }
        (cols, y)
    };
    let params = Params {
        num_trees: 500,
        learning_rate: 0.3,
        early_stopping_rounds: 10,
        ..Params::default()
    };
    let specs = num_specs(5);
    let (trt, vat) = (gen(&mut g, 4000), gen(&mut g, 2000));
    let tr = build(&specs, &params, &trt, None);
    let va = build(&specs, &params, &vat, Some(&tr));
    let mut seen = 0;
    let (m, report) = train(&params, &tr, Some(&va), &mut |p| {
        seen += 1;
        assert_eq!(p.iteration, seen);
        assert!(p.valid_metric.is_some());
    })
    .unwrap();
    assert!(report.stopped_early, "{report:?}");
    assert!(report.trees < report.rounds);
    assert_eq!(m.num_trees() as u32, report.trees);
    let a = auc(&predict_all(&m, &vat), &vat.1);
    assert!(a > 0.8, "additive auc {a}");
    // The kept model's logloss is what the report says.
    let ll = strata_gbdt::metrics::logloss(&predict_all(&m, &vat), &vat.1);
    assert!(
        (ll - report.valid_metric.unwrap()).abs() < 1e-4,
        "{ll} {report:?}"
    );
}

#[test]
fn missing_value_direction_is_learned() {
    // x0 is NaN for 30 % of rows and those rows are mostly positive; otherwise y follows x0 > 0.7.
    let mut g = Gen(3);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..4000 {
        let v = g.u();
        if g.u() < 0.3 {
            x.push(f32::NAN);
            y.push((g.u() < 0.9) as u8 as f32);
        } else {
            x.push(v);
            y.push((v > 0.7) as u8 as f32);
        }
    }
    let params = Params {
        num_trees: 20,
        ..Params::default()
    };
    let tr = build(&num_specs(1), &params, &(vec![x], y), None);
    let (m, _) = train(&params, &tr, None, &mut |_| {}).unwrap();
    let p_nan = m.predict_row(&[f32::NAN]).unwrap();
    let p_low = m.predict_row(&[0.2]).unwrap();
    let p_high = m.predict_row(&[0.9]).unwrap();
    assert!(p_nan > 0.75, "missing should predict positive: {p_nan}");
    assert!(p_low < 0.1, "{p_low}");
    assert!(p_high > 0.9, "{p_high}");
}

/// 40 categories, a random half of which are positive (80 %), the rest 20 %.
fn cats(n: usize, seed: u64) -> Table {
    let mut g = Gen(seed);
    let good: Vec<bool> = (0..40).map(|i| (i * 7919) % 13 < 6).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let c = (g.u() * 40.0) as usize;
        let p = if good[c] { 0.8 } else { 0.2 };
        x.push(c as f32);
        y.push((g.u() < p) as u8 as f32);
    }
    (vec![x], y)
}

#[test]
fn categorical_splits_beat_numeric_encoding() {
    let params = Params {
        num_trees: 3,
        num_leaves: 4,
        min_data_per_group: 10,
        ..Params::default()
    };
    let (tr, te) = (cats(8000, 11), cats(4000, 12));
    let a_cat = {
        let d = build(&[FeatureSpec::categorical("c")], &params, &tr, None);
        let (m, _) = train(&params, &d, None, &mut |_| {}).unwrap();
        // Unseen and missing categories are scored, not rejected.
        assert!(m.predict_row(&[1000.0]).unwrap().is_finite());
        assert!(m.predict_row(&[f32::NAN]).unwrap().is_finite());
        auc(&predict_all(&m, &te), &te.1)
    };
    let a_num = {
        let d = build(&[FeatureSpec::numeric("c")], &params, &tr, None);
        let (m, _) = train(&params, &d, None, &mut |_| {}).unwrap();
        auc(&predict_all(&m, &te), &te.1)
    };
    assert!(a_cat > 0.77, "categorical auc {a_cat}");
    assert!(
        a_cat > a_num + 0.03,
        "categorical {a_cat} vs numeric {a_num}"
    );
}

/// Queries of 20 documents; relevance grows with x0 + x1 (x2 noise).
fn ranking(queries: usize, seed: u64) -> (Table, Vec<u64>) {
    let mut g = Gen(seed);
    let mut cols = vec![Vec::new(); 3];
    let (mut y, mut q) = (Vec::new(), Vec::new());
    for qid in 0..queries {
        for _ in 0..20 {
            let x: Vec<f32> = (0..3).map(|_| g.u()).collect();
            let s = x[0] + x[1] + 0.3 * g.u();
            y.push(((s * 2.0).floor()).clamp(0.0, 4.0));
            q.push(qid as u64);
            for (c, v) in cols.iter_mut().zip(x) {
                c.push(v);
            }
        }
    }
    ((cols, y), q)
}

fn build_ranked(params: &Params, t: &Table, q: &[u64], like: Option<&Dataset>) -> Dataset {
    let mut b = match like {
        Some(d) => DatasetBuilder::like(d),
        None => DatasetBuilder::new(num_specs(3), params).unwrap(),
    };
    let cols: Vec<&[f32]> = t.0.iter().map(|c| c.as_slice()).collect();
    b.push_columns(&cols, &t.1, None, Some(q)).unwrap();
    b.finish().unwrap()
}

#[test]
fn lambdarank_improves_ndcg_over_random() {
    let params = Params {
        objective: Objective::Lambdarank,
        num_trees: 30,
        ..Params::default()
    };
    let (trt, trq) = ranking(200, 21);
    let (tet, teq) = ranking(100, 22);
    let tr = build_ranked(&params, &trt, &trq, None);
    let te = build_ranked(&params, &tet, &teq, Some(&tr));
    let (m, report) = train(&params, &tr, Some(&te), &mut |_| {}).unwrap();
    assert_eq!(report.metric, "ndcg@10");
    let scores = predict_all(&m, &tet);
    let offsets = te.group_offsets();
    let model_ndcg = ndcg_at(10, &scores, &tet.1, offsets);
    let mut g = Gen(99);
    let random: Vec<f32> = (0..scores.len()).map(|_| g.u()).collect();
    let random_ndcg = ndcg_at(10, &random, &tet.1, offsets);
    assert!(
        model_ndcg > random_ndcg + 0.2 && model_ndcg > 0.85,
        "model {model_ndcg} random {random_ndcg}"
    );
    assert!((model_ndcg - report.valid_metric.unwrap()).abs() < 1e-4);
}

#[test]
fn training_is_deterministic_for_a_seed_and_thread_count_independent() {
    // Large enough for the root histogram and the gradients to be split across threads.
    let t = xor(70_000, 5);
    let base = Params {
        num_trees: 15,
        bagging_fraction: 0.7,
        bagging_freq: 1,
        feature_fraction: 0.67,
        ..Params::default()
    };
    let bytes = |p: &Params| {
        let d = build(&num_specs(3), p, &t, None);
        train(p, &d, None, &mut |_| {})
            .unwrap()
            .0
            .to_bytes()
            .unwrap()
    };
    let one = bytes(&Params {
        threads: 1,
        ..base.clone()
    });
    assert!(
        one == bytes(&Params {
            threads: 1,
            ..base.clone()
        }),
        "same seed, different bytes"
    );
    // The model records its parameters; apart from `threads` the bytes are the same.
    let two = String::from_utf8(bytes(&Params {
        threads: 2,
        ..base.clone()
    }))
    .unwrap();
    assert!(two.contains("\"threads\":2"));
    assert!(
        one == two.replace("\"threads\":2", "\"threads\":1").into_bytes(),
        "thread count changed the model"
    );
    assert!(
        one != bytes(&Params {
            seed: 1,
            ..base.clone()
        }),
        "seed changed nothing"
    );
}

#[test]
fn saved_models_load_and_predict_identically() {
    let t = cats(3000, 4);
    let mut cols = t.0.clone();
    cols.push(xor(3000, 4).0.remove(0));
    let t2 = (cols, t.1.clone());
    let specs = vec![FeatureSpec::categorical("c"), FeatureSpec::numeric("x")];
    let params = Params {
        num_trees: 20,
        min_data_per_group: 10,
        ..Params::default()
    };
    let d = build(&specs, &params, &t2, None);
    let (m, _) = train(&params, &d, None, &mut |_| {}).unwrap();
    let bytes = m.to_bytes().unwrap();
    let back = Model::from_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(predict_all(&back, &t2), predict_all(&m, &t2));
    // Single-row and batch scoring agree.
    let rows = rows_of(&t2);
    let batch = predict_all(&m, &t2);
    for (i, row) in rows.chunks(2).enumerate().take(200) {
        assert_eq!(m.predict_row(row).unwrap(), batch[i]);
    }
}

#[test]
fn corrupt_models_and_bad_rows_are_errors() {
    assert!(Model::from_bytes(b"{").is_err());
    let params = Params {
        num_trees: 3,
        ..Params::default()
    };
    let d = build(&num_specs(3), &params, &xor(500, 1), None);
    let (m, _) = train(&params, &d, None, &mut |_| {}).unwrap();
    let text = String::from_utf8(m.to_bytes().unwrap()).unwrap();
    let wrong_version = text.replacen("\"format_version\":1", "\"format_version\":99", 1);
    let e = Model::from_bytes(wrong_version.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("format version 99"), "{e}");
    let bad_feature = text.replacen("\"f\":", "\"f\":1000000,\"x\":", 1);
    assert!(Model::from_bytes(bad_feature.as_bytes()).is_err());
    assert!(m.predict_row(&[1.0]).is_err());
    let mut out = [0.0; 2];
    assert!(m.predict_batch(&[1.0; 5], 3, &mut out).is_err());
}

#[test]
fn bad_params_and_data_are_clear_errors() {
    let p = Params {
        num_leaves: 1,
        learning_rate: -1.0,
        max_bin: 300,
        ..Params::default()
    };
    let e = p.validate().unwrap_err().to_string();
    assert!(
        e.contains("num_leaves") && e.contains("learning_rate") && e.contains("max_bin"),
        "{e}"
    );
    let unknown: Result<Params, _> = serde_json::from_str(r#"{"num_leaf": 3}"#);
    assert!(unknown.unwrap_err().to_string().contains("num_leaf"));
    let from_json: Params = serde_json::from_str(r#"{"objective": "lambdarank"}"#).unwrap();
    assert_eq!(from_json.objective, Objective::Lambdarank);

    let params = Params::default();
    let mut b = DatasetBuilder::new(num_specs(2), &params).unwrap();
    assert!(b.push_columns(&[&[1.0]], &[1.0], None, None).is_err());
    assert!(b
        .push_columns(&[&[1.0], &[1.0, 2.0]], &[1.0], None, None)
        .is_err());
    assert!(b
        .push_columns(&[&[1.0], &[2.0]], &[f32::NAN], None, None)
        .is_err());
    b.push_columns(&[&[1.0, 2.0], &[1.0, 2.0]], &[0.0, 2.0], None, None)
        .unwrap();
    let d = b.finish().unwrap();
    let e = train(&params, &d, None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside [0, 1]"), "{e}");
    let rank = Params {
        objective: Objective::Lambdarank,
        ..Params::default()
    };
    let e = train(&rank, &d, None, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("query ids"), "{e}");
    let mut b = DatasetBuilder::new(num_specs(1), &params).unwrap();
    let e = b
        .push_columns(&[&[1.0, 2.0, 3.0]], &[0.0; 3], None, Some(&[1, 2, 1]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not contiguous"), "{e}");
}

#[test]
fn lambdarank_is_thread_count_independent() {
    // 2,000 queries: enough rows for the lambdas to be split across threads.
    let (t, q) = ranking(2000, 31);
    let bytes = |threads: u32| {
        let p = Params {
            objective: Objective::Lambdarank,
            num_trees: 5,
            bagging_fraction: 0.5,
            bagging_freq: 1,
            threads,
            ..Params::default()
        };
        let d = build_ranked(&p, &t, &q, None);
        let m = train(&p, &d, None, &mut |_| {}).unwrap().0;
        String::from_utf8(m.to_bytes().unwrap()).unwrap()
    };
    let one = bytes(1);
    let two = bytes(2).replace("\"threads\":2", "\"threads\":1");
    assert!(one == two, "thread count changed the ranking model");
}

#[test]
fn bins_fitted_elsewhere_give_the_same_model_as_bins_fitted_from_the_first_rows() {
    use strata_gbdt::BinMapper;
    let t = xor(4000, 8);
    let params = Params {
        num_trees: 5,
        ..Params::default()
    };
    let specs = num_specs(3);
    let fitted = build(&specs, &params, &t, None);
    let mappers: Vec<BinMapper> = t.0.iter().map(|c| BinMapper::fit_numeric(c, 255)).collect();
    assert_eq!(mappers, fitted.bin_mappers());
    let mut b = DatasetBuilder::with_mappers(specs.clone(), mappers.clone()).unwrap();
    let cols: Vec<&[f32]> = t.0.iter().map(|c| c.as_slice()).collect();
    b.push_columns(&cols, &t.1, None, None).unwrap();
    let given = b.finish().unwrap();
    let m1 = train(&params, &fitted, None, &mut |_| {}).unwrap().0;
    let m2 = train(&params, &given, None, &mut |_| {}).unwrap().0;
    assert_eq!(m1, m2);
    // A categorical mapper for a numeric feature is refused.
    let mut wrong = mappers;
    wrong[0] = BinMapper::fit_categorical(&[1.0, 2.0], 255);
    assert!(DatasetBuilder::with_mappers(specs, wrong).is_err());
}

#[test]
fn a_model_is_shared_by_threads_without_locks() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Model>();
    let params = Params {
        num_trees: 10,
        ..Params::default()
    };
    let t = xor(2000, 9);
    let d = build(&num_specs(3), &params, &t, None);
    let (m, _) = train(&params, &d, None, &mut |_| {}).unwrap();
    let want = predict_all(&m, &t);
    let rows = rows_of(&t);
    std::thread::scope(|s| {
        for k in 0..4 {
            let (m, rows, want) = (&m, &rows, &want);
            s.spawn(move || {
                for (i, row) in rows.chunks(3).enumerate().skip(k).step_by(4) {
                    assert_eq!(m.predict_row(row).unwrap(), want[i]);
                }
            });
        }
    });
}

/// Numeric features with missing values going either way, a categorical one, infinities and
/// unseen categories: batch scoring (per-feature tables or the bitvector form up to 64 leaves a
/// tree, the lockstep walk beyond) gives the very bits of single-row scoring (a plain walk).
#[test]
fn batch_scoring_matches_the_walk_bit_for_bit() {
    let mut g = Gen(21);
    let n = 6000;
    let good: Vec<bool> = (0..40).map(|i| (i * 7919) % 13 < 6).collect();
    let mut cols = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut y = Vec::new();
    for _ in 0..n {
        let x = if g.u() < 0.25 { f32::NAN } else { g.u() };
        let z = if g.u() < 0.1 { f32::NAN } else { g.u() * 10.0 };
        let c = (g.u() * 40.0) as usize;
        let mut p = if x.is_nan() { 0.7 } else { x * 0.6 };
        p += if good[c] { 0.2 } else { -0.1 };
        p += if z.is_nan() { -0.2 } else { (z - 5.0) * 0.02 };
        cols[0].push(x);
        cols[1].push(c as f32);
        cols[2].push(z);
        y.push((g.u() < p) as u8 as f32);
    }
    let specs = vec![
        FeatureSpec::numeric("x"),
        FeatureSpec::categorical("c"),
        FeatureSpec::numeric("z"),
    ];
    let mut rows = rows_of(&(cols.clone(), y.clone()));
    // Values training never saw.
    rows.extend([f32::INFINITY, 1000.0, f32::NEG_INFINITY]);
    rows.extend([f32::NEG_INFINITY, -1.0, f32::NAN]);
    rows.extend([f32::NAN, f32::NAN, f32::NAN]);
    rows.extend([0.5, 3.5, 2.0, 0.5, 39.0, 2.0, 0.5, 40.0, 2.0]);
    for (leaves, table_limit, scorer) in [
        (31, DEFAULT_TABLE_LIMIT, "table32"),
        (60, DEFAULT_TABLE_LIMIT, "table64"),
        (31, 0, "bitvector"),
        (200, DEFAULT_TABLE_LIMIT, "walk"),
    ] {
        let params = Params {
            num_trees: 25,
            num_leaves: leaves,
            min_data_in_leaf: 2,
            min_data_per_group: 2,
            ..Params::default()
        };
        let d = build(&specs, &params, &(cols.clone(), y.clone()), None);
        let (mut m, _) = train(&params, &d, None, &mut |_| {}).unwrap();
        m.set_table_limit(table_limit);
        assert_eq!(m.batch_scorer(), scorer, "{leaves} leaves");
        // Values exactly at the model's thresholds (they go left).
        let model: serde_json::Value = serde_json::from_slice(&m.to_bytes().unwrap()).unwrap();
        let mut rows = rows.clone();
        for node in model["nodes"].as_array().unwrap() {
            let t = node["t"].as_f64().unwrap() as f32;
            if node["k"].as_u64().unwrap() & 2 == 0 && t.is_finite() {
                rows.extend([t, 3.0, t]);
            }
        }
        let mut batch = vec![0.0; rows.len() / 3];
        m.predict_batch(&rows, 3, &mut batch).unwrap();
        for (i, row) in rows.chunks(3).enumerate() {
            assert_eq!(
                m.predict_row(row).unwrap().to_bits(),
                batch[i].to_bits(),
                "{leaves} leaves, row {i}: {row:?}"
            );
        }
        // A reloaded model builds the same form (with the same limit).
        let mut back = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
        back.set_table_limit(table_limit);
        assert_eq!(back.batch_scorer(), scorer);
    }
}
