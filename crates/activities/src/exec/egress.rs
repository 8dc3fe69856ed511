//! The egress proxy: the only way out of an agent's sandbox.
//!
//! Each sandboxed run that may use the network gets its own proxy, listening on a Unix socket
//! that is mounted into its sandbox (where `chum-netbridge` carries the agent's connections to
//! `127.0.0.1:3128` over it). The proxy speaks HTTP: `CONNECT host:port` for TLS (what every model
//! CLI uses for its API) and absolute-form requests for plain `http://` URLs. Before it connects
//! anywhere it resolves the name itself and asks [`AllowList::decide`]; a refused request gets a
//! `403` that says why, a line in the log (with the run's fields), a line in the run's
//! `*.egress.log` artifact and a count in `/metrics`. The proxy lives as long as its run.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use chum_core::config::ChumConfig;
use chum_core::egress::{AllowList, Refusal, Surroundings};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixListener};
use tracing::Instrument;

/// The port the bridge listens on inside every sandbox (its own network namespace).
pub const BRIDGE_PORT: u16 = 3128;

/// The proxy URL a sandboxed process is given (`HTTPS_PROXY`, `HTTP_PROXY`).
pub fn proxy_url() -> String {
    format!("http://127.0.0.1:{BRIDGE_PORT}")
}

/// Refused connections since the worker started, by (who asked, why): the `/metrics` counter.
pub fn refused_counts() -> BTreeMap<(String, String), u64> {
    counts().lock().map(|c| c.clone()).unwrap_or_default()
}

fn counts() -> &'static Mutex<BTreeMap<(String, String), u64>> {
    static COUNTS: OnceLock<Mutex<BTreeMap<(String, String), u64>>> = OnceLock::new();
    COUNTS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// This machine's interface addresses (loopback included), read once.
pub fn own_addresses() -> Vec<IpAddr> {
    static OWN: OnceLock<Vec<IpAddr>> = OnceLock::new();
    OWN.get_or_init(read_interface_addresses).clone()
}

fn read_interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that freeifaddrs releases; each entry's
    // ifa_addr is null or points to a sockaddr of the family it names.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

/// The machine and its control plane as the proxy must see them: the Temporal frontend of the
/// configuration and the API's listening address.
pub async fn surroundings(config: &ChumConfig) -> Surroundings {
    let mut control_plane = Vec::new();
    if let Ok(url) = url::Url::parse(&config.temporal.address)
        && let Some(host) = url.host_str()
    {
        let port = url.port_or_known_default().unwrap_or(7233);
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if let Ok(found) = tokio::net::lookup_host((host.as_str(), port)).await {
            control_plane.extend(found);
        }
    }
    if config.api.enabled {
        control_plane.push(config.api.bind);
    }
    Surroundings {
        own_addresses: own_addresses(),
        control_plane,
    }
}

/// Who the proxy works for, for its log lines and counters.
#[derive(Debug, Clone)]
pub struct EgressClient {
    /// A provider's name, or `setup` for a project's setup commands.
    pub name: String,
    /// The run's artifact file where allowed and refused connections are written.
    pub log_file: PathBuf,
}

struct ProxyState {
    allow: AllowList,
    around: Surroundings,
    client: EgressClient,
    refused: Mutex<Vec<String>>,
}

/// A running proxy; dropping it stops it and removes its socket.
pub struct EgressProxy {
    socket: PathBuf,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl EgressProxy {
    /// Starts a proxy on a new Unix socket `socket` (its directory must exist).
    pub fn start(
        socket: &Path,
        allow: AllowList,
        around: Surroundings,
        client: EgressClient,
    ) -> std::io::Result<EgressProxy> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let state = Arc::new(ProxyState {
            allow,
            around,
            client,
            refused: Mutex::new(Vec::new()),
        });
        let serving = state.clone();
        let task = tokio::spawn(
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        break;
                    };
                    let state = serving.clone();
                    tokio::spawn(
                        async move {
                            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        }
                        .in_current_span(),
                    );
                }
            }
            .in_current_span(),
        );
        Ok(EgressProxy {
            socket: socket.to_path_buf(),
            state,
            task,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The connections refused so far, one line each ("host:port: reason").
    pub fn refused(&self) -> Vec<String> {
        self.state.refused.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(message + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

impl ProxyState {
    fn note(&self, line: &str) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.client.log_file)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    fn refuse(&self, target: &str, refusal: &Refusal) -> Response<ProxyBody> {
        tracing::warn!(client = %self.client.name, %target, reason = %refusal, "egress refused");
        let line = format!("{target}: {refusal}");
        self.note(&format!("refused {line}"));
        if let Ok(mut r) = self.refused.lock() {
            r.push(line);
        }
        if let Ok(mut c) = counts().lock() {
            *c.entry((self.client.name.clone(), refusal.kind().to_string()))
                .or_default() += 1;
        }
        text(
            StatusCode::FORBIDDEN,
            format!("chum egress proxy: {target} refused: {refusal}"),
        )
    }

    /// Resolves and checks `host:port`; the addresses to try, or the refusal.
    async fn decide(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let resolved: Vec<IpAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                // Checked before resolving, so a refused name is never even looked up.
                if !self.allow.allows_any() && !self.allow.names().contains(&bare.to_ascii_lowercase().as_str()) {
                    return Err(Refusal::NotListed);
                }
                match tokio::net::lookup_host((bare, port)).await {
                    Ok(found) => found.map(|a| a.ip()).collect(),
                    Err(e) => return Err(Refusal::Unresolved(e.to_string())),
                }
            }
        };
        let mut listed = Vec::new();
        if bare.parse::<IpAddr>().is_ok() {
            for name in self.allow.names() {
                if let Ok(found) = tokio::net::lookup_host((name, port)).await {
                    listed.push((name.to_string(), found.map(|a| a.ip()).collect()));
                }
            }
        }
        self.allow.decide(bare, port, &resolved, &listed, &self.around)
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other("no address to connect to");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn handle(req: Request<Incoming>, state: Arc<ProxyState>) -> Result<Response<ProxyBody>, Infallible> {
    let Some(authority) = req.uri().authority().cloned() else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "chum egress proxy: send CONNECT host:port or an absolute http:// URL".into(),
        ));
    };
    let default_port = if req.method() == Method::CONNECT { 443 } else { 80 };
    let port = authority.port_u16().unwrap_or(default_port);
    let host = authority.host().to_string();
    let target = format!("{host}:{port}");
    let addrs = match state.decide(&host, port).await {
        Ok(addrs) => addrs,
        Err(refusal) => return Ok(state.refuse(&target, &refusal)),
    };
    let upstream = match connect_any(&addrs).await {
        Ok(stream) => stream,
        Err(e) => {
            state.note(&format!("failed {target}: {e}"));
            return Ok(text(
                StatusCode::BAD_GATEWAY,
                format!("chum egress proxy: cannot reach {target}: {e}"),
            ));
        }
    };
    state.note(&format!("allowed {target} ({})", addrs[0]));
    if req.method() == Method::CONNECT {
        tokio::spawn(
            async move {
                if let Ok(upgraded) = hyper::upgrade::on(req).await {
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = upstream;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            }
            .in_current_span(),
        );
        return Ok(Response::new(
            http_body_util::Empty::new().map_err(|never| match never {}).boxed(),
        ));
    }
    Ok(forward(req, upstream, &target).await)
}

/// Sends a plain-HTTP request on to its origin (in origin form, without the proxy's headers).
async fn forward(mut req: Request<Incoming>, upstream: TcpStream, target: &str) -> Response<ProxyBody> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    match path.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return text(StatusCode::BAD_REQUEST, format!("chum egress proxy: bad path {path:?}")),
    }
    for hop in ["proxy-connection", "proxy-authorization", "connection", "keep-alive"] {
        req.headers_mut().remove(hop);
    }
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
        Ok(pair) => pair,
        Err(e) => {
            return text(StatusCode::BAD_GATEWAY, format!("chum egress proxy: {target}: {e}"));
        }
    };
    tokio::spawn(connection.in_current_span());
    match sender.send_request(req).await {
        Ok(response) => response.map(|body| body.boxed()),
        Err(e) => text(StatusCode::BAD_GATEWAY, format!("chum egress proxy: {target}: {e}")),
    }
}

/// Where a run's proxy socket goes: a short path (a Unix socket's path is limited to ~100
/// bytes), private to this worker process, under the system's temporary directory.
pub fn socket_path(name: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("chum-egress-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    Ok(dir.join(format!("{safe}-{n}.sock")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    async fn ask(socket: &Path, request: &str) -> String {
        let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn the_proxy_tunnels_to_a_listed_address_and_refuses_the_rest_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        // An "origin" on this machine's own non-loopback address would be ideal; loopback is
        // refused whatever the list says, so the allowed case is checked through plain HTTP to
        // an address the list names literally, in the end-to-end tests. Here: the refusals.
        let socket = socket_path("unit").unwrap();
        let around = Surroundings {
            own_addresses: vec!["127.0.0.1".parse().unwrap()],
            control_plane: vec!["127.0.0.1:7233".parse().unwrap()],
        };
        let proxy = EgressProxy::start(
            &socket,
            list(&["api.example.com"]),
            around,
            EgressClient {
                name: "unit".into(),
                log_file: dir.path().join("egress.log"),
            },
        )
        .unwrap();
        let refused = ask(
            &socket,
            "CONNECT 127.0.0.1:7233 HTTP/1.1\r\nHost: 127.0.0.1:7233\r\n\r\n",
        )
        .await;
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        assert!(refused.contains("control plane"), "{refused}");
        let unlisted = ask(&socket, "GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n").await;
        assert!(
            unlisted.contains("403") && unlisted.contains("not in the allow-list"),
            "{unlisted}"
        );
        assert_eq!(proxy.refused().len(), 2, "{:?}", proxy.refused());
        let log = std::fs::read_to_string(dir.path().join("egress.log")).unwrap();
        assert!(
            log.contains("refused 127.0.0.1:7233") && log.contains("refused example.org:80"),
            "{log}"
        );
        assert!(refused_counts().get(&("unit".to_string(), "control_plane".to_string())) >= Some(&1));
        drop(proxy);
        assert!(!socket.exists(), "the socket goes with the proxy");
    }
}
