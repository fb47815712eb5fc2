//! One aggregate's state for one entity: slices of its window (one per `slide`), each holding
//! a count/sum/min/max accumulator or a distinct-value sketch, or the newest values for `last`.
//! Times are microseconds of event time.
//!
//! A sliding window of size `W` moving by `S` covers, at time `now`, the slices starting at or
//! after `floor(now / S) * S + S - W`, the current (open) slice included; a tumbling window is
//! the case `S = W`: the current slice only. A slice starting at `b` leaves the window when
//! `now` reaches `b + W` ([`AggState::next_expiry`]), which is when the entity's row is
//! rewritten even if no event arrives.

use std::collections::VecDeque;

use strata_features::stream::{Aggregate, Function, Window};
use strata_online::Value;

/// Distinct values kept exactly per slice before the slice turns into a HyperLogLog sketch.
const EXACT_LIMIT: usize = 32;
/// HyperLogLog registers (2^8: about 6.5 % standard error).
const HLL_REGISTERS: usize = 256;

/// count / sum / min / max of one slice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Acc {
    fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// Distinct values of one slice: their hashes, exactly while few, else HyperLogLog registers.
#[derive(Debug, Clone, PartialEq)]
pub enum Sketch {
    Exact(Vec<u64>),
    Hll(Box<[u8; HLL_REGISTERS]>),
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::Exact(Vec::new())
    }
}

fn hll_put(regs: &mut [u8; HLL_REGISTERS], h: u64) {
    let idx = (h >> 56) as usize;
    let rank = ((h << 8) | 0x80).leading_zeros() as u8 + 1;
    if regs[idx] < rank {
        regs[idx] = rank;
    }
}

impl Sketch {
    fn add(&mut self, h: u64) {
        match self {
            Sketch::Exact(v) => {
                if let Err(at) = v.binary_search(&h) {
                    if v.len() < EXACT_LIMIT {
                        v.insert(at, h);
                    } else {
                        let mut regs = Box::new([0u8; HLL_REGISTERS]);
                        for x in v.iter() {
                            hll_put(&mut regs, *x);
                        }
                        hll_put(&mut regs, h);
                        *self = Sketch::Hll(regs);
                    }
                }
            }
            Sketch::Hll(regs) => hll_put(regs, h),
        }
    }
}

/// The distinct count of several slices: exact while every slice is exact, else estimated.
fn distinct<'a>(sketches: impl Iterator<Item = &'a Sketch>) -> i64 {
    let mut exact: Vec<u64> = Vec::new();
    let mut regs: Option<Box<[u8; HLL_REGISTERS]>> = None;
    for s in sketches {
        match s {
            Sketch::Exact(v) => exact.extend_from_slice(v),
            Sketch::Hll(r) => {
                let into = regs.get_or_insert_with(|| Box::new([0u8; HLL_REGISTERS]));
                for (a, b) in into.iter_mut().zip(r.iter()) {
                    *a = (*a).max(*b);
                }
            }
        }
    }
    match regs {
        None => {
            exact.sort_unstable();
            exact.dedup();
            exact.len() as i64
        }
        Some(mut regs) => {
            for h in exact {
                hll_put(&mut regs, h);
            }
            let m = HLL_REGISTERS as f64;
            let alpha = 0.7213 / (1.0 + 1.079 / m);
            let sum: f64 = regs.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
            let estimate = alpha * m * m / sum;
            let zeros = regs.iter().filter(|r| **r == 0).count();
            let value = if estimate <= 2.5 * m && zeros > 0 {
                m * (m / zeros as f64).ln()
            } else {
                estimate
            };
            value.round() as i64
        }
    }
}

/// One aggregate's state for one entity.
#[derive(Debug, Clone, PartialEq)]
pub enum AggState {
    /// Slices by start time, oldest first.
    Acc(VecDeque<(i64, Acc)>),
    Distinct(VecDeque<(i64, Sketch)>),
    /// (event time, value), newest first, at most `n`.
    Last(VecDeque<(i64, String)>),
}

/// A value an event gives an aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `count`: the event itself.
    One,
    Number(f64),
    /// `distinct_count`: the value's hash.
    Hash(u64),
    Text(String),
}

fn slice_start(ts: i64, w: &Window) -> i64 {
    let slide = w.slide_ms * 1000;
    ts.div_euclid(slide) * slide
}

/// The first slice start inside the window at `now`.
fn window_start(now: i64, w: &Window) -> i64 {
    slice_start(now, w) + w.slide_ms * 1000 - w.size_ms * 1000
}

fn insert_slice<T: Default>(slices: &mut VecDeque<(i64, T)>, start: i64) -> &mut T {
    // Nearly always the newest slice (events arrive in order); a late event walks back.
    let at = slices
        .iter()
        .rposition(|(s, _)| *s <= start)
        .map_or(0, |i| i + 1);
    if at == 0 || slices[at - 1].0 != start {
        slices.insert(at, (start, T::default()));
        &mut slices[at].1
    } else {
        &mut slices[at - 1].1
    }
}

impl AggState {
    pub fn new(a: &Aggregate) -> AggState {
        match a.function {
            Function::DistinctCount => AggState::Distinct(VecDeque::new()),
            Function::Last { .. } => AggState::Last(VecDeque::new()),
            _ => AggState::Acc(VecDeque::new()),
        }
    }

    /// Adds an event at `ts`; `now` is the stream's clock (an event already outside the window
    /// changes nothing). Returns whether the state changed.
    pub fn add(&mut self, a: &Aggregate, ts: i64, now: i64, input: Input) -> bool {
        if let Some(w) = &a.window {
            if ts < window_start(now.max(ts), w) {
                return false;
            }
        }
        match (self, input) {
            (AggState::Acc(slices), input) => {
                let Some(w) = a.window.as_ref() else {
                    return false;
                };
                let x = match input {
                    Input::Number(x) => x,
                    _ => 1.0,
                };
                insert_slice(slices, slice_start(ts, w)).add(x);
                true
            }
            (AggState::Distinct(slices), Input::Hash(h)) => {
                let Some(w) = a.window.as_ref() else {
                    return false;
                };
                insert_slice(slices, slice_start(ts, w)).add(h);
                true
            }
            (AggState::Last(items), Input::Text(v)) => {
                let Function::Last { n, .. } = a.function else {
                    return false;
                };
                let at = items
                    .iter()
                    .position(|(t, _)| *t < ts)
                    .unwrap_or(items.len());
                if at >= n {
                    return false;
                }
                items.insert(at, (ts, v));
                items.truncate(n);
                true
            }
            _ => false,
        }
    }

    /// Drops what left the window at `now`.
    pub fn prune(&mut self, a: &Aggregate, now: i64) {
        let Some(w) = &a.window else { return };
        match self {
            AggState::Acc(slices) => {
                let from = window_start(now, w);
                while slices.front().is_some_and(|(s, _)| *s < from) {
                    slices.pop_front();
                }
            }
            AggState::Distinct(slices) => {
                let from = window_start(now, w);
                while slices.front().is_some_and(|(s, _)| *s < from) {
                    slices.pop_front();
                }
            }
            AggState::Last(items) => {
                let from = now - w.size_ms * 1000;
                while items.back().is_some_and(|(t, _)| *t <= from) {
                    items.pop_back();
                }
            }
        }
    }

    /// When the value changes next without events: when its oldest slice (or value) leaves
    /// the window. `None`: never (empty, or an unbounded `last`).
    pub fn next_expiry(&self, a: &Aggregate) -> Option<i64> {
        let w = a.window.as_ref()?;
        match self {
            AggState::Acc(s) => s.front().map(|(b, _)| b + w.size_ms * 1000),
            AggState::Distinct(s) => s.front().map(|(b, _)| b + w.size_ms * 1000),
            AggState::Last(items) => items.back().map(|(t, _)| t + w.size_ms * 1000),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            AggState::Acc(s) => s.is_empty(),
            AggState::Distinct(s) => s.is_empty(),
            AggState::Last(items) => items.is_empty(),
        }
    }

    /// The served value at `now` (call [`AggState::prune`] first).
    pub fn value(&self, a: &Aggregate) -> Value {
        match self {
            AggState::Acc(slices) => {
                let mut acc = Acc::default();
                for (_, s) in slices {
                    acc.merge(s);
                }
                match a.function {
                    Function::Count => Value::Int64(acc.count as i64),
                    Function::Sum => Value::Float64(acc.sum),
                    _ if acc.count == 0 => Value::Null,
                    Function::Min => Value::Float64(acc.min),
                    Function::Max => Value::Float64(acc.max),
                    Function::Avg => Value::Float64(acc.sum / acc.count as f64),
                    _ => Value::Null,
                }
            }
            AggState::Distinct(slices) => Value::Int64(distinct(slices.iter().map(|(_, s)| s))),
            AggState::Last(items) => match a.function {
                Function::Last { integers: true, .. } => {
                    Value::Int64List(items.iter().map(|(_, v)| v.parse::<i64>().ok()).collect())
                }
                _ => Value::StringList(items.iter().map(|(_, v)| Some(v.clone())).collect()),
            },
        }
    }

    /// Appends the state's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let put_u32 =
            |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u32).to_le_bytes());
        match self {
            AggState::Acc(slices) => {
                out.push(1);
                put_u32(out, slices.len());
                for (s, a) in slices {
                    out.extend_from_slice(&s.to_le_bytes());
                    out.extend_from_slice(&a.count.to_le_bytes());
                    out.extend_from_slice(&a.sum.to_le_bytes());
                    out.extend_from_slice(&a.min.to_le_bytes());
                    out.extend_from_slice(&a.max.to_le_bytes());
                }
            }
            AggState::Distinct(slices) => {
                out.push(2);
                put_u32(out, slices.len());
                for (s, sk) in slices {
                    out.extend_from_slice(&s.to_le_bytes());
                    match sk {
                        Sketch::Exact(v) => {
                            out.push(0);
                            put_u32(out, v.len());
                            for h in v {
                                out.extend_from_slice(&h.to_le_bytes());
                            }
                        }
                        Sketch::Hll(regs) => {
                            out.push(1);
                            out.extend_from_slice(&regs[..]);
                        }
                    }
                }
            }
            AggState::Last(items) => {
                out.push(3);
                put_u32(out, items.len());
                for (t, v) in items {
                    out.extend_from_slice(&t.to_le_bytes());
                    put_u32(out, v.len());
                    out.extend_from_slice(v.as_bytes());
                }
            }
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Option<AggState> {
        Some(match r.u8()? {
            1 => {
                let n = r.u32()? as usize;
                let mut slices = VecDeque::with_capacity(n.min(4096));
                for _ in 0..n {
                    let s = r.i64()?;
                    let acc = Acc {
                        count: r.u64()?,
                        sum: r.f64()?,
                        min: r.f64()?,
                        max: r.f64()?,
                    };
                    slices.push_back((s, acc));
                }
                AggState::Acc(slices)
            }
            2 => {
                let n = r.u32()? as usize;
                let mut slices = VecDeque::with_capacity(n.min(4096));
                for _ in 0..n {
                    let s = r.i64()?;
                    let sk = match r.u8()? {
                        0 => {
                            let k = r.u32()? as usize;
                            let mut v = Vec::with_capacity(k.min(EXACT_LIMIT));
                            for _ in 0..k {
                                v.push(r.u64()?);
                            }
                            Sketch::Exact(v)
                        }
                        _ => {
                            let mut regs = Box::new([0u8; HLL_REGISTERS]);
                            regs.copy_from_slice(r.bytes(HLL_REGISTERS)?);
                            Sketch::Hll(regs)
                        }
                    };
                    slices.push_back((s, sk));
                }
                AggState::Distinct(slices)
            }
            3 => {
                let n = r.u32()? as usize;
                let mut items = VecDeque::with_capacity(n.min(1000));
                for _ in 0..n {
                    let t = r.i64()?;
                    let len = r.u32()? as usize;
                    let v = std::str::from_utf8(r.bytes(len)?).ok()?.to_string();
                    items.push_back((t, v));
                }
                AggState::Last(items)
            }
            _ => return None,
        })
    }
}

/// A cursor over encoded state.
pub struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    pub fn i64(&mut self) -> Option<i64> {
        self.u64().map(|v| v as i64)
    }

    pub fn f64(&mut self) -> Option<f64> {
        self.u64().map(f64::from_bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_features::stream::Function;

    const S: i64 = 1_000_000;

    fn agg(function: Function, size_s: i64, slide_s: i64) -> Aggregate {
        Aggregate {
            name: "a".into(),
            function,
            window: Some(Window {
                size_ms: size_s * 1000,
                slide_ms: slide_s * 1000,
            }),
            events: vec![],
            filters: vec![],
            field: None,
        }
    }

    fn value_at(state: &mut AggState, a: &Aggregate, now: i64) -> Value {
        state.prune(a, now);
        state.value(a)
    }

    #[test]
    fn a_sliding_count_moves_by_its_slide() {
        // 5 minutes sliding by 1 minute.
        let a = agg(Function::Count, 300, 60);
        let mut st = AggState::new(&a);
        for t in [10, 70, 130, 250] {
            assert!(st.add(&a, t * S, t * S, Input::One));
        }
        assert_eq!(value_at(&mut st, &a, 250 * S), Value::Int64(4));
        // The slice [0, 60) leaves at 300 s; [60, 120) at 360 s.
        assert_eq!(st.next_expiry(&a), Some(300 * S));
        assert_eq!(value_at(&mut st, &a, 299 * S), Value::Int64(4));
        assert_eq!(value_at(&mut st, &a, 300 * S), Value::Int64(3));
        assert_eq!(value_at(&mut st, &a, 360 * S), Value::Int64(2));
        assert_eq!(value_at(&mut st, &a, 600 * S), Value::Int64(0));
        assert!(st.is_empty());
    }

    #[test]
    fn a_tumbling_window_holds_only_the_current_window() {
        let a = agg(Function::Sum, 3600, 3600);
        let mut st = AggState::new(&a);
        st.add(&a, 100 * S, 100 * S, Input::Number(2.5));
        st.add(&a, 3599 * S, 3599 * S, Input::Number(1.0));
        assert_eq!(value_at(&mut st, &a, 3599 * S), Value::Float64(3.5));
        st.add(&a, 3600 * S, 3600 * S, Input::Number(4.0));
        assert_eq!(value_at(&mut st, &a, 3600 * S), Value::Float64(4.0));
        // An event of the closed hour arriving now changes nothing.
        assert!(!st.add(&a, 3000 * S, 3600 * S, Input::Number(9.0)));
        assert_eq!(value_at(&mut st, &a, 3700 * S), Value::Float64(4.0));
    }

    #[test]
    fn min_max_avg_are_null_on_an_empty_window() {
        for f in [Function::Min, Function::Max, Function::Avg] {
            let a = agg(f, 60, 10);
            let mut st = AggState::new(&a);
            assert_eq!(value_at(&mut st, &a, 0), Value::Null);
            st.add(&a, S, S, Input::Number(3.0));
            st.add(&a, 2 * S, 2 * S, Input::Number(5.0));
            let want = match f {
                Function::Min => 3.0,
                Function::Max => 5.0,
                _ => 4.0,
            };
            assert_eq!(value_at(&mut st, &a, 2 * S), Value::Float64(want));
        }
    }

    #[test]
    fn late_events_land_in_their_own_slice() {
        let a = agg(Function::Count, 600, 60);
        let mut st = AggState::new(&a);
        st.add(&a, 500 * S, 500 * S, Input::One);
        st.add(&a, 100 * S, 500 * S, Input::One);
        st.add(&a, 130 * S, 500 * S, Input::One);
        let AggState::Acc(slices) = &st else { panic!() };
        let starts: Vec<i64> = slices.iter().map(|(s, _)| s / S).collect();
        assert_eq!(starts, [60, 120, 480]);
        assert_eq!(value_at(&mut st, &a, 600 * S), Value::Int64(3));
        assert_eq!(value_at(&mut st, &a, 660 * S), Value::Int64(2));
    }

    #[test]
    fn distinct_counts_are_exact_when_small_and_close_when_large() {
        let a = agg(Function::DistinctCount, 3600, 600);
        let mut st = AggState::new(&a);
        for i in 0..20u64 {
            st.add(
                &a,
                S,
                S,
                Input::Hash(crate::fields::hash_bytes(&(i % 7).to_le_bytes())),
            );
        }
        assert_eq!(value_at(&mut st, &a, S), Value::Int64(7));
        let mut big = AggState::new(&a);
        for i in 0..20_000u64 {
            let t = (i % 3000) as i64 * S;
            big.add(
                &a,
                t,
                3000 * S,
                Input::Hash(crate::fields::hash_bytes(&i.to_le_bytes())),
            );
        }
        let Value::Int64(n) = value_at(&mut big, &a, 3000 * S) else {
            panic!()
        };
        assert!((17_000..23_000).contains(&n), "estimate {n}");
    }

    #[test]
    fn last_keeps_the_newest_n_in_its_window() {
        let mut a = agg(
            Function::Last {
                n: 3,
                integers: true,
            },
            60,
            60,
        );
        let mut st = AggState::new(&a);
        for (t, v) in [(1, "1"), (5, "5"), (3, "3"), (7, "7"), (2, "2")] {
            st.add(&a, t * S, 7 * S, Input::Text(v.into()));
        }
        assert_eq!(
            value_at(&mut st, &a, 7 * S),
            Value::Int64List(vec![Some(7), Some(5), Some(3)])
        );
        assert_eq!(
            value_at(&mut st, &a, 64 * S),
            Value::Int64List(vec![Some(7), Some(5)])
        );
        a.window = None;
        let mut forever = AggState::new(&a);
        forever.add(&a, S, S, Input::Text("9".into()));
        assert_eq!(forever.next_expiry(&a), None);
        assert_eq!(
            value_at(&mut forever, &a, 1_000_000 * S),
            Value::Int64List(vec![Some(9)])
        );
    }

    #[test]
    fn states_round_trip_through_their_encoding() {
        let count = agg(Function::Count, 300, 60);
        let distinct_agg = agg(Function::DistinctCount, 300, 60);
        let last = agg(
            Function::Last {
                n: 2,
                integers: false,
            },
            300,
            60,
        );
        let mut states = vec![
            AggState::new(&count),
            AggState::new(&distinct_agg),
            AggState::new(&last),
        ];
        for i in 0..100u64 {
            let t = i as i64 * S;
            states[0].add(&count, t, t, Input::One);
            states[1].add(
                &distinct_agg,
                t,
                t,
                Input::Hash(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            );
            states[2].add(&last, t, t, Input::Text(format!("p{i}")));
        }
        let mut bytes = Vec::new();
        for s in &states {
            s.encode(&mut bytes);
        }
        let mut r = Reader::new(&bytes);
        for s in &states {
            assert_eq!(&AggState::decode(&mut r).unwrap(), s);
        }
        assert_eq!(r.at, bytes.len());
        assert!(AggState::decode(&mut Reader::new(&bytes[..5])).is_none());
    }
}
