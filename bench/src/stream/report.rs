//! The stream suite's Markdown report (`bench/results/stream-*.md`), from its JSON.

use serde_json::Value;

use super::server::{RISK_RULE_MAX, RISK_RULE_NAME};

fn pct(share: &Value) -> String {
    share
        .as_f64()
        .map_or("–".into(), |x| format!("{:.0}", x * 100.0))
}

fn f1(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.1}"))
}

fn f2(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.2}"))
}

fn f0(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.0}"))
}

/// One row per run: the realtime consumer's records and bus reads per second, records per
/// read, apply and view-flush times, rows written to the online store per second.
fn consumer_table<'a>(rows: impl Iterator<Item = (String, &'a Value)>) -> String {
    let mut t = String::from(
        "| run | records/s | bus reads/s | records per read | apply ms (mean) | view flushes/s | flush ms (mean) | rows written/s |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (name, c) in rows {
        t.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |\n",
            f0(&c["records_per_s"]),
            f0(&c["batches_per_s"]),
            f0(&c["records_per_batch"]),
            f2(&c["apply_ms_mean"]),
            f0(&c["view_flushes_per_s"]),
            f2(&c["view_flush_ms_mean"]),
            f0(&c["rows_written_per_s"]),
        ));
    }
    t
}

/// The suite's Markdown report from its JSON.
pub fn markdown(r: &Value) -> String {
    let s = &r["settings"];
    let mut md = String::from("# Stream views and risk rules (issue #29)\n\n");
    md.push_str(&format!(
        "Machine: {}. `{}`. Background: `Post Clicked` events from {} users on {} posts, batches \
         of {} per `/v1/batch` request, open loop over {} connections; the load generator, the \
         probes and `strata serve` share the cores. {}\n\n",
        r["machine"],
        r["strata"].as_str().unwrap_or_default(),
        s["users"],
        s["posts"],
        s["batch"],
        s["connections"],
        r["note"].as_str().unwrap_or_default()
    ));
    let fr = &r["freshness"];
    if let Some(runs) = fr["runs"].as_array() {
        md.push_str(&format!(
            "## Freshness: click acknowledged → visible in `user_realtime`\n\n{} probes a second, \
             each a click of a probe user with a new post id; after the acknowledgement the probe \
             reads `GET /v1/features/user_realtime/{{user}}` every ~1 ms until \
             `last_5_clicked_post_ids` holds it. Target: p99 ≤ 100 ms at 10,000 events/s. The \
             lake sink commits every 10 s (default), so its ack → commit is ~5 s p50 by design; \
             what matters is that its lag stays bounded.\n\n",
            s["probe_rate"]
        ));
        md.push_str("| target events/s | achieved events/s | background ack p50 / p99 ms | probes visible / sent | **ack→visible p50 / p99 ms** | send→visible p50 / p99 ms | max ms | realtime lag max | lake lag max / last | lake ack→commit p50 / p99 ms | serve CPU s/s | machine busy |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for run in runs {
            let bg = &run["background"];
            let p = &run["probes"];
            let srv = &run["server"];
            let lake = &run["lake_ack_to_commit_ms"];
            md.push_str(&format!(
                "| {} | {} | {} / {} | {} / {} | **{} / {}** | {} / {} | {} | {} | {} / {} | {} / {} | {} | {} % |\n",
                f0(&run["target_events_per_sec"]),
                f0(&bg["events_per_sec"]),
                f1(&bg["requests"]["p50_ms"]),
                f1(&bg["requests"]["p99_ms"]),
                p["ack_to_visible_ms"]["n"],
                p["sent"],
                f1(&p["ack_to_visible_ms"]["p50"]),
                f1(&p["ack_to_visible_ms"]["p99"]),
                f1(&p["send_to_visible_ms"]["p50"]),
                f1(&p["send_to_visible_ms"]["p99"]),
                f1(&p["ack_to_visible_ms"]["max"]),
                f0(&srv["stream_lag_max"]),
                f0(&srv["lake_lag_max"]),
                f0(&srv["lake_lag_last"]),
                f0(&lake["p50"]),
                f0(&lake["p99"]),
                f2(&run["cpu"]["serve_cpu_s_per_s"]),
                pct(&run["cpu"]["machine_busy_share"]),
            ));
        }
        md.push_str(&format!(
            "\nProbes not visible within 10 s count as not visible (left out of the quantiles). \
             What the realtime consumer did in each run (deltas of its `/metrics`):\n\n{}",
            consumer_table(runs.iter().map(|run| {
                (
                    format!("{} events/s", f0(&run["target_events_per_sec"])),
                    &run["realtime_consumer"],
                )
            }))
        ));
        md.push('\n');
    }
    let risk = &r["risk"];
    if !risk.is_null() {
        md.push_str(&format!(
            "## Risk: decision → enforced\n\nRule `{}`: more than {} events of one user within 10 s \
             blocks the user for 10 minutes. {} bots, one every {} ms, each sending {} single-event \
             requests a second for {} s over {} connections, while background load runs at {} \
             events/s (achieved {:.0}). Decision times: {} of {} from `ods.ods_risk_decision` (the \
             receive time of the event past the max), the rest estimated by the client.\n\n",
            RISK_RULE_NAME, RISK_RULE_MAX,
            risk["bots"],
            s["bot_stagger_ms"],
            s["bot_rate"],
            s["bot_seconds"],
            s["bot_connections"],
            s["risk_rate"],
            risk["background"]["events_per_sec"].as_f64().unwrap_or(0.0),
            risk["decisions_from_lake"],
            risk["bots"],
        ));
        md.push_str("| figure | p50 | p99 | max |\n|---|---|---|---|\n");
        for (name, key) in [
            (
                "decision → first refused event acknowledged, ms",
                "decision_to_first_refused_ack_ms",
            ),
            (
                "decision → first refused event sent, ms",
                "decision_to_first_refused_sent_ms",
            ),
            (
                "decision → last accepted event sent, ms",
                "decision_to_last_accepted_sent_ms",
            ),
            ("bot events/s achieved", "bot_events_per_sec"),
        ] {
            let v = &risk[key];
            md.push_str(&format!(
                "| {name} | {} | {} | {} |\n",
                f1(&v["p50"]),
                f1(&v["p99"]),
                f1(&v["max"])
            ));
        }
        md.push_str(&format!(
            "\nBot events accepted that were sent more than 1 s after their bot's decision: \
             **{}** (target 0); sent after the decision at all: {}; bots never refused: {}; \
             background events refused: {}.\n\n",
            risk["accepted_sent_over_1s_after_decision"],
            risk["accepted_sent_after_decision"],
            risk["bots_never_refused"],
            risk["background"]["events_rejected"],
        ));
    }
    if let Some(runs) = r["cpu"]["runs"].as_array() {
        md.push_str(&format!(
            "## CPU share of the realtime and risk consumers\n\nThe same open-loop load ({} s per \
             run) on fresh servers: without the stream views and the rule, then with them. Server \
             CPU from `/proc/PID/stat` (user + system), in CPU seconds per second of the load (2.00 \
             = both cores); per 1M events it counts the load and the 5 s after it (consumers \
             catching up).\n\n",
            s["cpu_seconds"]
        ));
        md.push_str("| target events/s | server | achieved events/s | ack p50 / p99 ms | **serve CPU s/s** | idle CPU s/s | CPU s per 1M events | machine busy | load generator CPU s/s | realtime lag max / after | lake lag max | lake ack→commit p50 / p99 ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for pair in runs {
            for name in ["without", "with"] {
                let c = &pair[name];
                if c.is_null() {
                    continue;
                }
                md.push_str(&format!(
                    "| {} | {} | {} | {} / {} | **{}** | {} | {} | {} % | {} | {} / {} | {} | {} / {} |\n",
                    f0(&pair["target_events_per_sec"]),
                    c["setup"].as_str().unwrap_or(name),
                    f0(&c["background"]["events_per_sec"]),
                    f1(&c["background"]["requests"]["p50_ms"]),
                    f1(&c["background"]["requests"]["p99_ms"]),
                    f2(&c["load_cpu"]["serve_cpu_s_per_s"]),
                    f2(&c["idle_cpu"]["serve_cpu_s_per_s"]),
                    f2(&c["serve_cpu_s_per_million_events"]),
                    pct(&c["load_cpu"]["machine_busy_share"]),
                    f2(&c["load_cpu"]["bench_cpu_s_per_s"]),
                    f0(&c["server"]["stream_lag_max"]),
                    f0(&c["after_tail"]["stream_lag_last"]),
                    f0(&c["server"]["lake_lag_max"]),
                    f0(&c["lake_ack_to_commit_ms"]["p50"]),
                    f0(&c["lake_ack_to_commit_ms"]["p99"]),
                ));
            }
        }
        md.push_str(&format!(
            "\nThe realtime consumer in the runs with it:\n\n{}",
            consumer_table(runs.iter().map(|pair| {
                (
                    format!("{} events/s", f0(&pair["target_events_per_sec"])),
                    &pair["with"]["realtime_consumer"],
                )
            }))
        ));
        md.push_str("\nThe consumers' share (with − without):\n\n| target events/s | CPU s/s during the load | CPU s per 1M events |\n|---|---|---|\n");
        for pair in runs {
            let share = &pair["consumers_share"];
            md.push_str(&format!(
                "| {} | **{}** | {} |\n",
                f0(&pair["target_events_per_sec"]),
                f2(&share["serve_cpu_s_per_s_during_load"]),
                f2(&share["serve_cpu_s_per_million_events"]),
            ));
        }
    }
    md
}
