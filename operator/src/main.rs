//! `tiepdan-operator`: wiring only; the logic lives in the library.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use tiepdan_operator::clock::SystemClock;
use tiepdan_operator::controller::{self, OperatorConfig};
use tiepdan_operator::leader::{self, LeaseConfig};
use tiepdan_operator::links;
use tiepdan_operator::monitoring_gen;
use tiepdan_operator::rbac;
use tiepdan_operator::telemetry::{LogFormat, Otlp, Telemetry};
use tiepdan_operator::webhook::{self, registration::Endpoint, runner::WebhookOptions};
use tiepdan_operator::write_gate;

#[derive(Parser)]
#[command(name = "tiepdan-operator", version, about = "Runs online citizen reception sessions on Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG or the in-cluster config (default).
    Run(Box<RunArgs>),
    /// Write the CustomResourceDefinitions as YAML files.
    Crd {
        /// The directory to write into.
        #[arg(long, default_value = "crds")]
        out: PathBuf,
    },
    /// Write the Grafana dashboards (the overview and the example session's) as JSON files.
    Dashboards {
        /// The directory to write into.
        #[arg(long, default_value = "dashboards")]
        out: PathBuf,
    },
    /// Print one join link per point of a session. Links are secrets: share each only with its
    /// point's officer.
    Links {
        /// The session's name.
        session: String,
        /// The session's namespace (default: the kubeconfig's).
        #[arg(short, long)]
        namespace: Option<String>,
        /// The console's origin (default: the stable entry in the session's status.entryUrl,
        /// else the session's worker).
        #[arg(long, conflicts_with = "probe")]
        base_url: Option<String>,
        /// Print links to the session's current worker even when it has a stable entry; such a
        /// link dies with that worker (for debugging one worker).
        #[arg(long, conflicts_with_all = ["probe", "base_url"])]
        worker_links: bool,
        /// Instead of the points' links, mint a probe token with this name (a DNS label), valid
        /// for an hour, for `tiepdan-media-worker probe --url <signaling URL> --token <token>`.
        /// A probe gets plain RTP and is never a point: it cannot verify one.
        #[arg(long, value_name = "NAME")]
        probe: Option<String>,
        /// Issue this point a new link and print it: the point's older links are refused and
        /// their connections closed (within seconds), for a link that leaked. Other points keep
        /// theirs.
        #[arg(long, value_name = "POINT", conflicts_with = "probe")]
        rotate: Option<String>,
        /// How long to wait for the operator to issue the new link.
        #[arg(long, default_value_t = 30, requires = "rotate")]
        wait_seconds: u64,
    },
    /// Write the Prometheus rule files (the global rules and the example session's rules).
    Rules {
        /// The directory to write into.
        #[arg(long, default_value = "deploy/prometheus")]
        out: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Minutes before the rehearsal at which the worker, Service and tokens are provisioned.
    #[arg(long, env = "TIEPDAN_PROVISIONING_LEAD_MINUTES", default_value_t = 30)]
    provisioning_lead_minutes: i64,
    /// Minutes a session stays Live after its end before it completes.
    #[arg(long, env = "TIEPDAN_GRACE_MINUTES", default_value_t = 15)]
    grace_minutes: i64,
    /// Seconds between reads of an active session's worker status.
    #[arg(long, env = "TIEPDAN_STATUS_POLL_SECONDS", default_value_t = 10)]
    status_poll_seconds: u64,
    /// How many sessions are reconciled at once (1–1024). More finishes a provisioning wave
    /// sooner while the API server keeps up, and holds more memory meanwhile.
    #[arg(long, env = "TIEPDAN_MAX_CONCURRENT_RECONCILES", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_concurrent_reconciles: u16,
    /// Watch only this namespace instead of all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Log format. Spans go over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, env = "TIEPDAN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Where to serve /metrics, /healthz and /readyz (in a pod: 0.0.0.0:8080).
    #[arg(long, env = "TIEPDAN_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,
    /// A label (KEY=VALUE) for every PodMonitor and PrometheusRule, e.g. release=prometheus for
    /// a Prometheus whose selectors want it. Repeatable; the variable takes a comma-separated list.
    #[arg(long = "monitoring-label", env = "TIEPDAN_MONITORING_LABELS", value_delimiter = ',', value_parser = parse_label)]
    monitoring_labels: Vec<(String, String)>,
    /// Serve the admission webhooks here over TLS (in a pod: 0.0.0.0:8443); off when unset.
    #[arg(long, env = "TIEPDAN_WEBHOOK_ADDR")]
    webhook_addr: Option<SocketAddr>,
    /// The Service in front of the webhook, in the operator's namespace (in cluster).
    #[arg(long, env = "TIEPDAN_WEBHOOK_SERVICE", conflicts_with = "webhook_url")]
    webhook_service: Option<String>,
    /// The webhook's base URL as the API server reaches it (out of cluster), e.g. https://127.0.0.1:8443.
    #[arg(long, env = "TIEPDAN_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Check only namespaces with this label (KEY=VALUE; repeatable, all must match): the
    /// configurations' namespaceSelector. Every namespace when unset.
    #[arg(long = "webhook-namespace-label", env = "TIEPDAN_WEBHOOK_NAMESPACE_LABELS", value_delimiter = ',', value_parser = parse_label)]
    webhook_namespace_labels: Vec<(String, String)>,
    /// A ClusterRole to own the webhook configurations, so that they are deleted with it (the chart
    /// passes its own, which `helm uninstall` deletes); unowned when unset.
    #[arg(long, env = "TIEPDAN_WEBHOOK_OWNER_CLUSTER_ROLE")]
    webhook_owner_cluster_role: Option<String>,
    /// The name of both webhook configurations. Cluster-wide objects, so each installation needs
    /// its own (the chart passes its release's full name); ones an older version registered as
    /// "tiepdan" and the same ClusterRole owns are deleted.
    #[arg(long, env = "TIEPDAN_WEBHOOK_CONFIGURATION_NAME", default_value = rbac::WEBHOOK_CONFIGURATION)]
    webhook_configuration_name: String,
    /// The operator's own namespace: its CA Secret, trust bundle and Lease live there.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tiepdan-system")]
    operator_namespace: String,
    /// Make this Secret in the operator's namespace, once, with a random TURN shared secret
    /// (key `secret`): the chart's coturn checks credentials with it and pools name it in
    /// `spec.turn.secretName`. Unset: none is made (for an external TURN server, create its
    /// Secret by hand).
    #[arg(long, env = "TIEPDAN_TURN_SECRET_NAME")]
    turn_secret_name: Option<String>,
    /// The stable entry offices use, e.g. https://tiepdan.hungyen.gov.vn (the chart passes it
    /// with entry.enabled): written to every session's status.entryUrl, so
    /// `tiepdan-operator links` prints links to it, which survive a worker replacement.
    #[arg(long, env = "TIEPDAN_ENTRY_URL", value_parser = links::parse_entry_url)]
    entry_url: Option<String>,
    /// Run the controllers only while holding the `tiepdan-operator` Lease (for several replicas).
    #[arg(long, env = "TIEPDAN_LEADER_ELECT")]
    leader_elect: bool,
    /// Seconds the Lease lasts without renewal: a standby takes over this long after the leader
    /// stops renewing, and the leader stops acting two thirds of it after its last renewal.
    #[arg(long, env = "TIEPDAN_LEADER_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    leader_lease_seconds: u64,
    /// Milliseconds between renewals (and a standby's attempts); at most a third of the Lease.
    #[arg(long, env = "TIEPDAN_LEADER_RETRY_MILLIS", default_value_t = 3000)]
    leader_retry_millis: u64,
    /// A name the operator's CA may also sign for, besides the cluster's service domains (svc,
    /// svc.cluster.local): the public entry host the offices' browsers reach, as a DNS name
    /// (covering its subdomains), an IP address or an IP range (ADDRESS/PREFIX). Repeatable; the
    /// variable takes a comma-separated list. The webhook URL's host is added by itself.
    #[arg(long = "ca-permitted-name", env = "TIEPDAN_CA_PERMITTED_NAMES", value_delimiter = ',')]
    ca_permitted_names: Vec<tiepdan_operator::pki::PermittedName>,
    /// Days each of the operator's CAs is valid (1 to 365).
    #[arg(long, env = "TIEPDAN_CA_VALIDITY_DAYS", default_value_t = 365)]
    ca_validity_days: i64,
    /// Days before the CA expires its successor is created and published in the trust bundle
    /// beside it; it signs from half that time later. Default: a third of --ca-validity-days.
    #[arg(long, env = "TIEPDAN_CA_ROTATION_LEAD_DAYS")]
    ca_rotation_lead_days: Option<i64>,
    /// Hours a session's signaling certificate is valid (renewed in its last third).
    #[arg(long, env = "TIEPDAN_SESSION_CERT_HOURS", default_value_t = 168, value_parser = clap::value_parser!(i64).range(1..=8760))]
    session_cert_hours: i64,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Written when it drops: when `run` returns after SIGTERM, to $TIEPDAN_DHAT_OUT.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder()
        .file_name(std::env::var_os("TIEPDAN_DHAT_OUT").map_or_else(|| PathBuf::from("dhat-heap.json"), PathBuf::from))
        .build();
    let cli = Cli::parse();
    // No subcommand means `run`, with its flags' defaults and environment variables.
    let command = match cli.command {
        Some(c) => c,
        None => Cli::parse_from(["tiepdan-operator", "run"]).command.context("run is a subcommand")?,
    };
    match command {
        Command::Crd { out } => {
            for f in tiepdan_operator::crdgen::write(&out)? {
                println!("{}", out.join(f).display());
            }
        }
        Command::Dashboards { out } => {
            for f in monitoring_gen::write(&out, monitoring_gen::dashboards()?)? {
                println!("{}", out.join(f).display());
            }
        }
        Command::Rules { out } => {
            for f in monitoring_gen::write(&out, monitoring_gen::rules()?)? {
                println!("{}", out.join(f).display());
            }
        }
        Command::Run(args) => run(*args).await?,
        Command::Links {
            session,
            namespace,
            base_url,
            worker_links,
            probe: None,
            rotate: Some(point),
            wait_seconds,
        } => {
            let client = kube::Client::try_default().await.context("failed to build a Kubernetes client")?;
            let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
            let wait = std::time::Duration::from_secs(wait_seconds);
            let base = links::LinkBase::choose(base_url, worker_links);
            let l = links::rotate(&client, &ns, &session, &point, &base, wait).await?;
            println!("{}\t{}", l.point, l.url);
        }
        Command::Links { session, namespace, base_url: _, probe: Some(name), .. } => {
            let client = kube::Client::try_default().await.context("failed to build a Kubernetes client")?;
            let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
            let p = tiepdan_operator::links::probe(&client, &ns, &session, &name, jiff::Timestamp::now()).await?;
            println!("{}\t{}\t{}", p.name, p.signaling_url.as_deref().unwrap_or("-"), p.token);
        }
        Command::Links { session, namespace, base_url, worker_links, probe: None, rotate: None, .. } => {
            let client = kube::Client::try_default().await.context("failed to build a Kubernetes client")?;
            let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
            let base = links::LinkBase::choose(base_url, worker_links);
            for l in links::fetch(&client, &ns, &session, &base).await? {
                println!("{}\t{}", l.point, l.url);
            }
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let format = if args.log_format == "json" { LogFormat::Json } else { LogFormat::Text };
    let telemetry = Telemetry::init(tiepdan_operator::TELEMETRY, format, &Otlp::from_env(), std::io::stdout)
        .context("failed to set up telemetry")?;
    let lease = LeaseConfig {
        namespace: args.operator_namespace.clone(),
        name: rbac::LEASE.into(),
        identity: std::env::var("POD_NAME").unwrap_or_else(|_| format!("tiepdan-operator-{}", std::process::id())),
        duration: std::time::Duration::from_secs(args.leader_lease_seconds),
        retry: std::time::Duration::from_millis(args.leader_retry_millis),
    };
    if args.leader_elect {
        lease.validate().context("--leader-lease-seconds and --leader-retry-millis")?;
    }
    // With leader election, controllers run only while this replica holds the Lease; losing it
    // ends the process so a fresh start cannot act on stale state.
    let (leading_tx, leading) = tokio::sync::watch::channel(!args.leader_elect);
    let requests = tiepdan_operator::api_requests::ApiRequests::new();
    let kube_config = kube::Config::infer().await.context("failed to find the cluster's configuration")?;
    // The elector and the webhook's registration write with this one; the controllers with one
    // whose writes pass only while this replica leads (see write_gate).
    let timeout = tiepdan_operator::request_timeout::RequestTimeout::default();
    let client = requests.client(kube_config.clone(), timeout).context("failed to build a Kubernetes client")?;
    let fence = write_gate::WriteGate::new(leading.clone(), requests.clone());
    let controllers_client = write_gate::client(kube_config, &requests, fence, timeout)?;
    let mut config = OperatorConfig { api_requests: Some(requests), ..OperatorConfig::default() };
    config.timeline.provisioning_lead = jiff::SignedDuration::from_mins(args.provisioning_lead_minutes);
    config.timeline.grace = jiff::SignedDuration::from_mins(args.grace_minutes);
    config.status_poll = std::time::Duration::from_secs(args.status_poll_seconds);
    config.max_concurrent_reconciles = args.max_concurrent_reconciles;
    config.instance = std::env::var("POD_NAME").ok();
    config.namespace = args.namespace;
    config.metrics_addr = Some(args.metrics_addr);
    config.monitoring_labels = args.monitoring_labels.into_iter().collect::<BTreeMap<_, _>>();
    config.ca_namespace = args.operator_namespace.clone();
    config.turn_secret = args.turn_secret_name.clone();
    config.entry_url = args.entry_url.clone();
    config.session_cert_validity = jiff::SignedDuration::from_hours(args.session_cert_hours);
    // The webhook's serving certificate names its URL's host: the CA must permit it too.
    let webhook_host = match &args.webhook_url {
        Some(url) => Some(
            Endpoint::Url(url.clone())
                .url_host()
                .context("--webhook-url has no host")?
                .parse::<tiepdan_operator::pki::PermittedName>()
                .context("--webhook-url's host")?,
        ),
        None => None,
    };
    config.ca_names = tiepdan_operator::pki::NamePolicy::new(args.ca_permitted_names.into_iter().chain(webhook_host));
    config.ca_rotation =
        tiepdan_operator::pki::rotation::RotationPolicy::from_days(args.ca_validity_days, args.ca_rotation_lead_days)?;
    tracing::info!(exporting_spans = telemetry.exporting(), "tiepdan-operator starting");

    let _webhook = match (args.webhook_addr, args.webhook_service, args.webhook_url) {
        (None, _, _) => None,
        (Some(listen), service, url) => {
            let endpoint = match (service, url) {
                (_, Some(url)) => Endpoint::Url(url),
                (Some(name), None) => Endpoint::Service {
                    namespace: args.operator_namespace.clone(),
                    name,
                    port: i32::from(listen.port()),
                },
                (None, None) => anyhow::bail!("--webhook-addr needs --webhook-service or --webhook-url"),
            };
            let opts = WebhookOptions {
                listen,
                namespace: args.operator_namespace.clone(),
                name: args.webhook_configuration_name,
                endpoint,
                namespace_selector: (!args.webhook_namespace_labels.is_empty()).then(|| LabelSelector {
                    match_labels: Some(args.webhook_namespace_labels.into_iter().collect()),
                    ..Default::default()
                }),
                ca_names: config.ca_names.clone(),
                ca_rotation: config.ca_rotation,
                owner_cluster_role: args.webhook_owner_cluster_role,
                replaces: Some(rbac::LEGACY_WEBHOOK_CONFIGURATION.to_owned()),
            };
            Some(webhook::runner::start(client.clone(), opts).await.context("failed to start the admission webhook")?)
        }
    };

    if args.leader_elect {
        tokio::spawn(leader::run(client.clone(), lease.clone(), leading_tx));
        tracing::info!("waiting to lead");
    }
    let mut won = leading.clone();
    let gate = async move {
        let _ = won.wait_for(|l| *l).await;
        tracing::info!("leading");
    };
    let mut lost = leading.clone();
    let shutdown = async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot handle SIGTERM");
                return;
            }
        };
        // Only a replica that led can lose the lease.
        let lost_lease = async move {
            if lost.wait_for(|l| *l).await.is_err() || lost.wait_for(|l| !*l).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            () = lost_lease => tracing::warn!("lost the lease; stopping"),
        }
    };
    controller::run_gated(controllers_client, Arc::new(SystemClock), config, gate, shutdown).await;
    if args.leader_elect {
        // Hand over at once instead of making the next replica wait for the lease to expire.
        let api = kube::Api::namespaced(client, &args.operator_namespace);
        if let Err(e) = leader::release(&api, &lease).await {
            tracing::warn!(error = %e, "failed to release the lease");
        }
    }
    if args.leader_elect && !*leading.borrow() {
        anyhow::bail!("lost the leader lease");
    }
    // Stopping the exporter flushes the last spans; it blocks, so not on a runtime thread.
    tokio::task::spawn_blocking(move || drop(telemetry)).await.context("failed to stop telemetry")?;
    Ok(())
}
