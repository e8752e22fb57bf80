//! `collective simulate`: the whole loop in one process, with a progress bar.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use clap::Args;
use collective::simulate::attack::Attack;
use collective::simulate::data::DataSource;
use collective::simulate::{AlgorithmSource, Progress, SimulateOptions, run};
use indicatif::{ProgressBar, ProgressStyle};

use super::operator::parse_param;

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The people: `diabetes` (linfa-datasets, 441 people), `winequality`
    /// (1,599 wines), or a CSV file with a header (then give --label)
    #[arg(long, default_value = "diabetes")]
    data: String,
    /// The column to predict, for a CSV file
    #[arg(long)]
    label: Option<String>,
    /// An algorithm of algorithms/ by name (linear-regression,
    /// logistic-regression, softmax-regression, elm-ridge) or a .wasm component
    #[arg(long, default_value = "linear-regression")]
    algorithm: String,
    /// Hyper-parameters beyond the defaults, as name=value
    #[arg(long = "params", num_args = 1.., value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Rounds
    #[arg(long, default_value_t = SimulateOptions::default().rounds)]
    rounds: u32,
    /// Wallets sampled per round
    #[arg(long, default_value_t = SimulateOptions::default().wallets_per_round)]
    wallets_per_round: u32,
    /// Smallest batch the aggregator releases
    #[arg(long, default_value_t = SimulateOptions::default().min_batch)]
    k: u32,
    /// Aggregation rule: mean, clipped-mean[:NORM], median, trimmed-mean[:FRACTION],
    /// multi-krum[:F], centered-clipping[:RADIUS[:ITERATIONS]]
    #[arg(long, default_value = "mean")]
    filter: String,
    /// Server learning rate
    #[arg(long, default_value_t = SimulateOptions::default().server_lr)]
    server_lr: f64,
    /// Server momentum
    #[arg(long, default_value_t = SimulateOptions::default().momentum)]
    momentum: f64,
    /// Fraction of wallets that tamper with their update
    #[arg(long, default_value_t = 0.0)]
    attackers: f64,
    /// How they tamper
    #[arg(long, value_enum, default_value = "sign-flip")]
    attack: Attack,
    /// The attack's strength [default: 4 for sign-flip, 20 for scale, 1 for noise and alie]
    #[arg(long)]
    attack_scale: Option<f64>,
    /// Clip each update's L2 norm in the wallet
    #[arg(long)]
    clip_norm: Option<f64>,
    /// Central differential privacy: noise multiplier (Gaussian, on the clipped sum)
    #[arg(long)]
    dp_noise: Option<f64>,
    /// Central differential privacy: clipping norm
    #[arg(long, default_value_t = 1.0)]
    dp_clip: f64,
    /// Fraction of people held out for evaluation
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// This many wallets, people drawn with replacement (scale tests)
    #[arg(long)]
    wallets: Option<usize>,
    /// Seed of the split, sampling, attacks and training
    #[arg(long, default_value_t = SimulateOptions::default().seed)]
    seed: u64,
    /// Keep the wallets and the collective's state here [default: a temporary directory]
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Where to write the chart of the curves (SVG)
    #[arg(long, default_value = "simulation.svg")]
    chart: PathBuf,
    /// Draw no chart
    #[arg(long)]
    no_chart: bool,
    /// Threads that run the wallets' tasks
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as one JSON object
    #[arg(long)]
    json: bool,
}

pub(crate) fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let data = match args.data.as_str() {
        "diabetes" => DataSource::Diabetes,
        "winequality" | "wine" => DataSource::WineQuality,
        path => DataSource::Csv {
            path: PathBuf::from(path),
            label: args
                .label
                .clone()
                .context("a CSV file needs --label COLUMN: the column to predict")?,
        },
    };
    let algorithm = if args.algorithm.ends_with(".wasm") {
        AlgorithmSource::File(PathBuf::from(&args.algorithm))
    } else {
        AlgorithmSource::Embedded(args.algorithm.clone())
    };
    let defaults = SimulateOptions::default();
    let options = SimulateOptions {
        data,
        algorithm,
        params: args
            .params
            .iter()
            .map(|p| parse_param(p))
            .collect::<anyhow::Result<_>>()?,
        rounds: args.rounds,
        wallets_per_round: args.wallets_per_round,
        min_batch: args.k,
        rule: args
            .filter
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--filter: {e}"))?,
        server_lr: args.server_lr,
        momentum: args.momentum,
        attackers: args.attackers,
        attack: args.attack,
        attack_scale: args.attack_scale,
        clip_norm: args.clip_norm,
        dp_noise: args.dp_noise,
        dp_clip: args.dp_clip,
        test_fraction: args.test_fraction,
        wallets: args.wallets,
        seed: args.seed,
        workdir: args.workdir,
        chart: (!args.no_chart).then_some(args.chart),
        threads: args.threads.unwrap_or(defaults.threads),
    };
    if !(0.0..1.0).contains(&options.attackers) {
        anyhow::bail!("--attackers is a fraction within [0, 1)");
    }
    let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
    let quiet = args.json;
    let progress = |p: Progress| {
        if quiet {
            return;
        }
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        match p {
            Progress::Wallets(done, all) => {
                let b = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(all as u64);
                    b.set_style(
                        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    b.set_message("creating wallets");
                    b
                });
                b.set_position(done as u64);
                if done == all {
                    b.finish();
                    *bar = None;
                }
            }
            Progress::Round {
                round,
                rounds,
                held_out,
            } => {
                let b = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(u64::from(rounds));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{msg:>24} [{bar:40}] round {pos}/{len} {elapsed}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b
                });
                b.set_position(u64::from(round));
                b.set_message(format!("held-out {held_out:.4}"));
                b.println(format!("round {round:>3}: held-out {held_out:.4}"));
                if round >= rounds {
                    b.finish();
                }
            }
        }
    };
    let summary = run(&options, &progress)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    println!(
        "{} wallets ({} people held out) of {}, {}, rule {}, {} rounds x {} wallets{}",
        summary.wallets,
        summary.held_out,
        summary.dataset,
        summary.algorithm,
        summary.rule,
        summary.rounds,
        options.wallets_per_round,
        match summary.attack {
            Some(a) => format!(", {} attackers ({a:?})", summary.attackers),
            None => String::new(),
        }
    );
    match (summary.centralized, &summary.centralized_model) {
        (Some(c), Some(model)) => println!(
            "held-out {}: federated {:.4}, centralized {model} {:.4} ({:+.1}%)",
            summary.metric,
            summary.federated,
            c,
            summary.relative_difference.unwrap_or(0.0) * 100.0
        ),
        _ => println!(
            "held-out {}: federated {:.4}",
            summary.metric, summary.federated
        ),
    }
    println!(
        "ledger: {} accesses paid, {} spent of {} deposited, {} entries verified; {} of {} rounds released a batch",
        summary.accesses_paid,
        summary.budget_spent,
        summary.budget,
        summary.ledger_entries,
        summary.rounds_released,
        summary.rounds
    );
    if let Some(e) = summary.epsilon {
        println!("differential privacy: epsilon {e:.3} at delta 1e-5");
    }
    println!(
        "time: {:.1} s creating wallets, {:.1} s training (slowest round {:.2} s); peak memory {}",
        summary.setup_seconds,
        summary.training_seconds,
        summary.slowest_round_seconds,
        summary
            .peak_memory_bytes
            .map(|b| format!("{:.0} MiB", b as f64 / f64::from(1 << 20)))
            .unwrap_or_else(|| "unknown".into())
    );
    if let Some(chart) = &summary.chart {
        println!("chart: {}", chart.display());
    }
    Ok(ExitCode::SUCCESS)
}
