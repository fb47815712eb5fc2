//! `strata serve`: collector + bus (embedded or Kafka) + lake sink, background compaction, the
//! CDC sources and merger, the warehouse schedule and the Iceberg REST catalog (`/iceberg`) — in
//! one process by default, or the subset `[server] roles` names (several processes over the
//! Kafka bus; see docs/deploy.md).
//!
//! Every background task runs under the panic guard (`supervise.rs`): a panic restarts the task
//! with a bounded backoff; one that keeps panicking stops the server in order with the reason.
//! HTTP handlers that panic answer 500.
//!
//! Shutdown order on SIGINT/SIGTERM: stop accepting HTTP (in-flight requests finish and are
//! acknowledged), stop the background compaction, then the lake sink flushes and commits everything on the bus, then the bus
//! closes. A SIGKILL at any point loses nothing acknowledged: acks wait for fsync, and the
//! sink's bus position is committed inside each Iceberg snapshot.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strata_bus::Log;
use strata_cdc::merge::{CdcMerger, CdcTable};
use strata_collect::config::Role;
use strata_collect::Collector;
use strata_sink::LakeSink;
use strata_sql::audit::AuditLog;
use strata_table::table::maintain::auto_compact;
use strata_table::Lake;
use tokio::sync::{mpsc, watch};

use super::load_config;
use super::supervise::{catch_handler_panics, supervise, Panicked};
use crate::cli::ServeArgs;

pub async fn run(args: ServeArgs) -> Result<()> {
    let mut config = load_config(&args.config.config)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(interval) = args.flush_interval {
        config.lake.flush_interval = interval;
    }
    if let Some(roles) = args.roles {
        config.server.roles = roles;
    }
    config.validate()?;
    serve_until(config, shutdown_signal(), None).await
}

/// The feature views' sync steps and the models' training steps, built each time the scheduler loads the project (so edited
/// view files take effect at the next run), writing to the store `serve` holds open.
fn feature_steps(
    store: strata_online::OnlineStore,
    config: &crate::config::Config,
) -> strata_warehouse::StepSource {
    let options = strata_features::SyncOptions {
        batch_rows: config.online.batch_rows,
        full: false,
    };
    let store = strata_features::StoreRef::Open(store);
    let config = config.clone();
    std::sync::Arc::new(move |project: &strata_warehouse::Project| {
        let views = strata_features::load_views(&project.root).map_err(|e| e.to_string())?;
        let mut steps = strata_features::sync_steps(project, &views, &store, &options)?;
        steps.extend(super::dag::model_steps(&config, project)?);
        Ok(steps)
    })
}

/// The feature server over the warehouse project's views (none without a project). Views
/// whose source exists are checked against the lake now, so a key of the wrong type is a 400.
async fn feature_router(
    config: &crate::config::Config,
    lake: Option<&Lake>,
    store: strata_online::OnlineStore,
    audit: AuditLog,
) -> Result<axum::Router> {
    let root = &config.warehouse.project;
    let (views, services) = if root.as_os_str().is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let views = strata_features::load_views(root).context("loading feature views")?;
        let services =
            strata_features::load_services(root, &views).context("loading feature services")?;
        (views, services)
    };
    let mut resolved = Vec::new();
    if let Some(lake) = lake {
        for view in &views {
            let reads = view.reads().unwrap_or_default();
            let missing = strata_features::materialize::missing_sources(lake, &reads).await;
            if !missing.is_empty() {
                // A fresh lake (the demo's, or a new deployment before its first DAG run) has
                // nothing to check against yet; `strata check` says whether a model builds it.
                tracing::info!(view = %view.name, sources = %missing.join(", "), "feature view not checked against the lake: its source is not in the lake yet");
                continue;
            }
            match strata_features::materialize::resolve(lake, view).await {
                Ok(r) => resolved.push(r),
                Err(e) => {
                    tracing::warn!(view = %view.name, error = %e, "feature view not checked against the lake")
                }
            }
        }
    }
    let key = strata_sql::masking::load_or_create_key(&config.mask_key_path())?;
    tracing::info!(
        views = views.len(),
        services = services.len(),
        store = store.kind(),
        "serving features"
    );
    Ok(
        strata_features::FeatureServer::new(store, views, config.catalog_tokens_path())
            .with_services(services)
            .with_governance(config.governance.clone(), key)
            .with_audit(audit)
            .with_resolved(&resolved)
            .router(),
    )
}

/// How often `serve` re-reads which model versions serve (`audit.model_deployments`).
const MODEL_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// The kNN recall API over the project's two-tower models and the feed API (none without a
/// project or without models). Promoted versions load now; a refresh task follows
/// promotions, another reloads the feed's catalogue.
async fn model_router(
    config: &crate::config::Config,
    lake: &Lake,
    store: strata_online::OnlineStore,
    audit: AuditLog,
    log: Arc<dyn Log>,
) -> Result<Option<axum::Router>> {
    let root = &config.warehouse.project;
    if root.as_os_str().is_empty() {
        return Ok(None);
    }
    let specs = strata_models::load_models(root).context("loading models")?;
    let mut server = strata_models::serve::ModelServer::new(
        lake.clone(),
        store.clone(),
        specs,
        config.data.dir.join("models"),
        config.catalog_tokens_path(),
    )
    .with_audit(audit.clone());
    if server.model_names().is_empty() {
        return Ok(None);
    }
    // Versions an experiment variant pins stay loaded beside the deployment's.
    for e in config.experiments.iter().filter(|e| e.enabled) {
        for v in &e.variants {
            if let Some(r) = v.ranker_version {
                server.pin(&config.feed.ranker_model, r);
            }
            if let Some(r) = v.recall_version {
                server.pin(&config.feed.recall_model, r);
            }
        }
    }
    for problem in server.refresh().await {
        tracing::warn!(problem = %problem, "model not loaded yet");
    }
    tracing::info!(models = ?server.model_names(), "serving kNN recall");
    let server = std::sync::Arc::new(server);
    server.spawn_refresh(MODEL_REFRESH);
    let mut router = server.clone().router();
    if config.feed.enabled {
        let views = strata_features::view::load_views(root).context("loading feature views")?;
        let entities = strata_feed::view_entities(&views);
        let impressions = config.feed.log_impressions.then(|| {
            strata_feed::events::ImpressionLog::new(
                log,
                config.feed.app.clone(),
                config.bus.record_format,
            )
        });
        let service = Arc::new(strata_feed::FeedService::new(
            config.feed.clone(),
            config.experiments.clone(),
            server,
            store,
            entities,
            impressions,
        ));
        strata_feed::server::spawn_catalog_refresh(&service, lake.clone());
        strata_feed::trending::spawn_trending_refresh(&service);
        let feed = Arc::new(strata_feed::server::FeedServer {
            service,
            tokens_path: config.catalog_tokens_path(),
            audit,
        });
        router = router.merge(feed.router());
        tracing::info!("serving the feed (GET /v1/feed)");
    }
    Ok(Some(router))
}

/// A background task of `serve`, `None` when this process does not run its role.
type Task<T> = Option<tokio::task::JoinHandle<T>>;

/// Waits for `task` to finish; never, when there is none.
async fn finished<T>(task: &mut Task<T>) -> std::result::Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Runs everything `strata serve` runs (the roles in `[server] roles`) until `shutdown`
/// completes, then stops in order. `listening` receives the bound address (for in-process
/// callers like `strata demo`).
pub async fn serve_until(
    config: crate::config::Config,
    shutdown: impl std::future::Future<Output = ()>,
    listening: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<()> {
    let metrics = install_metrics()?;
    // The project's event schemas, registered before anything starts: a bad one stops here.
    super::schemas::register_project(&config)?;
    let runs = |role: Role| config.server.runs(role);
    let roles: Vec<&str> = config.server.roles.iter().map(|r| r.name()).collect();

    let log: Arc<dyn Log> = crate::bus::open(&config).await?;

    // Collector-only processes never open the lake: they need no catalog and no storage. The
    // feature API reads the views' key types from it.
    let lake = if runs(Role::Sink) || runs(Role::Warehouse) || runs(Role::Features) {
        Some(
            Lake::open(&config.lake_options())
                .await
                .context("opening the lake")?,
        )
    } else {
        None
    };
    // Tasks other than the sink report here when they give up after repeated panics.
    let (gave_up, mut gave_up_rx) = mpsc::unbounded_channel::<Panicked>();
    let (stop_sink, sink_shutdown) = watch::channel(false);
    let mut sink_task = match (&lake, runs(Role::Sink)) {
        (Some(lake), true) => {
            // Opened here once so that a lake that cannot be written fails the start; after
            // a panic the guard opens a fresh one (the old one, and its lock, went with it).
            let mut opened = Some(
                LakeSink::new(lake, log.clone(), &config.lake)
                    .await
                    .context("starting the lake sink")?,
            );
            let (lake, log, lake_config) = (lake.clone(), log.clone(), config.lake.clone());
            let rx = sink_shutdown.clone();
            Some(tokio::spawn(supervise(
                "lake_sink",
                sink_shutdown,
                move || {
                    let opened = opened.take();
                    let (lake, log, lake_config, rx) =
                        (lake.clone(), log.clone(), lake_config.clone(), rx.clone());
                    async move {
                        let sink = match opened {
                            Some(sink) => sink,
                            None => LakeSink::new(&lake, log, &lake_config).await?,
                        };
                        sink.run(rx).await
                    }
                },
            )))
        }
        _ => None,
    };
    // The online store: written by the DAG's feature syncs, read by the feature API.
    let online = if runs(Role::Warehouse) || runs(Role::Features) {
        Some(
            strata_online::OnlineStore::open(&config.online, &config.data.dir)
                .await
                .context("opening the online store")?,
        )
    } else {
        None
    };
    // The warehouse DAG on its schedule (returns at once when no project is configured).
    let (stop_warehouse, warehouse_shutdown) = watch::channel(false);
    let warehouse_task = match (&lake, runs(Role::Warehouse)) {
        (Some(lake), true) => {
            let cdc_tables: Option<Vec<_>> = (!config.sources.is_empty()).then(|| {
                CdcTable::from_sources(&config.sources)
                    .into_iter()
                    .map(|t| (t.topic, t.target))
                    .collect()
            });
            let bus = log.clone();
            let (lake, warehouse) = (lake.clone(), config.warehouse.clone());
            let rx = warehouse_shutdown.clone();
            let steps = online.clone().map(|store| feature_steps(store, &config));
            Some(spawn_guarded(
                "warehouse_scheduler",
                warehouse_shutdown,
                &gave_up,
                move || {
                    strata_warehouse::schedule::scheduler(
                        lake.clone(),
                        warehouse.clone(),
                        cdc_tables
                            .clone()
                            .map(|tables| strata_warehouse::schedule::CdcInputs {
                                log: bus.clone(),
                                tables,
                            }),
                        steps.clone(),
                        rx.clone(),
                    )
                },
            ))
        }
        _ => None,
    };
    // Scheduled HTTP pulls (`[[pulls]]`), beside the warehouse schedule: each window due is
    // pulled into its table (one partition overwrite), missed windows caught up.
    let (stop_pulls, pulls_shutdown) = watch::channel(false);
    let pulls_task = match (&lake, runs(Role::Warehouse) && !config.pulls.is_empty()) {
        (Some(lake), true) => {
            let pulls = strata_pull::compile_all(&config.pulls)?;
            let runner = strata_pull::Runner::new(lake.clone(), &config.data.dir)?;
            let rx = pulls_shutdown.clone();
            Some(spawn_guarded(
                "pulls",
                pulls_shutdown,
                &gave_up,
                move || strata_pull::schedule::scheduler(runner.clone(), pulls.clone(), rx.clone()),
            ))
        }
        _ => None,
    };
    // Background compaction: optimistic commits, so it never blocks the sink's appends.
    let (stop_compaction, compaction_shutdown) = watch::channel(false);
    let compaction_task = match (&lake, runs(Role::Sink) && config.lake.compaction) {
        (Some(lake), true) => {
            let (lake, lake_config) = (lake.clone(), config.lake.clone());
            let rx = compaction_shutdown.clone();
            Some(spawn_guarded(
                "compaction",
                compaction_shutdown,
                &gave_up,
                move || auto_compact(lake.clone(), lake_config.clone(), rx.clone()),
            ))
        }
        _ => None,
    };

    // Database CDC: one task per source (snapshot + binlog / slot → bus) and one merger (bus → ODS).
    let (stop_sources, sources_shutdown) = watch::channel(false);
    let mut source_tasks = Vec::new();
    if runs(Role::Cdc) {
        for source in &config.sources {
            // Built once up front so a bad source fails the start; rebuilt after a panic.
            strata_cdc::Source::new(source, log.clone(), &config.data.dir)
                .with_context(|| format!("source {}", source.name))?;
            let (source, log, data_dir) = (source.clone(), log.clone(), config.data.dir.clone());
            let rx = sources_shutdown.clone();
            source_tasks.push(spawn_guarded(
                "cdc_source",
                sources_shutdown.clone(),
                &gave_up,
                move || {
                    let (source, log, data_dir, rx) =
                        (source.clone(), log.clone(), data_dir.clone(), rx.clone());
                    async move {
                        let run = match strata_cdc::Source::new(&source, log, &data_dir) {
                            Ok(s) => s.run(rx).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = run {
                            tracing::error!(source = %source.name, error = %e, "cdc source stopped");
                        }
                    }
                },
            ));
        }
    }
    let (stop_merger, merger_shutdown) = watch::channel(false);
    let merger_task = match (&lake, runs(Role::Sink) && !config.sources.is_empty()) {
        (Some(lake), true) => {
            let (lake, log, sources) = (lake.clone(), log.clone(), config.sources.clone());
            let rx = merger_shutdown.clone();
            Some(spawn_guarded(
                "cdc_merger",
                merger_shutdown,
                &gave_up,
                move || {
                    let merger =
                        CdcMerger::new(&lake, log.clone(), CdcTable::from_sources(&sources));
                    let rx = rx.clone();
                    async move {
                        if let Err(e) = merger.run(rx).await {
                            tracing::error!(error = %e, "cdc merger stopped");
                        }
                    }
                },
            ))
        }
        _ => None,
    };

    // Real-time feature views: consumer group `realtime` over `events` → the online store.
    let (stop_realtime, realtime_shutdown) = watch::channel(false);
    let realtime_task = match (&online, runs(Role::Features)) {
        (Some(store), true) => realtime_task(
            &config,
            store.clone(),
            log.clone(),
            lake.clone(),
            realtime_shutdown,
            &gave_up,
        )?,
        _ => None,
    };

    // The risk rules: consumer group `risk`, beside the lake sink (it records decisions in the
    // lake); the blocks it publishes reach every collector over the bus.
    let (stop_risk, risk_shutdown) = watch::channel(false);
    let risk_task = match (&lake, runs(Role::Sink) && !config.risk.rules.is_empty()) {
        (Some(lake), true) => {
            let (lake, log, risk) = (lake.clone(), log.clone(), config.risk.clone());
            let rx = risk_shutdown.clone();
            tracing::info!(
                rules = risk.rules.len(),
                "evaluating risk rules (consumer group risk)"
            );
            Some(spawn_guarded("risk", risk_shutdown, &gave_up, move || {
                let consumer = strata_stream::risk::RiskConsumer::new(
                    log.clone(),
                    Some(lake.clone()),
                    risk.clone(),
                );
                let rx = rx.clone();
                async move {
                    if let Err(e) = consumer.run(rx).await {
                        tracing::error!(error = %e, "risk consumer stopped");
                    }
                }
            }))
        }
        _ => None,
    };

    let mut collector_schemas = None;
    let router = if runs(Role::Collector) {
        let collector = Collector::new(&config.collector_options(), log.clone())
            .await
            .context("starting the collector")?;
        collector_schemas = Some(collector.schemas().clone());
        collector.router()
    } else {
        let log = log.clone();
        axum::Router::new().route(
            "/health",
            get(move || {
                let log = log.clone();
                async move { strata_collect::health(log.as_ref()) }
            }),
        )
    };
    let mut router = router.route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    );
    // The access log (audit.access_log) of everything served here, with its retention.
    let (stop_audit, audit_shutdown) = watch::channel(false);
    let (audit, audit_task) = match (&lake, config.governance.audit) {
        (Some(lake), true) => {
            let (log, task) = AuditLog::start(
                lake.clone(),
                config.governance.audit_flush_interval,
                audit_shutdown.clone(),
            );
            let (lake, retention, rx) = (
                lake.clone(),
                config.governance.audit_retention,
                audit_shutdown.clone(),
            );
            let retention = spawn_guarded("audit_retention", audit_shutdown, &gave_up, move || {
                audit_retention(lake.clone(), retention, rx.clone())
            });
            (log, vec![task, retention])
        }
        _ => (AuditLog::disabled(), Vec::new()),
    };
    // The event schema registry's API (/registry), over the collector's registry when it
    // runs here (a registration applies to the next event), calls in the access log.
    router = router.nest(
        strata_schema::http::PREFIX,
        super::schemas::registry_router(&config, collector_schemas, audit.clone())?,
    );
    // The Iceberg REST catalog over the same catalog, on the same listener (ADR 0013), in
    // every process that opened the lake — unless the lake is itself on a REST catalog, which
    // other engines should use directly.
    match (&lake, config.catalog_server.enabled) {
        (Some(lake), true) if lake.is_embedded_catalog() => {
            let settings = strata_rest::RestSettings {
                tokens_path: config.catalog_tokens_path(),
                locations: config.location_policy()?,
                governance: config.governance.clone(),
                audit: audit.clone(),
            };
            router = router.nest(
                strata_rest::PREFIX,
                strata_rest::router(lake.clone(), settings),
            );
        }
        (Some(_), true) => tracing::info!(
            catalog = %config.catalog.uri,
            "not serving /iceberg: the lake's tables are in the REST catalog above; point other engines at it"
        ),
        _ => {}
    }
    // The feature API (/get-online-features, /v1/features) over the online store.
    if let (true, Some(store)) = (runs(Role::Features), &online) {
        router = router
            .merge(feature_router(&config, lake.as_ref(), store.clone(), audit.clone()).await?);
        // kNN recall from the promoted two-tower versions (polled from the registry).
        if let Some(lake) = &lake {
            if let Some(models) =
                model_router(&config, lake, store.clone(), audit.clone(), log.clone()).await?
            {
                router = router.merge(models);
            }
        }
    }
    // Outermost: a handler that panics (the collector's, the catalog's, /metrics) answers 500.
    let router = router.layer(axum::middleware::from_fn(catch_handler_panics));
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    // The line tests and scripts wait for; keep its shape.
    match listening {
        Some(tx) => {
            let _ = tx.send(addr);
        }
        None => println!("strata listening on http://{addr}"),
    }
    tracing::info!(%addr, data = %config.data.dir.display(), flush_interval = ?config.lake.flush_interval, roles = ?roles, "serving");

    let (stop_http, http_shutdown) = watch::channel(false);
    let mut http_task = tokio::spawn(strata_collect::serve(listener, router, async move {
        let mut rx = http_shutdown;
        let _ = rx.wait_for(|stop| *stop).await;
    }));

    let outcome: Result<()> = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down: draining http, flushing the lake sink");
            Ok(())
        }
        res = finished(&mut sink_task) => {
            Err(match res {
                Ok(Ok(Ok(()))) => anyhow::anyhow!("lake sink stopped unexpectedly"),
                Ok(Ok(Err(e))) => anyhow::Error::new(e).context("lake sink failed"),
                Ok(Err(panicked)) => anyhow::Error::new(panicked),
                Err(e) => anyhow::anyhow!("lake sink task failed: {e}"),
            })
        }
        Some(panicked) = gave_up_rx.recv() => Err(anyhow::Error::new(panicked)),
        res = &mut http_task => {
            Err(match res {
                Ok(Ok(())) => anyhow::anyhow!("http server stopped unexpectedly"),
                Ok(Err(e)) => anyhow::Error::new(e).context("http server failed"),
                Err(e) => anyhow::anyhow!("http server task panicked: {e}"),
            })
        }
    };

    let _ = stop_http.send(true);
    if !http_task.is_finished() {
        let _ = http_task.await;
    }
    // A warehouse run in progress stops here; re-running its date later replaces its output.
    let _ = stop_warehouse.send(true);
    if let Some(task) = warehouse_task {
        let _ = task.await;
    }
    // A window being pulled is dropped uncommitted; it is pulled again at the next start.
    let _ = stop_pulls.send(true);
    if let Some(task) = pulls_task {
        let _ = task.await;
    }
    // A compaction in progress is dropped; files it wrote but did not commit are orphans.
    let _ = stop_compaction.send(true);
    if let Some(task) = compaction_task {
        let _ = task.await;
    }
    // Sources stop first (they save their positions), then the merger applies what they put
    // on the bus, then the lake sink.
    let _ = stop_sources.send(true);
    for t in source_tasks {
        let _ = t.await;
    }
    let _ = stop_merger.send(true);
    if let Some(t) = merger_task {
        let _ = t.await;
    }
    let _ = stop_risk.send(true);
    if let Some(t) = risk_task {
        let _ = t.await;
    }
    // The realtime consumer writes what it computed and its checkpoints.
    let _ = stop_realtime.send(true);
    if let Some(t) = realtime_task {
        let _ = t.await;
    }
    let _ = stop_audit.send(true);
    for task in audit_task {
        let _ = task.await;
    }
    let _ = stop_sink.send(true);
    if let Some(task) = sink_task.filter(|t| !t.is_finished()) {
        match task.await {
            Ok(Ok(Ok(()))) => tracing::info!("lake sink flushed and committed"),
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "lake sink failed while stopping"),
            Ok(Err(e)) => tracing::error!(error = %e, "lake sink gave up while stopping"),
            Err(e) => tracing::error!(error = %e, "lake sink task failed"),
        }
    }
    log.close().await.context("closing the bus")?;
    tracing::info!("stopped");
    outcome
}

/// The realtime consumer over the project's stream views (`None`: no project, or no stream
/// view in it). It backfills new views from the lake and restarts after failures that a retry
/// can fix (the store or the lake unreachable).
fn realtime_task(
    config: &crate::config::Config,
    store: strata_online::OnlineStore,
    log: Arc<dyn Log>,
    lake: Option<Lake>,
    shutdown: watch::Receiver<bool>,
    gave_up: &mpsc::UnboundedSender<Panicked>,
) -> Result<Task<()>> {
    let root = &config.warehouse.project;
    if root.as_os_str().is_empty() {
        return Ok(None);
    }
    let views = strata_features::load_views(root).context("loading feature views")?;
    let first = strata_stream::Realtime::new(
        &views,
        store.clone(),
        log.clone(),
        lake.clone(),
        Default::default(),
    );
    if first.view_names().is_empty() {
        return Ok(None);
    }
    tracing::info!(views = ?first.view_names(), "computing stream views (consumer group realtime)");
    let rx = shutdown.clone();
    Ok(Some(spawn_guarded(
        "realtime",
        shutdown,
        gave_up,
        move || {
            let (views, store, log, lake, mut rx) = (
                views.clone(),
                store.clone(),
                log.clone(),
                lake.clone(),
                rx.clone(),
            );
            async move {
                loop {
                    let rt = strata_stream::Realtime::new(
                        &views,
                        store.clone(),
                        log.clone(),
                        lake.clone(),
                        Default::default(),
                    );
                    match rt.run(rx.clone()).await {
                        Ok(()) => return,
                        Err(e) if e.retryable() => {
                            tracing::warn!(error = %e, "realtime consumer failed; restarting from its checkpoints");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "realtime consumer stopped");
                            return;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                        _ = rx.changed() => return,
                    }
                }
            }
        },
    )))
}

/// Deletes access-log rows past `retention`, at start and then daily.
async fn audit_retention(
    lake: strata_table::Lake,
    retention: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match strata_sql::audit::expire(&lake, retention).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "access log: deleted rows past retention"),
            Err(e) => tracing::warn!(error = %e, "access log retention failed; retrying tomorrow"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// Spawns `start`'s future under the panic guard; if it gives up, `gave_up` hears why.
fn spawn_guarded<F, Fut>(
    task: &'static str,
    shutdown: watch::Receiver<bool>,
    gave_up: &mpsc::UnboundedSender<Panicked>,
    start: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let gave_up = gave_up.clone();
    tokio::spawn(async move {
        if let Err(panicked) = supervise(task, shutdown, start).await {
            let _ = gave_up.send(panicked);
        }
    })
}

/// The process-wide Prometheus recorder (installed once; later calls reuse it).
fn install_metrics() -> Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let h = build_metrics()?;
    Ok(HANDLE.get_or_init(|| h).clone())
}

fn build_metrics() -> Result<PrometheusHandle> {
    let buckets = [
        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
    ];
    // Feature lookups answer in tens to hundreds of microseconds: finer buckets, so a p99 of
    // 0.5 ms can be read off /metrics.
    let fine = [
        0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1,
        0.5, 1.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("strata_features_request_duration_seconds".to_string()),
            &fine,
        )
        .context("configuring metric buckets")?
        .set_buckets_for_metric(Matcher::Suffix("seconds".to_string()), &buckets)
        .context("configuring metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
