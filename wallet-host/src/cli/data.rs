//! The data commands: `init`, `import`, `add`, `tables`, `show`, `schema`,
//! `remove`, `export`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use c2ssi_guest_sdk::{Column, ColumnData, Table};
use clap::Args;
use wallet_host::import::{self, Format, Missing, ReadOptions};
use wallet_host::store::{IfExists, cell_text, check_table_name};

use super::unlock;
use super::{GlobalArgs, confirm};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Name of the table to create (letters, digits, '_', '.', '-')
    #[arg(long)]
    table: String,
    /// Column types from this schema file instead of inferring them
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
    /// File format [default: from the file's extension]
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// A CSV file's delimiter: one character, or `tab` [default: detected among , ; tab |, and shown]
    #[arg(long, value_parser = import::parse_delimiter, value_name = "CHAR")]
    delimiter: Option<u8>,
    /// Rows with a missing value (empty, null, NA, n/a, ?): refuse the file, naming the first, or drop those rows and say which
    #[arg(long, value_enum, default_value_t = Missing::Refuse)]
    missing: Missing,
    /// Write without asking to confirm inferred column types (for scripts)
    #[arg(long, short = 'y')]
    yes: bool,
    /// Add the rows to an existing table with the same columns
    #[arg(long, conflicts_with = "replace")]
    append: bool,
    /// Replace an existing table
    #[arg(long)]
    replace: bool,
    /// The CSV or JSON file
    file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The table to add the row to
    #[arg(long)]
    table: String,
    /// Create the table with this schema if it does not exist
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
    /// The row: one column=value per column
    #[arg(required = true, value_name = "COLUMN=VALUE")]
    values: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct NameArg {
    /// The table
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The table
    name: String,
    /// Show at most this many rows
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    out: c2ssi_cli::JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The table
    name: String,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The table
    name: String,
    /// Output format
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
}

pub(crate) fn init(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (wallet, new_identity) = unlock::create(g)?;
    if let Some(dir) = wallet.dir() {
        println!("created a wallet in {}", dir.display());
    }
    println!("wallet id {}", wallet.id());
    println!(
        "wallet DID {} (what a credential issuer asks for)",
        wallet_host::credentials::did(&wallet)
    );
    if let Some(path) = new_identity {
        println!(
            "wrote a new identity to {}: it unlocks the wallet, keep it secret",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn import(g: &GlobalArgs, args: ImportArgs) -> anyhow::Result<ExitCode> {
    check_table_name(&args.table)?;
    let schema = args
        .schema
        .as_deref()
        .map(import::read_schema)
        .transpose()?;
    let options = ReadOptions {
        format: args.format,
        delimiter: args.delimiter,
        missing: args.missing,
        optional: Vec::new(),
    };
    let if_exists = if args.append {
        IfExists::Append
    } else if args.replace {
        IfExists::Replace
    } else {
        IfExists::Fail
    };
    const CONFIRM: &str = "importing with inferred types needs your confirmation: check them \
                           above, then run in a terminal or pass --yes";
    // The file is streamed into the wallet a segment at a time, never held
    // whole; a bad cell anywhere stores nothing. Without declared types, one
    // pass first infers them (holding no rows), and they are shown and
    // confirmed before the second.
    let (schema, inferred) = match schema {
        Some(schema) => (schema, false),
        None => {
            let (inferred, delimiter, rows) = import::infer_file(&args.file, &options)?;
            report_read(&args.file, delimiter, &[]);
            println!(
                "inferred column types for {rows} rows (declare them with --schema FILE to \
                 set ranges):"
            );
            print_columns(&inferred);
            if !args.yes && !confirm("Import with these types?", CONFIRM)? {
                println!("imported nothing");
                return Ok(ExitCode::FAILURE);
            }
            (inferred, true)
        }
    };
    let wallet = unlock::open(g)?;
    let (streamed, total) = wallet.put_table_chunks(&args.table, &schema, if_exists, |put| {
        import::stream_file(
            &args.file,
            &options,
            &args.table,
            &schema,
            wallet_host::store::tables::CHUNK_ROWS,
            |chunk| put(chunk).map_err(anyhow::Error::from),
        )
    })?;
    let delimiter = streamed.delimiter.filter(|_| !inferred);
    report_read(&args.file, delimiter, &streamed.dropped);
    println!(
        "imported {} rows into table '{}' ({total} rows now)",
        streamed.rows, args.table
    );
    if inferred {
        println!(
            "save the types with: wallet schema {} > schema.json",
            args.table
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Says which delimiter a CSV file was read with, and which rows were left
/// out for a missing value.
fn report_read(file: &std::path::Path, delimiter: Option<import::Delimiter>, dropped: &[usize]) {
    if let Some(delimiter) = delimiter {
        println!("{}: CSV, delimiter {delimiter}", file.display());
    }
    if !dropped.is_empty() {
        let shown: Vec<String> = dropped.iter().take(20).map(usize::to_string).collect();
        let n = dropped.len();
        let s = if n == 1 { "" } else { "s" };
        println!(
            "left out {n} row{s} with a missing value (--missing drop): row{s} {}{}",
            shown.join(", "),
            if n > 20 { ", ..." } else { "" }
        );
    }
}

pub(crate) fn add(g: &GlobalArgs, args: AddArgs) -> anyhow::Result<ExitCode> {
    check_table_name(&args.table)?;
    let wallet = unlock::open(g)?;
    let new_schema = args
        .schema
        .as_deref()
        .map(import::read_schema)
        .transpose()?;
    let index = wallet.table_index()?;
    let schema = match (index.entry(&args.table), new_schema) {
        (Ok(entry), _) => entry.columns.clone(),
        (Err(_), Some(schema)) => schema,
        (Err(e), None) => bail!("{e}; to create it, give --schema FILE"),
    };
    let row = import::row_from_assignments(&args.table, &schema, &args.values)?;
    let rows = wallet.put_table(row, IfExists::Append)?;
    println!("added a row to table '{}' ({rows} rows now)", args.table);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn tables(g: &GlobalArgs, out: c2ssi_cli::JsonArg) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    // The index alone: no table's rows are read.
    let index = wallet.table_index()?;
    if out.json {
        let tables: Vec<serde_json::Value> = index
            .tables
            .iter()
            .map(|(name, entry)| {
                serde_json::json!({
                    "name": name,
                    "rows": entry.rows,
                    "columns": entry.columns,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&tables)?);
        return Ok(ExitCode::SUCCESS);
    }
    if index.tables.is_empty() {
        println!("no tables yet (add one with `wallet import --table NAME FILE`)");
    }
    for (name, entry) in &index.tables {
        println!(
            "{name}\t{} rows\t{} columns: {}",
            entry.rows,
            entry.columns.len(),
            entry
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_columns(columns: &[c2ssi_guest_sdk::ColumnSpec]) {
    for c in columns {
        println!("  {:<24} {}", c.name, c.ty);
    }
}

/// A cell as text: categories by level name.
pub(crate) fn show(g: &GlobalArgs, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let rows = wallet.table_index()?.entry(&args.name)?.rows;
    // Only the segments that hold the rows shown are read.
    let head = wallet.table_head(&args.name, args.limit)?;
    let table = &head;
    let shown = table.row_count;
    if args.out.json {
        let json = serde_json::json!({
            "name": table.name,
            "rows": rows,
            "columns": table.schema(),
            "shown": rows_json(table, shown),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("table '{}': {rows} rows", table.name);
    print_columns(&table.schema());
    let mut cells: Vec<Vec<String>> = vec![table.columns.iter().map(|c| c.name.clone()).collect()];
    for row in 0..shown {
        cells.push(table.columns.iter().map(|c| cell_text(c, row)).collect());
    }
    let widths: Vec<usize> = (0..table.columns.len())
        .map(|j| {
            cells
                .iter()
                .map(|r| r[j].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if shown < rows {
        println!("... {} more rows (--limit N shows more)", rows - shown);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn schema(g: &GlobalArgs, args: NameArg) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let index = wallet.table_index()?;
    let schema = serde_json::json!({ "columns": index.entry(&args.name)?.columns });
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn remove(g: &GlobalArgs, args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let rows = wallet.table_index()?.entry(&args.name)?.rows;
    if !args.yes
        && !confirm(
            &format!("Remove table '{}' with {rows} rows?", args.name),
            &format!(
                "removing table '{}' needs --yes when not run in a terminal",
                args.name
            ),
        )?
    {
        println!("kept table '{}'", args.name);
        return Ok(ExitCode::SUCCESS);
    }
    wallet.remove_table(&args.name)?;
    println!("removed table '{}' ({rows} rows)", args.name);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn export(g: &GlobalArgs, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let wallet = unlock::open(g)?;
    let table = &wallet.table(&args.name)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(&mut out);
            writer.write_record(table.columns.iter().map(|c| c.name.as_str()))?;
            for row in 0..table.row_count {
                writer.write_record(table.columns.iter().map(|c| cell_text(c, row)))?;
            }
            writer.flush().context("writing to stdout")?;
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &rows_json(table, table.row_count))?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The first `n` rows, each an object of column name to value.
fn rows_json(table: &Table, n: usize) -> Vec<serde_json::Map<String, serde_json::Value>> {
    (0..n)
        .map(|row| {
            table
                .columns
                .iter()
                .map(|c| (c.name.clone(), cell_json(c, row)))
                .collect()
        })
        .collect()
}

fn cell_json(column: &Column, row: usize) -> serde_json::Value {
    use serde_json::Value;
    match &column.data {
        ColumnData::Integer(v) => v.get(row).map_or(Value::Null, |&x| Value::from(x)),
        ColumnData::Real(v) => v.get(row).map_or(Value::Null, |&x| Value::from(x)),
        ColumnData::Boolean(v) => v.get(row).map_or(Value::Null, |&x| Value::from(x)),
        ColumnData::Category(_) => Value::from(cell_text(column, row)),
    }
}
