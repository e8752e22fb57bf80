//! The encrypted store: nothing in plaintext, and a wrong passphrase or a
//! damaged file is a clear error that changes nothing.

use age::secrecy::SecretString;
use wallet_host::import::{ReadOptions, import_file};
use wallet_host::store::{INDEX_FILE, IfExists, KEYS_FILE, KeyProtection, Wallet, WalletError};

fn diabetes_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/diabetes.csv")
}

fn wallet_with_data(protection: &KeyProtection) -> (tempfile::TempDir, Wallet) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wallet = Wallet::init(dir.path(), protection).expect("init");
    let imported =
        import_file(&diabetes_path(), &ReadOptions::default(), "diabetes", None).expect("import");
    wallet
        .put_table(imported.table, IfExists::Fail)
        .expect("store");
    (dir, wallet)
}

/// Every file under `dir` (the segments' directory too), by relative name.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let path = e.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).expect("under dir");
                files.push((
                    name.to_string_lossy().into_owned(),
                    std::fs::read(&path).expect("read"),
                ));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn no_record_is_stored_in_plaintext() {
    let protection = KeyProtection::Identity(age::x25519::Identity::generate());
    let (dir, wallet) = wallet_with_data(&protection);
    assert_eq!(
        wallet.records().expect("records").tables["diabetes"].row_count,
        442
    );
    let csv = std::fs::read_to_string(diabetes_path()).expect("csv");
    let needles: Vec<&str> = csv
        .lines()
        .take(20)
        .flat_map(|l| l.split(','))
        .filter(|v| v.len() >= 5)
        .chain(["diabetes", "progression", "s5_ltg"])
        .collect();
    assert!(needles.len() > 100);
    for (name, bytes) in snapshot(dir.path()) {
        let text = String::from_utf8_lossy(&bytes);
        for needle in &needles {
            assert!(
                !text.contains(needle),
                "{name} contains '{needle}' in plaintext"
            );
        }
    }
}

#[test]
fn a_wrong_passphrase_is_refused_and_changes_nothing() {
    let right = KeyProtection::Passphrase(SecretString::from("right horse".to_string()));
    let wrong = KeyProtection::Passphrase(SecretString::from("wrong horse".to_string()));
    let dir = tempfile::tempdir().expect("tempdir");
    Wallet::init(dir.path(), &right).expect("init");
    let before = snapshot(dir.path());
    let err = Wallet::open(dir.path(), &wrong).expect_err("wrong passphrase");
    assert!(matches!(err, WalletError::WrongPassphrase), "{err}");
    assert_eq!(err.to_string(), "wrong passphrase");
    assert_eq!(snapshot(dir.path()), before);
    Wallet::open(dir.path(), &right).expect("the right passphrase still opens it");
}

#[test]
fn a_key_file_asking_for_too_much_work_is_named_as_such() {
    let right = KeyProtection::Passphrase(SecretString::from("right horse".to_string()));
    let dir = tempfile::tempdir().expect("tempdir");
    Wallet::init(dir.path(), &right).expect("init");
    let key_path = dir.path().join(KEYS_FILE);
    let sealed = std::fs::read(&key_path).expect("read");
    // The scrypt stanza names its work factor in the text header:
    // "-> scrypt SALT 18\n". The factor is checked before any scrypt work is
    // done, so asking for 23 costs nothing here.
    let start = sealed
        .windows(10)
        .position(|w| w == b"-> scrypt ")
        .expect("a scrypt stanza");
    let end = start
        + sealed[start..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("line");
    assert!(
        sealed[..end].ends_with(b" 18"),
        "sealed at the deliberate factor"
    );
    let mut forged = sealed.clone();
    forged[end - 2..end].copy_from_slice(b"23");
    std::fs::write(&key_path, &forged).expect("write");
    let err = Wallet::open(dir.path(), &right).expect_err("too much work");
    assert!(
        matches!(
            err,
            WalletError::ExcessiveWork {
                required: 23,
                allowed: 22,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("scrypt work factor 23"), "{err}");
}

#[test]
fn tampered_or_truncated_files_are_named_and_change_nothing() {
    let protection = KeyProtection::Identity(age::x25519::Identity::generate());
    let (dir, _) = wallet_with_data(&protection);
    let records = dir.path().join(INDEX_FILE);
    let original = std::fs::read(&records).expect("read");

    // One flipped bit in the payload.
    let mut tampered = original.clone();
    let last = tampered.len() - 10;
    tampered[last] ^= 1;
    std::fs::write(&records, &tampered).expect("write");
    let before = snapshot(dir.path());
    let wallet = Wallet::open(dir.path(), &protection).expect("the keys are intact");
    let err = wallet.records().expect_err("tampered");
    assert!(matches!(err, WalletError::Damaged { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("tables.age is damaged or was tampered with"),
        "{err}"
    );
    // A write is refused too, and writes nothing.
    let err = wallet
        .remove_table("diabetes")
        .expect_err("no write on a damaged store");
    assert!(matches!(err, WalletError::Damaged { .. }));
    assert_eq!(snapshot(dir.path()), before);

    // Truncated.
    std::fs::write(&records, &original[..original.len() / 2]).expect("write");
    let err = wallet.records().expect_err("truncated");
    assert!(err.to_string().contains("tables.age is damaged"), "{err}");
    std::fs::write(&records, &original).expect("restore");

    // One flipped bit in a segment of the table's rows.
    let segment = snapshot(dir.path())
        .into_iter()
        .find(|(name, _)| name.starts_with("tables/"))
        .expect("a segment");
    let path = dir.path().join(&segment.0);
    let mut tampered = segment.1.clone();
    let last = tampered.len() - 10;
    tampered[last] ^= 1;
    std::fs::write(&path, &tampered).expect("write");
    let err = wallet.table("diabetes").expect_err("tampered segment");
    assert!(matches!(err, WalletError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains(&segment.0), "{err}");
    assert_eq!(
        wallet.table_index().expect("the index is intact").tables["diabetes"].rows,
        442
    );
    std::fs::write(&path, &segment.1).expect("restore");
    assert_eq!(wallet.table("diabetes").expect("restored").row_count, 442);

    // A truncated key file.
    let keys = dir.path().join(KEYS_FILE);
    let key_bytes = std::fs::read(&keys).expect("read");
    std::fs::write(&keys, &key_bytes[..key_bytes.len() - 20]).expect("write");
    let err = Wallet::open(dir.path(), &protection).expect_err("truncated keys");
    assert!(err.to_string().contains("keys.age is damaged"), "{err}");
    std::fs::write(&keys, &key_bytes).expect("restore");
    let wallet = Wallet::open(dir.path(), &protection).expect("restored");
    assert_eq!(
        wallet.records().expect("records").tables["diabetes"].row_count,
        442
    );
}

#[test]
fn records_encrypted_to_another_wallet_are_refused() {
    let a = KeyProtection::Identity(age::x25519::Identity::generate());
    let b = KeyProtection::Identity(age::x25519::Identity::generate());
    let (dir_a, _) = wallet_with_data(&a);
    let dir_b = tempfile::tempdir().expect("tempdir");
    let wallet_b = Wallet::init(dir_b.path(), &b).expect("init");
    std::fs::copy(dir_a.path().join(INDEX_FILE), dir_b.path().join(INDEX_FILE)).expect("copy");
    let err = wallet_b.records().expect_err("foreign records");
    assert!(
        err.to_string()
            .contains("not encrypted to this wallet's key"),
        "{err}"
    );
}
