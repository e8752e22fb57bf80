//! `simulate`: the whole loop in one process, with a progress bar.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use collective::args::TrainingArgs;
use indicatif::{ProgressBar, ProgressStyle};
use simulate::attack::Attack;
use simulate::data::DataSource;
use simulate::{AlgorithmSource, PrivacySetting, Progress, SimulateOptions, run};

/// Whether the releases are noised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Dp {
    /// Noise calibrated to --epsilon per job: the default terms
    On,
    /// No noise: exact releases, NO privacy guarantee (research only)
    Off,
}

/// The whole compute-to-ssi loop in one process on a real dataset: a
/// consumer, a broker, an aggregator and one wallet per person (in memory,
/// or encrypted on disk with --workdir).
#[derive(Debug, Parser)]
#[command(
    name = "simulate",
    version,
    about,
    long_about = None
)]
pub(crate) struct SimulateArgs {
    /// The people: `diabetes` (linfa-datasets, 441 people), `winequality`
    /// (1,599 wines), `synthetic-logistic:N` (N people of a known logistic
    /// model of 20 features), or a CSV file with a header (then give --label)
    #[arg(long, default_value = "diabetes")]
    data: String,
    /// The column to predict, for a CSV file
    #[arg(long)]
    label: Option<String>,
    /// An algorithm of algorithms/ by name (linear-regression,
    /// logistic-regression, softmax-regression, elm-ridge, least-squares,
    /// logistic-newton, softmax-newton) or a .wasm component
    #[arg(long, default_value = "linear-regression")]
    algorithm: String,
    #[command(flatten)]
    training: TrainingArgs,
    /// Rounds
    #[arg(long, default_value_t = SimulateOptions::default().rounds)]
    rounds: u32,
    /// Wallets sampled per round [default: every wallet]
    #[arg(long)]
    wallets_per_round: Option<u32>,
    /// Smallest batch the aggregator releases
    #[arg(long, default_value_t = SimulateOptions::default().min_batch)]
    k: u32,
    /// Noise on every release (the default), or none (research only: no guarantee)
    #[arg(long, value_enum, default_value = "on")]
    dp: Dp,
    /// Epsilon one job may cost each wallet (at --delta); the noise follows from it
    #[arg(long, default_value_t = 2.0)]
    epsilon: f64,
    /// The delta of epsilon
    #[arg(long, default_value_t = 1e-5)]
    delta: f64,
    /// The norm each wallet clips its update to
    #[arg(long, default_value_t = 0.1)]
    clip_norm: f64,
    /// The most rounds one wallet takes part in [default: every round]
    #[arg(long)]
    rounds_per_wallet: Option<u32>,
    /// Fraction of wallets that tamper with their update
    #[arg(long, default_value_t = 0.0)]
    attackers: f64,
    /// How they tamper
    #[arg(long, value_enum, default_value = "sign-flip")]
    attack: Attack,
    /// The attack's strength [default: 4 for sign-flip, 20 for scale, 1 for noise and alie, 0.1
    /// for ipm (epsilon), 10 for min-max and min-sum (the starting gamma of the search)]
    #[arg(long)]
    attack_scale: Option<f64>,
    /// Fraction of people held out for evaluation
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// This many wallets, people drawn with replacement (scale tests)
    #[arg(long)]
    wallets: Option<usize>,
    /// Seed of the split, sampling, noise, attacks and training
    #[arg(long, default_value_t = SimulateOptions::default().seed)]
    seed: u64,
    /// Keep the wallets (encrypted, on disk) and the broker's state here [default: wallets in
    /// memory, the broker's state in a temporary directory]
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
        "winequality" | "wine-quality" | "wine" => DataSource::WineQuality,
        text if text.starts_with("synthetic-logistic") => DataSource::SyntheticLogistic {
            people: match text.strip_prefix("synthetic-logistic:") {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("--data {text}: the count"))?,
                None => 12_500,
            },
        },
        path if !std::path::Path::new(path).exists() => anyhow::bail!(
            "--data {path}: no such file, and not a dataset this program has \
             (diabetes, winequality, synthetic-logistic:N)"
        ),
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
        params: args.training.params()?,
        rounds: args.rounds,
        wallets_per_round: args.wallets_per_round,
        min_batch: args.k,
        rule: args.training.rule()?,
        server_lr: args.training.server_lr,
        momentum: args.training.momentum,
        optimizer: args.training.optimizer()?,
        schedule: args.training.schedule()?,
        attackers: args.attackers,
        attack: args.attack,
        attack_scale: args.attack_scale,
        privacy: match args.dp {
            Dp::Off => PrivacySetting::Off,
            Dp::On => PrivacySetting::On {
                epsilon: args.epsilon,
                clip_norm: args.clip_norm,
                delta: args.delta,
                rounds_per_wallet: args.rounds_per_wallet,
            },
        },
        test_fraction: args.test_fraction,
        wallets: args.wallets,
        seed: args.seed,
        workdir: args.workdir,
        chart: (!args.no_chart).then(|| args.chart.clone()),
        threads: args.threads.unwrap_or(defaults.threads),
        keep_releases: false,
    };
    if !(0.0..1.0).contains(&options.attackers) {
        anyhow::bail!("--attackers is a fraction within [0, 1)");
    }
    if !args.json {
        match &options.privacy {
            PrivacySetting::Off => eprintln!(
                "--dp off: releases are exact and carry NO privacy guarantee (research only)"
            ),
            PrivacySetting::On {
                epsilon, clip_norm, ..
            } => eprintln!(
                "privacy: each wallet's update clipped to {clip_norm}, noise for epsilon {epsilon} \
                 per job (--dp off for none)"
            ),
        }
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
    // A run that released nothing trained nothing: it is a failure, whatever
    // else it printed.
    let exit = if summary.rounds_released == 0 {
        eprintln!(
            "error: no round released a batch (each had fewer than k accepted updates); \
             the model is the initial one"
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(exit);
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
        summary.wallets_per_round,
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
    if summary.loss != summary.metric
        && let Some(last) = summary.points.last()
    {
        println!(
            "held-out {} (the algorithm's loss): federated {:.4}",
            summary.loss, last.loss
        );
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
    match summary.epsilon {
        Some(e) => println!(
            "privacy: epsilon {e:.3} at delta {:e} for each wallet (updates clipped to {}, noise \
             multiplier {:.3})",
            summary.delta, summary.clip_norm, summary.noise_multiplier
        ),
        None => println!("privacy: NONE (--dp off): the releases were exact"),
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
    Ok(exit)
}
