//! A Solana validator on 127.0.0.1 running `balance_payment` natively: surfpool's simnet
//! (LiteSVM behind the standard JSON-RPC and websocket APIs), offline. Wallets, the Anchor
//! client and the indexer's `RpcChain` talk to it exactly as they talk to a real cluster.
use anyhow::{anyhow, Context};
use crossbeam_channel::{unbounded, Receiver};
use solana_program_runtime::invoke_context::BuiltinFunctionWithContext;
use solana_program_test::{processor, ProgramTest};
use std::{
    net::{Ipv4Addr, TcpListener},
    thread::JoinHandle,
    time::Duration,
};
use surfpool_core::surfnet::svm::{SurfnetSvm, SurfnetSvmConfig};
use surfpool_types::{
    RpcConfig, SimnetCommand, SimnetConfig, SimnetEvent, SurfpoolConfig, DEFAULT_SLOT_TIME_MS,
};
use tokio::sync::OnceCell;

/// The ports every Solana tool defaults to for a local cluster.
pub const LOCALNET_RPC_PORT: u16 = 8899;

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how fast the validator runs.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    pub rpc_port: u16,
    /// The websocket port; Solana clients derive it as the RPC port + 1.
    pub ws_port: u16,
    /// One slot. Commitment `finalized` trails the tip by 31 slots, so this sets how long a
    /// finalized read waits: 31 × 50 ms ≈ 1.6 s.
    pub slot_time: Duration,
    /// Whether the program is deployed (as a builtin). `false`: a cluster it was never
    /// deployed to, to test what clients say then.
    pub with_program: bool,
}

impl ValidatorConfig {
    /// 8899/8900, where `solana`, web3.js and Anchor look for a local cluster.
    pub fn localnet() -> Self {
        Self::on_port(LOCALNET_RPC_PORT)
    }

    /// RPC on `rpc_port`, websocket on the next port, as Solana clients expect.
    pub fn on_port(rpc_port: u16) -> Self {
        Self {
            rpc_port,
            ws_port: rpc_port.saturating_add(1),
            slot_time: Duration::from_millis(50),
            with_program: true,
        }
    }

    /// Two free ports picked by the OS: for tests that run many validators at once.
    pub fn free_ports() -> anyhow::Result<Self> {
        Ok(Self {
            rpc_port: free_port()?,
            ws_port: free_port()?,
            ..Self::localnet()
        })
    }
}

/// A running validator; stops when dropped.
pub struct Validator {
    rpc_url: String,
    ws_url: String,
    ports: [u16; 2],
    commands: crossbeam_channel::Sender<SimnetCommand>,
    thread: Option<JoinHandle<()>>,
}

impl Validator {
    /// Starts a fresh chain with the program deployed as a builtin, and returns once its RPC
    /// answers.
    pub async fn start(config: ValidatorConfig) -> anyhow::Result<Self> {
        install_syscall_stubs().await;
        let slot_time = u64::try_from(config.slot_time.as_millis())
            .unwrap_or(DEFAULT_SLOT_TIME_MS)
            .max(1);
        let (mut svm, events, geyser) = SurfnetSvm::new(SurfnetSvmConfig {
            slot_time,
            instruction_profiling_enabled: false,
            ..SurfnetSvmConfig::default()
        })
        .map_err(|e| anyhow!("building the simnet: {e}"))?;
        if config.with_program {
            let entry: Option<BuiltinFunctionWithContext> =
                processor!(balance_payment::sdk::native::process_instruction);
            let entry = entry.context("the program's native entry point")?;
            svm.inner.svm.add_builtin(balance_payment::ID, entry);
        }

        let surfpool = SurfpoolConfig {
            simnets: vec![SimnetConfig {
                offline_mode: true,
                remote_rpc_url: None,
                slot_time,
                instruction_profiling_enabled: false,
                ..SimnetConfig::default()
            }],
            rpc: RpcConfig {
                bind_host: Ipv4Addr::LOCALHOST.to_string(),
                bind_port: config.rpc_port,
                ws_port: config.ws_port,
                ..RpcConfig::default()
            },
            ..SurfpoolConfig::default()
        };
        let (commands, commands_rx) = unbounded();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let commands_tx = commands.clone();
        let thread = std::thread::Builder::new()
            .name("localnet-validator".into())
            .spawn(move || {
                run(
                    svm,
                    surfpool,
                    commands_tx,
                    commands_rx,
                    geyser,
                    events,
                    ready_tx,
                )
            })
            .context("starting the validator thread")?;
        let started = tokio::time::timeout(START_TIMEOUT, ready_rx)
            .await
            .map_err(|_| anyhow!("the validator did not start within {START_TIMEOUT:?}"))?
            .map_err(|_| anyhow!("the validator stopped while starting"))?;
        let validator = Self {
            rpc_url: format!("http://127.0.0.1:{}", config.rpc_port),
            ws_url: format!("ws://127.0.0.1:{}", config.ws_port),
            ports: [config.rpc_port, config.ws_port],
            commands,
            thread: Some(thread),
        };
        started.map_err(|e| anyhow!("the validator failed to start: {e}"))?;
        Ok(validator)
    }

    /// The JSON-RPC endpoint.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// The websocket (subscriptions) endpoint.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// Stops block production and closes both servers; returns once the validator's thread
    /// has ended and its ports refuse connections (surfpool closes them on threads of its own).
    pub fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self.commands.send(SimnetCommand::Terminate(None));
        let _ = thread.join();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for port in self.ports {
            while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The validator's thread: its own runtime running surfpool until `Terminate`, with a second
/// thread turning surfpool's events into logs and reporting when it is ready.
fn run(
    svm: SurfnetSvm,
    config: SurfpoolConfig,
    commands_tx: crossbeam_channel::Sender<SimnetCommand>,
    commands_rx: Receiver<SimnetCommand>,
    geyser: Receiver<surfpool_core::surfnet::GeyserEvent>,
    events: Receiver<SimnetEvent>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let ready = std::sync::Arc::new(std::sync::Mutex::new(Some(ready)));
    let report = {
        let ready = ready.clone();
        move |result: Result<(), String>| {
            if let Some(ready) = ready.lock().ok().and_then(|mut slot| slot.take()) {
                let _ = ready.send(result);
            }
        }
    };
    let on_event = report.clone();
    let logger = std::thread::Builder::new()
        .name("localnet-events".into())
        .spawn(move || {
            for event in events {
                log_event(&event, &on_event);
            }
        });
    if let Err(e) = logger {
        return report(Err(format!("starting the event thread: {e}")));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("localnet-rpc")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(Err(format!("building the runtime: {e}"))),
    };
    let outcome = runtime.block_on(surfpool_core::start_local_surfnet(
        svm,
        config,
        commands_tx,
        commands_rx,
        geyser,
    ));
    match outcome {
        Ok(()) => report(Err("it stopped".into())),
        Err(e) => report(Err(e.to_string())),
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
}

fn log_event(event: &SimnetEvent, report: &impl Fn(Result<(), String>)) {
    match event {
        SimnetEvent::Ready(_) => report(Ok(())),
        SimnetEvent::Aborted(reason) => report(Err(reason.clone())),
        SimnetEvent::ErrorLog(_, message) => tracing::warn!(target: "localnet", "{message}"),
        SimnetEvent::WarnLog(_, message) => tracing::debug!(target: "localnet", "{message}"),
        SimnetEvent::TransactionProcessed(_, meta, Some(error)) => {
            tracing::debug!(target: "localnet", signature = %meta.signature, %error, "transaction failed")
        }
        _ => {}
    }
}

/// `msg!` and `emit_cpi!` in a natively run program go through the syscall stubs that
/// `solana-program-test` installs, once per process, when it starts a bank.
async fn install_syscall_stubs() {
    static STUBS: OnceCell<()> = OnceCell::const_new();
    STUBS
        .get_or_init(|| async {
            // It also turns on debug logging of every instruction; keep the level as it was.
            let level = log::max_level();
            let _ = ProgramTest::default().start().await;
            log::set_max_level(level);
        })
        .await;
}

/// A port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
