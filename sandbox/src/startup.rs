//! Bringing the servers up: the runtime thread the sandbox lives on (with a
//! separate runtime for the Kubernetes API), free loopback ports, the
//! Kubernetes API (TLS), EKS, STS and the EC2 audit proxy in front of moto,
//! seeding the scenario, and starting the controllers.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;

use crate::calls::CallLog;
use crate::control_plane::ControlPlane;
use crate::eks::Eks;
use crate::ipam::Ipam;
use crate::kube::Store;
use crate::moto::Moto;
use crate::{
    Clock, SandboxError, SandboxOptions, World, auth, controllers, ec2proxy, eks, io_err, kube, scenario, sts,
};

pub(crate) struct Started {
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) kube_url: String,
    pub(crate) eks_url: String,
    pub(crate) ec2_url: String,
    pub(crate) sts_url: String,
    /// The S3 proxy in front of moto's S3 (absent without moto).
    pub(crate) s3_url: Option<String>,
    pub(crate) autoscaling_url: String,
    pub(crate) autoscaling: Arc<crate::autoscaling::Groups>,
    pub(crate) tls: auth::tls::ClusterTls,
    pub(crate) auth: Arc<auth::Auth>,
    pub(crate) moto_url: Option<String>,
    pub(crate) store: Arc<Store>,
    pub(crate) eks: Arc<Eks>,
    pub(crate) calls: Arc<CallLog>,
    pub(crate) clock: Clock,
    pub(crate) world: World,
    pub(crate) ipam: Arc<Mutex<Ipam>>,
    pub(crate) controllers: Option<Arc<controllers::Ctx>>,
    pub(crate) consistency: Arc<ec2proxy::Consistency>,
    pub(crate) control_plane: Arc<ControlPlane>,
}

async fn bind(what: &str) -> Result<(tokio::net::TcpListener, String), SandboxError> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io_err(format!("binding the {what} port")))?;
    let addr = l.local_addr().map_err(io_err(format!("reading the {what} port")))?;
    Ok((l, addr.to_string()))
}

fn serve(listener: tokio::net::TcpListener, router: axum::Router, stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut stop = stop;
        let r = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::warn!("server stopped: {e}");
        }
    });
}

async fn startup(
    opts: &SandboxOptions,
    moto: Option<&Moto>,
    api: tokio::runtime::Handle,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Started, SandboxError> {
    let s = &opts.scenario;
    let calls = Arc::new(CallLog::default());
    let store = Arc::new(Store::new());
    let clock = Clock::new(opts.time_scale);
    let (kube_l, kube_addr) = bind("Kubernetes API").await?;
    let (eks_l, eks_addr) = bind("EKS API").await?;
    let (ec2_l, ec2_addr) = bind("EC2 proxy").await?;
    let (sts_l, sts_addr) = bind("STS").await?;
    let (s3_l, s3_addr) = bind("S3 proxy").await?;
    let (as_l, as_addr) = bind("Auto Scaling").await?;
    let autoscaling = Arc::new(crate::autoscaling::Groups::default());
    let kube_url = format!("https://{kube_addr}");
    let tls = auth::tls::generate()?;
    let auth = Arc::new(auth::Auth::new(&s.cluster, &s.region, scenario::seed::ACCOUNT));
    auth.add_sts_host(&sts_addr);
    let eks = Arc::new(Eks::new(
        store.clone(),
        &s.region,
        scenario::seed::ACCOUNT,
        clock.clone(),
        opts.timings.clone(),
    ));
    auth::tls::serve(
        &api,
        kube_l,
        kube::router(store.clone(), calls.clone(), kube_addr.clone(), auth.clone()),
        &tls,
        stop.clone(),
    );
    serve(
        sts_l,
        sts::router(auth.clone(), calls.clone(), scenario::seed::ACCOUNT),
        stop.clone(),
    );
    serve(
        eks_l,
        eks::handlers::router(eks.clone(), calls.clone(), auth.clone()),
        stop.clone(),
    );
    let consistency = Arc::new(ec2proxy::Consistency::new(clock.clone(), opts.ec2_lag));
    let recognition = opts.cidr_recognition.unwrap_or_else(|| s.control_plane.recognition());
    let control_plane = Arc::new(ControlPlane::new(clock.clone(), recognition));
    store.set_control_plane(control_plane.clone());
    if let Some(m) = moto {
        serve(
            ec2_l,
            ec2proxy::router(ec2proxy::ProxyState::new(
                format!("127.0.0.1:{}", m.port),
                calls.clone(),
                consistency.clone(),
                control_plane.clone(),
                auth.clone(),
                (&s.region, scenario::seed::ACCOUNT),
            )),
            stop.clone(),
        );
        serve(
            s3_l,
            ec2proxy::s3::router(format!("127.0.0.1:{}", m.port), calls.clone()),
            stop.clone(),
        );
    } else {
        drop(ec2_l);
        drop(s3_l);
    }
    let client = moto.map(|m| scenario::ec2::moto_client(&m.endpoint, &s.region));
    serve(
        as_l,
        crate::autoscaling::http::router(crate::autoscaling::http::AsHttp {
            groups: autoscaling.clone(),
            calls: calls.clone(),
            auth: auth.clone(),
            ec2: client.clone(),
            region: s.region.clone(),
            account: scenario::seed::ACCOUNT.to_string(),
        }),
        stop.clone(),
    );
    let seeded = scenario::seed::seed(scenario::seed::SeedInput {
        scenario: s,
        ec2: client.as_ref(),
        store: &store,
        eks: &eks,
        kube_endpoint: &kube_url,
        certificate_authority: &base64::engine::general_purpose::STANDARD.encode(tls.ca_pem.as_bytes()),
        autoscaling: &autoscaling,
    })
    .await?;
    let ipam = Arc::new(Mutex::new(seeded.ipam));
    let ctl = opts.controllers.then(|| {
        Arc::new(controllers::Ctx::new(
            store.clone(),
            eks.clone(),
            client.clone(),
            ipam.clone(),
            clock.clone(),
            s.clone(),
            seeded.world.clone(),
            opts.behaviour.clone(),
            autoscaling.clone(),
        ))
    });
    if let Some(c) = &ctl {
        tokio::spawn(controllers::run(c.clone(), stop.clone()));
    }
    Ok(Started {
        handle: tokio::runtime::Handle::current(),
        kube_url,
        eks_url: format!("http://{eks_addr}"),
        ec2_url: format!("http://{ec2_addr}"),
        sts_url: format!("http://{sts_addr}"),
        s3_url: moto.map(|_| format!("http://{s3_addr}")),
        autoscaling_url: format!("http://{as_addr}"),
        autoscaling,
        tls,
        auth,
        moto_url: moto.map(|m| m.endpoint.clone()),
        store,
        eks,
        calls,
        clock,
        world: seeded.world,
        ipam,
        controllers: ctl,
        consistency,
        control_plane,
    })
}

fn runtime(name: &str, workers: usize) -> Result<tokio::runtime::Runtime, SandboxError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(io_err(format!("building the {name} runtime")))
}

/// Run the sandbox on a thread of its own: build its runtimes, start
/// everything, report the outcome on `ready_tx`, then serve until
/// `shut_rx` fires (or startup failed), and stop moto last.
pub(crate) fn spawn(
    opts: SandboxOptions,
    moto: Option<Moto>,
    ready_tx: Sender<Result<Started, SandboxError>>,
    shut_rx: tokio::sync::oneshot::Receiver<()>,
) -> Result<JoinHandle<()>, SandboxError> {
    std::thread::Builder::new()
        .name("podnet-sandbox".into())
        .spawn(move || {
            let rt = match runtime("podnet-sandbox-rt", 2) {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            // The Kubernetes API gets a runtime of its own: a busy
            // controller pass (600 pods on a debug build) must never
            // hold up a TLS handshake past a client's timeout (Go's is
            // 10 s).
            let api_rt = match runtime("podnet-sandbox-api", 1) {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let started = rt.block_on(startup(&opts, moto.as_ref(), api_rt.handle().clone(), stop_rx));
            let ok = started.is_ok();
            let _ = ready_tx.send(started);
            if ok {
                rt.block_on(async {
                    let _ = shut_rx.await;
                });
            }
            let _ = stop_tx.send(true);
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            api_rt.shutdown_timeout(std::time::Duration::from_secs(2));
            drop(moto);
        })
        .map_err(io_err("starting the sandbox thread"))
}
