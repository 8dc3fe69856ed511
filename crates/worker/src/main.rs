//! `worker`: runs CHUM's workflows and activities against a Temporal server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chum_core::live_config::LiveConfig;
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "worker",
    version,
    about = "The CHUM worker: runs the Shark workflow and its activities",
    long_about = "The CHUM worker: connects to Temporal and runs one Shark workflow per submitted bead \
        (plan, human gate, execute, definition of done, integrate).\n\n\
        Configuration comes from --config (else $CHUM_CONFIG, ./configs/chum.toml, then \
        $XDG_CONFIG_HOME/chum/chum.toml), with environment overrides \
        named CHUM__<SECTION>__<KEY>, e.g. CHUM__TEMPORAL__ADDRESS=http://127.0.0.1:7233. Every key \
        is documented in configs/chum.example.toml.\n\n\
        SIGHUP re-reads the configuration file: limits, budget, providers, tiers, roles, projects, \
        Semgrep, learner, dispatcher and groom settings apply to the next activity of every run; \
        [temporal], [api], [store] and state_dir need a restart (the log line says which changed). A file \
        that does not load changes nothing.\n\n\
        SIGTERM or Ctrl-C drains: running activities finish, then the worker exits; workflows \
        continue on the next worker.\n\n\
        With [api] enabled, GET /metrics serves Prometheus metrics (CHUM's and the SDK's worker \
        metrics); --log-format json writes one JSON object per line, and every line an activity \
        writes carries its project, bead, workflow and run ids."
)]
struct Args {
    /// Path of the configuration file. Without it: $CHUM_CONFIG, then ./configs/chum.toml, then
    /// $XDG_CONFIG_HOME/chum/chum.toml (~/.config/chum/chum.toml).
    #[arg(long, short, env = "CHUM_CONFIG")]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,temporalio_sdk_core=warn,temporalio_client=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // https://no-color.org: a set, non-empty NO_COLOR turns colours off even on a terminal.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// SIGHUP re-reads the configuration file; the log line says what changed and what waits for a
/// restart.
async fn reload_on_sighup(live: LiveConfig, path: PathBuf, client: temporalio_client::Client) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; configuration changes need a restart");
        return;
    };
    while hup.recv().await.is_some() {
        match worker::reload_config(&live, &path, &client).await {
            Ok(change) => tracing::info!(
                config = %path.display(),
                applied = ?change.applied,
                needs_restart = ?change.needs_restart,
                "SIGHUP: configuration reloaded; {}",
                change.summary()
            ),
            Err(e) => tracing::error!(config = %path.display(), "SIGHUP: {e}"),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    // Before any HTTP client is built (the forge's): rustls's provider for the process.
    chum_activities::forge::install_crypto_provider();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("worker: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config_path = chum_client::settings::discover_config(args.config.as_deref())?;
    let config = Arc::new(chum_client::settings::load_config(&config_path)?);
    // A project whose Beads live in bd's Dolt database cannot use the native backend: refused
    // before anything starts, with what to set.
    for project in config.projects.values().filter(|p| p.enabled) {
        if project.backlog == chum_core::config::BacklogBackend::Native {
            let beads_dir = project.repo.join(&project.beads_file);
            if let Some(dir) = beads_dir.parent()
                && chum_activities::backlog::is_dolt_store(dir)
            {
                anyhow::bail!(
                    "{}: project {}: {}",
                    config.source.display(),
                    project.name,
                    chum_activities::backlog::BeadsError::DoltStore(dir.to_path_buf())
                );
            }
        }
    }
    // The API's tokens and address are checked before anything starts.
    let tokens = if config.api.enabled {
        let tokens = worker::api::tokens_from_env(&config)?;
        worker::api::check_bind(config.api.bind, &tokens, &config.api.tokens_env)?;
        tokens
    } else {
        Vec::new()
    };
    if args.check {
        println!(
            "{}: ok ({} project(s), {} provider(s))",
            config.source.display(),
            config.projects.len(),
            config.providers.len()
        );
        // What the connection to Temporal was loaded from, never a secret.
        for line in chum_client::envconfig::describe(&config.temporal) {
            println!("temporal: {line}");
        }
        let w = &config.worker;
        if w.several_hosts {
            println!(
                "worker: host {} (several hosts: its attempts' steps on {})",
                w.host,
                w.host_task_queue(&config.temporal.task_queue)
            );
        } else {
            println!("worker: host {}", w.host);
        }
        // A path, or the URL without its password.
        println!("store: {}", chum_activities::store::StoreTarget::of(&config));
        return Ok(());
    }
    let t = &config.temporal;
    tracing::info!(address = %t.address, namespace = %t.namespace, task_queue = %t.task_queue, config = %config.source.display(), "starting CHUM worker");
    for line in chum_client::envconfig::describe(t) {
        tracing::info!("temporal: {line}");
    }
    // The store is opened (and migrated) before any activity needs it: a shared store that cannot
    // be reached stops the worker here, with the URL (never its password) and the key to fix.
    let store = chum_activities::store::StoreTarget::of(&config);
    let opened = tokio::task::spawn_blocking({
        let store = store.clone();
        move || chum_activities::store::Store::at(&store).and_then(|s| s.schema_version())
    })
    .await?;
    match opened {
        Ok(version) => tracing::info!("store: {store} (schema {version})"),
        Err(e) => anyhow::bail!("{}: {e}", config.source.display()),
    }
    let identity = format!("chum-worker@{}/{}", config.worker.host, std::process::id());
    let client = chum_client::connect::connect(t, &identity, t.connect_timeout, |attempt, error, delay| {
        tracing::warn!(
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            "cannot reach Temporal at {}: {error}",
            t.address
        );
    })
    .await?;

    for line in worker::start_dispatchers(&client, &config).await {
        tracing::info!("{line}");
    }
    for line in worker::ensure_strategic_schedules(&client, &config).await {
        tracing::info!("{line}");
    }
    for line in chum_activities::exec::reap_orphans() {
        tracing::warn!("{line}");
    }
    if config.allow_same_model_review {
        tracing::warn!("allow_same_model_review = true: a reviewer may run the same model as the executor it reviews");
    }
    let live = LiveConfig::new(config.clone());
    let (runtime, sdk_metrics) = worker::metrics::runtime_with_metrics()?;
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    if config.api.enabled {
        let bind = config.api.bind;
        let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
            anyhow::anyhow!(
                "the HTTP API cannot listen on {bind} ([api] bind): {e}; choose another address, or set [api] enabled = false"
            )
        })?;
        let state = worker::api::ApiState::new(client.clone(), live.clone(), tokens.clone(), bind)
            .map_err(anyhow::Error::msg)?
            .with_sdk_metrics(sdk_metrics)
            .with_codec(chum_client::connect::payload_codec(t)?);
        let control = if tokens.is_empty() {
            format!("control routes off (no tokens in {})", config.api.tokens_env)
        } else {
            format!("{} token(s)", tokens.len())
        };
        tracing::info!(%bind, audit_log = %config.api.audit_log.display(), "HTTP API listening; {control}");
        tokio::spawn(async move {
            let stopped = async {
                let _ = api_stopped.await;
            };
            if let Err(e) = worker::api::serve(listener, Arc::new(state), stopped).await {
                tracing::error!("the HTTP API stopped: {e}");
            }
        });
    }
    let mut worker = worker::build_worker(&runtime, client.clone(), live.clone())?;
    let shutdown = worker.shutdown_handle();
    let mut host_worker = worker::build_host_worker(&runtime, client.clone(), live.clone())?;
    let host_shutdown = host_worker.as_ref().map(|w| w.shutdown_handle());
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot install signal handlers; stop the worker with SIGKILL");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining, running activities finish first"),
            _ = int.recv() => tracing::info!("interrupt: draining, running activities finish first"),
        }
        shutdown();
        if let Some(host_shutdown) = host_shutdown {
            host_shutdown();
        }
    });
    tokio::spawn(reload_on_sighup(live, config_path.clone(), client));
    match host_worker.as_mut() {
        Some(host_worker) => {
            let host_queue = config.worker.host_task_queue(&t.task_queue);
            tracing::info!(task_queue = %t.task_queue, %host_queue, host = %config.worker.host, "worker polling (several hosts: this host's attempts on its own queue)");
            let (shared, own) = tokio::join!(worker.run(), host_worker.run());
            shared?;
            own?;
        }
        None => {
            tracing::info!(task_queue = %t.task_queue, host = %config.worker.host, "worker polling");
            worker.run().await?;
        }
    }
    let _ = api_stop.send(());
    tracing::info!("worker stopped");
    Ok(())
}
