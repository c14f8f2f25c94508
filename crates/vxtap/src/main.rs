//! The `vxtap` binary: command line, configuration, wiring of inputs to the engine, signals.

mod config;
mod notify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use std::net::SocketAddr;
use vxtap_capture::{LiveCapture, LiveCounters, LiveOptions, PcapFile, UdpCounters, UdpOptions, UdpReceiver};
use vxtap_engine::{Engine, EventOutput, Metrics, Origin, RequestHook, write_prometheus_family};
use vxtap_health::{HealthServer, HealthState};
use vxtap_http::{Peer, Transaction};
use vxtap_mirror::{MirrorServer, MirroredRequest, SinkFull};
use vxtap_replay::{ObservedResponse, ReplayClient, ReplayJob};

use config::{Cli, Command, LogFormat, Settings, resolve};

/// jemalloc: the workers allocate and free per request (header vectors, event buffers) and the
/// buffers cross threads; glibc's allocator took ~15% of a worker's time in the profile. mimalloc was
/// as fast but held twice the peak memory (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Pcap { files, speed, common } => {
            resolve(common, None, speed.as_deref(), false).and_then(|s| {
                init_logs(s.log_format);
                run_pcap(&s, files)
            })
        }
        Command::Listen { common, listen } => resolve(common, Some(listen), None, true).and_then(|s| {
            init_logs(s.log_format);
            run_listen(&s)
        }),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("vxtap: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr, as text or JSON; `RUST_LOG` refines the level (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `-` is stdout; anything else a file appended to and reopened when `reopen` is set (SIGHUP).
fn event_output(path: &str, reopen: &Arc<AtomicBool>) -> EventOutput {
    if path == "-" {
        EventOutput::Writer(Box::new(std::io::stdout()))
    } else {
        EventOutput::File { path: PathBuf::from(path), reopen: reopen.clone() }
    }
}

/// The replay client and the engine hook that feeds it, when `--replay` is given. File input waits
/// for room in the replay queue (nothing lost, pacing works); live input never waits (drops count).
fn start_replay(settings: &Settings, live: bool) -> Result<(Option<ReplayClient>, Option<RequestHook>)> {
    let Some(cfg) = settings.replay.clone() else { return Ok((None, None)) };
    let target = cfg.target.clone();
    let client = ReplayClient::start(cfg)?;
    tracing::info!("replaying requests to {target}");
    let sender = client.sender();
    let hook: RequestHook = Arc::new(move |origin: &Origin, tx: &Transaction| {
        let mut job = ReplayJob::new(tx.request.clone(), origin.src, origin.dst, tx.request.start_ts);
        // A mirror copy's forwarding headers were resolved into src/dst: recompute, don't append.
        job.forwarded_resolved = origin.mirror.is_some();
        job.response = tx.response.as_ref().map(|r| ObservedResponse {
            status: r.status,
            body_len: r.body_len,
            duration_us: r.end_ts.saturating_sub(tx.request.end_ts),
        });
        // Rejections (gap, truncated body, queue full) are counted by the replay client.
        let _ = if live { sender.submit(job) } else { sender.submit_wait(job, PCAP_REPLAY_WAIT) };
    });
    Ok((Some(client), Some(hook)))
}

/// How long `vxtap pcap --replay` waits for room in the replay queue before it drops a request, and
/// for the queue to empty at the end.
const PCAP_REPLAY_WAIT: Duration = Duration::from_secs(60);

/// Waits for replay to finish (bounded) and returns its figures for the summary.
fn finish_replay(client: Option<ReplayClient>, timeout: Duration) -> serde_json::Value {
    let Some(client) = client else { return serde_json::Value::Null };
    let s = client.finish(timeout);
    serde_json::json!({
        "accepted": s.accepted,
        "sent": s.sent,
        "failed": s.failed.total(),
        "dropped": s.dropped_queue_full + s.dropped_closed,
        "skipped": s.skipped_gap + s.skipped_truncated,
        "abandoned": s.abandoned,
    })
}

fn print_summary(metrics: &Metrics, extra: serde_json::Value) {
    let mut summary = metrics.summary();
    if let (Some(map), serde_json::Value::Object(more)) = (summary.as_object_mut(), extra) {
        map.extend(more);
    }
    // formatted first: stderr is unbuffered, and the value's Display writes it token by token
    let line = summary.to_string() + "\n";
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// Reads every file in order; a bad file is reported and skipped, making the exit code 2.
fn run_pcap(settings: &Settings, files: &[PathBuf]) -> Result<ExitCode> {
    let reopen = Arc::new(AtomicBool::new(false));
    let (replay, hook) = start_replay(settings, false)?;
    let engine = Engine::start(settings.engine.clone(), event_output(&settings.events, &reopen), hook)?;
    let metrics = engine.metrics();
    let mut input = engine.dispatcher();
    let mut failed = 0u64;
    let mut truncated_records = 0u64;
    for path in files {
        let outcome = PcapFile::open(path).and_then(|mut file| {
            let link = file.link_type();
            let read = file.for_each(|rec| input.frame(link, rec.data, rec.ts_micros));
            // The reader counts snaplen-cut records, also those before a read error.
            truncated_records += file.stats().truncated;
            read
        });
        if let Err(err) = outcome {
            // The contract's one-line error naming the file, whatever the log format.
            eprintln!("vxtap: {err}");
            failed += 1;
        }
    }
    drop(input);
    engine.finish()?;
    let replay = finish_replay(replay, PCAP_REPLAY_WAIT);
    print_summary(
        &metrics,
        serde_json::json!({ "files_failed": failed, "snaplen_cut_records": truncated_records, "replay": replay }),
    );
    Ok(if failed > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// Runs the live inputs until SIGTERM/SIGINT, then drains: health 503, intake stops, open flows are
/// flushed, exit within the drain timeout.
fn run_listen(settings: &Settings) -> Result<ExitCode> {
    if settings.udp.is_none() && settings.iface.is_none() && settings.http_mirror.is_none() {
        return Err(anyhow!(
            "nothing to listen on: give --udp ADDR:PORT, --iface NAME and/or --http-mirror ADDR:PORT"
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install signal handler")?;
    }
    let reopen = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reopen.clone())
        .context("cannot install signal handler")?;
    let (replay, hook) = start_replay(settings, true)?;
    let engine = Engine::start(settings.engine.clone(), event_output(&settings.events, &reopen), hook)?;
    let metrics = engine.metrics();
    let health_state = HealthState::new();
    let mut receivers = Vec::new();
    if let Some(addr) = settings.udp {
        let options = UdpOptions { recv_buffer_bytes: settings.recv_buffer, ..UdpOptions::default() };
        for n in 0..settings.receivers {
            let receiver = UdpReceiver::bind(addr, &options)?;
            if n == 0 {
                tracing::info!(
                    "receiving on udp {} ({} receiver(s), receive buffer {} bytes{})",
                    receiver.local_addr(),
                    settings.receivers,
                    receiver.recv_buffer_bytes(),
                    if receiver.recv_buffer_forced() { "" } else { ", capped by net.core.rmem_max" }
                );
            }
            receivers.push(receiver);
        }
    }
    let capture = match &settings.iface {
        Some(iface) => Some(LiveCapture::open(iface, &LiveOptions::default())?),
        None => None,
    };
    let input_counters = Arc::new(InputCounters {
        udp: receivers.iter().map(UdpReceiver::counters).collect(),
        iface: capture.as_ref().map(LiveCapture::counters),
    });
    let renderer = {
        let metrics = metrics.clone();
        let input_counters = input_counters.clone();
        let replay = replay.as_ref().map(ReplayClient::sender);
        Arc::new(move || {
            let mut text = metrics.render_prometheus();
            text.push_str(&input_counters.render_prometheus());
            if let Some(replay) = &replay {
                text.push_str(&replay.render_prometheus());
            }
            text
        })
    };
    let mirror = start_mirror(settings, &engine)?;
    let renderer = {
        let mirror = mirror.as_ref().map(|(server, _)| server.metrics());
        Arc::new(move || {
            let mut text = renderer();
            if let Some(mirror) = &mirror {
                text.push_str(&mirror.render_prometheus());
            }
            text
        })
    };
    let health = HealthServer::start(settings.health, health_state.clone(), renderer)?;
    tracing::info!("health, ping and metrics on http://{}", health.local_addr());

    let intake_stop = Arc::new(AtomicBool::new(false));
    let mut inputs: Vec<JoinHandle<Result<serde_json::Value>>> = Vec::new();
    for (n, mut receiver) in receivers.into_iter().enumerate() {
        let mut input = engine.dispatcher();
        let flag = intake_stop.clone();
        let allow = settings.udp_allow.clone();
        let refused = metrics.clone();
        inputs.push(spawn(&format!("vxtap-udp-{n}"), move || {
            let stats = receiver.run(&flag, |batch| {
                for d in batch.iter() {
                    if !allow.is_empty() && !allow.iter().any(|c| c.contains(d.src.ip())) {
                        refused.udp_refused.fetch_add(1, Relaxed);
                        continue;
                    }
                    input.udp_payload(d.src.ip(), d.dst_ip, d.local_port, d.payload, d.ts_micros);
                }
                input.flush();
            })?;
            Ok(serde_json::json!({ format!("udp_receiver_{n}"): {
                "datagrams": stats.datagrams,
                "bytes": stats.bytes,
                "truncated": stats.truncated,
                "kernel_drops": stats.kernel_drops,
            }}))
        })?);
    }
    if let Some(mut capture) = capture {
        tracing::info!("capturing on interface {}", capture.interface());
        let mut input = engine.dispatcher();
        let flag = intake_stop.clone();
        inputs.push(spawn("vxtap-iface", move || {
            let link = capture.link_type();
            let stats = capture.run(&flag, |rec| match rec {
                Some(rec) => input.frame(link, rec.data, rec.ts_micros),
                None => input.flush(),
            })?;
            Ok(serde_json::json!({ "iface": {
                "frames": stats.frames,
                "bytes": stats.bytes,
                "kernel_drops": stats.ps_drop,
                "interface_drops": stats.ps_ifdrop,
            }}))
        })?);
    }

    let notifier = notify::Notifier::from_env();
    notifier.notify("READY=1");
    let dropped = || metrics.shard_queue_drops.load(Relaxed) + input_counters.kernel_drops();
    let mut alarms = Alarms::new(vec![
        ("segments dropped by full worker queues", Box::new(|| metrics.shard_queue_drops.load(Relaxed))),
        ("packets dropped by the kernel before vxtap read them", Box::new(|| input_counters.kernel_drops())),
        ("flows evicted for the memcap", Box::new(|| metrics.reassembly().evicted)),
    ]);
    if let Some(replay) = replay.as_ref().map(ReplayClient::sender) {
        let again = replay.clone();
        alarms.add("replay requests failed", Box::new(move || replay.stats().failed.total()));
        alarms
            .add("replay requests dropped (queue full)", Box::new(move || again.stats().dropped_queue_full));
    }
    if let Some(copies) = mirror.as_ref().map(|(server, _)| server.metrics()) {
        let again = copies.clone();
        alarms.add("mirror copies dropped (analysis behind)", Box::new(move || copies.snapshot().sink_full));
        alarms.add("mirror copies refused", Box::new(move || again.snapshot().refused));
    }
    watch(&stop, &inputs, &dropped, &mut alarms, &health_state, &notifier);
    health_state.set_draining();
    notifier.notify("STOPPING=1");
    tracing::info!("draining");
    let deadline = Instant::now() + Duration::from_secs(settings.drain_timeout_secs);
    intake_stop.store(true, Relaxed);
    let mut extra = serde_json::Map::new();
    let mut input_error = None;
    for handle in inputs {
        match handle.join() {
            Ok(Ok(serde_json::Value::Object(stats))) => extra.extend(stats),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => input_error = Some(err),
            Err(_) => input_error = Some(anyhow!("an input thread panicked")),
        }
    }
    if let Some((server, records)) = mirror {
        let stats = server.shutdown(deadline.saturating_duration_since(Instant::now()));
        let _ = records.join();
        extra.insert(
            "http_mirror".into(),
            serde_json::json!({
                "copies": stats.copies,
                "answered": stats.answered,
                "refused": stats.refused,
                "sink_full": stats.sink_full,
            }),
        );
    }
    let finisher = spawn("vxtap-drain", move || engine.finish().map_err(anyhow::Error::from))?;
    while !finisher.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = finisher.is_finished();
    if drained {
        finisher.join().map_err(|_| anyhow!("drain thread panicked"))??;
    } else {
        tracing::warn!("drain timeout reached; exiting with flows still open");
    }
    let left = deadline.saturating_duration_since(Instant::now());
    extra.insert("replay".into(), finish_replay(replay, left));
    health.shutdown();
    extra.insert("drained".into(), drained.into());
    print_summary(&metrics, serde_json::Value::Object(extra));
    match input_error {
        Some(err) => Err(err.context("input failed")),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The HTTP mirror listener and the thread that turns its copies into events (and replay jobs),
/// when `--http-mirror` is given. Copies wait in a bounded queue: when it is full they are dropped
/// and counted by the listener, which has already answered them.
fn start_mirror(settings: &Settings, engine: &Engine) -> Result<Option<(MirrorServer, JoinHandle<()>)>> {
    let Some(cfg) = settings.http_mirror.clone() else { return Ok(None) };
    for warning in cfg.warnings() {
        tracing::warn!("{warning}");
    }
    // Copies wait for analysis in a queue bounded in count and in bytes; past either the listener
    // has still answered the copy, and counts the drop.
    let (tx, copies) = crossbeam_channel::bounded::<MirroredRequest>(MIRROR_QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    let held = queued.clone();
    let sink = move |copy: MirroredRequest| {
        let cost = copy_cost(&copy);
        if held.fetch_add(cost, Relaxed) + cost > MIRROR_QUEUE_BYTES {
            held.fetch_sub(cost, Relaxed);
            return Err(SinkFull);
        }
        tx.try_send(copy).map_err(|_| {
            held.fetch_sub(cost, Relaxed);
            SinkFull
        })
    };
    let server = MirrorServer::start(cfg, sink)?;
    tracing::info!("HTTP mirror input on {}", server.local_addr());
    let mut sink = engine.record_sink();
    let records = spawn("vxtap-mirror-records", move || {
        for (n, copy) in copies.iter().enumerate() {
            let cost = copy_cost(&copy);
            let origin = Origin {
                flow_id: mirror_flow_id(copy.peer, n as u64),
                src: copy.client,
                dst: copy.server,
                mirror: Some(copy.peer),
                hostname: Some(copy.hostname),
                ..Origin::default()
            };
            let tx = Transaction { client: Peer::A, request: copy.request, response: None, proxy: None };
            sink.submit(&origin, &tx);
            queued.fetch_sub(cost, Relaxed);
        }
    })?;
    Ok(Some((server, records)))
}

/// Counters whose growth is logged: one warning line at most every [`Alarms::EVERY`], saying what grew
/// by how much, so trouble shows in the log without a line per packet or request.
struct Alarms<'a> {
    /// What each counter counts, how to read it, and its value at the last check.
    counters: Vec<(&'static str, Counter<'a>, u64)>,
    next_check: Instant,
}

/// Reads one counter.
type Counter<'a> = Box<dyn Fn() -> u64 + 'a>;

impl<'a> Alarms<'a> {
    const EVERY: Duration = Duration::from_secs(10);

    fn new(counters: Vec<(&'static str, Counter<'a>)>) -> Self {
        let mut alarms = Alarms { counters: Vec::new(), next_check: Instant::now() };
        for (what, read) in counters {
            alarms.add(what, read);
        }
        alarms
    }

    fn add(&mut self, what: &'static str, read: Counter<'a>) {
        let now = read();
        self.counters.push((what, read, now));
    }

    /// Logs what grew since the last check, when a check is due.
    fn check(&mut self) {
        if Instant::now() < self.next_check {
            return;
        }
        self.next_check = Instant::now() + Self::EVERY;
        let mut grown = Vec::new();
        for (what, read, last) in &mut self.counters {
            let now = read();
            if now > *last {
                grown.push(format!("{what}: {}", now - *last));
            }
            *last = now;
        }
        if !grown.is_empty() {
            tracing::warn!(
                "{} (since the last warning, at most one every {} s)",
                grown.join("; "),
                Self::EVERY.as_secs()
            );
        }
    }
}

/// The live inputs' own counters (what the kernel or libpcap dropped before vxtap saw it), for
/// `/metrics`.
struct InputCounters {
    udp: Vec<Arc<UdpCounters>>,
    iface: Option<Arc<LiveCounters>>,
}

impl InputCounters {
    /// Packets the kernel dropped for want of room in vxtap's buffers (socket, libpcap), all inputs.
    fn kernel_drops(&self) -> u64 {
        let udp: u64 = self.udp.iter().map(|c| c.snapshot().kernel_drops).sum();
        udp + self.iface.as_ref().map_or(0, |c| c.snapshot().ps_drop)
    }

    fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let udp: Vec<_> = self.udp.iter().map(|c| c.snapshot()).collect();
        let per_receiver = |f: fn(&vxtap_capture::UdpStats) -> u64| -> Vec<(String, u64)> {
            udp.iter().enumerate().map(|(n, s)| (format!("receiver=\"{n}\""), f(s))).collect()
        };
        write_prometheus_family(
            &mut out,
            "udp_datagrams_total",
            "counter",
            "Tunnel datagrams received, per receive socket.",
            &per_receiver(|s| s.datagrams),
        );
        write_prometheus_family(
            &mut out,
            "udp_truncated_total",
            "counter",
            "Datagrams larger than the receive slot (never delivered cut), per receive socket.",
            &per_receiver(|s| s.truncated),
        );
        write_prometheus_family(
            &mut out,
            "udp_kernel_drops_total",
            "counter",
            "Datagrams the kernel dropped because the socket's receive buffer was full, per receive socket.",
            &per_receiver(|s| s.kernel_drops),
        );
        if let Some(iface) = &self.iface {
            let s = iface.snapshot();
            write_prometheus_family(
                &mut out,
                "iface_frames_total",
                "counter",
                "Frames captured on --iface.",
                &[("".into(), s.frames)],
            );
            write_prometheus_family(
                &mut out,
                "iface_drops_total",
                "counter",
                "Frames lost before vxtap read them: libpcap's kernel buffer was full (ps_drop), or the \
                 interface itself dropped them (ps_ifdrop).",
                &[("where=\"buffer\"".into(), s.ps_drop), ("where=\"interface\"".into(), s.ps_ifdrop)],
            );
        }
        out
    }
}

/// Mirrored copies waiting for detection, events and replay, at most, and their bytes.
const MIRROR_QUEUE: usize = 16_384;
const MIRROR_QUEUE_BYTES: usize = 64 << 20;

/// Bytes a queued copy holds (body, head, bookkeeping).
fn copy_cost(copy: &MirroredRequest) -> usize {
    let r = &copy.request;
    let head: usize = r.headers.iter().map(|h| h.name.len() + h.value.len() + 64).sum();
    r.body.len() + r.target.len() + head + 512
}

/// A flow id for a mirrored copy: each copy is its own flow (51 bits, like packet flows).
fn mirror_flow_id(peer: SocketAddr, n: u64) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(peer, n, std::process::id()), &mut h);
    std::hash::Hasher::finish(&h) & ((1 << 51) - 1)
}

/// Runs until a stop signal or an input thread ends: keeps the health state true to what intake is
/// doing (503 while packets are being dropped, by the worker queues or by the kernel before vxtap
/// could read them), and pets the systemd watchdog while all is well.
fn watch(
    stop: &AtomicBool,
    inputs: &[JoinHandle<Result<serde_json::Value>>],
    dropped: &dyn Fn() -> u64,
    alarms: &mut Alarms<'_>,
    health: &HealthState,
    notifier: &notify::Notifier,
) {
    const TICK: Duration = Duration::from_millis(50);
    const DROP_WINDOW: Duration = Duration::from_secs(5);
    let mut drops = dropped();
    let mut last_drop: Option<Instant> = None;
    let mut last_pet = Instant::now();
    while !stop.load(Relaxed) {
        if inputs.iter().any(JoinHandle::is_finished) {
            health.set_unhealthy("an input stopped");
            tracing::error!("an input thread stopped; shutting down");
            return;
        }
        alarms.check();
        let now_drops = dropped();
        if now_drops != drops {
            drops = now_drops;
            last_drop = Some(Instant::now());
            health.set_unhealthy("intake saturated");
        } else if last_drop.is_some_and(|at| at.elapsed() > DROP_WINDOW) {
            last_drop = None;
            health.set_healthy();
        }
        if let Some(every) = notifier.watchdog_interval() {
            if last_pet.elapsed() >= every {
                notifier.notify("WATCHDOG=1");
                last_pet = Instant::now();
            }
        }
        std::thread::sleep(TICK);
    }
}

fn spawn<T: Send + 'static>(name: &str, body: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .with_context(|| format!("cannot start thread {name}"))
}
