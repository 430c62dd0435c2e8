//! Hashed and signed artifacts: what runs is exactly what was hashed and signed by enough
//! trusted, unexpired keys; anything else is refused before a statement reaches the database.

use std::path::Path;

use wasmig::core::Date;
use wasmig::trust;
use wasmig::{Catalog, DownTarget, Error, ErrorKind, signing};
use wasmig_tests::{Backend, Inspector, Project, StatementLog, TestDb, users_migration};

use crate::on_both_backends;

/// A key pair in a temporary folder: (secret key text, public key base64).
struct Key {
    secret: String,
    public: String,
    id: String,
    _dir: tempfile::TempDir,
}

fn key() -> Key {
    let dir = tempfile::tempdir().expect("temporary folder");
    let generated = signing::keygen(&dir.path().join("signing.key")).expect("keygen");
    let secret = std::fs::read_to_string(&generated.secret_path).expect("read secret key");
    Key { secret, public: generated.public_key, id: generated.key_id, _dir: dir }
}

fn trust_section(require: bool, threshold: usize, keys: &[(&str, &Key, Option<&str>)]) -> String {
    let mut text = format!("[trust]\nrequire_signatures = {require}\nthreshold = {threshold}\n");
    for (name, key, expires) in keys {
        text.push_str(&format!("[[trust.keys]]\nname = \"{name}\"\npublic_key = \"{}\"\n", key.public));
        if let Some(expires) = expires {
            text.push_str(&format!("expires = \"{expires}\"\n"));
        }
    }
    text
}

/// A project with a SQL and a component migration, hashed, and signed by `signers`.
fn signed_project(trust: &str, signers: &[&Key]) -> Project {
    let project = Project::new();
    project.write("wasmig.toml", &format!("[limits]\nfuel = 2000000000\n{trust}"));
    project.sql("0001_users", &users_migration(5), Some("DROP TABLE users;"), None).component(
        "0002_add_email_domain",
        "add-email-domain",
        "# reviewed by the data team\n[grants]\nddl = [\"users\"]\nread = [\"users\"]\n",
    );
    hash_and_sign(project.path(), signers);
    project
}

fn hash_and_sign(dir: &Path, signers: &[&Key]) {
    let catalog = Catalog::load(dir).expect("catalog");
    signing::write_sum(dir, &catalog).expect("hash");
    let catalog = Catalog::load(dir).expect("catalog with sum");
    for key in signers {
        let secret = signing::secret_key(&key.secret, "test key", None).expect("secret key");
        signing::sign(dir, &catalog, &secret).expect("sign");
    }
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).expect("read artifact");
    bytes[offset] ^= 0x01;
    std::fs::write(path, bytes).expect("write artifact");
}

async fn tables(inspect: &Inspector, backend: Backend) -> i64 {
    match backend {
        Backend::Postgres => inspect.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").await,
        Backend::Sqlite => inspect.count("SELECT count(*) FROM sqlite_master").await,
    }
}

async fn signed_project_applies_and_records_its_signer(backend: Backend) {
    let (release, db) = (key(), TestDb::new(backend).await);
    let project = signed_project(&trust_section(true, 1, &[("release", &release, None)]), &[&release]);
    let migrator = project.migrator(&db).await;
    migrator.up(None).await.expect("a correctly signed project applies");
    let applied = migrator.applied().await.expect("history");
    assert_eq!(applied.len(), 2);
    assert!(applied.iter().all(|row| row.signers == release.id), "{applied:?}");
    migrator.down(DownTarget::Steps(1)).await.expect("down is allowed on a signed project");
}
on_both_backends!(signed_project_applies, signed_project_applies_and_records_its_signer);

/// Changes one artifact of a project in place.
type Tamper = Box<dyn Fn(&Path)>;

/// Each kind of artifact, with one byte flipped, is refused before any statement is sent.
async fn tampered_artifacts_are_refused_before_any_statement(backend: Backend) {
    let release = key();
    let trust = trust_section(true, 1, &[("release", &release, None)]);
    let cases: [(&str, Tamper); 7] = [
        // `n < 5` becomes `n < 4`: still valid SQL, quietly inserting one row fewer.
        (
            "SQL file",
            Box::new(|dir| {
                let path = dir.join("0001_users/up.sql");
                let text = std::fs::read_to_string(&path).expect("up.sql");
                flip_byte(&path, text.find("n < 5").expect("the row count") + 4);
            }),
        ),
        ("component", Box::new(|dir| flip_byte(&dir.join("0002_add_email_domain/migration.wasm"), 4000))),
        // The flipped byte is in the manifest's comment: still valid TOML, so only the digest can tell.
        ("manifest", Box::new(|dir| flip_byte(&dir.join("0002_add_email_domain/migration.toml"), 24))),
        ("sum file", Box::new(|dir| flip_byte(&dir.join("wasmig.sum"), 140))),
        // Changes that no longer parse are refused as changed files too, never as bad files.
        (
            "manifest that no longer parses",
            Box::new(|dir| {
                let path = dir.join("0002_add_email_domain/migration.toml");
                let text = std::fs::read_to_string(&path).expect("manifest");
                std::fs::write(&path, text.replacen("kind = \"component\"", "kind = \"component", 1)).expect("write");
            }),
        ),
        (
            "SQL file that is no longer UTF-8",
            Box::new(|dir| {
                let path = dir.join("0001_users/up.sql");
                let mut bytes = std::fs::read(&path).expect("up.sql");
                bytes[3] = 0xff;
                std::fs::write(&path, bytes).expect("write");
            }),
        ),
        (
            "signature",
            Box::new(|dir| {
                let path = std::fs::read_dir(dir)
                    .expect("project")
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.to_string_lossy().ends_with(".minisig"))
                    .expect("a signature file");
                let text = std::fs::read_to_string(&path).expect("signature");
                let second_line = text.find('\n').expect("signature has lines") + 20;
                flip_byte(&path, second_line);
            }),
        ),
    ];
    for (artifact, tamper) in cases {
        let db = TestDb::new(backend).await;
        let project = signed_project(&trust, &[&release]);
        tamper(project.path());
        let log = match backend {
            Backend::Postgres => Some(StatementLog::start(&db).await),
            Backend::Sqlite => None,
        };
        let kind_and_message = match wasmig::Migrator::open(project.config(&db)).await {
            Ok(migrator) => {
                let failure = migrator.up(None).await.expect_err(artifact);
                (failure.error.kind(), failure.to_string())
            }
            // A folder that differs from the sum file is refused while the project is read.
            Err(error) => (error.kind(), error.to_string()),
        };
        assert_eq!(kind_and_message.0, ErrorKind::Trust, "{artifact}: {}", kind_and_message.1);
        assert!(kind_and_message.1.contains("nothing was run"), "{artifact}: {}", kind_and_message.1);
        let inspect = db.inspect().await;
        if let Some(log) = log {
            inspect.execute("SELECT 'positive control' AS marker").await;
            log.wait_for("positive control").await;
            let from_wasmig: Vec<String> =
                log.statements().into_iter().filter(|s| !s.contains("positive control")).collect();
            assert!(from_wasmig.is_empty(), "{artifact}: statements reached the database: {from_wasmig:#?}");
        }
        assert_eq!(tables(&inspect, backend).await, 0, "{artifact}: the database is untouched");
    }
}
on_both_backends!(tampered_artifacts, tampered_artifacts_are_refused_before_any_statement);

fn problems_of(project: &Project) -> Vec<String> {
    let config = wasmig::Config::load(project.path(), None).expect("config");
    let catalog = Catalog::load(project.path()).expect("catalog");
    trust::check(&catalog, &config.trust, Date::today()).problems.iter().map(ToString::to_string).collect()
}

/// The threshold counts distinct trusted keys: one key's signature copied under every name,
/// the other signer's included, is still one signer.
#[tokio::test]
async fn one_key_copied_under_every_name_counts_once() {
    let (alice, bob) = (key(), key());
    let trust = trust_section(true, 2, &[("alice", &alice, None), ("bob", &bob, None)]);
    let project = signed_project(&trust, &[&alice]);
    let original = project.path().join(format!("wasmig.sum.{}.minisig", alice.id));
    for name in [bob.id.as_str(), "COPY", "0000000000000000", "alice-2"] {
        std::fs::copy(&original, project.path().join(format!("wasmig.sum.{name}.minisig"))).expect("copy signature");
    }
    let problems = problems_of(&project);
    assert!(problems.iter().any(|p| p.contains("1 valid signature") && p.contains("2 required")), "{problems:?}");
    let db = TestDb::sqlite();
    let failure = project.migrator(&db).await.up(None).await.expect_err("one signer is not two");
    assert_eq!(failure.error.kind(), ErrorKind::Trust, "{failure}");
    let inspect = db.inspect().await;
    assert_eq!(tables(&inspect, Backend::Sqlite).await, 0, "nothing was applied");
}

#[test]
fn untrusted_expired_missing_and_too_few_signatures_are_refused() {
    let (alice, bob, mallory) = (key(), key(), key());

    let untrusted = signed_project(&trust_section(true, 1, &[("alice", &alice, None)]), &[&mallory]);
    let problems = problems_of(&untrusted);
    assert!(problems.iter().any(|p| p.contains("0 valid signature") && p.contains(&mallory.id)), "{problems:?}");

    let expired = signed_project(&trust_section(true, 1, &[("alice", &alice, Some("2020-01-01"))]), &[&alice]);
    let problems = problems_of(&expired);
    assert!(problems.iter().any(|p| p.contains("expired on 2020-01-01")), "{problems:?}");

    let missing = signed_project(&trust_section(true, 1, &[("alice", &alice, None)]), &[]);
    assert!(problems_of(&missing).iter().any(|p| p.contains("0 valid signature")), "unsigned");

    let trust = trust_section(true, 2, &[("alice", &alice, None), ("bob", &bob, None)]);
    let one_of_two = signed_project(&trust, &[&alice]);
    let problems = problems_of(&one_of_two);
    assert!(problems.iter().any(|p| p.contains("1 valid signature") && p.contains("2 required")), "{problems:?}");

    let two_of_two = signed_project(&trust, &[&alice, &bob]);
    assert_eq!(problems_of(&two_of_two), Vec::<String>::new(), "two trusted signers meet the threshold");

    let unexpired = signed_project(&trust_section(true, 1, &[("alice", &alice, Some("2999-12-31"))]), &[&alice]);
    assert_eq!(problems_of(&unexpired), Vec::<String>::new());
}

#[test]
fn crlf_checkout_in_another_directory_keeps_digests_and_signatures() {
    let alice = key();
    let project = signed_project(&trust_section(true, 1, &[("alice", &alice, None)]), &[&alice]);
    let copy = tempfile::tempdir().expect("temporary folder");
    let root = copy.path().join("deep/elsewhere/migrations");
    for entry in walk(project.path()) {
        let relative = entry.strip_prefix(project.path()).expect("inside the project");
        let target = root.join(relative);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        let bytes = std::fs::read(&entry).expect("read");
        let is_text = ["sql", "toml", "sum", "minisig"].iter().any(|ext| entry.extension().is_some_and(|e| e == *ext));
        let bytes =
            if is_text { String::from_utf8(bytes).expect("text").replace('\n', "\r\n").into_bytes() } else { bytes };
        std::fs::write(target, bytes).expect("write");
    }
    let original = Catalog::load(project.path()).expect("catalog");
    let converted = Catalog::load(&root).expect("converted catalog");
    let digests = |c: &Catalog| c.migrations.iter().map(|m| m.digest).collect::<Vec<_>>();
    assert_eq!(digests(&original), digests(&converted));
    let config = wasmig::Config::load(&root, None).expect("config");
    let report = trust::check(&converted, &config.trust, Date::today());
    assert_eq!(report.problems, vec![], "CRLF and a new path keep every digest and signature valid");
    assert_eq!(report.signers, vec!["alice".to_owned()]);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

async fn repair_is_explicit_and_recorded(backend: Backend) {
    let db = TestDb::new(backend).await;
    let project = Project::new();
    project.sql("0001_users", &users_migration(2), None, None);
    project.migrator(&db).await.up(None).await.expect("up");
    project.write("0001_users/up.sql", &format!("-- reformatted\n{}", users_migration(2)));
    let migrator = project.migrator(&db).await;
    assert_eq!(migrator.up(None).await.expect_err("changed").error.kind(), ErrorKind::Integrity);

    let wrong: wasmig::Digest = format!("blake3:{}", "0".repeat(64)).parse().expect("digest");
    let refused = migrator.repair(wasmig::Version(1), wrong, "typo").await.expect_err("wrong digest");
    assert!(matches!(refused.error, Error::Repair(wasmig::RepairError::NotWhatWasAccepted { .. })), "{refused}");

    let found = migrator.catalog().migrations[0].digest;
    let repair = migrator.repair(wasmig::Version(1), found, "comment added, SQL unchanged").await.expect("repair");
    assert_eq!(repair.new_digest.to_string(), found.to_string());
    migrator.up(None).await.expect("up accepts the repaired migration");
    let repairs = migrator.repairs().await.expect("repairs");
    assert_eq!(repairs.len(), 1);
    assert_eq!(repairs[0].reason, "comment added, SQL unchanged");
    assert_eq!(migrator.applied().await.expect("history")[0].digest.to_string(), found.to_string());
}
on_both_backends!(repair, repair_is_explicit_and_recorded);
