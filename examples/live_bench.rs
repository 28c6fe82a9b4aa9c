//! Live-path benchmark: how many events per second a running `gatewatch
//! run` sustains through syslog (TCP and UDP on loopback) and Kafka, and how
//! long it takes from a log line being written to its incident being stored
//! (p50/p99).
//!
//! Run by `scripts/bench-live` (which builds the release binary and starts
//! the broker); by hand:
//!
//! ```sh
//! cargo run --release --example live_bench -- --gatewatch target/release/gatewatch \
//!     --lines 2000000 --kafka 127.0.0.1:19092 --tansu ~/.cargo/bin/tansu
//! ```
//!
//! Throughput: `--lines` nginx `combined` lines (50,000 clients, event time =
//! now) are written as fast as the transport takes them; the rate is lines
//! divided by the time until gatewatch's own `/metrics` counts them all
//! parsed. For Kafka the topic is filled first and the time runs from the
//! first parsed line to the last; beside it, a bare rdkafka consumer with
//! gatewatch's fetch settings drains the same topic, the ceiling that the
//! broker and client allow on this machine. UDP reports what arrived and
//! what was dropped.
//!
//! Delay: while background traffic flows at `--background-rate` lines/s,
//! `--attacks` fresh clients each send three sensitive-file probes (the
//! smallest attack the default thresholds report); the delay is from the
//! write of the third line to the incident line on gatewatch's stdout,
//! which it prints after the incident is committed to the store.

#![allow(clippy::print_stdout)] // The report on stdout is what this program is for.

use anyhow::{bail, Context};
use clap::Parser;
use gatewatch_ingest::sources::repartition::RepartitionProducer;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The gatewatch binary to measure.
    #[arg(long, default_value = "target/release/gatewatch")]
    gatewatch: PathBuf,
    /// Lines per throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    lines: u64,
    /// Kafka bootstrap brokers (the Kafka runs are skipped without).
    #[arg(long)]
    kafka: Option<String>,
    /// The tansu binary, to create topics.
    #[arg(long)]
    tansu: Option<PathBuf>,
    /// Partitions of the Kafka topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Attacks timed in each delay run.
    #[arg(long, default_value_t = 200)]
    attacks: usize,
    /// Background lines/s during the delay runs.
    #[arg(long, default_value_t = 50_000)]
    background_rate: u64,
    /// Paths to measure (all when not given), e.g. `--only kafka` while
    /// profiling one of them.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Path>,
}

impl Args {
    fn measures(&self, path: Path) -> bool {
        self.only.is_empty() || self.only.contains(&path)
    }
}

/// A live path the benchmark can measure.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Path {
    Tcp,
    Udp,
    Kafka,
}

/// One `gatewatch run` with its own database and ports, whose stdout
/// (incident lines) is watched for the clients it names.
struct Gatewatch {
    child: Child,
    api: String,
    syslog: u16,
    /// When each client's first incident line arrived.
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    _dir: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Gatewatch {
    fn start(bin: &PathBuf, extra_env: &[(&str, String)]) -> anyhow::Result<Gatewatch> {
        let dir = std::env::temp_dir().join(format!("gw-live-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let (syslog, api_port) = (free_port(), free_port());
        let api = format!("127.0.0.1:{api_port}");
        // Absolute: the process runs in its own directory.
        let bin = std::fs::canonicalize(bin).with_context(|| format!("no {}", bin.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.current_dir(&dir)
            .arg("run")
            .env("GATEWATCH_DATABASE_URL", "sqlite://bench.db")
            .env("GATEWATCH_SYSLOG_ADDR", format!("127.0.0.1:{syslog}"))
            .env("GATEWATCH_API_ADDR", &api)
            .env("GATEWATCH_FORMAT", "nginx_combined")
            .env("GATEWATCH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let out = child.stdout.take().expect("piped");
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(c) = v["client"].as_str() {
                        sink.lock()
                            .expect("lock")
                            .entry(c.to_string())
                            .or_insert(now);
                    }
                }
            }
        });
        let gw = Gatewatch {
            child,
            api,
            syslog,
            seen,
            _dir: TempDir(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while gw.metric("gatewatch_build_info").is_err() {
            if Instant::now() > deadline {
                bail!("gatewatch did not come up");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(gw)
    }

    /// The sum of a metric's samples (over all labels).
    fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let mut s = TcpStream::connect(&self.api)?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.api
        )?;
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body)?;
        if !body.starts_with("HTTP/1.1 200") {
            bail!("metrics: {}", body.lines().next().unwrap_or_default());
        }
        Ok(body
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits until `gatewatch_events_parsed_total` reaches `target`; when
    /// the first and the last parsed line were seen.
    fn wait_parsed(&self, target: f64, timeout: Duration) -> (Option<Instant>, Instant, f64) {
        let deadline = Instant::now() + timeout;
        let mut first = None;
        loop {
            let n = self.metric("gatewatch_events_parsed_total").unwrap_or(0.0);
            let now = Instant::now();
            if n > 0.0 && first.is_none() {
                first = Some(now);
            }
            if n >= target || now > deadline {
                return (first, now, n);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gatewatch {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// An nginx `combined` line for request `i` of ordinary traffic, at now.
fn background_line(i: u64, out: &mut Vec<u8>) {
    let c = (i.wrapping_mul(2_654_435_761)) % 50_000;
    let ts = chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000");
    let _ = writeln!(
        out,
        "10.{}.{}.{} - - [{ts}] \"GET /api/v1/items/{} HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0 (bench)\"",
        c >> 16,
        (c >> 8) & 255,
        c & 255,
        i % 1000
    );
}

/// The three probes of attack `n` (client 198.18.x.y), at now.
fn attack_lines(n: usize) -> (String, Vec<Vec<u8>>) {
    let ip = format!("198.18.{}.{}", n / 250, n % 250 + 1);
    let ts = chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000");
    let lines = ["/.env", "/.git/config", "/backup.sql"]
        .iter()
        .map(|p| {
            format!("{ip} - - [{ts}] \"GET {p} HTTP/1.1\" 404 0 \"-\" \"scanner\"\n").into_bytes()
        })
        .collect();
    (ip, lines)
}

/// Quantile `q` of sorted `v`.
fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

/// Delays of the attacks that produced an incident, sorted; and the
/// number that did not within the wait.
fn collect_delays(gw: &Gatewatch, sent: &[(String, Instant)]) -> (Vec<Duration>, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = gw.seen.lock().expect("lock").clone();
        let missing = sent.iter().filter(|(ip, _)| !seen.contains_key(ip)).count();
        if missing == 0 || Instant::now() > deadline {
            let mut d: Vec<Duration> = sent
                .iter()
                .filter_map(|(ip, at)| seen.get(ip).map(|s| s.saturating_duration_since(*at)))
                .collect();
            d.sort();
            return (d, missing);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn report_delays(transport: &str, delays: &[Duration], missing: usize) {
    println!(
        "| {transport} | line-to-incident delay | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} attacks ({} missed) |",
        quantile(delays, 0.5).as_secs_f64() * 1e3,
        quantile(delays, 0.99).as_secs_f64() * 1e3,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        delays.len(),
        missing
    );
}

fn syslog_tcp(args: &Args) -> anyhow::Result<()> {
    let gw = Gatewatch::start(&args.gatewatch, &[])?;
    let mut data = Vec::with_capacity(args.lines as usize * 110);
    for i in 0..args.lines {
        background_line(i, &mut data);
    }
    let mut s = TcpStream::connect(("127.0.0.1", gw.syslog))?;
    let t0 = Instant::now();
    s.write_all(&data)?;
    s.flush()?;
    let written = t0.elapsed();
    let (_, t1, n) = gw.wait_parsed(args.lines as f64, Duration::from_secs(300));
    let secs = (t1 - t0).as_secs_f64();
    println!(
        "| syslog TCP | throughput | {:.0} lines/s ({} lines in {secs:.2} s; writer done after {:.2} s; {} not parsed) |",
        n / secs,
        args.lines,
        written.as_secs_f64(),
        args.lines as f64 - n
    );

    // Delay under steady background traffic.
    let mut sent = Vec::new();
    let chunk = (args.background_rate / 20).max(1);
    let mut i = 0;
    let mut buf = Vec::new();
    for n in 0..args.attacks {
        let tick = Instant::now();
        buf.clear();
        for _ in 0..chunk {
            background_line(i, &mut buf);
            i += 1;
        }
        s.write_all(&buf)?;
        let (ip, lines) = attack_lines(n);
        for l in &lines {
            s.write_all(l)?;
        }
        s.flush()?;
        sent.push((ip, Instant::now()));
        std::thread::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed()));
    }
    let (delays, missing) = collect_delays(&gw, &sent);
    report_delays("syslog TCP", &delays, missing);
    Ok(())
}

fn syslog_udp(args: &Args) -> anyhow::Result<()> {
    let gw = Gatewatch::start(&args.gatewatch, &[])?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(("127.0.0.1", gw.syslog))?;
    let mut line = Vec::with_capacity(160);
    let t0 = Instant::now();
    for i in 0..args.lines {
        line.clear();
        background_line(i, &mut line);
        line.pop();
        while let Err(e) = sock.send(&line) {
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(e.into());
            }
        }
    }
    let sent_secs = t0.elapsed().as_secs_f64();
    // Whatever arrived is parsed within a moment; then the count settles.
    let mut last = -1.0;
    let mut n = 0.0;
    while n != last {
        last = n;
        std::thread::sleep(Duration::from_millis(500));
        n = gw.metric("gatewatch_events_parsed_total")?;
    }
    let dropped = gw.metric("gatewatch_events_dropped_total")?;
    println!(
        "| syslog UDP | throughput | sent {:.0} lines/s; {n:.0} of {} parsed ({:.2} % lost: {dropped:.0} counted as dropped by gatewatch, the rest in the kernel) |",
        args.lines as f64 / sent_secs,
        args.lines,
        100.0 * (args.lines as f64 - n) / args.lines as f64
    );
    Ok(())
}

fn create_topic(args: &Args, brokers: &str) -> anyhow::Result<String> {
    let topic = format!("gw-bench-{}", uuid::Uuid::new_v4().simple());
    let tansu = args
        .tansu
        .clone()
        .context("--tansu is needed to create the Kafka topic")?;
    let ok = Command::new(tansu)
        .args(["topic", "create", &topic, "--broker"])
        .arg(format!("tcp://{brokers}"))
        .args(["--partitions", &args.partitions.to_string()])
        .status()?
        .success();
    if !ok {
        bail!("tansu topic create failed");
    }
    Ok(topic)
}

async fn kafka(args: &Args, brokers: &str) -> anyhow::Result<()> {
    let topic = create_topic(args, brokers)?;
    let producer = RepartitionProducer::new(brokers, &topic, &BTreeMap::new())?;
    let mut line = Vec::with_capacity(160);
    let t0 = Instant::now();
    let mut pending = Vec::new();
    for i in 0..args.lines {
        line.clear();
        background_line(i, &mut line);
        line.pop();
        let key = line
            .split(|&b| b == b' ')
            .next()
            .unwrap_or_default()
            .to_vec();
        pending.push(producer.enqueue(&key, &line).await?);
        if pending.len() >= 100_000 {
            for d in pending.drain(..) {
                d.await?;
            }
        }
    }
    for d in pending.drain(..) {
        d.await?;
    }
    let produced = t0.elapsed().as_secs_f64();
    let (drain_brokers, drain_topic, lines) = (brokers.to_string(), topic.clone(), args.lines);
    let bare = tokio::task::spawn_blocking(move || {
        bare_consumer_rate(&drain_brokers, &drain_topic, lines)
    })
    .await??;
    let env = [
        ("GATEWATCH_KAFKA_BROKERS", brokers.to_string()),
        ("GATEWATCH_KAFKA_TOPICS", topic.clone()),
        ("GATEWATCH_KAFKA_GROUP", format!("{topic}-bench")),
    ];
    let gw = Gatewatch::start(&args.gatewatch, &env)?;
    let (first, t1, n) = gw.wait_parsed(args.lines as f64, Duration::from_secs(600));
    let secs = (t1 - first.unwrap_or(t1)).as_secs_f64().max(1e-3);
    println!(
        "| Kafka ({} partitions) | throughput | {:.0} lines/s consumed ({n:.0} of {} in {secs:.2} s); produced at {:.0} lines/s; a bare consumer drains {bare:.0} lines/s |",
        args.partitions,
        n / secs,
        args.lines,
        args.lines as f64 / produced
    );

    // Delay under steady background traffic.
    let mut sent = Vec::new();
    let chunk = (args.background_rate / 20).max(1);
    let mut i = 0;
    for n in 0..args.attacks {
        let tick = Instant::now();
        let mut deliveries = Vec::new();
        for _ in 0..chunk {
            line.clear();
            background_line(i, &mut line);
            line.pop();
            i += 1;
            let key = line
                .split(|&b| b == b' ')
                .next()
                .unwrap_or_default()
                .to_vec();
            deliveries.push(producer.enqueue(&key, &line).await?);
        }
        let (ip, lines) = attack_lines(n);
        for l in &lines {
            deliveries.push(producer.enqueue(ip.as_bytes(), &l[..l.len() - 1]).await?);
        }
        sent.push((ip, Instant::now()));
        tokio::spawn(async move {
            for d in deliveries {
                let _ = d.await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(tick.elapsed())).await;
    }
    let (delays, missing) = collect_delays(&gw, &sent);
    report_delays("Kafka", &delays, missing);
    Ok(())
}

/// Messages per second a bare rdkafka consumer (its own group, gatewatch's
/// fetch settings, no processing) drains from `topic`: what the broker and
/// client allow, for comparison with gatewatch.
fn bare_consumer_rate(brokers: &str, topic: &str, messages: u64) -> anyhow::Result<f64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = rdkafka::ClientConfig::new();
    for (k, v) in gatewatch_ingest::sources::kafka::DEFAULT_PROPERTIES {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-bare"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut got, mut first) = (0u64, None);
    while got < messages && Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            msg?;
            first.get_or_insert_with(Instant::now);
            got += 1;
        }
    }
    let secs = first.map_or(1e-3, |t: Instant| t.elapsed().as_secs_f64().max(1e-3));
    Ok(got as f64 / secs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("| path | measure | result |\n|---|---|---|");
    if args.measures(Path::Tcp) {
        syslog_tcp(&args)?;
    }
    if args.measures(Path::Udp) {
        syslog_udp(&args)?;
    }
    match &args.kafka {
        Some(brokers) if args.measures(Path::Kafka) => kafka(&args, brokers).await?,
        Some(_) => {}
        None => println!("| Kafka | skipped | no --kafka brokers given |"),
    }
    Ok(())
}
