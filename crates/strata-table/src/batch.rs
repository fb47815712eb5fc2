//! Bus records → Arrow columns, buffered per Iceberg partition.
//!
//! Rows are appended straight into per-partition Arrow builders (no intermediate row structs,
//! no sort or `take` at flush time): `ods.ods_event` groups by `(dt, hr, event_type)`,
//! `ods.ods_event_rejected` by `dt`. Looking a group up borrows the event type, so only the
//! first row of a new group allocates its key.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Date32Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use arrow::record_batch::RecordBatch;
use iceberg::spec::{Literal, Struct};
use strata_bus::{Offset, Partition};
use strata_core::event::OPTIONAL_STRINGS;
use strata_core::{Event, EventView, Rejected};

use crate::error::{Error, Result};

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;
/// Iceberg's `timestamptz` in Arrow: microseconds, UTC.
const UTC: &str = "+00:00";

/// UTC date (days since 1970-01-01) of epoch microseconds.
pub fn utc_date(micros: i64) -> i32 {
    // Clamp: a date beyond i32 days is nonsense input; keep it representable.
    micros
        .div_euclid(MICROS_PER_DAY)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// UTC hour of day (0-23) of epoch microseconds.
pub fn utc_hour(micros: i64) -> i32 {
    (micros.div_euclid(MICROS_PER_HOUR).rem_euclid(24)) as i32
}

/// `event_type` of an event: the event name for `track`, otherwise the call type.
pub fn event_type<'a>(e: &'a EventView<'_>) -> &'a str {
    if e.kind == "track" {
        match e.event.as_deref() {
            Some(name) if !name.is_empty() => name,
            _ => "track",
        }
    } else {
        &e.kind
    }
}

fn ts_builder(capacity: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC)
}

/// Optional string columns of `ods.ods_event` from `ip` to `traits`, in schema order.
const TAIL_STRINGS: usize = 21;

/// Arrow builders for rows of `ods.ods_event` (one partition group).
pub struct EventColumns {
    message_id: StringBuilder,
    app: StringBuilder,
    kind: StringBuilder,
    event: StringBuilder,
    event_type: StringBuilder,
    user_id: StringBuilder,
    anonymous_id: StringBuilder,
    group_id: StringBuilder,
    previous_id: StringBuilder,
    client_ts: TimestampMicrosecondBuilder,
    sent_at: TimestampMicrosecondBuilder,
    server_ts: TimestampMicrosecondBuilder,
    event_ts: TimestampMicrosecondBuilder,
    dt: Date32Builder,
    hr: Int32Builder,
    tail: [StringBuilder; TAIL_STRINGS],
    bus_partition: Int32Builder,
    bus_offset: Int64Builder,
}

/// String columns of `ods.ods_event` before the tail: `message_id` to `previous_id`.
const HEAD_STRINGS: usize = 9;

/// How large a group's builders grew before their last flush. The next group of the same
/// event type starts at that size, so a busy stream's builders are allocated once per flush
/// instead of doubling (copying, and faulting in fresh pages) a dozen times on the way.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SizeHint {
    rows: usize,
    bytes: [usize; HEAD_STRINGS + TAIL_STRINGS],
}

impl Default for SizeHint {
    fn default() -> Self {
        // The first buffer of an event type: small, with typical widths for the ids.
        let rows = 1024;
        let mut bytes = [0; HEAD_STRINGS + TAIL_STRINGS];
        bytes[..7].copy_from_slice(&[36, 8, 8, 16, 16, 16, 16].map(|w| w * rows));
        SizeHint { rows, bytes }
    }
}

impl SizeHint {
    /// The larger of two hints, column by column.
    fn max(self, other: SizeHint) -> SizeHint {
        let mut bytes = self.bytes;
        for (b, o) in bytes.iter_mut().zip(other.bytes) {
            *b = (*b).max(o);
        }
        SizeHint {
            rows: self.rows.max(other.rows),
            bytes,
        }
    }
}

impl EventColumns {
    fn new(hint: &SizeHint) -> Self {
        // A little slack: the next flush's buffer is rarely exactly as large as the last one.
        let grow = |n: usize| n + n / 8;
        let cap = grow(hint.rows);
        let string = |i: usize| StringBuilder::with_capacity(cap, grow(hint.bytes[i]));
        EventColumns {
            message_id: string(0),
            app: string(1),
            kind: string(2),
            event: string(3),
            event_type: string(4),
            user_id: string(5),
            anonymous_id: string(6),
            group_id: string(7),
            previous_id: string(8),
            client_ts: ts_builder(cap),
            sent_at: ts_builder(cap),
            server_ts: ts_builder(cap),
            event_ts: ts_builder(cap),
            dt: Date32Builder::with_capacity(cap),
            hr: Int32Builder::with_capacity(cap),
            tail: std::array::from_fn(|i| string(HEAD_STRINGS + i)),
            bus_partition: Int32Builder::with_capacity(cap),
            bus_offset: Int64Builder::with_capacity(cap),
        }
    }

    /// The sizes these builders reached.
    fn size_hint(&self) -> SizeHint {
        let head = [
            &self.message_id,
            &self.app,
            &self.kind,
            &self.event,
            &self.event_type,
            &self.user_id,
            &self.anonymous_id,
            &self.group_id,
            &self.previous_id,
        ];
        let mut bytes = [0; HEAD_STRINGS + TAIL_STRINGS];
        for (b, builder) in bytes.iter_mut().zip(head.into_iter().chain(&self.tail)) {
            *b = builder.values_slice().len();
        }
        SizeHint {
            rows: ArrayBuilder::len(&self.bus_offset),
            bytes,
        }
    }

    fn push(&mut self, e: &EventView<'_>, event_type: &str, at: BusPosition) {
        self.message_id.append_value(&e.message_id);
        self.app.append_value(&e.app);
        self.kind.append_value(&e.kind);
        self.event.append_option(e.event.as_deref());
        self.event_type.append_value(event_type);
        self.user_id.append_option(e.user_id.as_deref());
        self.anonymous_id.append_option(e.anonymous_id.as_deref());
        self.group_id.append_option(e.group_id.as_deref());
        self.previous_id.append_option(e.previous_id.as_deref());
        self.client_ts.append_option(e.client_ts);
        self.sent_at.append_option(e.sent_at);
        self.server_ts.append_value(e.server_ts);
        self.event_ts.append_value(e.event_ts);
        self.dt.append_value(utc_date(e.event_ts));
        self.hr.append_value(utc_hour(e.event_ts));
        // `ip` to `traits`: the optional strings after `event` and the four ids.
        let tail = &e.optional_strings()[OPTIONAL_STRINGS - TAIL_STRINGS..];
        for (builder, value) in self.tail.iter_mut().zip(tail) {
            builder.append_option(*value);
        }
        self.bus_partition.append_value(at.partition as i32);
        self.bus_offset.append_value(at.offset as i64);
    }

    /// Builds the batch in `ods.ods_event` column order against the table's Arrow schema.
    pub fn finish(mut self, schema: ArrowSchemaRef) -> Result<RecordBatch> {
        let rows = ArrayBuilder::len(&self.bus_offset);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.message_id.finish()),
            Arc::new(self.app.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.event.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.anonymous_id.finish()),
            Arc::new(self.group_id.finish()),
            Arc::new(self.previous_id.finish()),
            Arc::new(self.client_ts.finish()),
            Arc::new(self.sent_at.finish()),
            Arc::new(self.server_ts.finish()),
            Arc::new(self.event_ts.finish()),
            Arc::new(self.dt.finish()),
            Arc::new(self.hr.finish()),
        ];
        for builder in self.tail.iter_mut() {
            columns.push(Arc::new(builder.finish()));
        }
        columns.push(Arc::new(self.bus_partition.finish()));
        columns.push(Arc::new(self.bus_offset.finish()));
        columns.push(flush_time(rows));
        RecordBatch::try_new(schema, columns)
            .map_err(|e| Error::arrow("building ods_event batch", e))
    }
}

/// Arrow builders for rows of `ods.ods_event_rejected` (one `dt` group).
pub struct RejectedColumns {
    message_id: StringBuilder,
    app: StringBuilder,
    server_ts: TimestampMicrosecondBuilder,
    dt: Date32Builder,
    reason: StringBuilder,
    raw: StringBuilder,
    bus_partition: Int32Builder,
    bus_offset: Int64Builder,
}

impl RejectedColumns {
    fn new() -> Self {
        RejectedColumns {
            message_id: StringBuilder::new(),
            app: StringBuilder::new(),
            server_ts: ts_builder(64),
            dt: Date32Builder::new(),
            reason: StringBuilder::new(),
            raw: StringBuilder::new(),
            bus_partition: Int32Builder::new(),
            bus_offset: Int64Builder::new(),
        }
    }

    fn push(&mut self, r: &RejectedRow<'_>, at: BusPosition) {
        self.message_id.append_option(r.message_id);
        self.app.append_value(r.app);
        self.server_ts.append_value(r.server_ts);
        self.dt.append_value(utc_date(r.server_ts));
        self.reason.append_value(r.reason);
        self.raw.append_value(r.raw);
        self.bus_partition.append_value(at.partition as i32);
        self.bus_offset.append_value(at.offset as i64);
    }

    pub fn finish(mut self, schema: ArrowSchemaRef) -> Result<RecordBatch> {
        let rows = ArrayBuilder::len(&self.bus_offset);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.message_id.finish()),
            Arc::new(self.app.finish()),
            Arc::new(self.server_ts.finish()),
            Arc::new(self.dt.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(self.bus_partition.finish()),
            Arc::new(self.bus_offset.finish()),
            flush_time(rows),
        ];
        RecordBatch::try_new(schema, columns)
            .map_err(|e| Error::arrow("building ods_event_rejected batch", e))
    }
}

/// `ingested_at` is the moment the sink starts writing the file that holds the row (the flush),
/// so `ingested_at - server_ts` is the collector-to-lake latency of that row, within the time
/// one Parquet write and one commit take.
fn flush_time(rows: usize) -> ArrayRef {
    let now = strata_core::time::now_micros();
    Arc::new(arrow::array::TimestampMicrosecondArray::from_value(now, rows).with_timezone(UTC))
}

/// Where a row came from on the bus.
#[derive(Debug, Clone, Copy)]
pub struct BusPosition {
    pub partition: Partition,
    pub offset: Offset,
}

/// A dead-letter row: a [`Rejected`] payload, or a bus record that did not decode.
pub struct RejectedRow<'a> {
    pub message_id: Option<&'a str>,
    pub app: &'a str,
    pub server_ts: i64,
    pub reason: &'a str,
    pub raw: &'a str,
}

impl<'a> From<&'a Rejected> for RejectedRow<'a> {
    fn from(r: &'a Rejected) -> Self {
        RejectedRow {
            message_id: r.message_id.as_deref(),
            app: &r.app,
            server_ts: r.server_ts,
            reason: &r.reason,
            raw: &r.raw,
        }
    }
}

/// Buffered `ods.ods_event` rows grouped by partition `(dt, hr, event_type)`.
#[derive(Default)]
pub struct EventBuffer {
    groups: HashMap<(i32, i32), HashMap<String, EventColumns>>,
    rows: usize,
    /// Per event type, the largest group of the last flush that had one.
    hints: HashMap<String, SizeHint>,
}

impl EventBuffer {
    pub fn push(&mut self, e: &Event, at: BusPosition) {
        self.push_view(&e.view(), at);
    }

    /// [`EventBuffer::push`] of an event decoded from the bus without copying its strings.
    pub fn push_view(&mut self, e: &EventView<'_>, at: BusPosition) {
        let et = event_type(e);
        let key = (utc_date(e.event_ts), utc_hour(e.event_ts));
        let by_type = self.groups.entry(key).or_default();
        let columns = match by_type.get_mut(et) {
            Some(c) => c,
            None => {
                let hint = self.hints.get(et).copied().unwrap_or_default();
                by_type
                    .entry(et.to_string())
                    .or_insert_with(|| EventColumns::new(&hint))
            }
        };
        columns.push(e, et, at);
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows and `message_id` bytes the next group of `event_type` starts with room for (for tests).
    #[doc(hidden)]
    pub fn hint(&self, event_type: &str) -> Option<(usize, usize)> {
        self.hints.get(event_type).map(|h| (h.rows, h.bytes[0]))
    }

    /// Empties the buffer into `(partition value, columns)` groups, in a stable order.
    pub fn take_groups(&mut self) -> Vec<(Struct, EventColumns)> {
        self.rows = 0;
        let mut out: Vec<((i32, i32, String), EventColumns)> = Vec::new();
        let mut hints: HashMap<String, SizeHint> = HashMap::new();
        for ((dt, hr), by_type) in std::mem::take(&mut self.groups) {
            for (et, columns) in by_type {
                let hint = columns.size_hint();
                hints
                    .entry(et.clone())
                    .and_modify(|h| *h = h.max(hint))
                    .or_insert(hint);
                out.push(((dt, hr, et), columns));
            }
        }
        // Types that did not come this time are forgotten: a hint only lives one flush.
        self.hints = hints;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter()
            .map(|((dt, hr, et), columns)| {
                let key = Struct::from_iter([
                    Some(Literal::date(dt)),
                    Some(Literal::int(hr)),
                    Some(Literal::string(et)),
                ]);
                (key, columns)
            })
            .collect()
    }
}

/// Buffered `ods.ods_event_rejected` rows grouped by partition `dt`.
#[derive(Default)]
pub struct RejectedBuffer {
    groups: HashMap<i32, RejectedColumns>,
    rows: usize,
}

impl RejectedBuffer {
    pub fn push(&mut self, r: &RejectedRow<'_>, at: BusPosition) {
        self.groups
            .entry(utc_date(r.server_ts))
            .or_insert_with(RejectedColumns::new)
            .push(r, at);
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn take_groups(&mut self) -> Vec<(Struct, RejectedColumns)> {
        self.rows = 0;
        let mut out: Vec<(i32, RejectedColumns)> =
            std::mem::take(&mut self.groups).into_iter().collect();
        out.sort_by_key(|g| g.0);
        out.into_iter()
            .map(|(dt, columns)| (Struct::from_iter([Some(Literal::date(dt))]), columns))
            .collect()
    }
}
