//! The proxy against a fake TLS upstream (no Kubernetes needed): forwarding, each fault,
//! the watch controls, connection drops, request counts, and kube's client and watcher
//! configured from the proxy's kubeconfig.

#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

mod common;

use common::{FakeUpstream, Item, ProxyClient, counts, eventually, within};
use faultproxy::{Fault, FaultProxy, Options, Upstream};
use futures::StreamExt as _;
use http::{Method, StatusCode, header};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const WATCH_CMS: &str =
    "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=100&allowWatchBookmarks=true";
const RJ_STATUS: &str = "/apis/reporting.dev/v1alpha1/namespaces/default/reportjobs/orders/status";
const MERGE_PATCH: (&str, &str) = ("content-type", "application/merge-patch+json");

async fn setup() -> (FakeUpstream, FaultProxy, ProxyClient) {
    let fake = FakeUpstream::start().await;
    let proxy = FaultProxy::start(fake.upstream.clone()).unwrap();
    let client = ProxyClient::new(&proxy.url());
    (fake, proxy, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_requests_with_bodies_headers_and_status_codes() {
    let (fake, proxy, client) = setup().await;
    assert!(proxy.url().starts_with("http://127.0.0.1:"));

    let got = client.get(&format!("{CMS}/cm-a")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["metadata"]["name"], "cm-a");
    assert_eq!(
        got.headers["x-fake-client-cert"], "verified",
        "the proxy presents the configured client certificate"
    );
    assert_eq!(got.headers[header::CONTENT_TYPE], "application/json");

    let missing = client.get(&format!("{CMS}/missing")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["reason"], "NotFound");

    let list = client.get(CMS).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["metadata"]["resourceVersion"], "100");
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 2);

    let patch = r#"{"status":{"phase":"Running"}}"#;
    let patched = client
        .send(
            Method::PATCH,
            &format!("{RJ_STATUS}?fieldManager=reportjob"),
            &[MERGE_PATCH, ("user-agent", "reportjob/0.1.0 (linux)")],
            patch,
        )
        .await
        .unwrap();
    assert_eq!(patched.status, StatusCode::OK);
    let echo = patched.json();
    assert_eq!(echo["method"], "PATCH");
    assert_eq!(echo["path"], RJ_STATUS);
    assert_eq!(echo["query"], "fieldManager=reportjob");
    assert_eq!(echo["contentType"], "application/merge-patch+json");
    assert_eq!(echo["userAgent"], "reportjob/0.1.0 (linux)");
    assert_eq!(echo["body"], patch);
    let upstream_authority = fake.upstream.url.trim_start_matches("https://");
    assert_eq!(echo["host"], upstream_authority, "Host names the upstream");

    // A large body streams both ways whole; the upstream's status code comes back.
    let big = json!({"data": {"blob": "x".repeat(512 * 1024)}}).to_string();
    let created = client
        .send(
            Method::POST,
            CMS,
            &[("content-type", "application/json")],
            &big,
        )
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.json()["body"], big.as_str());

    assert_eq!(
        fake.seen.requests(),
        [
            format!("GET {CMS}/cm-a"),
            format!("GET {CMS}/missing"),
            format!("GET {CMS}"),
            format!("PATCH {RJ_STATUS}?fieldManager=reportjob"),
            format!("POST {CMS}"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_client_certificate_is_refused_upstream() {
    let fake = FakeUpstream::start().await;
    let stranger = common::Ca::new("another-ca");
    let (cert, key) = stranger.leaf("intruder", &[], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let proxy = FaultProxy::start(Upstream {
        client_cert_pem: cert.pem(),
        client_key_pem: key.serialize_pem(),
        ..fake.upstream.clone()
    })
    .unwrap();
    let reply = ProxyClient::new(&proxy.url()).get(CMS).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.json()["kind"], "Status");
    let message = reply.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("could not be reached"), "{message}");
    assert!(fake.seen.requests().is_empty());
    assert!(
        FaultProxy::start(Upstream {
            client_key_pem: "not a key".into(),
            ..fake.upstream.clone()
        })
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_next_matches_verb_and_resource_and_counts_down() {
    let (fake, proxy, client) = setup().await;
    let patch = |path: String| {
        let client = &client;
        async move {
            client
                .send(Method::PATCH, &path, &[MERGE_PATCH], "{}")
                .await
                .unwrap()
        }
    };
    proxy.fail_next("patch", "reportjobs/status", 2, Fault::Status(500));
    assert_eq!(proxy.pending_faults(), 2);

    // Neither the main resource nor another verb matches.
    let main = RJ_STATUS.trim_end_matches("/status").to_string();
    assert_eq!(patch(main.clone()).await.status, StatusCode::OK);
    assert_eq!(
        client.get(&format!("{CMS}/cm-a")).await.status,
        StatusCode::OK
    );

    for _ in 0..2 {
        let failed = patch(RJ_STATUS.to_string()).await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        let status = failed.json();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "InternalError");
        assert_eq!(status["code"], 500);
    }
    assert_eq!(proxy.pending_faults(), 0);
    assert_eq!(patch(RJ_STATUS.to_string()).await.status, StatusCode::OK);
    let patches_upstream = fake
        .seen
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH"))
        .count();
    assert_eq!(
        patches_upstream, 2,
        "the failed patches never reach upstream"
    );

    // Any verb on configmaps: a conflict worded as the API server words it.
    proxy.fail_next("*", "configmaps", 1, Fault::Status(409));
    let conflict = client.get(&format!("{CMS}/cm-a")).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    let status = conflict.json();
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on configmaps \"cm-a\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    assert_eq!(status["details"]["name"], "cm-a");
    assert_eq!(
        client.get(&format!("{CMS}/cm-a")).await.status,
        StatusCode::OK
    );

    // Rules are taken oldest first, one per request.
    proxy.fail_next("create", "*", 1, Fault::Status(503));
    proxy.fail_next("*", "*", 1, Fault::Status(404));
    let unavailable = client.send(Method::POST, CMS, &[], "{}").await.unwrap();
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.json()["reason"], "ServiceUnavailable");
    let not_found = client.get(&format!("{CMS}/cm-b")).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(not_found.json()["message"], "configmaps \"cm-b\" not found");
    assert_eq!(
        client.get(&format!("{CMS}/cm-b")).await.status,
        StatusCode::OK
    );

    proxy.fail_next("*", "*", 5, Fault::Status(500));
    proxy.clear_faults();
    assert_eq!(client.get(CMS).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_carries_retry_after() {
    let (_fake, proxy, client) = setup().await;
    proxy.fail_next(
        "list",
        "configmaps",
        1,
        Fault::TooManyRequests {
            retry_after_seconds: 7,
        },
    );
    proxy.fail_next("list", "configmaps", 1, Fault::Status(429));
    let throttled = client.get(CMS).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers[header::RETRY_AFTER], "7");
    let status = throttled.json();
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["details"]["retryAfterSeconds"], 7);
    let throttled = client.get(CMS).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers[header::RETRY_AFTER], "1");
    assert_eq!(client.get(CMS).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_closes_the_connection_without_an_answer() {
    let (fake, proxy, client) = setup().await;
    proxy.fail_next("get", "configmaps", 2, Fault::Reset);
    for _ in 0..2 {
        let err = client
            .send(Method::GET, &format!("{CMS}/cm-a"), &[], "")
            .await
            .expect_err("a reset request gets no answer");
        let text = format!("{err:?}");
        assert!(
            text.contains("IncompleteMessage") || text.contains("connection closed"),
            "{text}"
        );
    }
    assert_eq!(
        client.get(&format!("{CMS}/cm-a")).await.status,
        StatusCode::OK
    );
    assert_eq!(fake.seen.requests(), [format!("GET {CMS}/cm-a")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_watches_ends_open_watches_cleanly() {
    let (fake, proxy, client) = setup().await;
    let mut watch = client.watch(WATCH_CMS).await;
    let first = watch.next().await.event();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "cm-1");
    assert_eq!(
        watch.next().await.event()["object"]["metadata"]["name"],
        "cm-2"
    );
    assert_eq!(fake.seen.open_watches(), 1);

    proxy.end_watches();
    let (_, last) = watch.until_not_event().await;
    assert!(matches!(last, Item::End), "{last:?}");
    eventually("the upstream watch to close", || {
        fake.seen.open_watches() == 0
    })
    .await;

    // Only the watches open at the time end: a new one streams on.
    let mut again = client.watch(WATCH_CMS).await;
    for n in 1..=3 {
        assert_eq!(
            again.next().await.event()["object"]["metadata"]["name"],
            format!("cm-{n}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_watches_sends_a_410_error_event_then_ends() {
    let (fake, proxy, client) = setup().await;
    let mut watch = client.watch(WATCH_CMS).await;
    watch.next().await.event();
    proxy.expire_watches();
    let error = loop {
        let event = watch.next().await.event();
        if event["type"] == "ERROR" {
            break event;
        }
        assert_eq!(event["type"], "ADDED");
    };
    assert_eq!(error["object"]["kind"], "Status");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
    assert_eq!(
        error["object"]["message"],
        "too old resource version: 100 (101)"
    );
    assert!(matches!(watch.next().await, Item::End));
    eventually("the upstream watch to close", || {
        fake.seen.open_watches() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_watch_early_ends_a_watch_after_n_events() {
    let (_fake, proxy, client) = setup().await;
    proxy.fail_next(
        "watch",
        "configmaps",
        1,
        Fault::EndWatchEarly { after_events: 3 },
    );
    // A list is not a watch: it does not take the fault.
    assert_eq!(client.get(CMS).await.status, StatusCode::OK);
    assert_eq!(proxy.pending_faults(), 1);

    let mut watch = client.watch(WATCH_CMS).await;
    let (events, last) = watch.until_not_event().await;
    assert!(matches!(last, Item::End), "{last:?}");
    let names: Vec<_> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["cm-1", "cm-2", "cm-3"]);

    let mut next = client.watch(WATCH_CMS).await;
    for _ in 0..5 {
        assert_eq!(next.next().await.event()["type"], "ADDED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_gone_answers_one_expired_error_event() {
    let (fake, proxy, client) = setup().await;
    proxy.fail_next("watch", "*", 1, Fault::WatchGone);
    let mut watch = client.watch(WATCH_CMS).await;
    let error = watch.next().await.event();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
    assert!(matches!(watch.next().await, Item::End));
    assert!(
        fake.seen.requests().is_empty(),
        "WatchGone never reaches upstream"
    );

    let mut next = client.watch(WATCH_CMS).await;
    assert_eq!(next.next().await.event()["type"], "ADDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_connections_closes_watches_and_idle_connections() {
    let (fake, proxy, client) = setup().await;
    let mut watch = client.watch(WATCH_CMS).await;
    watch.next().await.event();

    // An idle keep-alive connection, driven by hand to see it closed.
    let tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(tcp))
    .await
    .unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = closed_tx.send(conn.await);
    });
    let request = http::Request::get("/version")
        .header(header::HOST, "proxy")
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = within("a keep-alive request", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();

    proxy.drop_connections();
    let (_, last) = watch.until_not_event().await;
    let Item::Error(error) = last else {
        panic!("a dropped watch breaks rather than ends: {last:?}")
    };
    assert!(!error.is_empty());
    within("the idle connection to close", closed_rx)
        .await
        .unwrap()
        .unwrap();
    eventually("the upstream watch to close", || {
        fake.seen.open_watches() == 0
    })
    .await;

    // New connections are served as before.
    assert_eq!(client.get(CMS).await.status, StatusCode::OK);
    let mut again = client.watch(WATCH_CMS).await;
    assert_eq!(again.next().await.event()["type"], "ADDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_verb_resource_and_client() {
    let (_fake, proxy, client) = setup().await;
    let ua = [("user-agent", "reportjob/0.1.0")];
    client.get(CMS).await;
    client.get(&format!("{CMS}/cm-a")).await;
    client.get(&format!("{CMS}/cm-b")).await;
    client
        .send(Method::PATCH, RJ_STATUS, &[MERGE_PATCH, ua[0]], "{}")
        .await
        .unwrap();
    proxy.fail_next("patch", "*", 1, Fault::Status(500));
    client
        .send(Method::PATCH, RJ_STATUS, &[MERGE_PATCH, ua[0]], "{}")
        .await
        .unwrap();
    client
        .send(Method::DELETE, &format!("{CMS}/cm-a"), &ua, "")
        .await
        .unwrap();
    client.send(Method::DELETE, CMS, &ua, "").await.unwrap();
    client.get("/version").await;
    let mut watch = client.watch(WATCH_CMS).await;
    watch.next().await.event();
    proxy.end_watches();
    watch.until_not_event().await;

    assert_eq!(
        proxy.requests(),
        counts(&[
            ("get", "/version", 1),
            ("list", "configmaps", 1),
            ("get", "configmaps", 2),
            ("patch", "reportjobs/status", 2),
            ("delete", "configmaps", 1),
            ("deletecollection", "configmaps", 1),
            ("watch", "configmaps", 1),
        ])
    );
    let by_agent = proxy.requests_by_agent();
    assert_eq!(
        by_agent.keys().collect::<Vec<_>>(),
        ["reportjob", "unknown"]
    );
    assert_eq!(
        by_agent["reportjob"],
        counts(&[
            ("patch", "reportjobs/status", 2),
            ("delete", "configmaps", 1),
            ("deletecollection", "configmaps", 1),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_requests_serves_the_counts_by_client_when_asked() {
    let fake = FakeUpstream::start().await;
    // Off by default: forwarded (the fake echoes it) and counted like any path.
    let plain = FaultProxy::start(fake.upstream.clone()).unwrap();
    let got = ProxyClient::new(&plain.url()).get("/debug/requests").await;
    assert_eq!(got.json()["path"], "/debug/requests", "forwarded upstream");
    assert_eq!(plain.requests(), counts(&[("get", "/debug/requests", 1)]));

    let proxy = FaultProxy::start_with(
        fake.upstream.clone(),
        Options {
            debug_requests: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(proxy.url().starts_with("http://127.0.0.1:"));
    let client = ProxyClient::new(&proxy.url());
    let ua = [("user-agent", "reportjob/0.1.0 (linux)")];
    client
        .send(Method::PATCH, RJ_STATUS, &[MERGE_PATCH, ua[0]], "{}")
        .await
        .unwrap();
    client.send(Method::GET, CMS, &ua, "").await.unwrap();
    client.get(CMS).await;
    let served = client.get("/debug/requests").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        served.json(),
        json!({
            "reportjob": {"patch reportjobs/status": 1, "list configmaps": 1},
            "unknown": {"list configmaps": 1},
        })
    );
    // The endpoint itself is neither forwarded nor counted.
    assert_eq!(
        proxy.requests(),
        counts(&[("patch", "reportjobs/status", 1), ("list", "configmaps", 2)])
    );
}

async fn kube_client(proxy: &FaultProxy) -> (kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    proxy.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    assert!(config.cluster_url.to_string().starts_with(&proxy.url()));
    (kube::Client::try_from(config).unwrap(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_from_the_kubeconfig_lists_through_the_proxy() {
    let (_fake, proxy, _) = setup().await;
    let (client, _dir) = kube_client(&proxy).await;
    let cms: kube::Api<ConfigMap> = kube::Api::default_namespaced(client);
    let list = within("a list", cms.list(&Default::default()))
        .await
        .unwrap();
    assert_eq!(list.metadata.resource_version.as_deref(), Some("100"));
    let names: Vec<_> = list
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["cm-a", "cm-b"]);

    // A failure reaches the caller as the API server's error.
    proxy.fail_next("get", "configmaps", 1, Fault::Status(409));
    let err = within("a get", cms.get("cm-a")).await.unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(proxy.requests()[&("list".into(), "configmaps".into())], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watcher_relists_after_gone_and_expired_watches() {
    let (_fake, proxy, _) = setup().await;
    let (client, _dir) = kube_client(&proxy).await;
    let cms: kube::Api<ConfigMap> = kube::Api::default_namespaced(client);
    proxy.fail_next("watch", "configmaps", 1, Fault::WatchGone);
    let watcher = tokio::spawn(async move {
        let stream = kube::runtime::watcher(cms, kube::runtime::watcher::Config::default());
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    let count = |verb: &str| {
        proxy
            .requests()
            .get(&(verb.to_string(), "configmaps".to_string()))
            .copied()
            .unwrap_or(0)
    };
    // List, watch (gone), list again, watch (streams).
    eventually("a re-list after the 410", || {
        count("list") >= 2 && count("watch") >= 2
    })
    .await;
    assert_eq!(count("list"), 2);
    proxy.expire_watches();
    eventually("a re-list after the expired watch", || count("list") >= 3).await;
    eventually("a watch after the re-list", || count("watch") >= 3).await;
    proxy.end_watches();
    eventually("a re-watch after the ended watch", || count("watch") >= 4).await;
    // An ended watch resumes from its resourceVersion: no list came before the new watch.
    assert_eq!(count("list"), 3, "{:?}", proxy.requests());
    watcher.abort();
}

/// Against a real API server: a testbed started by `scripts/testbed.sh up --dir DIR`, run
/// with `FAULTPROXY_TESTBED_DIR=DIR cargo test -p faultproxy -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running testbed (FAULTPROXY_TESTBED_DIR)"]
async fn against_a_real_api_server() {
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

    let dir = std::path::PathBuf::from(std::env::var("FAULTPROXY_TESTBED_DIR").unwrap());
    let read = |name: &str| std::fs::read_to_string(dir.join("pki").join(name)).unwrap();
    let kubeconfig = std::fs::read_to_string(dir.join("kubeconfig")).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let proxy = FaultProxy::start(Upstream {
        url: server,
        ca_pem: read("ca.crt"),
        client_cert_pem: read("admin.crt"),
        client_key_pem: read("admin.key"),
    })
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (client, _tmp) = kube_client(&proxy).await;
    let version = within("version", client.apiserver_version()).await.unwrap();
    println!("through the proxy: {}", version.git_version);

    let cms: kube::Api<ConfigMap> = kube::Api::default_namespaced(client);
    let name = format!("faultproxy-{}", std::process::id());
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {"a": "1"},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let count = |verb: &str| {
        proxy
            .requests()
            .get(&(verb.to_string(), "configmaps".to_string()))
            .copied()
            .unwrap_or(0)
    };
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let watched = cms.clone();
    let selector = format!("metadata.name={name}");
    let watcher = tokio::spawn(async move {
        let config = kube::runtime::watcher::Config::default().fields(&selector);
        let stream = kube::runtime::watcher(watched, config);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let _ = events_tx.send(format!("{event:?}"));
        }
    });
    eventually("the watch", || count("watch") >= 1).await;

    proxy.fail_next("patch", "configmaps", 1, Fault::Status(409));
    let patch = Patch::Merge(json!({"data": {"a": "2"}}));
    let err = cms
        .patch(&name, &PatchParams::default(), &patch)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err:?}"
    );
    cms.patch(&name, &PatchParams::default(), &patch)
        .await
        .unwrap();
    within("the patch's event", async {
        while let Some(e) = events.recv().await {
            if e.contains("\"2\"") {
                break;
            }
        }
    })
    .await;

    let (lists, watches) = (count("list"), count("watch"));
    proxy.expire_watches();
    eventually("a re-list and re-watch after the expired watch", || {
        count("list") > lists && count("watch") > watches
    })
    .await;
    let (lists, watches) = (count("list"), count("watch"));
    proxy.end_watches();
    eventually("a re-watch after the end", || count("watch") > watches).await;
    assert_eq!(
        count("list"),
        lists,
        "an ended watch resumes without a list"
    );
    proxy.drop_connections();
    let listed = within("a list after the drop", cms.list(&ListParams::default()))
        .await
        .unwrap();
    assert!(
        listed
            .items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(&name))
    );

    cms.delete(&name, &DeleteParams::default()).await.unwrap();
    watcher.abort();
    println!("{:#?}", proxy.requests());
}
