//! What every compute-to-ssi command line shares: the `completions` and `man`
//! commands, generated from the program's own clap definition (so they never
//! drift from its flags), and dates and durations written for people.
#![deny(missing_docs)]

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};

/// `--json`, for every command that prints data: defined once here.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonArg {
    /// Print JSON instead of text (for scripts)
    #[arg(long)]
    pub json: bool,
}

/// The flags of a dashboard command (`wallet ui`, `collective ui`).
#[derive(Debug, Clone, Copy, Args)]
pub struct DashboardArgs {
    /// The port (0: any free one), on a loopback address of the dashboard's
    /// own; the page answers nowhere else
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

impl DashboardArgs {
    /// Says where the dashboard `what` is: its one-time `url`, on stdout.
    pub fn announce(what: &str, url: &str) {
        println!("{what} dashboard: open {url}");
        println!("(the link works once, in one browser; stop with ctrl-c)");
        let _ = std::io::stdout().flush();
    }
}

/// `completions SHELL`: the shell's completion script, on stdout.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell (for bash: `source <(PROGRAM completions bash)`)
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `man [--out-dir DIR]`: the manual page, in roff.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command into DIR (`PROGRAM.1`, `PROGRAM-COMMAND.1`, ...)
    /// instead of the program's page to stdout
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// The commands every program has, flattened into its own command enum with
/// `#[command(flatten)]`.
#[derive(Debug, clap::Subcommand)]
pub enum ShellCommand {
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command with --out-dir
    Man(ManArgs),
}

impl ShellCommand {
    /// Runs it for the program `C`, writing to stdout.
    pub fn run<C: CommandFactory>(&self) -> std::io::Result<()> {
        let mut out = std::io::stdout();
        match self {
            ShellCommand::Completions(args) => completions::<C>(args, &mut out),
            ShellCommand::Man(args) => man::<C>(args, &mut out).map(|_| ()),
        }
    }
}

/// Writes `C`'s completion script for the shell in `args` to `out`.
pub fn completions<C: CommandFactory>(
    args: &CompletionsArgs,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut command = C::command();
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, out);
    Ok(())
}

/// Writes `C`'s manual: its page to `out`, or with `--out-dir` a page per
/// command into that directory; returns the pages written there.
pub fn man<C: CommandFactory>(args: &ManArgs, out: &mut dyn Write) -> std::io::Result<usize> {
    let command = C::command();
    match &args.out_dir {
        None => {
            clap_mangen::Man::new(command).render(out)?;
            Ok(1)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(command, dir)?;
            Ok(std::fs::read_dir(dir)?
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
                .count())
        }
    }
}

/// A time given in milliseconds since the Unix epoch, as a UTC date and time
/// to the second: `2026-11-25 01:02:03 UTC`.
pub fn date(epoch_ms: u64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    i64::try_from(epoch_ms / 1000)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{epoch_ms} ms after 1970"))
}

/// A duration in milliseconds for people: `850 ms`, `2.4 s`, `3 min 20 s`,
/// `2 h 05 min`.
pub fn duration_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return format!("{ms} ms");
    }
    if ms < 1000.0 {
        return format!("{ms:.0} ms");
    }
    let s = ms / 1000.0;
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let s = s.round() as u64;
    if s < 3600 {
        return format!("{} min {:02} s", s / 60, s % 60);
    }
    format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    #[command(name = "demo", version, about = "A demo")]
    struct Demo {
        /// Where
        #[arg(long, env = "DEMO_DIR")]
        dir: Option<PathBuf>,
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        /// Does one thing
        One,
        /// Does another
        Two,
    }

    #[test]
    fn dates_and_durations_read_as_people_write_them() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(1_795_568_523_999), "2026-11-25 01:02:03 UTC");
        assert_eq!(duration_ms(12.4), "12 ms");
        assert_eq!(duration_ms(2_449.0), "2.4 s");
        assert_eq!(duration_ms(200_000.0), "3 min 20 s");
        assert_eq!(duration_ms(7_500_000.0), "2 h 05 min");
    }

    #[test]
    fn completions_and_man_pages_name_every_command_and_flag() {
        let mut script = Vec::new();
        completions::<Demo>(
            &CompletionsArgs {
                shell: clap_complete::Shell::Bash,
            },
            &mut script,
        )
        .expect("completions");
        let script = String::from_utf8(script).expect("utf-8");
        for word in ["demo", "one", "two", "--dir"] {
            assert!(script.contains(word), "{word} missing from the script");
        }
        let mut page = Vec::new();
        man::<Demo>(&ManArgs { out_dir: None }, &mut page).expect("man");
        let page = String::from_utf8(page).expect("utf-8");
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains("DEMO_DIR"), "{page}");
        let dir = tempfile::tempdir().expect("tempdir");
        let written = man::<Demo>(
            &ManArgs {
                out_dir: Some(dir.path().to_path_buf()),
            },
            &mut std::io::sink(),
        )
        .expect("pages");
        assert_eq!(written, 3);
        assert!(dir.path().join("demo-one.1").exists());
    }
}
