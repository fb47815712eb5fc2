use super::*;
use axum::http::HeaderValue;
use mmdb_writer::{Value, Writer};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn client_ip_from_peer_and_trusted_proxies() {
    let proxy = ip("10.0.0.5");
    let lb = ip("10.0.0.6");
    let trusted = [proxy, lb];
    // Untrusted peer: its header is ignored.
    assert_eq!(
        client_ip(ip("1.2.3.4"), &xff(&["9.9.9.9"]), &trusted),
        ip("1.2.3.4")
    );
    // Trusted peer, no header: the peer.
    assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    // Trusted peer: the nearest untrusted hop, not the forgeable left-most entry.
    assert_eq!(
        client_ip(proxy, &xff(&["6.6.6.6, 1.2.3.4"]), &trusted),
        ip("1.2.3.4")
    );
    assert_eq!(
        client_ip(proxy, &xff(&["6.6.6.6", "1.2.3.4, 10.0.0.6"]), &trusted),
        ip("1.2.3.4")
    );
    // Ports and IPv4-mapped addresses.
    assert_eq!(
        client_ip(proxy, &xff(&["1.2.3.4:5678"]), &trusted),
        ip("1.2.3.4")
    );
    assert_eq!(
        client_ip(ip("::ffff:10.0.0.5"), &xff(&["[2001:db8::1]:80"]), &trusted),
        ip("2001:db8::1")
    );
    // Garbage stops the walk at the last trusted hop.
    assert_eq!(client_ip(proxy, &xff(&["1.2.3.4, junk"]), &trusted), proxy);
    // Every hop trusted: the left-most.
    assert_eq!(client_ip(proxy, &xff(&["10.0.0.6"]), &trusted), lb);
}

#[test]
fn user_agents() {
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    let ua = parse_user_agent(chrome);
    assert_eq!(ua.browser.as_deref(), Some("Chrome"));
    assert_eq!(ua.browser_version.as_deref(), Some("120.0.0.0"));
    assert_eq!(ua.os.as_deref(), Some("Windows 10"));
    assert_eq!(ua.device.as_deref(), Some("pc"));
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    let ua = parse_user_agent(iphone);
    assert_eq!(ua.os.as_deref(), Some("iPhone"));
    assert_eq!(ua.device.as_deref(), Some("smartphone"));
    assert_eq!(parse_user_agent("curl-ish nonsense").browser, None);

    let cache = UaCache::default();
    assert_eq!(*cache.get(chrome), parse_user_agent(chrome));
    cache.get(chrome);
    assert_eq!(cache.len(), 1);
    for i in 0..UA_CACHE_CAPACITY + 5 {
        cache.get(&format!("agent {i}"));
    }
    assert!(cache.len() <= UA_CACHE_CAPACITY);
}

/// A small GeoLite2-City-shaped database.
pub(crate) fn test_geo_db() -> Vec<u8> {
    let mut w = Writer::new("GeoLite2-City");
    let names = |n: &str| Value::map([("en", Value::from(n))]);
    let record = Value::map([
        ("city", Value::map([("names", names("Paris"))])),
        (
            "country",
            Value::map([("iso_code", Value::from("FR")), ("names", names("France"))]),
        ),
        (
            "subdivisions",
            Value::Array(vec![Value::map([
                ("iso_code", Value::from("IDF")),
                ("names", names("Île-de-France")),
            ])]),
        ),
    ]);
    w.insert_value(
        "81.2.69.0/24".parse::<mmdb_writer::ipnet::IpNet>().unwrap(),
        record,
    )
    .unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn geo_lookup() {
    let geo = Geo::from_bytes(test_geo_db()).unwrap();
    let loc = geo.lookup(ip("81.2.69.142"));
    assert_eq!(loc.country.as_deref(), Some("FR"));
    assert_eq!(loc.region.as_deref(), Some("Île-de-France"));
    assert_eq!(loc.city.as_deref(), Some("Paris"));
    assert_eq!(geo.lookup(ip("8.8.8.8")), Location::default());
    assert_eq!(geo.lookup(ip("::1")), Location::default());
}

#[test]
fn request_enricher_fills_columns() {
    let geo = Geo::from_bytes(test_geo_db()).unwrap();
    let cache = UaCache::default();
    let mut r = RequestEnricher::new(ip("81.2.69.1"), Some(&geo), Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"), &cache);
    // No user agent of its own: the header's.
    let mut e = EventView::default();
    let ua = r.user_agent(None);
    r.fill(&mut e, ua.as_deref());
    assert_eq!(e.ip.as_deref(), Some("81.2.69.1"));
    assert_eq!(e.country.as_deref(), Some("FR"));
    assert_eq!(e.browser.as_deref(), Some("Chrome"));
    assert!(e.user_agent.as_deref().unwrap().contains("Windows NT"));
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    let mut e2 = EventView {
        user_agent: Some(iphone.into()),
        ..Default::default()
    };
    let ua2 = r.user_agent(e2.user_agent.as_deref());
    r.fill(&mut e2, ua2.as_deref());
    assert_eq!(e2.device.as_deref(), Some("smartphone"));
    assert_eq!(e2.user_agent.as_deref(), Some(iphone));
    // Without any user agent the columns stay empty.
    let mut bare = RequestEnricher::new(ip("10.0.0.1"), None, None, &cache);
    let mut e3 = EventView::default();
    let ua3 = bare.user_agent(None);
    bare.fill(&mut e3, ua3.as_deref());
    assert_eq!((e3.user_agent, e3.os, e3.country), (None, None, None));
    assert_eq!(e3.ip.as_deref(), Some("10.0.0.1"));
}
