//! A real kube-apiserver (v1.20.2) over a real etcd for tests: etcd on free loopback ports with a
//! temporary data directory, the API server on a free loopback port over TLS (a throwaway CA signs
//! its certificate for IP 127.0.0.1), one bearer token in `system:masters`, RBAC on, and a
//! kubeconfig written next to them. Both are stopped by their own PIDs; the API server can be
//! killed and started again over the same etcd.
//!
//! The binaries are built once per machine by `scripts/build-kube-apiserver.sh` (which
//! `scripts/install-deps.sh` runs) and cached outside the repository. Only the API server runs: no
//! scheduler, controllers or garbage collector, so Pods stay Pending and namespaces never finish
//! deleting; the ServiceAccount admission plugin is off, as no controller makes `default`
//! ServiceAccounts.
#![allow(dead_code, unreachable_pub)]

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use super::redis::free_port;

/// How long the API server may take to answer `/readyz` with 200 (about 4 s when idle; tests run
/// several at once on two cores).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The directory holding `kube-apiserver`, `etcd` and `etcdctl`, as the build script names it.
/// Panics (never skips) when they are missing.
pub fn bin_dir() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-kube-apiserver.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--print-dir")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {} --print-dir: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} --print-dir failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    for b in ["kube-apiserver", "etcd"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run ./scripts/install-deps.sh (it builds kube-apiserver and etcd \
             once with scripts/build-kube-apiserver.sh, about 4 minutes)",
            dir.join(b).display()
        );
    }
    dir
}

/// The last `n` lines of a log file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends SIGTERM to `child` by its PID and waits up to `within` for it to exit; SIGKILL after.
fn terminate(child: &mut Child, within: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A TLS client configuration that trusts only `ca` (rustls with ring).
pub fn tls_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("the test CA is a valid root");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Sends one HTTPS request to `127.0.0.1:port` with a bearer token over a fresh connection and
/// returns the response with its body unread; `body` is sent as JSON (a JSON merge patch for
/// PATCH), `accept` is the `Accept` header.
async fn send(
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    accept: &str,
    body: Option<&Value>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let what = format!("{method} https://127.0.0.1:{port}{path}");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("{what}: connect: {e}"))?;
    let server = ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server, tcp)
        .await
        .map_err(|e| format!("{what}: TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{what}: handshake: {e}"))?;
    tokio::spawn(conn);
    let payload = body.map_or_else(Vec::new, |b| serde_json::to_vec(b).unwrap());
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, format!("127.0.0.1:{port}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, accept)
        .header(
            header::CONTENT_TYPE,
            if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            },
        )
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| format!("{what}: {e}"))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("{what}: {e}"))
}

/// One HTTPS request to `127.0.0.1:port` with a bearer token over a fresh connection; `body` is
/// sent as JSON (a JSON merge patch for PATCH). Returns the status and the JSON body (a JSON string holding the text if the body
/// is not JSON, as `/readyz` answers).
///
/// hyper over tokio-rustls rather than reqwest: reqwest with a rustls backend but no crypto
/// provider of its own makes every default `reqwest::Client` in the other tests panic, and its
/// provider (aws-lc) is a large C build.
pub async fn https_request(
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let (status, bytes) =
        https_request_accept(tls, port, token, method, path, "application/json", body).await?;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

/// [`https_request`] with another `Accept` header; returns the status and the raw body.
pub async fn https_request_accept(
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    accept: &str,
    body: Option<&Value>,
) -> Result<(u16, Vec<u8>), String> {
    let resp = send(tls, port, token, method, path, accept, body).await?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{method} {path}: body: {e}"))?
        .to_bytes();
    Ok((status, bytes.to_vec()))
}

/// GETs a watch and reads its newline-delimited events until `max_events` have arrived, the
/// server ends the stream, or `within` has passed (then the connection is dropped). Returns the
/// status and the events in order, each parsed as JSON (a non-JSON line fails).
pub async fn https_watch(
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    token: &str,
    path: &str,
    accept: &str,
    within: Duration,
    max_events: usize,
) -> Result<(u16, Vec<Value>), String> {
    let deadline = tokio::time::Instant::now() + within;
    let resp = tokio::time::timeout_at(deadline, send(tls, port, token, "GET", path, accept, None))
        .await
        .map_err(|_| format!("GET {path}: no response headers within {within:?}"))??;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let (mut buf, mut events) = (Vec::<u8>::new(), Vec::new());
    while events.len() < max_events {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(f)) => f.map_err(|e| format!("GET {path}: body: {e}"))?,
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if !line.is_empty() {
                events.push(
                    serde_json::from_str(&line)
                        .map_err(|e| format!("GET {path}: event {line:?}: {e}"))?,
                );
            }
        }
    }
    events.truncate(max_events);
    let rest = String::from_utf8_lossy(&buf).trim().to_string();
    if !rest.is_empty() && events.len() < max_events {
        // A body that is not a stream of lines (a Status for a refused watch).
        events.push(serde_json::from_str(&rest).unwrap_or(Value::String(rest)));
    }
    Ok((status, events))
}

/// Runs `f` to completion on a new current-thread runtime in a scoped thread, so that the
/// blocking methods work from plain tests and from inside async tests alike.
fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f)
            })
            .join()
            .unwrap()
    })
}

/// An etcd and a kube-apiserver over it.
pub struct KubeApiServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    etcd_port: u16,
    apiserver: Option<Child>,
    port: u16,
    token: String,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    starts: u32,
    tls: Arc<rustls::ClientConfig>,
}

impl KubeApiServer {
    /// Starts etcd, then the API server, and waits until `/readyz` answers 200.
    pub fn start() -> KubeApiServer {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, ca_der) = write_certs(dir.path());
        let token = format!("{:032x}", rand::random::<u128>());
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{token},astrolabe-test,astrolabe-test-uid,\"system:masters\"\n"),
        )
        .unwrap();
        let tls = tls_config(&ca_der);
        let mut s = KubeApiServer {
            bin,
            dir,
            etcd: None,
            etcd_port: 0,
            apiserver: None,
            port: free_port(),
            token,
            ca_pem,
            ca_der,
            starts: 0,
            tls,
        };
        s.start_etcd();
        s.spawn_apiserver();
        s.write_kubeconfig();
        s
    }

    /// Starts etcd on fresh ports and waits for it to be healthy; if a port was taken between
    /// picking it and etcd binding it (another test's process got it first), tries again on fresh
    /// ones, as [`Self::spawn_apiserver`] does. etcd binds before it writes its data directory.
    fn start_etcd(&mut self) {
        for attempt in 0..3 {
            match self.spawn_etcd() {
                Ok(()) => return,
                Err(e) if attempt < 2 && e.contains("address already in use") => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn spawn_etcd(&mut self) -> Result<(), String> {
        let client_port = free_port();
        let peer_port = free_port();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = File::create(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new(self.bin.join("etcd"))
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("etcd").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd starts (scripts/install-deps.sh builds it)");
        self.etcd = Some(child);
        self.etcd_port = client_port;
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = format!("{client_url}/health");
        loop {
            let ok = block_on(async {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                match client.get(&health).send().await {
                    Ok(r) => r.status().is_success(),
                    Err(_) => false,
                }
            });
            if ok {
                return Ok(());
            }
            let exited = self.etcd.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() >= deadline {
                if let Some(mut c) = self.etcd.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!(
                    "etcd did not become healthy ({exited:?}):\n{}",
                    tail(&self.dir.path().join("etcd.log"), 60)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the API server on `self.port` and waits for it to be ready; if the port was taken
    /// meanwhile, tries once more on a fresh one.
    fn spawn_apiserver(&mut self) {
        for attempt in 0..2 {
            self.starts += 1;
            let p = |f: &str| self.dir.path().join(f).display().to_string();
            let mut log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.apiserver_log_path())
                .unwrap();
            writeln!(log, "==== start {} on port {}", self.starts, self.port).unwrap();
            let child = Command::new(self.bin.join("kube-apiserver"))
                .arg(format!(
                    "--etcd-servers=http://127.0.0.1:{}",
                    self.etcd_port
                ))
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                .arg(format!("--secure-port={}", self.port))
                .arg("--insecure-port=0")
                .arg(format!("--cert-dir={}", p("certs")))
                .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
                .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
                .arg(format!("--token-auth-file={}", p("tokens.csv")))
                .arg("--authorization-mode=RBAC")
                .arg(format!("--service-account-key-file={}", p("sa.pub")))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    p("sa.key")
                ))
                .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
                .arg("--disable-admission-plugins=ServiceAccount")
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                .arg("--allow-privileged=true")
                .arg("--profiling=false")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("kube-apiserver starts (scripts/install-deps.sh builds it)");
            self.apiserver = Some(child);
            match self.wait_ready() {
                Ok(()) => return,
                Err(e) if attempt == 0 && e.contains("address already in use") => {
                    self.port = free_port();
                    self.write_kubeconfig();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Polls `/readyz` with the token until it answers 200; `Err` with the log tail if the process
    /// exits or the time runs out.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last = match self.try_request("GET", "/readyz", None) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("/readyz answered {status}: {body}"),
                Err(e) => e,
            };
            let exited = self.apiserver.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() >= deadline {
                if let Some(mut c) = self.apiserver.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!(
                    "kube-apiserver on port {} not ready ({}; exit {exited:?}); log tail:\n{}",
                    self.port,
                    last,
                    tail(&self.apiserver_log_path(), 80)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn write_kubeconfig(&self) {
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {}\nusers:\n- name: test\n  user:\n    token: {}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\n",
            self.url(),
            STANDARD.encode(&self.ca_pem),
            self.token
        );
        std::fs::write(self.kubeconfig_path(), config).unwrap();
    }

    /// SIGKILL to the API server by its PID (no graceful shutdown: with a watch open, SIGTERM
    /// would make v1.20 wait about a minute). etcd keeps running.
    pub fn kill_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the API server again over the same etcd, certificates and token, on the same port
    /// unless it was taken meanwhile (then `url()` and the kubeconfig change), and waits for it.
    pub fn start_apiserver_again(&mut self) {
        self.kill_apiserver();
        self.spawn_apiserver();
    }

    /// The API server's PID (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.apiserver.as_ref().map_or(0, Child::id)
    }

    /// etcd's PID.
    pub fn etcd_pid(&self) -> u32 {
        self.etcd.as_ref().map_or(0, Child::id)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bearer token (user `astrolabe-test`, group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA certificate that signed the serving certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The same CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A kubeconfig file: server, CA data, token.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The temporary directory holding data, certificates and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `http://127.0.0.1:PORT` of etcd.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    fn apiserver_log_path(&self) -> PathBuf {
        self.dir.path().join("apiserver.log")
    }

    /// The API server's log (every start, appended), for failure messages.
    pub fn apiserver_log(&self) -> String {
        std::fs::read_to_string(self.apiserver_log_path()).unwrap_or_default()
    }

    /// A request with the token; `body` is sent as JSON. Returns the status and the JSON body
    /// (see [`https_request`]). Panics if the server cannot be reached. Blocks: async tests may
    /// prefer [`KubeApiServer::request_async`].
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_request(method, path, body.as_ref())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`KubeApiServer::request`] with another bearer token (say a wrong one).
    pub fn request_with_token(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        block_on(https_request(
            self.tls.clone(),
            self.port,
            token,
            method,
            path,
            body.as_ref(),
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        block_on(https_request(
            self.tls.clone(),
            self.port,
            &self.token,
            method,
            path,
            body,
        ))
    }

    /// [`KubeApiServer::request`] for async tests, on the caller's runtime.
    pub async fn request_async(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        https_request(
            self.tls.clone(),
            self.port,
            &self.token,
            method,
            path,
            body.as_ref(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A request with the token and a custom `Accept` header (say
    /// `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`); returns the status
    /// and the body parsed as JSON. Panics if the server cannot be reached or the body is not JSON.
    pub fn request_accept(&self, method: &str, path: &str, accept: &str) -> (u16, Value) {
        let (status, bytes) = block_on(https_request_accept(
            self.tls.clone(),
            self.port,
            &self.token,
            method,
            path,
            accept,
            None,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    /// Reads the watch `path` with `accept` until `max_events` events have arrived, the server
    /// ends the stream, or `within` has passed (see [`https_watch`]). Returns the status and the
    /// events.
    pub fn watch(
        &self,
        path: &str,
        accept: &str,
        within: Duration,
        max_events: usize,
    ) -> (u16, Vec<Value>) {
        block_on(https_watch(
            self.tls.clone(),
            self.port,
            &self.token,
            path,
            accept,
            within,
            max_events,
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// GET, asserting 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.request("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// POST of a new object to a collection path, asserting 201 Created.
    pub fn create(&self, path: &str, object: Value) -> Value {
        let (status, v) = self.request("POST", path, Some(object));
        assert_eq!(status, 201, "POST {path}: {v}");
        v
    }

    /// A TLS client configuration trusting the CA, for other clients.
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.kill_apiserver();
        if let Some(mut c) = self.etcd.take() {
            terminate(&mut c, Duration::from_secs(10));
        }
    }
}

/// Writes a CA, a serving certificate for IP 127.0.0.1 signed by it (rustls wants a real CA and an
/// end-entity certificate, not a self-signed leaf) and a service-account signing key into `dir`.
/// Returns the CA certificate as PEM and DER.
fn write_certs(dir: &Path) -> (String, CertificateDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "astrolabe test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("apiserver.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("apiserver.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();

    // The service-account token key: ECDSA P-256, the private half as PKCS#8 (for signing), the
    // public half as PKIX in its own file (v1.20 reads no public key from a PKCS#8 file).
    let sa = KeyPair::generate().unwrap();
    std::fs::write(dir.join("sa.key"), sa.serialize_pem()).unwrap();
    std::fs::write(dir.join("sa.pub"), sa.public_key_pem()).unwrap();

    (ca_cert.pem(), ca_cert.der().clone())
}
