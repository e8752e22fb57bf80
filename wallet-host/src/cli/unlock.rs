//! Finding and unlocking the wallet: its directory, and the passphrase or
//! identity file that opens it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use anyhow::{Context, bail};
use wallet_host::store::{KeyProtection, Wallet};

use super::GlobalArgs;

/// The wallet directory: `--wallet`, `WALLET_DIR`, or the default.
pub(crate) fn wallet_dir(g: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &g.wallet {
        return Ok(dir.clone());
    }
    let data = dirs::data_dir().context(
        "no data directory is known for this user; give the wallet directory with --wallet",
    )?;
    Ok(data.join("compute-to-ssi").join("wallet"))
}

fn read_identity(path: &Path) -> anyhow::Result<age::x25519::Identity> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the identity file {}", path.display()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .with_context(|| format!("{}: no identity in the file", path.display()))?;
    line.parse()
        .map_err(|e| anyhow::anyhow!("{}: not an age X25519 identity: {e}", path.display()))
}

fn passphrase(g: &GlobalArgs, confirm: bool) -> anyhow::Result<SecretString> {
    let text = if let Some(file) = &g.passphrase_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the passphrase file {}", file.display()))?;
        text.lines().next().unwrap_or("").to_string()
    } else if let Ok(p) = std::env::var("WALLET_PASSPHRASE") {
        p
    } else if std::io::stdin().is_terminal() {
        let p =
            rpassword::prompt_password("Wallet passphrase: ").context("reading the passphrase")?;
        if confirm {
            let again = rpassword::prompt_password("Repeat the passphrase: ")
                .context("reading the passphrase")?;
            if again != p {
                bail!("the two passphrases differ");
            }
        }
        p
    } else {
        bail!(
            "no passphrase: give --passphrase-file FILE or WALLET_PASSPHRASE, or --identity FILE, \
             or run in a terminal"
        );
    };
    if text.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(SecretString::from(text))
}

/// Opens the wallet with the passphrase or identity the options give.
pub(crate) fn open(g: &GlobalArgs) -> anyhow::Result<Wallet> {
    let dir = wallet_dir(g)?;
    if !Wallet::exists(&dir) {
        bail!(
            "no wallet in {} (create one with `wallet init`)",
            dir.display()
        );
    }
    let protection = match &g.identity {
        Some(path) => KeyProtection::Identity(read_identity(path)?),
        None => KeyProtection::Passphrase(passphrase(g, false)?),
    };
    Wallet::open(&dir, &protection)
        .with_context(|| format!("opening the wallet in {}", dir.display()))
}

/// Creates a wallet; with `--identity FILE` and no such file, writes a new identity there.
pub(crate) fn create(g: &GlobalArgs) -> anyhow::Result<(Wallet, Option<PathBuf>)> {
    let dir = wallet_dir(g)?;
    let mut new_identity = None;
    let protection = match &g.identity {
        Some(path) if path.exists() => KeyProtection::Identity(read_identity(path)?),
        Some(path) => {
            let identity = age::x25519::Identity::generate();
            write_identity_file(path, &identity)?;
            new_identity = Some(path.clone());
            KeyProtection::Identity(identity)
        }
        None => KeyProtection::Passphrase(passphrase(g, true)?),
    };
    let wallet = Wallet::init(&dir, &protection)
        .with_context(|| format!("creating the wallet in {}", dir.display()))?;
    Ok((wallet, new_identity))
}

fn write_identity_file(path: &Path, identity: &age::x25519::Identity) -> anyhow::Result<()> {
    use age::secrecy::ExposeSecret;
    use std::io::Write;
    let text = format!(
        "# age identity that unlocks a compute-to-ssi wallet; keep it secret\n# public key: {}\n{}\n",
        identity.to_public(),
        identity.to_string().expose_secret()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating the identity file {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the identity file {}", path.display()))?;
    Ok(())
}
