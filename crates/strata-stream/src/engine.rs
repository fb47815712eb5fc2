//! One stream view's computation: per-entity window state, the stream's event-time clocks,
//! lateness, expiry timers, and the rows and state entries a flush writes.
//!
//! Exactly-once: every state entry written carries the bus positions it includes. After a
//! restart the consumer resumes from the view's checkpoint (positions at which every state
//! entry was current) and a replayed record is applied to an entity only at or past the
//! positions its stored state includes. A pass's rows, states and (each checkpoint interval)
//! checkpoint are written in one transaction of the store, so a crash leaves all of them or
//! none; the per-entity positions cover the passes written since the last checkpoint.
//!
//! Clocks: each partition's clock is the newest event time read from it; an event older than
//! its partition's clock by more than `allowed_lateness` is dropped and counted. The view's
//! clock, the newest event time over all partitions (or the wall clock minus the lateness when
//! the bus is idle), is the "now" windows are evaluated at; an entity whose oldest slice leaves
//! its window is rewritten when the clock passes that point.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use strata_bus::{Offset, Offsets, Partition};
use strata_features::stream::{FieldRef, Function, StreamSpec};
use strata_features::view::KeyKind;
use strata_features::FeatureView;
use strata_online::backend::Entries;
use strata_online::meta::Column;
use strata_online::{entity_key, StreamRow, Value};

use crate::fields::{hash_bytes, Expected, StreamEvent};
use crate::window::{AggState, Input, Reader};

/// Events more than this far ahead of the wall clock are dropped (a broken client clock must
/// not expire every window at once).
const MAX_FUTURE_US: i64 = 3_600 * 1_000_000;

const STATE_FORMAT: u8 = 1;

/// Counters of one view.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Events applied to at least one aggregate.
    pub applied: u64,
    /// Events dropped for being later than the allowed lateness.
    pub late: u64,
    /// Events dropped for a time too far in the future.
    pub future: u64,
    /// Events without a usable key (absent, or not an integer for an int64 key).
    pub no_key: u64,
}

/// The checkpoint of a view: where the consumer resumes and its clocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    pub fingerprint: String,
    /// Next offset per partition: every record below it is in the stored state.
    pub positions: BTreeMap<Partition, Offset>,
    pub clock: i64,
    pub partition_clocks: BTreeMap<Partition, i64>,
    pub counts: Counts,
    /// Where the backfill from the lake ended (the lake's position), when there was one.
    pub backfilled_to: Option<BTreeMap<Partition, Offset>>,
}

#[derive(Debug)]
struct KeyState {
    aggs: Vec<AggState>,
    /// The timer registered for this entity (`i64::MAX`: none).
    scheduled: i64,
    /// Positions the stored state already includes (set when loaded after a restart).
    includes: Option<Offsets>,
}

/// What one flush writes for a view.
#[derive(Debug, Default)]
pub struct Changes {
    pub rows: Vec<StreamRow>,
    pub states: Entries,
    /// Entities whose state emptied: their state entries are deleted (their rows were
    /// rewritten with empty-window values).
    pub emptied: Vec<Vec<u8>>,
}

/// One stream view's state.
#[derive(Debug)]
pub struct ViewEngine {
    pub name: String,
    spec: StreamSpec,
    fingerprint: String,
    filters: Vec<Vec<(FieldRef, Expected)>>,
    columns: Vec<Column>,
    keys: HashMap<Vec<u8>, KeyState>,
    timers: BTreeSet<(i64, Vec<u8>)>,
    dirty: BTreeSet<Vec<u8>>,
    clock: i64,
    partition_clocks: BTreeMap<Partition, i64>,
    /// Records below these positions are already in this view's state.
    resume: Offsets,
    lateness_us: i64,
    pub counts: Counts,
    backfilled_to: Option<Offsets>,
}

impl ViewEngine {
    /// The engine of a stream view (`None` for a batch view).
    pub fn new(view: &FeatureView) -> Option<ViewEngine> {
        let spec = view.stream()?.clone();
        let columns = view
            .stream()?
            .aggregates
            .iter()
            .map(|a| Column {
                name: a.name.clone(),
                ty: strata_features::view::feature_type(&a.data_type())
                    .unwrap_or(strata_online::FeatureType::String),
            })
            .collect();
        let filters = spec
            .aggregates
            .iter()
            .map(|a| {
                a.filters
                    .iter()
                    .map(|(f, v)| (f.clone(), Expected::parse(v)))
                    .collect()
            })
            .collect();
        Some(ViewEngine {
            name: view.name.clone(),
            fingerprint: spec.fingerprint(),
            lateness_us: spec.allowed_lateness.as_micros() as i64,
            spec,
            filters,
            columns,
            keys: HashMap::new(),
            timers: BTreeSet::new(),
            dirty: BTreeSet::new(),
            clock: i64::MIN,
            partition_clocks: BTreeMap::new(),
            resume: Offsets::new(),
            counts: Counts::default(),
            backfilled_to: None,
        })
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    /// Entities held in memory.
    pub fn entities(&self) -> usize {
        self.keys.len()
    }

    /// The view's clock (µs; `i64::MIN` before any event).
    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// Where this view resumes: records below are already in its state.
    pub fn resume(&self) -> &Offsets {
        &self.resume
    }

    /// Starts from a checkpoint (its clocks and resume positions).
    pub fn restore(&mut self, cp: &Checkpoint) {
        self.clock = cp.clock;
        self.partition_clocks = cp.partition_clocks.clone();
        self.resume = cp.positions.clone();
        self.counts = cp.counts;
        self.backfilled_to = cp.backfilled_to.clone();
    }

    /// Starts after a backfill that read the lake up to `lake_position`.
    pub fn start_at(&mut self, positions: Offsets, backfilled: bool) {
        if backfilled {
            self.backfilled_to = Some(positions.clone());
        }
        self.resume = positions;
    }

    /// The checkpoint for `positions` (the consumer's positions after a flush).
    pub fn checkpoint(&self, positions: &Offsets) -> Checkpoint {
        Checkpoint {
            format: 1,
            fingerprint: self.fingerprint.clone(),
            positions: positions.clone(),
            clock: self.clock,
            partition_clocks: self.partition_clocks.clone(),
            counts: self.counts,
            backfilled_to: self.backfilled_to.clone(),
        }
    }

    /// The entity key of an event (`None`: no usable key).
    fn key_of(&self, e: &StreamEvent<'_>) -> Option<Vec<u8>> {
        let v = e.get(&self.spec.key)?;
        let text = match self.spec.key_type {
            KeyKind::Text => v.to_text(),
            KeyKind::Integer => {
                let t = v.to_text();
                t.trim().parse::<i64>().ok()?.to_string()
            }
        };
        if text.is_empty() {
            return None;
        }
        Some(entity_key(&[text]))
    }

    /// Applies one event. `at`: its bus position (`None` for a backfill row); `wall_us`: the
    /// wall clock.
    pub fn apply(&mut self, e: &StreamEvent<'_>, at: Option<(Partition, Offset)>, wall_us: i64) {
        if let Some((p, o)) = at {
            if o < self.resume.get(&p).copied().unwrap_or(0) {
                return;
            }
        }
        let ts = e.event_ts;
        if ts > wall_us.saturating_add(MAX_FUTURE_US) {
            self.counts.future += 1;
            return;
        }
        let part_clock = match at {
            Some((p, _)) => self.partition_clocks.entry(p).or_insert(i64::MIN),
            None => &mut self.clock,
        };
        if *part_clock != i64::MIN && ts < part_clock.saturating_sub(self.lateness_us) {
            self.counts.late += 1;
            return;
        }
        *part_clock = (*part_clock).max(ts);
        self.clock = self.clock.max(ts);
        let Some(key) = self.key_of(e) else {
            self.counts.no_key += 1;
            return;
        };
        // Which aggregates take the event, and with what.
        let mut inputs: Vec<(usize, Input)> = Vec::new();
        for (i, a) in self.spec.aggregates.iter().enumerate() {
            if !a.events.is_empty() && !a.events.iter().any(|n| n == e.name()) {
                continue;
            }
            if !self.filters[i]
                .iter()
                .all(|(f, want)| e.get(f).is_some_and(|v| want.matches(&v)))
            {
                continue;
            }
            let input = match (a.function, &a.field) {
                (Function::Count, _) => Input::One,
                (_, None) => continue,
                (Function::DistinctCount, Some(f)) => match e.get(f) {
                    Some(v) => Input::Hash(hash_bytes(v.to_text().as_bytes())),
                    None => continue,
                },
                (Function::Last { .. }, Some(f)) => match e.get(f) {
                    Some(v) => Input::Text(v.to_text()),
                    None => continue,
                },
                (_, Some(f)) => match e.get(f).and_then(|v| v.as_number()) {
                    Some(x) if x.is_finite() => Input::Number(x),
                    _ => continue,
                },
            };
            inputs.push((i, input));
        }
        if inputs.is_empty() {
            return;
        }
        let clock = self.clock;
        let aggs = &self.spec.aggregates;
        let state = self.keys.entry(key.clone()).or_insert_with(|| KeyState {
            aggs: aggs.iter().map(AggState::new).collect(),
            scheduled: i64::MAX,
            includes: None,
        });
        if let (Some((p, o)), Some(includes)) = (at, &state.includes) {
            if o < includes.get(&p).copied().unwrap_or(0) {
                return;
            }
        }
        let mut changed = false;
        for (i, input) in inputs {
            changed |= state.aggs[i].add(&aggs[i], ts, clock, input);
        }
        if changed {
            self.counts.applied += 1;
            schedule(&mut self.timers, aggs, &key, state);
            self.dirty.insert(key);
        }
    }

    /// Moves the view's clock to at least `now` (the idle bus: wall clock minus lateness) and
    /// marks the entities whose windows moved.
    pub fn advance(&mut self, now: i64) {
        if now > self.clock {
            self.clock = now;
        }
        self.fire_timers();
    }

    fn fire_timers(&mut self) {
        while let Some((t, _)) = self.timers.first() {
            if *t > self.clock {
                break;
            }
            let Some((t, key)) = self.timers.pop_first() else {
                break;
            };
            let Some(state) = self.keys.get_mut(&key) else {
                continue;
            };
            if state.scheduled != t {
                continue;
            }
            state.scheduled = i64::MAX;
            for (s, a) in state.aggs.iter_mut().zip(&self.spec.aggregates) {
                s.prune(a, self.clock);
            }
            schedule(&mut self.timers, &self.spec.aggregates, &key, state);
            self.dirty.insert(key);
        }
    }

    /// Whether a flush has anything to write.
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The rows and state entries of every entity changed since the last call; `positions`:
    /// what the state will include once written (the consumer's positions).
    pub fn take_changes(&mut self, positions: &Offsets) -> Changes {
        self.fire_timers();
        let mut out = Changes::default();
        let dirty = std::mem::take(&mut self.dirty);
        for key in dirty {
            let Some(state) = self.keys.get_mut(&key) else {
                continue;
            };
            for (s, a) in state.aggs.iter_mut().zip(&self.spec.aggregates) {
                s.prune(a, self.clock);
            }
            let values: Vec<Value> = state
                .aggs
                .iter()
                .zip(&self.spec.aggregates)
                .map(|(s, a)| s.value(a))
                .collect();
            out.rows.push(StreamRow {
                key: key.clone(),
                as_of_us: self.clock,
                values,
            });
            if state.aggs.iter().all(AggState::is_empty) {
                self.keys.remove(&key);
                out.emptied.push(key);
            } else {
                // A state loaded after a restart may include records the consumer has not
                // re-read yet: it keeps saying so until the consumer passes them.
                let mut includes = positions.clone();
                if let Some(loaded) = &state.includes {
                    for (p, o) in loaded {
                        let e = includes.entry(*p).or_insert(0);
                        *e = (*e).max(*o);
                    }
                    if loaded
                        .iter()
                        .all(|(p, o)| positions.get(p).copied().unwrap_or(0) >= *o)
                    {
                        state.includes = None;
                    }
                }
                out.states.push((key, encode_state(&includes, &state.aggs)));
            }
        }
        out
    }

    /// Loads one stored state entry (after a restart).
    pub fn load(&mut self, key: Vec<u8>, bytes: &[u8]) -> bool {
        let Some((includes, aggs)) = decode_state(bytes, self.spec.aggregates.len()) else {
            return false;
        };
        let mut state = KeyState {
            aggs,
            scheduled: i64::MAX,
            includes: Some(includes),
        };
        schedule(&mut self.timers, &self.spec.aggregates, &key, &mut state);
        self.keys.insert(key, state);
        true
    }

    /// The current row of an entity (tests and `strata features get`).
    pub fn values(&mut self, key: &[u8]) -> Option<Vec<Value>> {
        let state = self.keys.get_mut(key)?;
        for (s, a) in state.aggs.iter_mut().zip(&self.spec.aggregates) {
            s.prune(a, self.clock);
        }
        Some(
            state
                .aggs
                .iter()
                .zip(&self.spec.aggregates)
                .map(|(s, a)| s.value(a))
                .collect(),
        )
    }
}

fn schedule(
    timers: &mut BTreeSet<(i64, Vec<u8>)>,
    aggs: &[strata_features::stream::Aggregate],
    key: &[u8],
    state: &mut KeyState,
) {
    let next = state
        .aggs
        .iter()
        .zip(aggs)
        .filter_map(|(s, a)| s.next_expiry(a))
        .min();
    if let Some(t) = next {
        if t < state.scheduled {
            state.scheduled = t;
            timers.insert((t, key.to_vec()));
        }
    }
}

fn encode_state(positions: &Offsets, aggs: &[AggState]) -> Vec<u8> {
    let mut out = vec![STATE_FORMAT];
    out.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for (p, o) in positions {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&o.to_le_bytes());
    }
    out.extend_from_slice(&(aggs.len() as u32).to_le_bytes());
    for a in aggs {
        a.encode(&mut out);
    }
    out
}

fn decode_state(bytes: &[u8], aggs: usize) -> Option<(Offsets, Vec<AggState>)> {
    let mut r = Reader::new(bytes);
    if r.u8()? != STATE_FORMAT {
        return None;
    }
    let n = r.u32()? as usize;
    let mut positions = Offsets::new();
    for _ in 0..n.min(1 << 16) {
        let p = r.u32()?;
        positions.insert(p, r.u64()?);
    }
    if r.u32()? as usize != aggs {
        return None;
    }
    let mut out = Vec::with_capacity(aggs);
    for _ in 0..aggs {
        out.push(AggState::decode(&mut r)?);
    }
    Some((positions, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn engine() -> ViewEngine {
        let text = r#"
kind = "stream"
entity = "user_id"
allowed_lateness = "1m"

[[aggregates]]
name = "clicks_5m"
function = "count"
window = "5m"
slide = "1m"
"#;
        let file = toml::from_str(text).unwrap();
        let view = FeatureView::from_file(file, "v", "features/v.toml").unwrap();
        ViewEngine::new(&view).unwrap()
    }

    fn event(user: &str, ts: i64) -> StreamEvent<'static> {
        StreamEvent {
            event_ts: ts,
            kind: "track".into(),
            event: Some("Post Clicked".into()),
            user_id: Some(user.to_string().into()),
            ..Default::default()
        }
    }

    fn count(e: &mut ViewEngine, user: &str) -> Option<Value> {
        e.values(&entity_key(&[user])).map(|v| v[0].clone())
    }

    #[test]
    fn events_later_than_the_lateness_are_dropped_and_counted() {
        let mut e = engine();
        let wall = 1_000_000 * S;
        e.apply(&event("a", 600 * S), Some((0, 0)), wall);
        // 30 s behind its partition: within the lateness, counted.
        e.apply(&event("a", 570 * S), Some((0, 1)), wall);
        // 2 minutes behind its partition: dropped.
        e.apply(&event("a", 480 * S), Some((0, 2)), wall);
        // Another partition has its own clock: 2 minutes behind partition 0 is on time there.
        e.apply(&event("a", 480 * S), Some((1, 0)), wall);
        assert_eq!(e.counts.late, 1);
        assert_eq!(count(&mut e, "a"), Some(Value::Int64(3)));
        // Far in the future: dropped.
        e.apply(&event("a", wall + 7200 * S), Some((0, 3)), wall);
        assert_eq!(e.counts.future, 1);
        // No key: counted.
        let mut anonymous = event("a", 600 * S);
        anonymous.user_id = None;
        e.apply(&anonymous, Some((0, 4)), wall);
        assert_eq!(e.counts.no_key, 1);
    }

    #[test]
    fn windows_empty_as_the_clock_moves_and_rows_are_rewritten() {
        let mut e = engine();
        let wall = 1_000_000 * S;
        e.apply(&event("a", 60 * S), Some((0, 0)), wall);
        e.apply(&event("a", 130 * S), Some((0, 1)), wall);
        let first = e.take_changes(&Offsets::from([(0, 2)]));
        assert_eq!(first.rows.len(), 1);
        assert_eq!(first.rows[0].values, vec![Value::Int64(2)]);
        assert!(!e.has_changes());
        // The slice [60 s, 120 s) leaves the window at 360 s.
        e.advance(359 * S);
        assert!(!e.has_changes());
        e.advance(360 * S);
        let second = e.take_changes(&Offsets::from([(0, 2)]));
        assert_eq!(second.rows[0].values, vec![Value::Int64(1)]);
        assert_eq!(second.states.len(), 1);
        e.advance(10_000 * S);
        let last = e.take_changes(&Offsets::from([(0, 2)]));
        assert_eq!(last.rows[0].values, vec![Value::Int64(0)]);
        assert_eq!(last.emptied, vec![entity_key(&["a"])]);
        assert_eq!(e.entities(), 0);
    }

    #[test]
    fn records_below_the_resume_point_or_a_loaded_state_are_not_applied_twice() {
        let mut e = engine();
        let wall = 1_000_000 * S;
        e.apply(&event("a", 100 * S), Some((0, 0)), wall);
        e.apply(&event("b", 101 * S), Some((0, 1)), wall);
        let changes = e.take_changes(&Offsets::from([(0, 2)]));
        let stored: HashMap<Vec<u8>, Vec<u8>> = changes.states.into_iter().collect();

        // A restart from an older checkpoint (offset 0) with the stored states loaded.
        let mut again = engine();
        again.restore(&Checkpoint {
            positions: Offsets::from([(0, 0)]),
            fingerprint: again.fingerprint().to_string(),
            ..Checkpoint::default()
        });
        for (k, v) in &stored {
            assert!(again.load(k.clone(), v));
        }
        again.apply(&event("a", 100 * S), Some((0, 0)), wall);
        again.apply(&event("b", 101 * S), Some((0, 1)), wall);
        again.apply(&event("a", 102 * S), Some((0, 2)), wall);
        assert_eq!(count(&mut again, "a"), Some(Value::Int64(2)));
        assert_eq!(count(&mut again, "b"), Some(Value::Int64(1)));
    }
}
