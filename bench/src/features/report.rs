//! The feature benchmark's Markdown report, from its JSON.

use serde_json::Value;

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "–".to_string(),
    }
}

/// The report's Markdown.
pub fn markdown(r: &Value) -> String {
    let mut md = String::from("# Feature store\n\n");
    md.push_str(&format!(
        "{} users × {} columns of `ads.ads_user_features`, {} posts × {} columns of `ads.ads_post_features`, \
         generated into a lake in {} s. Machine: {} cores ({}), load average {} at the start and {} at the end; \
         other engineers' builds shared the cores, so the figures are noisy.\n\n",
        r["users"],
        r["user_columns"],
        r["posts"],
        r["post_columns"],
        f(&r["generation"]["secs"]),
        r["machine"]["cpus"],
        r["machine"]["cpu"].as_str().unwrap_or(""),
        r["load_at_start"].as_str().unwrap_or("?"),
        r["load_at_end"].as_str().unwrap_or("?"),
    ));
    md.push_str("## Materialization (each sync in its own process)\n\n");
    md.push_str("| store | view | mode | rows read | rows written | s | rows/s | peak RSS MiB (VmHWM) | peak RssAnon MiB | peak RssFile MiB |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (store, key) in [
        ("embedded", "materialize_embedded"),
        ("redis", "materialize_redis"),
    ] {
        if let Some(m) = r[key].as_object() {
            for (name, v) in m {
                md.push_str(&format!(
                    "| {store} | {name} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    v["report"]["mode"].as_str().unwrap_or("?"),
                    v["report"]["rows_read"],
                    v["report"]["written"],
                    f(&v["secs"]),
                    f(&v["rows_per_sec"]),
                    f(&v["peak_rss_mib"]),
                    f(&v["peak_rss_anon_mib"]),
                    f(&v["peak_rss_file_mib"]),
                ));
            }
        }
    }
    md.push_str(&format!(
        "\nEmbedded store on disk: {} MiB. Redis used memory after Strata's syncs: {} MiB, after the peer's hashes too: {} MiB. \
         Strata's `user_features` metadata in Redis (read by every lookup's MGET): {} bytes.\n",
        f(&r["embedded_store_mib"]),
        f(&r["redis_used_after_strata_mib"]),
        f(&r["redis_used_after_peer_mib"]),
        r["redis_user_features_meta_bytes"],
    ));
    if let Some(lookups) = r["lookups"].as_object() {
        md.push_str("\n## Lookups\n\n");
        md.push_str("| run | target /s | achieved /s | p50 ms | p99 ms | p999 ms | server p99 ms | errors |\n|---|---|---|---|---|---|---|---|\n");
        for (name, v) in lookups {
            md.push_str(&lookup_row(name, v));
        }
        if let Some(rss) = r["server_peak_rss_mib"].as_object() {
            let parts: Vec<String> = rss
                .iter()
                .map(|(store, v)| format!("{store} {} MiB", f(v)))
                .collect();
            md.push_str(&format!(
                "\nServer process peak RSS (VmHWM, includes the mapped store file): {}.\n",
                parts.join(", ")
            ));
        }
    }
    for (peer, key) in [("redis-py", "redis_py"), ("feast", "feast")] {
        if let Some(runs) = r[key].as_object() {
            md.push_str(&format!("\n## Peer: {peer}\n\n"));
            if let Some(e) = runs.get("error") {
                md.push_str(&format!("Not measured: {}\n", e.as_str().unwrap_or("?")));
                continue;
            }
            md.push_str("| run | target /s | achieved /s | p50 ms | p99 ms | p999 ms | server p99 ms | errors |\n|---|---|---|---|---|---|---|---|\n");
            for (name, v) in runs {
                if v.get("p50_ms").is_some() {
                    md.push_str(&lookup_row(name, v));
                }
            }
            if let Some(m) = runs.get("materialize") {
                md.push_str(&format!(
                    "\nFeast's own materialization (file offline store → Redis): {} users and {} posts in {} s = {} rows/s.\n",
                    m["users"], m["posts"], f(&m["secs"]), f(&m["rows_per_sec"])
                ));
            }
            if let Some(note) = runs.get("note").and_then(|n| n.as_str()) {
                md.push_str(&format!("\n{note}\n"));
            }
        }
    }
    if let Some(failures) = r["failures"].as_array() {
        if !failures.is_empty() {
            md.push_str("\n## Wrong results\n\n");
            for x in failures {
                md.push_str(&format!("- {}\n", x.as_str().unwrap_or("?")));
            }
        }
    }
    md
}

fn lookup_row(name: &str, v: &Value) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} |\n",
        f(&v["target_rate"]),
        f(&v["throughput"]),
        f(&v["p50_ms"]),
        f(&v["p99_ms"]),
        f(&v["p999_ms"]),
        f(&v["server_p99_ms"]),
        v["errors"].as_u64().unwrap_or(0) + v["bad_status"].as_u64().unwrap_or(0),
    )
}
