//! `wallet run`: a local dry run of an algorithm on one of the wallet's
//! tables. It prints what the algorithm did (fuel, time, peak memory, what it
//! printed) and the exact update that would leave the wallet. Nothing leaves.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use c2ssi_guest_sdk::encode::{feature_count, select_features};
use c2ssi_guest_sdk::{AlgorithmInfo, FEATURES, LABEL, Param, ParamValue, Params, Table};
use c2ssi_sandbox::{CheckedUpdate, Sandbox, TaskReport};
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::unlock;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The algorithm: a wasm32-wasip2 component
    algorithm: PathBuf,
    /// The table to train on
    #[arg(long)]
    table: String,
    /// Hyper-parameters, as name=value (lists comma-separated)
    #[arg(long = "params", num_args = 1.., value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Start from this model instead of the algorithm's initial one: a directory
    /// from `collective model export` (or its model.safetensors), what
    /// `collective model get` writes, or a JSON array of numbers
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Seed of the algorithm's randomness
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Clip the update's L2 norm to this
    #[arg(long, value_name = "NORM")]
    clip_norm: Option<f64>,
    #[command(flatten)]
    limits: super::LimitArgs,
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

/// Parses `name=value` strings by the kinds the algorithm declares.
fn parse_params(info: &AlgorithmInfo, given: &[String]) -> anyhow::Result<Vec<Param>> {
    let mut params = Vec::with_capacity(given.len());
    for text in given {
        let Some((name, value)) = text.split_once('=') else {
            bail!("hyper-parameter '{text}' is not name=value");
        };
        let name = name.trim();
        let Some(spec) = info.spec(name) else {
            let known: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "{} takes no hyper-parameter '{name}' (it takes: {})",
                info.name,
                known.join(", ")
            );
        };
        let value = ParamValue::parse(spec.kind, value)
            .map_err(|e| anyhow::anyhow!("hyper-parameter '{name}': {e}"))?;
        params.push(Param::new(name, value));
    }
    Ok(params)
}

/// The encoded feature count for `table` under these parameters.
fn features_for(info: &AlgorithmInfo, params: &[Param], table: &Table) -> anyhow::Result<usize> {
    let resolved = Params::resolve(&info.params, params.to_vec())
        .map_err(|e| anyhow::anyhow!("{}: {e}", info.name))?;
    let schema = table.schema();
    let label = info
        .spec(LABEL)
        .and_then(|_| resolved.text(LABEL).ok().map(str::to_string));
    let requested = if info.spec(FEATURES).is_some() {
        resolved
            .text_list(FEATURES)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let features = select_features(&schema, &requested, label.as_deref());
    feature_count(&schema, &features).map_err(|e| anyhow::anyhow!("table '{}': {e}", table.name))
}

fn read_model(path: &Path) -> anyhow::Result<Vec<f32>> {
    use c2ssi_protocol::model_file::{WEIGHTS_FILE, read_weights};
    // A directory from `collective model export`, or its weights file.
    let weights = if path.is_dir() {
        Some(path.join(WEIGHTS_FILE))
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        Some(path.to_path_buf())
    } else {
        None
    };
    if let Some(weights) = weights {
        let bytes = std::fs::read(&weights)
            .with_context(|| format!("reading the model {}", weights.display()))?;
        let values = read_weights(&bytes).with_context(|| weights.display().to_string())?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!("{}: parameter {i} is not finite", weights.display());
        }
        return Ok(values);
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the model {}", path.display()))?;
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ModelFile {
        Bare(Vec<f64>),
        // `params` is how `collective model get` writes a model version.
        Wrapped {
            #[serde(alias = "params")]
            parameters: Vec<f64>,
        },
    }
    let values = match serde_json::from_str::<ModelFile>(&text).with_context(|| {
        format!(
            "{}: expected a JSON array of numbers, {{\"parameters\": [...]}} or a model \
             version from `collective model get` ({{\"params\": [...], ...}})",
            path.display()
        )
    })? {
        ModelFile::Bare(v) | ModelFile::Wrapped { parameters: v } => v,
    };
    if let Some(i) = values
        .iter()
        .position(|v| !v.is_finite() || v.abs() > f64::from(f32::MAX))
    {
        bail!(
            "{}: parameter {i} is not a finite 32-bit number",
            path.display()
        );
    }
    Ok(values.into_iter().map(|v| v as f32).collect())
}

pub(crate) fn run(g: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.algorithm)
        .with_context(|| format!("reading the algorithm {}", args.algorithm.display()))?;
    let limits = args.limits.limits();
    let sandbox = Sandbox::new(limits)?;
    let component = sandbox
        .load(&bytes)
        .with_context(|| format!("{} was refused", args.algorithm.display()))?;
    let info = sandbox
        .describe(&component)
        .into_result()
        .with_context(|| format!("{}: describe failed", args.algorithm.display()))?;
    let params = parse_params(&info, &args.params)?;

    let wallet = unlock::open(g)?;
    let table = &wallet.table(&args.table)?;

    let model = match &args.model {
        Some(path) => read_model(path)?,
        None => {
            let features = features_for(&info, &params, table)?;
            sandbox
                .init_model(&component, &params, features)
                .into_result()
                .with_context(|| format!("{}: init-model failed", info.name))?
        }
    };
    let report = sandbox.train(
        &component,
        &model,
        &params,
        table,
        args.seed,
        args.clip_norm,
    );
    let ok = report.result.is_ok();
    let sha = hex::encode(component.sha256());
    if args.out.json {
        print_json(&info, &sha, table, &params, &model, &report)?;
    } else {
        print_text(&info, &sha, table, &params, &report);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn params_text(params: &[Param]) -> String {
    if params.is_empty() {
        return "(defaults)".into();
    }
    params
        .iter()
        .map(|p| format!("{}={}", p.name, p.value))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_text(
    info: &AlgorithmInfo,
    sha: &str,
    table: &Table,
    params: &[Param],
    report: &TaskReport<CheckedUpdate>,
) {
    let s = &report.stats;
    println!(
        "algorithm        {} {} (sha256 {sha})",
        info.name, info.version
    );
    println!(
        "table            {}: {} rows, {} columns",
        table.name,
        table.row_count,
        table.columns.len()
    );
    println!("hyper-parameters {}", params_text(params));
    println!(
        "ran              fuel {}  time {:.3} ms  peak memory {:.1} MiB",
        s.fuel_used,
        s.elapsed.as_secs_f64() * 1e3,
        s.peak_memory_bytes as f64 / f64::from(1 << 20)
    );
    for (name, captured) in [("stdout", &s.stdout), ("stderr", &s.stderr)] {
        if captured.total > 0 {
            println!("guest {name}     {}", captured.text().trim_end());
        }
    }
    match &report.result {
        Err(e) => println!("result           failed ({}): {e}", e.kind()),
        Ok(checked) => {
            let u = &checked.update;
            println!("result           ok, {} examples", u.examples);
            let metrics: Vec<String> = u
                .metrics
                .iter()
                .map(|m| format!("{}={:.6}", m.name, m.value))
                .collect();
            println!("metrics          {}", metrics.join("  "));
            println!(
                "update           {} values, L2 norm {:.6}{}",
                u.delta.len(),
                checked.norm,
                if checked.clipped { " (clipped)" } else { "" }
            );
            let values: Vec<String> = u.delta.iter().map(|v| format!("{v}")).collect();
            println!("[{}]", values.join(", "));
            println!(
                "This update, its example count and metrics are what would leave the wallet; nothing was sent."
            );
        }
    }
}

fn print_json(
    info: &AlgorithmInfo,
    sha: &str,
    table: &Table,
    params: &[Param],
    model: &[f32],
    report: &TaskReport<CheckedUpdate>,
) -> anyhow::Result<()> {
    let s = &report.stats;
    let mut out = json!({
        "algorithm": { "name": info.name, "version": info.version, "sha256": sha },
        "table": { "name": table.name, "rows": table.row_count, "columns": table.columns.len() },
        "params": params,
        "model_parameters": model.len(),
        "stats": {
            "fuel_used": s.fuel_used,
            "elapsed_ms": s.elapsed.as_secs_f64() * 1e3,
            "peak_memory_bytes": s.peak_memory_bytes,
            "stdout": s.stdout.text(),
            "stderr": s.stderr.text(),
        },
    });
    match &report.result {
        Ok(checked) => {
            out["ok"] = json!(true);
            out["update"] = json!({
                "delta": checked.update.delta,
                "examples": checked.update.examples,
                "metrics": checked.update.metrics,
                "norm": checked.norm,
                "clipped": checked.clipped,
            });
        }
        Err(e) => {
            out["ok"] = json!(false);
            out["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
