//! Syslog as a source: UDP, TCP and TLS listeners, the way nginx
//! (`access_log syslog:server=…`), HAProxy (`log`), rsyslog, syslog-ng and
//! util-linux `logger` send access logs.
//!
//! * UDP and TCP listen on the same address (default `127.0.0.1:5514`);
//!   TLS (RFC 5425) on its own address when configured.
//! * TCP and TLS framing is detected per message (RFC 6587): a run of digits
//!   followed by a space is an octet count, anything else is a message
//!   ending at a newline. (A header-less RFC 5424 message, `1 2024-…`, would
//!   read as an octet count; RFC 5424 requires `<PRI>`, so senders include
//!   it.)
//! * The header (RFC 5424 or RFC 3164, with or without `<PRI>`, with or
//!   without a hostname as HAProxy sends it) is stripped by
//!   [`crate::syslog_header`]; the message body is the line handed on.
//!   A message without a recognisable header is passed on whole (minus a
//!   leading `<PRI>`).
//! * A message longer than `max_message_bytes` is cut, the rest skipped, and
//!   counted in [`SourceMetrics::truncated`].
//! * Backpressure: a TCP connection stops reading while the pipeline is
//!   full, so the sender slows down. UDP cannot be slowed: the socket task
//!   hands datagrams to the batching task over a bounded queue with
//!   `try_send` and counts what does not fit in [`SourceMetrics::dropped`].
//! * Batches hold the messages of one peer, up to the batch size or
//!   `linger_ms` after their first message, so a single message reaches the
//!   pipeline within milliseconds.
//! * Syslog has no upstream acknowledgement: batches carry `ack: None`.

use super::reader::BatchShape;
use super::{check_shape, require_positive, Source, SourceError, SourceMetrics};
use crate::record::{Origin, RecordBatch};
use async_trait::async_trait;
use gatewatch_detector::SourceId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc::{self, Sender};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Configuration of the syslog source (`type = "syslog"`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Address of the UDP and TCP listeners. Loopback by default: exposing
    /// a syslog port to a network is a decision to make explicitly.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// Listen for UDP datagrams (one message each, RFC 5426).
    #[serde(default = "default_true")]
    pub udp: bool,
    /// Listen for TCP connections (RFC 6587 framing).
    #[serde(default = "default_true")]
    pub tcp: bool,
    /// A TLS listener (RFC 5425); none when absent.
    #[serde(default)]
    pub tls: Option<SyslogTlsConfig>,
    /// The longest message accepted, header included (bytes); longer ones
    /// are cut and counted. RFC 5425 asks receivers to take at least 2048.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Most TCP and TLS connections open at once; more are closed on
    /// accept and counted, so a flood of connections cannot exhaust memory
    /// or file descriptors.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Datagrams queued between the UDP socket and batching; when full,
    /// datagrams are dropped and counted rather than stalling the socket.
    #[serde(default = "default_udp_queue")]
    pub udp_queue: usize,
    /// Receive buffer asked for the UDP socket (bytes): absorbs bursts that
    /// arrive faster than they are read. The kernel caps it
    /// (`net.core.rmem_max` on Linux); datagrams that overflow it are lost
    /// before gatewatch sees them and are not counted.
    #[serde(default = "default_udp_receive_buffer_bytes")]
    pub udp_receive_buffer_bytes: usize,
    /// How long a partially filled batch waits for more messages
    /// (milliseconds).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// A TCP or TLS connection silent for this long is closed (seconds), so
    /// idle clients do not hold connection slots for ever.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

/// TLS listener settings (RFC 5425: octet counting over TLS).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyslogTlsConfig {
    /// Address of the TLS listener (RFC 5425's port is 6514).
    #[serde(default = "default_tls_address")]
    pub address: SocketAddr,
    /// PEM file with the server certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5514))
}

fn default_tls_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6514))
}

fn default_true() -> bool {
    true
}

fn default_max_message_bytes() -> usize {
    64 * 1024
}

fn default_max_connections() -> usize {
    1024
}

fn default_udp_queue() -> usize {
    16 * 1024
}

fn default_udp_receive_buffer_bytes() -> usize {
    8 << 20
}

fn default_linger_ms() -> u64 {
    50
}

fn default_idle_timeout_secs() -> u64 {
    600
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            address: default_address(),
            udp: true,
            tcp: true,
            tls: None,
            max_message_bytes: default_max_message_bytes(),
            max_connections: default_max_connections(),
            udp_queue: default_udp_queue(),
            udp_receive_buffer_bytes: default_udp_receive_buffer_bytes(),
            linger_ms: default_linger_ms(),
            idle_timeout_secs: default_idle_timeout_secs(),
        }
    }
}

/// Validates `config` (no I/O) and builds the syslog source.
pub fn build(
    config: SyslogConfig,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
) -> Result<Box<dyn Source>, SourceError> {
    check_shape(&shape)?;
    if !config.udp && !config.tcp && config.tls.is_none() {
        return Err(SourceError::InvalidConfig {
            field: "udp",
            reason: "no listener enabled: set `udp`, `tcp` or `tls`".into(),
        });
    }
    if config.max_message_bytes < 480 || config.max_message_bytes > 16 << 20 {
        return Err(SourceError::InvalidConfig {
            field: "max_message_bytes",
            reason: "must be between 480 (RFC 5424's minimum) and 16 MiB".into(),
        });
    }
    require_positive("max_connections", config.max_connections as u64)?;
    require_positive("udp_queue", config.udp_queue as u64)?;
    require_positive("linger_ms", config.linger_ms)?;
    require_positive("idle_timeout_secs", config.idle_timeout_secs)?;
    if let Some(tls) = &config.tls {
        if tls.cert_path.as_os_str().is_empty() || tls.key_path.as_os_str().is_empty() {
            return Err(SourceError::InvalidConfig {
                field: "tls",
                reason: "needs both `cert_path` and `key_path`".into(),
            });
        }
        if (config.tcp || config.udp) && tls.address == config.address {
            return Err(SourceError::InvalidConfig {
                field: "tls",
                reason: "`address` must differ from the plain listeners' address".into(),
            });
        }
    }
    Ok(Box::new(SyslogSource {
        ctx: Arc::new(Ctx {
            source,
            line_max: shape.max_line_bytes.min(config.max_message_bytes),
            batch_lines: shape.batch_lines,
            batch_bytes: shape.batch_lines.saturating_mul(256).min(4 << 20),
            linger: Duration::from_millis(config.linger_ms),
            idle: Duration::from_secs(config.idle_timeout_secs),
            metrics,
            config,
        }),
    }))
}

/// What every task of the source shares.
struct Ctx {
    config: SyslogConfig,
    source: SourceId,
    /// Bodies are cut at this length.
    line_max: usize,
    batch_lines: usize,
    batch_bytes: usize,
    linger: Duration,
    idle: Duration,
    metrics: Arc<SourceMetrics>,
}

/// The syslog source, validated and ready to run.
struct SyslogSource {
    ctx: Arc<Ctx>,
}

#[async_trait]
impl Source for SyslogSource {
    async fn run(
        self: Box<Self>,
        out: Sender<RecordBatch>,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let ctx = self.ctx;
        let cfg = &ctx.config;
        // Cancelled on stop, when a listener fails, or when the pipeline is gone.
        let token = stop.child_token();
        let mut tasks: JoinSet<Result<(), SourceError>> = JoinSet::new();
        let conn_limit = Arc::new(Semaphore::new(cfg.max_connections));
        if cfg.udp {
            let socket = bind_udp(cfg.address, cfg.udp_receive_buffer_bytes, ctx.source)
                .map_err(|error| bind_error("udp", cfg.address, error))?;
            let (tx, rx) = mpsc::channel(cfg.udp_queue);
            tasks.spawn(udp_receive(socket, tx, ctx.clone(), token.clone()));
            tasks.spawn(udp_batch(rx, out.clone(), ctx.clone(), token.clone()));
        }
        if cfg.tcp {
            let listener = TcpListener::bind(cfg.address)
                .await
                .map_err(|error| bind_error("tcp", cfg.address, error))?;
            tasks.spawn(accept(
                listener,
                None,
                conn_limit.clone(),
                out.clone(),
                ctx.clone(),
                token.clone(),
            ));
        }
        if let Some(tls) = &cfg.tls {
            let acceptor = tls_acceptor(tls)?;
            let listener = TcpListener::bind(tls.address)
                .await
                .map_err(|error| bind_error("tls", tls.address, error))?;
            tasks.spawn(accept(
                listener,
                Some(acceptor),
                conn_limit,
                out.clone(),
                ctx.clone(),
                token.clone(),
            ));
        }
        drop(out);
        tracing::info!(
            source = ctx.source,
            address = %cfg.address,
            udp = cfg.udp,
            tcp = cfg.tcp,
            tls = ?cfg.tls.as_ref().map(|t| t.address),
            "Syslog listeners started."
        );
        let result = tokio::select! {
            _ = token.cancelled() => Ok(()),
            Some(done) = tasks.join_next() => match done {
                Ok(result) => result,
                Err(_) => Err(SourceError::Panicked { source_kind: "syslog" }),
            },
        };
        token.cancel();
        // Tasks flush what they hold, briefly; the rest is aborted on drop.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tracing::info!(source = ctx.source, "Syslog listeners stopped.");
        result
    }
}

fn bind_error(protocol: &'static str, address: SocketAddr, error: std::io::Error) -> SourceError {
    SourceError::Bind {
        protocol,
        address,
        error,
    }
}

/// Binds the UDP socket with a larger receive buffer than the default.
fn bind_udp(address: SocketAddr, buffer: usize, source: SourceId) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if let Err(error) = socket.set_recv_buffer_size(buffer) {
        tracing::warn!(source, %error, requested = buffer, "Cannot enlarge the syslog UDP receive buffer.");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    tracing::debug!(
        source,
        granted = socket.recv_buffer_size().unwrap_or(0),
        "Syslog UDP receive buffer."
    );
    UdpSocket::from_std(socket.into())
}

/// Loads the certificate chain and key into a TLS acceptor.
fn tls_acceptor(tls: &SyslogTlsConfig) -> Result<tokio_rustls::TlsAcceptor, SourceError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&tls.cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| SourceError::Tls {
            what: "certificate",
            path: tls.cert_path.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(SourceError::Tls {
            what: "certificate",
            path: tls.cert_path.clone(),
            reason: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_path).map_err(|e| SourceError::Tls {
        what: "private key",
        path: tls.key_path.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| SourceError::Tls {
            what: "certificate",
            path: tls.cert_path.clone(),
            reason: e.to_string(),
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// One datagram, copied out of the socket buffer.
struct Datagram {
    peer: IpAddr,
    bytes: Vec<u8>,
    /// Longer than `max_message_bytes`.
    cut: bool,
}

/// Reads datagrams and queues them for batching without ever waiting for
/// the pipeline: a full queue drops and counts.
async fn udp_receive(
    socket: UdpSocket,
    queue: mpsc::Sender<Datagram>,
    ctx: Arc<Ctx>,
    token: CancellationToken,
) -> Result<(), SourceError> {
    let mut buf = vec![0u8; 65_536];
    let mut drops_logged = Instant::now();
    loop {
        let (n, peer) = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(error) => {
                    // Transient (ICMP errors surface here on some systems).
                    tracing::warn!(source = ctx.source, %error, "Receiving a syslog datagram failed.");
                    continue;
                }
            },
        };
        ctx.metrics.received(1, n as u64);
        let keep = n.min(ctx.config.max_message_bytes);
        let datagram = Datagram {
            peer: peer.ip(),
            bytes: buf[..keep].to_vec(),
            cut: keep < n,
        };
        if queue.try_send(datagram).is_err() {
            let dropped = ctx.metrics.dropped.fetch_add(1, Relaxed) + 1;
            if drops_logged.elapsed() >= Duration::from_secs(10) {
                drops_logged = Instant::now();
                tracing::warn!(
                    source = ctx.source,
                    dropped_total = dropped,
                    "Syslog UDP queue full; dropping datagrams."
                );
            }
        }
    }
}

/// Batches queued datagrams per peer and sends them on.
async fn udp_batch(
    mut queue: mpsc::Receiver<Datagram>,
    out: Sender<RecordBatch>,
    ctx: Arc<Ctx>,
    token: CancellationToken,
) -> Result<(), SourceError> {
    let mut pending: HashMap<IpAddr, Batcher> = HashMap::new();
    loop {
        let next_due = pending.values().map(|b| b.due).min();
        tokio::select! {
            _ = token.cancelled() => break,
            datagram = queue.recv() => {
                let Some(d) = datagram else { break };
                let batcher = pending
                    .entry(d.peer)
                    .or_insert_with(|| Batcher::new(&ctx, Arc::from(d.peer.to_string())));
                batcher.push_message(&d.bytes, d.cut, &ctx);
                if batcher.full(&ctx) || pending.len() > 256 {
                    // Many peers at once: flush them all rather than track more.
                    let flush: Vec<IpAddr> = if pending.len() > 256 {
                        pending.keys().copied().collect()
                    } else {
                        vec![d.peer]
                    };
                    for peer in flush {
                        let b = pending.remove(&peer).expect("listed");
                        if !b.send(&out, &ctx, &token).await {
                            return Ok(());
                        }
                    }
                }
            }
            _ = sleep_until_opt(next_due) => {
                let now = Instant::now();
                let due: Vec<IpAddr> = pending.iter().filter(|(_, b)| b.due <= now).map(|(p, _)| *p).collect();
                for peer in due {
                    let b = pending.remove(&peer).expect("listed");
                    if !b.send(&out, &ctx, &token).await {
                        return Ok(());
                    }
                }
            }
        }
    }
    for (_, b) in pending.drain() {
        b.flush_on_stop(&out, &ctx);
    }
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Accepts TCP (or TLS when `tls` is set) connections up to the limit and
/// serves each on its own task.
async fn accept(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limit: Arc<Semaphore>,
    out: Sender<RecordBatch>,
    ctx: Arc<Ctx>,
    token: CancellationToken,
) -> Result<(), SourceError> {
    let protocol = if tls.is_some() { "tls" } else { "tcp" };
    let mut conns = JoinSet::new();
    let mut rejections_logged: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = token.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(source = ctx.source, protocol, %error, "Accepting a syslog connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            ctx.metrics.connections_rejected.fetch_add(1, Relaxed);
            if rejections_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                rejections_logged = Some(Instant::now());
                tracing::warn!(
                    source = ctx.source,
                    protocol,
                    max_connections = ctx.config.max_connections,
                    "Syslog connection limit reached; refusing connections."
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        ctx.metrics.connections.fetch_add(1, Relaxed);
        let (out, ctx, token, tls) = (out.clone(), ctx.clone(), token.clone(), tls.clone());
        conns.spawn(async move {
            let _open = OpenConnection::new(&ctx.metrics, permit);
            let peer: Arc<str> = Arc::from(peer.ip().to_string());
            match tls {
                None => serve(stream, peer, &out, &ctx, &token).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => serve(stream, peer, &out, &ctx, &token).await,
                        Ok(Err(error)) => {
                            ctx.metrics.connections_rejected.fetch_add(1, Relaxed);
                            tracing::info!(source = ctx.source, peer = %peer, %error, "Syslog TLS handshake failed.");
                        }
                        Err(_) => {
                            ctx.metrics.connections_rejected.fetch_add(1, Relaxed);
                            tracing::info!(source = ctx.source, peer = %peer, "Syslog TLS handshake timed out.");
                        }
                    }
                }
            }
        });
    }
    // Let connections flush what they hold.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Keeps the open-connections gauge and the connection slot for the life
/// of a connection task.
struct OpenConnection<'a> {
    metrics: &'a SourceMetrics,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<'a> OpenConnection<'a> {
    fn new(metrics: &'a SourceMetrics, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics.connections_open.fetch_add(1, Relaxed);
        OpenConnection {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

/// Reads one connection's stream of framed messages until EOF, idle
/// timeout or stop. While a batch waits for room in the pipeline, nothing
/// is read: TCP flow control slows the sender down.
async fn serve(
    mut stream: impl AsyncRead + Unpin,
    peer: Arc<str>,
    out: &Sender<RecordBatch>,
    ctx: &Ctx,
    token: &CancellationToken,
) {
    let mut framer = Framer::new(ctx.config.max_message_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    let mut batch: Option<Batcher> = None;
    let mut idle_deadline = Instant::now() + ctx.idle;
    loop {
        let due = batch.as_ref().map(|b| b.due);
        tokio::select! {
            _ = token.cancelled() => break,
            _ = sleep_until_opt(due) => {
                let b = batch.take().expect("due only with a batch");
                if !b.send(out, ctx, token).await {
                    return;
                }
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                tracing::debug!(source = ctx.source, peer = %peer, "Closing idle syslog connection.");
                break;
            }
            read = stream.read(&mut buf) => {
                let n = match read {
                    Ok(0) => {
                        framer.finish(|msg, cut| {
                            batch.get_or_insert_with(|| Batcher::new(ctx, peer.clone())).push_message(msg, cut, ctx);
                        });
                        break;
                    }
                    Ok(n) => n,
                    Err(error) => {
                        tracing::debug!(source = ctx.source, peer = %peer, %error, "Syslog connection failed.");
                        break;
                    }
                };
                idle_deadline = Instant::now() + ctx.idle;
                ctx.metrics.bytes.fetch_add(n as u64, Relaxed);
                let mut full = Vec::new();
                framer.feed(&buf[..n], |msg, cut| {
                    ctx.metrics.messages.fetch_add(1, Relaxed);
                    let b = batch.get_or_insert_with(|| Batcher::new(ctx, peer.clone()));
                    b.push_message(msg, cut, ctx);
                    if b.full(ctx) {
                        full.push(batch.take().expect("just used"));
                    }
                });
                for b in full {
                    if !b.send(out, ctx, token).await {
                        return;
                    }
                }
            }
        }
    }
    if let Some(b) = batch {
        if token.is_cancelled() {
            b.flush_on_stop(out, ctx);
        } else {
            b.send(out, ctx, token).await;
        }
    }
}

/// A batch being filled with the messages of one peer.
struct Batcher {
    batch: RecordBatch,
    /// When the batch must go even if not full.
    due: Instant,
}

impl Batcher {
    fn new(ctx: &Ctx, peer: Arc<str>) -> Batcher {
        Batcher {
            batch: RecordBatch::with_capacity(
                ctx.source,
                Origin::Syslog { peer },
                ctx.batch_bytes.min(64 * 1024),
            ),
            due: Instant::now() + ctx.linger,
        }
    }

    /// Adds one framed message: its body, cut at the line limit.
    fn push_message(&mut self, msg: &[u8], cut: bool, ctx: &Ctx) {
        let body = body(msg);
        if body.is_empty() {
            ctx.metrics.empty.fetch_add(1, Relaxed);
            return;
        }
        let before = self.batch.truncated;
        self.batch.push_line(body, ctx.line_max);
        if cut && self.batch.truncated == before {
            // Cut while framing, and short enough after the header: count
            // it once all the same.
            self.batch.truncated += 1;
        }
    }

    fn full(&self, ctx: &Ctx) -> bool {
        self.batch.len() >= ctx.batch_lines || self.batch.bytes() >= ctx.batch_bytes
    }

    /// Sends the batch, waiting for room; `false` when the source must stop
    /// (cancelled, or the pipeline is gone, which cancels the source).
    async fn send(self, out: &Sender<RecordBatch>, ctx: &Ctx, token: &CancellationToken) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        ctx.metrics
            .delivered(self.batch.len(), self.batch.truncated);
        tokio::select! {
            biased;
            sent = out.send(self.batch) => {
                if sent.is_err() {
                    token.cancel();
                    return false;
                }
                true
            }
            _ = token.cancelled() => false,
        }
    }

    /// On stop: hand the batch over if there is room now, never wait.
    fn flush_on_stop(self, out: &Sender<RecordBatch>, ctx: &Ctx) {
        if self.batch.is_empty() {
            return;
        }
        let (lines, truncated) = (self.batch.len(), self.batch.truncated);
        if out.try_send(self.batch).is_ok() {
            ctx.metrics.delivered(lines, truncated);
        }
    }
}

/// The message body: the syslog header stripped, trailing newline removed.
fn body(msg: &[u8]) -> &[u8] {
    let msg = trim_end(msg);
    if let Some(h) = crate::syslog_header::parse(msg) {
        return trim_end(h.body);
    }
    // No known header: drop a bare `<PRI>` and keep the rest.
    if msg.first() == Some(&b'<') {
        if let Some(close) = msg.iter().take(5).position(|&c| c == b'>') {
            if close > 1 && msg[1..close].iter().all(u8::is_ascii_digit) {
                return &msg[close + 1..];
            }
        }
    }
    msg
}

fn trim_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = b {
        b = rest;
    }
    b
}

/// RFC 6587 framing of a TCP byte stream, detected per message.
#[derive(Debug)]
struct Framer {
    max: usize,
    buf: Vec<u8>,
    state: Frame,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Between messages.
    Start,
    /// An octet-counted message of this many bytes.
    Octets(usize),
    /// Skipping the rest of a cut octet-counted message.
    SkipOctets(usize),
    /// A message ending at a newline.
    Line,
    /// Skipping the rest of a cut newline-terminated message.
    SkipLine,
}

/// More digits than this cannot be an octet count we accept.
const MAX_COUNT_DIGITS: usize = 9;

impl Framer {
    fn new(max: usize) -> Framer {
        Framer {
            max,
            buf: Vec::with_capacity(4096),
            state: Frame::Start,
        }
    }

    /// Feeds a chunk; calls `emit(message, was_cut)` for each message it
    /// completes.
    fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            match self.state {
                Frame::Start => {
                    // Separators between frames (a newline after an
                    // octet-counted message, blank lines) are not messages.
                    let skip = rest
                        .iter()
                        .position(|&c| !matches!(c, b'\n' | b'\r' | b'\0'))
                        .unwrap_or(rest.len());
                    pos += skip;
                    let rest = &self.buf[pos..];
                    if rest.is_empty() {
                        break;
                    }
                    if !rest[0].is_ascii_digit() {
                        self.state = Frame::Line;
                        continue;
                    }
                    let digits = rest
                        .iter()
                        .take(MAX_COUNT_DIGITS + 1)
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                    if digits == rest.len() && digits <= MAX_COUNT_DIGITS {
                        break; // The count may go on in the next chunk.
                    }
                    if digits <= MAX_COUNT_DIGITS && rest[digits] == b' ' {
                        let n: usize = std::str::from_utf8(&rest[..digits])
                            .expect("digits")
                            .parse()
                            .expect("at most 9 digits");
                        pos += digits + 1;
                        self.state = Frame::Octets(n);
                    } else {
                        self.state = Frame::Line;
                    }
                }
                Frame::Octets(n) => {
                    if n > self.max && rest.len() >= self.max {
                        emit(&rest[..self.max], true);
                        pos += self.max;
                        self.state = Frame::SkipOctets(n - self.max);
                    } else if rest.len() >= n {
                        emit(&rest[..n], false);
                        pos += n;
                        self.state = Frame::Start;
                    } else {
                        break;
                    }
                }
                Frame::SkipOctets(n) => {
                    let k = n.min(rest.len());
                    pos += k;
                    if k == n {
                        self.state = Frame::Start;
                    } else {
                        self.state = Frame::SkipOctets(n - k);
                        break;
                    }
                }
                Frame::Line => match memchr::memchr(b'\n', rest) {
                    Some(nl) if nl <= self.max => {
                        emit(&rest[..nl], false);
                        pos += nl + 1;
                        self.state = Frame::Start;
                    }
                    _ if rest.len() > self.max => {
                        emit(&rest[..self.max], true);
                        pos += self.max;
                        self.state = Frame::SkipLine;
                    }
                    _ => break,
                },
                Frame::SkipLine => match memchr::memchr(b'\n', rest) {
                    Some(nl) => {
                        pos += nl + 1;
                        self.state = Frame::Start;
                    }
                    None => {
                        pos = self.buf.len();
                        break;
                    }
                },
            }
        }
        self.buf.drain(..pos);
    }

    /// The connection ended: a last newline-framed message without its
    /// newline is still a message; a short octet-counted one is cut.
    fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        match self.state {
            Frame::Line if !self.buf.is_empty() => emit(&self.buf, false),
            Frame::Octets(_) if !self.buf.is_empty() => emit(&self.buf, true),
            Frame::Start if !self.buf.is_empty() => emit(&self.buf, false),
            _ => {}
        }
        self.buf.clear();
        self.state = Frame::Start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]], max: usize) -> Vec<(String, bool)> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, |m, cut| {
                out.push((String::from_utf8_lossy(m).into_owned(), cut))
            });
        }
        f.finish(|m, cut| out.push((String::from_utf8_lossy(m).into_owned(), cut)));
        out
    }

    fn msgs(v: &[&str]) -> Vec<(String, bool)> {
        v.iter().map(|s| (s.to_string(), false)).collect()
    }

    #[test]
    fn newline_and_octet_counting_are_detected_per_message() {
        let got = frame(&[b"<13>a b\n10 <13>hello\n<13>c\n", b"4 <1>x"], 100);
        assert_eq!(got, msgs(&["<13>a b", "<13>hello\n", "<13>c", "<1>x"]));
    }

    #[test]
    fn frames_survive_any_chunking() {
        let input = b"12 <13>1 - h a\n<13>Nov 23 10:00:00 h nginx: body\n3 abc7 <1>defg";
        let whole = frame(&[input], 100);
        assert_eq!(
            whole,
            msgs(&[
                "<13>1 - h a\n",
                "<13>Nov 23 10:00:00 h nginx: body",
                "abc",
                "<1>defg"
            ])
        );
        for split in 1..input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(frame(&[a, b], 100), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(frame(&bytes, 100), whole);
    }

    #[test]
    fn over_long_messages_are_cut_once_and_the_next_is_intact() {
        let got = frame(&[b"0123456789abc\nok\n"], 8);
        assert_eq!(got, vec![("01234567".into(), true), ("ok".into(), false)]);
        let got = frame(&[b"13 0123456789abc", b"2 ok"], 8);
        assert_eq!(got, vec![("01234567".into(), true), ("ok".into(), false)]);
        let got = frame(&[b"0123", b"456789", b"abc\nok\n"], 8);
        assert_eq!(got, vec![("01234567".into(), true), ("ok".into(), false)]);
    }

    #[test]
    fn a_digit_run_without_a_space_is_a_line() {
        assert_eq!(
            frame(&[b"1234567890123 x\n42\n"], 100),
            msgs(&["1234567890123 x", "42"])
        );
    }

    #[test]
    fn bodies_of_the_senders_we_meet() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"<190>Nov 23 10:00:00 web1 nginx: 1.2.3.4 - - [x] \"GET /\"\n", b"1.2.3.4 - - [x] \"GET /\""),
            (b"<134>Nov 23 10:00:00 haproxy[123]: 10.0.0.1:5000 [x]", b"10.0.0.1:5000 [x]"),
            (b"<13>1 2024-01-01T00:00:00.000000+00:00 host user - - [timeQuality tzKnown=\"1\"] hello", b"hello"),
            (b"<13>just a line", b"just a line"),
            (b"no header at all", b"no header at all"),
        ];
        for (msg, want) in cases {
            assert_eq!(body(msg), *want, "{}", String::from_utf8_lossy(msg));
        }
    }
}
