//! An API server on a free loopback port, over a graph the test builds, and a small client.

use std::sync::Arc;

use astrolabe::api::{self, ApiConfig, AppState};
use astrolabe::graph::{Change, Graph};
use astrolabe::ingest::GraphHandle;
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use serde_json::Value;

/// A running server; stops when dropped.
pub struct Server {
    pub base: String,
    pub graph: GraphHandle,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A response: status, headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The demo cluster of about `objects` objects, as a graph.
pub fn demo_graph(objects: usize) -> Graph {
    let p = Projector::default();
    let mut g = Graph::new();
    for v in DemoCluster::new(DemoConfig {
        objects,
        ..DemoConfig::default()
    })
    .objects()
    {
        g.apply(Change::Upsert(Arc::new(p.project(&v).unwrap())));
    }
    g
}

/// The objects of a manifest file or directory, as a graph.
pub fn file_graph(path: &std::path::Path) -> Graph {
    let p = Projector::default();
    let mut g = Graph::new();
    for l in astrolabe::sources::file::load_path(path).unwrap().objects {
        if let Ok(o) = p.project(&l.object) {
            g.apply(Change::Upsert(Arc::new(o)));
        }
    }
    g
}

impl Server {
    /// Serves `graph` on 127.0.0.1, on a free port.
    pub async fn start(graph: GraphHandle) -> Server {
        Server::start_with(graph, ApiConfig::default()).await
    }

    pub async fn start_with(graph: GraphHandle, config: ApiConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(graph.clone(), config);
        tokio::spawn(api::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            base,
            graph,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            stop: Some(stop),
        }
    }

    /// Serves a fixed graph.
    pub async fn fixed(graph: Graph) -> Server {
        Server::start(GraphHandle::fixed(graph)).await
    }

    pub async fn request(&self, method: reqwest::Method, path: &str) -> Reply {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body read").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(reqwest::Method::GET, path).await
    }

    /// GET, asserting 200, as JSON.
    pub async fn ok(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
