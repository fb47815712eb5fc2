//! Risk rules end to end on the real binary over a real Kafka-protocol broker (tansu): two
//! `--roles collector` processes and one `--roles sink` process (which runs the `risk`
//! consumer). A bot flooding collector A is blocked by a rate rule; collector B refuses it too
//! (it learned the block from the bus), other users pass, the webhook hears about it, the
//! decision lands in `ods.ods_risk_decision`, and `strata risk unblock` lets the bot back in
//! on both collectors. A fourth process (`--roles features`) computes the `user_realtime` stream
//! view from the same Kafka bus.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::*;

/// `strata serve --roles ROLES` on a free loopback port.
fn serve_roles(env: &Env, roles: &str, log_name: &str) -> Server {
    let log = std::fs::File::create(env.dir.path().join(log_name)).unwrap();
    let mut child = Command::new(strata_bin())
        .args(["serve", "-c"])
        .arg(&env.config)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--flush-interval",
            "200ms",
            "--roles",
            roles,
        ])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(env.dir.path().join(log_name)).unwrap_or_default();
            panic!("serve --roles {roles} did not start: {line:?}\n{log}")
        });
    Server { child, addr }
}

/// A webhook receiver on 127.0.0.1: every request body it gets.
fn webhook() -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    let _ = tx.send(v);
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, rx)
}

fn click(server: &Server, user: &str, id: &str) -> serde_json::Value {
    let body = serde_json::json!({
        "userId": user,
        "event": "Post Clicked",
        "messageId": id,
        "properties": {"post_id": 7},
    });
    let r = post(
        server.addr,
        "/v1/track",
        &[basic_auth(WRITE_KEY)],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn blocked(answer: &serde_json::Value) -> bool {
    answer["rejected"] == 1
        && answer["errors"][0]["reason"].as_str().is_some_and(|r| {
            r.starts_with("blocked by rule flood until ") && r.ends_with("(user_id bot)")
        })
}

fn risk(env: &Env, args: &[&str]) -> String {
    let out = Command::new(strata_bin())
        .arg("risk")
        .args(args)
        .arg("-c")
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata risk {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_block_holds_on_every_collector_until_it_is_lifted() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let env = Env::new();
    env.use_kafka(&broker.brokers());
    let (url, alerts) = webhook();
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text = text.replace("\n[risk]\n", &format!("\n[risk]\nwebhook = \"{url}\"\n"));
    assert!(text.contains(&url), "no [risk] section to extend");
    // The rules go last: [risk] is the file's last section.
    text.push_str(
        "\n[[risk.rules]]\nname = \"flood\"\nkind = \"rate\"\nsubject = \"user_id\"\nmax = 20\nwindow = \"1m\"\naction = \"block\"\nblock_for = \"10m\"\n\n[[risk.rules]]\nname = \"scripted\"\nkind = \"user_agent\"\npatterns = [\"definitely-a-bot\"]\naction = \"flag\"\n",
    );
    assert!(
        text.contains("name = \"flood\""),
        "no [risk] section to extend"
    );
    std::fs::write(&env.config, &text).unwrap();
    let check = Command::new(strata_bin())
        .args(["check", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // A project with the reference `user_realtime` stream view, served by a fourth process
    // (`--roles features`): the realtime consumer over the Kafka bus.
    let project = env.dir.path().join("project");
    std::fs::create_dir_all(project.join("features")).unwrap();
    std::fs::write(
        project.join("strata_project.toml"),
        "name = \"t\"\nsources = [\"ods.ods_event\"]\n",
    )
    .unwrap();
    std::fs::write(
        project.join("features/user_realtime.toml"),
        include_str!("../../../models/social/features/user_realtime.toml"),
    )
    .unwrap();
    env.set_keys(
        "[warehouse]",
        &[("project", &format!("{:?}", project.display().to_string()))],
    );
    let token = {
        let out = Command::new(strata_bin())
            .args(["tokens", "create", "reader", "--scope", "serve", "-c"])
            .arg(&env.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    let sink = serve_roles(&env, "sink", "sink.log");
    let a = serve_roles(&env, "collector", "collector-a.log");
    let b = serve_roles(&env, "collector", "collector-b.log");
    let features = serve_roles(&env, "features", "features.log");

    // The risk consumer starts at the end of the topic: wait until it runs (a human's events
    // are accepted throughout).
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let mut sent = 0;
    let mut refused_on_a = 0;
    loop {
        let answer = click(&a, "bot", &format!("bot-a-{sent}"));
        sent += 1;
        if blocked(&answer) {
            refused_on_a += 1;
            break;
        }
        assert_eq!(answer["accepted"], 1, "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the bot was never blocked after {sent} clicks"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sent > 20,
        "blocked after {sent} clicks, before the rule's max"
    );
    // Collector B learned the block from the bus; other users pass on both.
    let started = Instant::now();
    let mut refused_on_b = 0;
    loop {
        let answer = click(
            &b,
            "bot",
            &format!("bot-b-{refused_on_b}-{}", started.elapsed().as_micros()),
        );
        if blocked(&answer) {
            refused_on_b += 1;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "collector B never enforced the block: {answer}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, server) in [&a, &b].into_iter().enumerate() {
        let answer = click(server, "4242", &format!("human-{i}"));
        assert_eq!(answer["accepted"], 1, "{answer}");
    }
    // The user-agent rule only flags.
    let r = request(
        a.addr,
        "POST",
        "/v1/track",
        &[
            basic_auth(WRITE_KEY),
            ("User-Agent", "definitely-a-bot/1.0".to_string()),
        ],
        Some(br#"{"userId": "scripter", "event": "Post Clicked", "messageId": "ua-1"}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], 1, "{}", r.body);

    // The webhook heard about the block.
    let alert = alerts
        .recv_timeout(Duration::from_secs(30))
        .expect("a webhook alert");
    assert_eq!(alert["block"]["subject"], "bot", "{alert}");
    assert_eq!(alert["block"]["rule"], "flood", "{alert}");
    assert!(alert["text"].as_str().unwrap().contains("flood"), "{alert}");

    // `strata risk list` lists it (the Kafka bus is shared, serve may run).
    let blocks: serde_json::Value = serde_json::from_str(&risk(&env, &["list", "--json"])).unwrap();
    assert_eq!(blocks[0]["subject"], "bot", "{blocks}");

    // Decisions and refused events are in the lake.
    env.wait_count(
        "SELECT count(*) FROM ods.ods_risk_decision WHERE rule = 'flood' AND subject_kind = 'user_id' AND subject = 'bot' AND action = 'block' AND until > decided_at",
        1,
        Duration::from_secs(60),
    );
    env.wait_count(
        "SELECT count(*) FROM ods.ods_risk_decision WHERE rule = 'scripted' AND subject = '127.0.0.1' AND action = 'flag' AND until IS NULL",
        1,
        Duration::from_secs(60),
    );
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event_rejected WHERE reason LIKE 'blocked by rule flood until %(user_id bot)'",
        refused_on_a + refused_on_b,
        Duration::from_secs(60),
    );

    // Lifted by hand: both collectors take the bot's events again.
    risk(&env, &["unblock", "user_id:bot"]);
    for (i, server) in [&a, &b].into_iter().enumerate() {
        let started = Instant::now();
        loop {
            let answer = click(
                server,
                "bot",
                &format!("bot-after-{i}-{}", started.elapsed().as_micros()),
            );
            if answer["accepted"] == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "still blocked: {answer}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(risk(&env, &["list"]).trim(), "no blocks in force");

    // The human's two clicks (one per collector) are in its real-time features, computed by
    // the features process from the Kafka bus; the bot's refused clicks never counted.
    let started = Instant::now();
    loop {
        let r = get_with(
            features.addr,
            "/v1/features/user_realtime/4242",
            &[("Authorization", format!("Bearer {token}"))],
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        if r.status == 200 && body["features"]["clicks_5m"] == 2 {
            assert_eq!(
                body["features"]["last_5_clicked_post_ids"],
                serde_json::json!([7, 7])
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    features.stop();
    a.stop();
    b.stop();
    sink.stop();
}
