//! Running a model version here, in the sandbox, on the rows of a file:
//! `collective model evaluate` and `collective model predict`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use c2ssi_guest_sdk::{Column, ColumnData, ColumnSpec, ColumnType, ParamValue};
use c2ssi_sandbox::{LoadedComponent, Sandbox, SandboxLimits};

use super::Target;
use super::reads::{fetch_version, trained_under};

/// The arguments both commands take: which version, and the rows.
#[derive(Debug, clap::Args)]
pub(crate) struct RowsArgs {
    #[command(flatten)]
    target: Target,
    /// The model version: its hash, or any prefix of it that only it has
    hash: String,
    /// The rows: a CSV or JSON file with the columns of the job's table, checked against
    /// the manifest's declared types and ranges (`predict` does not need the label's)
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// A CSV file's delimiter [default: detected]
    #[arg(long, value_parser = wallet_host::import::parse_delimiter, value_name = "CHAR")]
    delimiter: Option<u8>,
    /// Rows with a missing value: refuse the file, or drop those rows
    #[arg(long, value_enum, default_value_t = wallet_host::import::Missing::Refuse)]
    missing: wallet_host::import::Missing,
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

/// `collective model predict`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct PredictArgs {
    #[command(flatten)]
    rows: RowsArgs,
    /// Write the predictions to this new file instead of stdout
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// A model version ready to run on a file's rows.
struct Prepared {
    hash: String,
    /// The job's hyper-parameters.
    params: Vec<c2ssi_guest_sdk::Param>,
    weights: Vec<f32>,
    /// The label's name and declared type, when the job names one.
    label: Option<ColumnSpec>,
    imported: wallet_host::import::Imported,
    sandbox: Sandbox,
    component: std::sync::Arc<LoadedComponent>,
}

/// Fetches the version, the job and the manifest it was trained under, and
/// its component (checked against its hash); imports the file against the
/// manifest's schema, where the label may be left out when `label_optional`.
fn prepare(args: &RowsArgs, label_optional: bool) -> anyhow::Result<Prepared> {
    let client = args.target.client()?;
    let id = &args.target.collective;
    let version = fetch_version(&client, id, &args.hash)?;
    let (job, manifest) = trained_under(&client, id, &version)?;
    let schema = manifest
        .requirements
        .table(&job.spec.table)
        .with_context(|| format!("the manifest requires no table '{}'", job.spec.table))?
        .columns
        .clone();
    let label = job
        .spec
        .params
        .iter()
        .find_map(|p| match (&*p.name, &p.value) {
            (c2ssi_guest_sdk::LABEL, ParamValue::Text(name)) => {
                schema.iter().find(|c| &c.name == name).cloned()
            }
            _ => None,
        });
    let options = wallet_host::import::ReadOptions {
        format: None,
        delimiter: args.delimiter,
        missing: args.missing,
        optional: match (&label, label_optional) {
            (Some(label), true) => vec![label.name.clone()],
            _ => Vec::new(),
        },
    };
    let imported =
        wallet_host::import::import_file(&args.data, &options, &job.spec.table, Some(&schema))?;
    let sha = &version.provenance.algorithm_sha256;
    let bytes = client.algorithm(id, sha)?;
    if &hex::encode(c2ssi_protocol::sha256(&bytes)) != sha {
        bail!("the broker's component for {sha} does not hash to it");
    }
    let sandbox = Sandbox::new(SandboxLimits::default())?;
    let component = sandbox.load(&bytes).context("the component was refused")?;
    Ok(Prepared {
        hash: version.hash,
        params: job.spec.params,
        weights: version.params,
        label,
        imported,
        sandbox,
        component,
    })
}

/// "(N rows)" or "(N rows, M left out for a missing value)".
fn rows_note(imported: &wallet_host::import::Imported) -> String {
    format!(
        "{} rows{}",
        imported.table.row_count,
        if imported.dropped.is_empty() {
            String::new()
        } else {
            format!(", {} left out for a missing value", imported.dropped.len())
        }
    )
}

/// Runs the version's `evaluate` over the rows of a file here on the
/// consumer's machine, and prints its loss, its score and further metrics.
pub(crate) fn evaluate(args: RowsArgs) -> anyhow::Result<ExitCode> {
    let p = prepare(&args, false)?;
    let evaluation = p
        .sandbox
        .evaluate(&p.component, &p.weights, &p.params, &p.imported.table)
        .into_result()
        .map_err(|e| anyhow::anyhow!("the algorithm's evaluation failed: {e}"))?;
    if args.out.json {
        let json = serde_json::json!({
            "model_hash": p.hash,
            "rows": p.imported.table.row_count,
            "dropped_rows": p.imported.dropped,
            "loss": evaluation.loss,
            "score": evaluation.score,
            "metrics": evaluation
                .all()
                .map(|m| (m.name.clone(), serde_json::json!(m.value)))
                .collect::<serde_json::Map<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "model {} on {} ({}):",
        &p.hash[..12],
        args.data.display(),
        rows_note(&p.imported)
    );
    println!(
        "  loss   {:<16} {:.6}   (lower is better)",
        evaluation.loss.name, evaluation.loss.value
    );
    println!(
        "  score  {:<16} {:.6}   (higher is better)",
        evaluation.score.name, evaluation.score.value
    );
    for m in &evaluation.metrics {
        println!("         {:<16} {:.6}", m.name, m.value);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the version's `predict` over the rows of a file (the label's column
/// may be absent) and writes one line per row: the row's number in the file,
/// the prediction in the label's own units, and any extras.
pub(crate) fn predict(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let rows = &args.rows;
    let p = prepare(rows, true)?;
    let Some(label) = &p.label else {
        bail!(
            "the job that trained model {} names no label column of its table (hyper-parameter \
             '{}'), so there is nothing to predict",
            &p.hash[..12],
            c2ssi_guest_sdk::LABEL
        );
    };
    let columns = p
        .sandbox
        .predict(
            &p.component,
            &p.weights,
            &p.params,
            &p.imported.table,
            label,
        )
        .into_result()
        .map_err(|e| anyhow::anyhow!("the algorithm's prediction failed: {e}"))?;
    // The file's row numbers of the rows kept.
    let total = p.imported.table.row_count + p.imported.dropped.len();
    let numbers: Vec<usize> = (1..=total)
        .filter(|r| !p.imported.dropped.contains(r))
        .collect();
    let text = if rows.out.json {
        let predictions: Vec<serde_json::Value> = numbers
            .iter()
            .enumerate()
            .map(|(i, &row)| {
                let mut object = serde_json::Map::new();
                object.insert("row".into(), row.into());
                for c in &columns {
                    object.insert(c.name.clone(), cell_json(c, i));
                }
                serde_json::Value::Object(object)
            })
            .collect();
        let json = serde_json::json!({
            "model_hash": p.hash,
            "label": label.name,
            "rows": p.imported.table.row_count,
            "dropped_rows": p.imported.dropped,
            "columns": columns.iter().map(|c| &c.name).collect::<Vec<_>>(),
            "predictions": predictions,
        });
        serde_json::to_string_pretty(&json)? + "\n"
    } else {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["row".to_string()];
        header.extend(columns.iter().map(|c| c.name.clone()));
        w.write_record(&header)?;
        for (i, row) in numbers.iter().enumerate() {
            let mut record = vec![row.to_string()];
            record.extend(columns.iter().map(|c| cell_text(c, i)));
            w.write_record(&record)?;
        }
        String::from_utf8(w.into_inner()?)?
    };
    match &args.out {
        Some(path) => {
            write_new(path, text.as_bytes())?;
            eprintln!(
                "wrote {} predictions of '{}' by model {} to {}",
                p.imported.table.row_count,
                label.name,
                &p.hash[..12],
                path.display()
            );
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// One cell as text: numbers as Rust prints them (shortest exact form),
/// booleans as `true`/`false`, categories by level name.
fn cell_text(column: &Column, row: usize) -> String {
    match (&column.ty, &column.data) {
        (ColumnType::Category { levels }, ColumnData::Category(codes)) => {
            levels.get(codes[row] as usize).cloned().unwrap_or_default()
        }
        (_, ColumnData::Real(v)) => v[row].to_string(),
        (_, ColumnData::Integer(v)) => v[row].to_string(),
        (_, ColumnData::Boolean(v)) => v[row].to_string(),
        (_, ColumnData::Category(v)) => v[row].to_string(),
    }
}

/// One cell as a JSON value.
fn cell_json(column: &Column, row: usize) -> serde_json::Value {
    match &column.data {
        ColumnData::Real(v) => v[row].into(),
        ColumnData::Integer(v) => v[row].into(),
        ColumnData::Boolean(v) => v[row].into(),
        ColumnData::Category(_) => cell_text(column, row).into(),
    }
}

/// Writes `bytes` to `path`, which must not exist, all at once: into a
/// temporary file beside it, then renamed without replacing anything.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; remove it or choose another --out",
                path.display()
            )
        } else {
            anyhow::anyhow!("writing {}: {}", path.display(), e.error)
        }
    })?;
    Ok(())
}
