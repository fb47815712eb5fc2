//! The one loop every connector runs (ADR 0033): attempts one after another with bounded
//! backoff after retryable failures (`retry.rs`), until shutdown or a failure no retry can
//! help. One attempt: connect and read the catalog, load the state (migrating an old state
//! file) or start one, plan the re-snapshots due, put each table's schema on its topic, run the
//! snapshot of every table that needs it (`snapshot.rs`), then stream. A lost position with
//! `on_position_lost = "resnapshot"` restarts the stream and re-snapshots every table.

use std::collections::HashMap;

use crate::config::{OnPositionLost, SnapshotMode};
use strata_core::cdc::CdcRecord;
use tokio::sync::watch;

use crate::batch::Pending;
use crate::connector::{CatalogTable, Connector, StreamEnd, StreamStart};
use crate::error::{Error, Result};
use crate::state::{self, Phase, SourceState};
use crate::topic;

/// Runs `source` until `shutdown` turns true; reconnects with backoff after source failures.
pub(crate) async fn run<C: Connector>(source: C, shutdown: watch::Receiver<bool>) -> Result<()> {
    let source = &source;
    let config = source.config();
    let state_path = &source.context().state_path;
    crate::retry::run_with_backoff(&config.name, state_path, shutdown, |mut rx| async move {
        run_once(source, &mut rx).await
    })
    .await
}

async fn run_once<C: Connector>(source: &C, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
    let config = source.config();
    loop {
        match attempt(source, shutdown).await {
            // A re-snapshot asked for while streaming starts the next attempt.
            Ok(StreamEnd::Resync) => {}
            Ok(StreamEnd::Shutdown) => return Ok(()),
            Err(e @ Error::PositionLost { .. })
                if config.on_position_lost == OnPositionLost::Resnapshot =>
            {
                tracing::warn!(source = %config.name, error = %e, "re-snapshotting every table (on_position_lost = \"resnapshot\")");
                let start = source.restart_position().await?;
                state::resnapshot_all(&source.context().state_path, config, start, &e)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connect, snapshot what needs it, stream.
async fn attempt<C: Connector>(
    source: &C,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<StreamEnd> {
    let config = source.config();
    let context = source.context();
    let state_path = &context.state_path;
    let (mut session, catalog) = source.open().await?;
    let mut state = match state::load_migrating::<C::Position>(state_path)? {
        Some(mut s) => {
            source.check_saved(&mut session, &mut s).await?;
            s
        }
        None => {
            let start = source.start_position(&mut session).await?;
            let phase = match config.snapshot {
                SnapshotMode::Initial => Phase::Snapshot,
                SnapshotMode::Never => Phase::Stream,
            };
            let mut s = SourceState::new(phase, start);
            state::save(state_path, &mut s)?;
            tracing::info!(source = %config.name, kind = %C::KIND, position = %s.resume, ?phase, "cdc source initialised");
            s
        }
    };
    // The re-snapshots due: tables `strata cdc resync` asked for, and tables added to the
    // config after the source's snapshot. Each starts at the stream's current end.
    let due = state::due_resnapshots(state_path, config, &state)?;
    if !due.is_empty() {
        let start = source.end_position(&mut session).await?;
        state::begin_resnapshots(state_path, &config.name, &mut state, &due, start)?;
    }
    state::clear_resync_requests(state_path)?;
    let mut tables = Vec::with_capacity(catalog.len());
    let mut tails = HashMap::new();
    for t in catalog {
        let name = t.schema().table.clone();
        let topic = config.topic(&name);
        context
            .log
            .ensure_topic(&topic, 1)
            .await
            .map_err(|e| Error::bus(format!("creating topic {topic}"), e))?;
        let tail = topic::read_tail(&context.log, &topic).await?;
        let (table, send) = source.resume_table(t, tail.schema.as_ref(), state.snapshotting(&name));
        if send {
            let schema = CdcRecord::Schema(table.schema().clone());
            topic::append(context.log.as_ref(), &topic, vec![schema]).await?;
        }
        tails.insert(name, tail);
        tables.push(table);
    }
    let snapshot = crate::snapshot::Snapshot {
        log: context.log.as_ref(),
        config,
        state_path,
    };
    if !snapshot
        .run(source, &mut session, &tables, &mut state, shutdown)
        .await?
    {
        return Ok(StreamEnd::Shutdown);
    }
    if state.phase == Phase::Snapshot {
        state.phase = Phase::Stream;
        state.resume = state.snapshot_start.clone();
        state::save(state_path, &mut state)?;
        tracing::info!(source = %config.name, position = %state.resume, "snapshot done, streaming");
    }
    let mut pending = Pending::default();
    let streamed = source
        .stream(StreamStart {
            session,
            tables,
            tails,
            state: &mut state,
            pending: &mut pending,
            shutdown,
        })
        .await;
    pending.abandon().await;
    streamed
}
