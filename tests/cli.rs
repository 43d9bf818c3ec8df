//! Runs the built `noviqi` binary in temp dirs: init/check, keys, secrets, rotation, admin,
//! and the error messages users see.

// Test helpers outside #[test] functions may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use noviqi::crypto::apikey::KeyHash;
use noviqi::crypto::secret::{self, MasterKey};

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `noviqi ARGS` in `dir` with a clean noviqi environment plus `env`, feeding `stdin`.
fn run_env(dir: &Path, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_noviqi"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("NOVIQI_MASTER_KEY")
        .env_remove("NOVIQI_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            // The command may exit without reading stdin (an early error): ignore EPIPE.
            let _ = pipe.write_all(bytes);
        }
    }
    let out = child.wait_with_output().unwrap();
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    run_env(dir, args, None, &[])
}

fn run_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    run_env(dir, args, Some(stdin.as_bytes()), &[])
}

#[track_caller]
fn ok(out: Output) -> Output {
    assert!(
        out.ok,
        "command failed:\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    out
}

#[track_caller]
fn fails(out: Output) -> String {
    assert!(
        !out.ok,
        "command succeeded but should not:\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    out.stderr
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// A directory holding a fresh `init` (config `noviqi.toml`, key file `noviqi.key`).
fn initialised() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(run(dir.path(), &["init"]));
    (dir, out.stdout.trim_end().to_owned())
}

fn master(dir: &Path) -> MasterKey {
    MasterKey::load_file(&dir.join("noviqi.key")).unwrap()
}

/// Writes `config` and a fresh 0600 key file; returns the master key.
fn write_config_and_key(dir: &Path, config: &str) -> MasterKey {
    std::fs::write(dir.join("noviqi.toml"), config).unwrap();
    let key = MasterKey::generate();
    let path = dir.join("noviqi.key");
    std::fs::write(&path, format!("{}\n", key.to_base64().as_str())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    key
}

#[test]
fn init_then_check_passes() {
    let (dir, key) = initialised();
    assert!(key.starts_with("nvq_") && !key.contains('\n'), "{key}");
    let config = read(dir.path(), "noviqi.toml");
    assert!(config.contains(&KeyHash::of(&key).to_string()));
    assert!(!config.contains(&key), "the key itself must not be stored");
    let mode = std::fs::metadata(dir.path().join("noviqi.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    ok(run(dir.path(), &["check"]));
    // The mock model from the template is there.
    let cfg = noviqi::config::load(
        &dir.path().join("noviqi.toml"),
        noviqi::config::Secrets::Decrypt,
    )
    .unwrap();
    assert!(cfg.route("mock").is_some());
    assert_eq!(cfg.keys[0].name, "default");
}

#[test]
fn init_refuses_to_overwrite() {
    let (dir, _) = initialised();
    let before = (
        read(dir.path(), "noviqi.toml"),
        read(dir.path(), "noviqi.key"),
    );
    let err = fails(run(dir.path(), &["init"]));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        before,
        (
            read(dir.path(), "noviqi.toml"),
            read(dir.path(), "noviqi.key")
        )
    );
    // Only the key file present: still refused, and no config written.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("noviqi.key"), "x").unwrap();
    fails(run(other.path(), &["init"]));
    assert!(!other.path().join("noviqi.toml").exists());
}

#[test]
fn config_path_from_flag_env_or_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    ok(run(dir.path(), &["init", "--config", "etc/gw.toml"]));
    assert!(dir.path().join("etc/noviqi.key").exists());
    ok(run(dir.path(), &["check", "-c", "etc/gw.toml"]));
    ok(run_env(
        dir.path(),
        &["check"],
        None,
        &[("NOVIQI_CONFIG", "etc/gw.toml")],
    ));
    let err = fails(run(dir.path(), &["check"]));
    assert!(
        err.contains("noviqi.toml") && err.contains("noviqi init"),
        "{err}"
    );
}

#[test]
fn keys_add_prints_a_key_whose_hash_is_stored() {
    let (dir, _) = initialised();
    let out = ok(run(
        dir.path(),
        &[
            "keys", "add", "laptop", "--rpm", "60", "--tpm", "1000", "--models", "gpt-*", "mock",
        ],
    ));
    let key = out.stdout.trim_end();
    assert_eq!(out.stdout.lines().count(), 1);
    assert!(key.starts_with("nvq_"));
    let config = read(dir.path(), "noviqi.toml");
    assert!(config.contains(&KeyHash::of(key).to_string()));
    ok(run(dir.path(), &["check"]));
    let cfg = noviqi::config::load(
        &dir.path().join("noviqi.toml"),
        noviqi::config::Secrets::Skip,
    )
    .unwrap();
    let k = cfg.key_by_hash(&KeyHash::of(key)).unwrap();
    assert_eq!(k.name, "laptop");
    assert_eq!(k.models, ["gpt-*", "mock"]);
    assert_eq!(k.limits.requests_per_minute, Some(60));
    assert_eq!(k.prefix, &key[..12]);
}

#[test]
fn keys_add_with_existing_name_leaves_file_byte_identical() {
    let (dir, _) = initialised();
    let before = std::fs::read(dir.path().join("noviqi.toml")).unwrap();
    let out = run(dir.path(), &["keys", "add", "default"]);
    assert!(out.stdout.is_empty());
    let err = fails(out);
    assert!(
        err.contains("default") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(
        before,
        std::fs::read(dir.path().join("noviqi.toml")).unwrap()
    );
}

#[test]
fn keys_list_shows_name_prefix_state_never_hash() {
    let (dir, first) = initialised();
    ok(run(
        dir.path(),
        &["keys", "add", "old", "--expires", "2001-01-01T00:00:00Z"],
    ));
    ok(run(dir.path(), &["keys", "add", "gone"]));
    ok(run(dir.path(), &["keys", "revoke", "gone"]));
    let out = ok(run(dir.path(), &["keys", "list"]));
    assert!(!out.stdout.contains("sha256"), "{}", out.stdout);
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert_eq!(rows[0], ["default", &first[..12], "active"]);
    assert_eq!((rows[1][0], rows[1][2]), ("old", "expired"));
    assert_eq!((rows[2][0], rows[2][2]), ("gone", "disabled"));
    let err = fails(run(dir.path(), &["keys", "revoke", "nobody"]));
    assert!(err.contains("nobody"), "{err}");
}

const COMMENTED: &str = r#"# My gateway — hand-written, keep this comment.
[server]
listen = "127.0.0.1:8420"   # inline comment on listen

# The admin section
[admin]
session_ttl_secs = 600      # short sessions

[[providers]]
# provider comment
name = "up"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"   # local

[[models]]
name = "m"                  # model comment
targets = ["up/x"]

[[keys]]
name = "first"
hash = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
# between keys
[[keys]]
name = "second"
hash = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
disabled = false            # keep me

# trailing comment
"#;

#[test]
fn comments_and_order_survive_every_edit() {
    let dir = tempfile::tempdir().unwrap();
    write_config_and_key(dir.path(), COMMENTED);
    let new_key = ok(run(dir.path(), &["keys", "add", "third"])).stdout;
    ok(run(dir.path(), &["keys", "revoke", "first"]));
    ok(run_stdin(dir.path(), &["secret", "set", "up"], "sk-up\n"));
    ok(run_stdin(dir.path(), &["admin", "passwd"], "hunter2\n"));
    let after = read(dir.path(), "noviqi.toml");
    for line in COMMENTED.lines().filter(|l| l.contains('#')) {
        assert!(after.contains(line), "lost `{line}` in:\n{after}");
    }
    let pos = |s: &str| {
        after
            .find(s)
            .unwrap_or_else(|| panic!("missing {s} in:\n{after}"))
    };
    assert!(pos("[server]") < pos("[admin]") && pos("[admin]") < pos("[[providers]]"));
    assert!(pos("\"first\"") < pos("\"second\"") && pos("\"second\"") < pos("\"third\""));
    assert!(after.contains(&KeyHash::of(new_key.trim_end()).to_string()));
    ok(run(dir.path(), &["check"]));
    let cfg = noviqi::config::load(
        &dir.path().join("noviqi.toml"),
        noviqi::config::Secrets::Decrypt,
    )
    .unwrap();
    assert_eq!(cfg.providers[0].api_key.as_ref().unwrap().expose(), "sk-up");
    assert!(noviqi::crypto::password::verify(
        "hunter2",
        &cfg.admin.as_ref().unwrap().password_hash
    ));
    assert!(cfg.keys[0].disabled);
    assert_eq!(cfg.admin.as_ref().unwrap().session_ttl.as_secs(), 600);
    // Permissions of the config survive the atomic rewrite; no temp files are left behind
    // (the writers' lock file stays, empty, owner-only).
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["noviqi.key", "noviqi.toml", "noviqi.toml.lock"]);
    let lock = std::fs::metadata(dir.path().join("noviqi.toml.lock")).unwrap();
    assert_eq!((lock.len(), lock.permissions().mode() & 0o777), (0, 0o600));
}

#[test]
fn edits_keep_the_config_permissions() {
    let (dir, _) = initialised();
    let path = dir.path().join("noviqi.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    ok(run(dir.path(), &["keys", "add", "x"]));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn secret_encrypt_output_decrypts_via_check() {
    let (dir, _) = initialised();
    for (input, expected) in [
        ("sk-one\n", "sk-one"),
        ("sk-two\r\n", "sk-two"),
        ("sk-three", "sk-three"),
        ("sk-four\n\n", "sk-four\n"),
    ] {
        let out = ok(run_stdin(dir.path(), &["secret", "encrypt"], input));
        assert_eq!(out.stdout.lines().count(), 1);
        let enc = out.stdout.trim_end();
        assert!(enc.starts_with("enc:v1:"), "{enc}");
        assert_eq!(
            secret::decrypt(&master(dir.path()), enc).unwrap().expose(),
            expected
        );
        let config = read(dir.path(), "noviqi.toml").replace(
            "kind = \"mock\"\n",
            &format!("kind = \"mock\"\napi_key = \"{enc}\"\n"),
        );
        std::fs::write(dir.path().join("enc.toml"), config).unwrap();
        ok(run(dir.path(), &["check", "--config", "enc.toml"]));
    }
    let err = fails(run_stdin(dir.path(), &["secret", "encrypt"], "\n"));
    assert!(err.contains("stdin"), "{err}");
}

#[test]
fn plaintext_api_key_fails_check_with_how_to_encrypt() {
    let dir = tempfile::tempdir().unwrap();
    write_config_and_key(
        dir.path(),
        "[[providers]]\nname = \"openai\"\nkind = \"openai\"\napi_key = \"sk-plain\"\n",
    );
    let err = fails(run(dir.path(), &["check"]));
    assert!(err.contains("noviqi.toml:4:"), "{err}");
    assert!(
        err.contains("providers[0].api_key") && err.contains("noviqi secret set openai"),
        "{err}"
    );
    assert!(!err.contains("sk-plain"), "the secret leaked: {err}");
    // The fix it names works.
    ok(run_stdin(
        dir.path(),
        &["secret", "set", "openai"],
        "sk-plain\n",
    ));
    ok(run(dir.path(), &["check"]));
}

#[test]
fn secret_set_refuses_a_provider_using_api_key_env() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        "[[providers]]\nname = \"openai\"\nkind = \"openai\"\napi_key_env = \"NVQ_TEST_KEY_VAR\"\n";
    write_config_and_key(dir.path(), config);
    let err = fails(run_stdin(dir.path(), &["secret", "set", "openai"], "sk\n"));
    assert!(err.contains("api_key_env"), "{err}");
    assert_eq!(read(dir.path(), "noviqi.toml"), config);
    let err = fails(run(dir.path(), &["check"]));
    assert!(
        err.contains("NVQ_TEST_KEY_VAR") && err.contains("providers[0].api_key_env"),
        "{err}"
    );
    ok(run_env(
        dir.path(),
        &["check"],
        None,
        &[("NVQ_TEST_KEY_VAR", "sk-env")],
    ));
    let err = fails(run_stdin(dir.path(), &["secret", "set", "nobody"], "sk\n"));
    assert!(err.contains("nobody"), "{err}");
}

#[test]
fn group_readable_master_key_file_is_refused_with_chmod() {
    let (dir, _) = initialised();
    ok(run_stdin(dir.path(), &["secret", "set", "mock"], "sk\n"));
    let key_path = dir.path().join("noviqi.key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(run(dir.path(), &["check"]));
    // Paths are shown as the user gave them: relative to where noviqi runs.
    assert!(err.contains("chmod 600 ./noviqi.key"), "{err}");
    let err = fails(run_stdin(dir.path(), &["secret", "encrypt"], "x"));
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn master_key_file_with_or_without_newline_and_env_override() {
    let (dir, _) = initialised();
    ok(run_stdin(dir.path(), &["secret", "set", "mock"], "sk\n"));
    let key_path = dir.path().join("noviqi.key");
    let text = read(dir.path(), "noviqi.key");
    assert!(text.ends_with('\n'));
    std::fs::write(&key_path, text.trim_end()).unwrap();
    ok(run(dir.path(), &["check"]));
    // The environment wins over the file.
    let other = MasterKey::generate();
    let err = fails(run_env(
        dir.path(),
        &["check"],
        None,
        &[("NOVIQI_MASTER_KEY", other.to_base64().as_str())],
    ));
    assert!(err.contains("different master key"), "{err}");
    ok(run_env(
        dir.path(),
        &["check"],
        None,
        &[("NOVIQI_MASTER_KEY", text.as_str())],
    ));
}

#[test]
fn load_errors_name_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 1\n",
            "noviqi.toml:3:",
            "server.listen_port",
        ),
        (
            "[[providers]]\nname = \"a\"\nkind = \"mock\"\n[[providers]]\nname = \"a\"\nkind = \"mock\"\n",
            "noviqi.toml:5:",
            "providers[1].name",
        ),
        (
            "[[providers]]\nname = \"a\"\nkind = \"mock\"\n[[models]]\nname = \"m\"\ntargets = [\"a/x\", \"b/y\"]\n",
            "noviqi.toml:6:",
            "models[0].targets[1]",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "noviqi.toml:2:",
            "server.trusted_proxies[0]",
        ),
    ];
    for (config, location, field) in cases {
        write_config_and_key(dir.path(), config);
        let err = fails(run(dir.path(), &["check"]));
        assert!(
            err.contains(location) && err.contains(field),
            "want {location} {field}, got: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn secret_rotate_reencrypts_under_the_new_key() {
    let (dir, _) = initialised();
    ok(run_stdin(
        dir.path(),
        &["secret", "set", "mock"],
        "sk-rotate\n",
    ));
    let old_text = read(dir.path(), "noviqi.key");
    let before = read(dir.path(), "noviqi.toml");
    ok(run(dir.path(), &["secret", "rotate"]));
    assert_eq!(read(dir.path(), "noviqi.key.old"), old_text);
    assert_ne!(read(dir.path(), "noviqi.key"), old_text);
    let after = read(dir.path(), "noviqi.toml");
    assert_ne!(before, after);
    ok(run(dir.path(), &["check"]));
    let err = fails(run_env(
        dir.path(),
        &["check"],
        None,
        &[("NOVIQI_MASTER_KEY", old_text.as_str())],
    ));
    assert!(err.contains("different master key"), "{err}");
    for name in ["noviqi.key", "noviqi.key.old"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let cfg = noviqi::config::load(
        &dir.path().join("noviqi.toml"),
        noviqi::config::Secrets::Decrypt,
    )
    .unwrap();
    assert_eq!(
        cfg.providers[0].api_key.as_ref().unwrap().expose(),
        "sk-rotate"
    );
    // Only the comments' neighbour changed: everything but the api_key line is identical.
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("api_key"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&before), strip(&after));
}

#[test]
fn secret_rotate_recovers_an_interrupted_swap() {
    let (dir, _) = initialised();
    ok(run_stdin(dir.path(), &["secret", "set", "mock"], "sk-x\n"));
    // Simulate a crash between replacing the config and renaming the key: config under a new
    // key that still sits in noviqi.key.new.
    let old = master(dir.path());
    let new = MasterKey::generate();
    let (text, _) =
        noviqi::config::edit::reencrypt(&read(dir.path(), "noviqi.toml"), &old, &new).unwrap();
    std::fs::write(dir.path().join("noviqi.toml"), text).unwrap();
    let new_path = dir.path().join("noviqi.key.new");
    std::fs::write(&new_path, format!("{}\n", new.to_base64().as_str())).unwrap();
    std::fs::set_permissions(&new_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = fails(run(dir.path(), &["check"]));
    assert!(
        err.contains("noviqi.key.new"),
        "check names the file to move: {err}"
    );
    ok(run(dir.path(), &["secret", "rotate"]));
    assert!(!new_path.exists());
    ok(run(dir.path(), &["check"]));
    // A stale .new (crash before the config was replaced) is discarded and rotation proceeds.
    std::fs::write(
        &new_path,
        format!("{}\n", MasterKey::generate().to_base64().as_str()),
    )
    .unwrap();
    std::fs::set_permissions(&new_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(run(dir.path(), &["secret", "rotate"]));
    assert!(!new_path.exists());
    ok(run(dir.path(), &["check"]));
}

#[test]
fn secret_rotate_refuses_when_the_key_comes_from_the_environment() {
    let (dir, _) = initialised();
    let key = read(dir.path(), "noviqi.key");
    let err = fails(run_env(
        dir.path(),
        &["secret", "rotate"],
        None,
        &[("NOVIQI_MASTER_KEY", key.as_str())],
    ));
    assert!(err.contains("NOVIQI_MASTER_KEY"), "{err}");
    assert_eq!(read(dir.path(), "noviqi.key"), key);
}

#[test]
fn admin_passwd_writes_an_argon2id_hash() {
    let (dir, _) = initialised();
    ok(run_stdin(
        dir.path(),
        &["admin", "passwd"],
        "s3cret pass\r\n",
    ));
    let cfg = noviqi::config::load(
        &dir.path().join("noviqi.toml"),
        noviqi::config::Secrets::Skip,
    )
    .unwrap();
    let phc = &cfg.admin.unwrap().password_hash;
    assert!(phc.starts_with("$argon2id$"));
    assert!(noviqi::crypto::password::verify("s3cret pass", phc));
    assert!(!read(dir.path(), "noviqi.toml").contains("s3cret"));
}

#[test]
fn example_config_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/noviqi.example.toml"))
            .unwrap();
    // With a key file …
    write_config_and_key(dir.path(), &example);
    ok(run(dir.path(), &["check"]));
    // … and with the key in the environment only.
    std::fs::remove_file(dir.path().join("noviqi.key")).unwrap();
    let key = MasterKey::generate();
    ok(run_env(
        dir.path(),
        &["check"],
        None,
        &[("NOVIQI_MASTER_KEY", key.to_base64().as_str())],
    ));
}

#[test]
fn usage_errors_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    assert!(fails(run(dir.path(), &["frobnicate"])).contains("unknown command"));
    assert!(!fails(run(dir.path(), &[])).is_empty());
    fails(run(dir.path(), &["keys", "add"]));
    fails(run(dir.path(), &["check", "--rpm", "3"]));
    fails(run(dir.path(), &["keys", "add", "x", "--rpm", "lots"]));
    fails(run(
        dir.path(),
        &["keys", "add", "x", "--expires", "tomorrow"],
    ));
    let help = ok(run(dir.path(), &["--help"]));
    assert!(help.stdout.contains("keys add"));
}

/// Issue 13, item 10: `keys add` on a symlinked config replaced the link with a regular file
/// and left the real file stale.
#[test]
fn edits_follow_a_symlinked_config_to_its_target() {
    let (dir, _) = initialised();
    let real = dir.path().join("real.toml");
    let link = dir.path().join("noviqi.toml");
    std::fs::rename(&link, &real).unwrap();
    std::os::unix::fs::symlink("real.toml", &link).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let key = ok(run(dir.path(), &["keys", "add", "linked"])).stdout;
    let key = key.trim();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(text.contains(&KeyHash::of(key).to_string()), "{text}");
    let mode = std::fs::metadata(&real).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    ok(run(dir.path(), &["check"]));
    // Only the two files, the link and the lock beside the real file: no temp file left.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["noviqi.key", "noviqi.toml", "real.toml", "real.toml.lock"]
    );
}

#[test]
fn keys_add_with_a_budget_and_prices_in_force() {
    let (dir, _) = initialised();
    ok(run(
        dir.path(),
        &["keys", "add", "kid", "--budget", "20", "--period", "week"],
    ));
    let text = read(dir.path(), "noviqi.toml");
    assert!(
        text.contains("budget_usd = 20.0\nbudget_period = \"week\""),
        "{text}"
    );
    ok(run(dir.path(), &["check"]));
    let err = fails(run(dir.path(), &["keys", "add", "x", "--period", "year"]));
    assert!(err.contains("day, week or month"), "{err}");
    let err = fails(run(dir.path(), &["keys", "add", "x", "--budget", "-1"]));
    assert!(err.contains("--budget"), "{err}");

    // [[prices]] first, in file order, then the built-in table with its sources.
    let mut config = read(dir.path(), "noviqi.toml");
    config
        .push_str("\n[[prices]]\nmatch = \"mock/*\"\ninput = 1.5\noutput = 2\ncache_read = 0.15\n");
    std::fs::write(dir.path().join("noviqi.toml"), config).unwrap();
    let out = ok(run(dir.path(), &["prices"]));
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines[0], "config  mock/*  1.5 2 0.15 1.5 1.5",
        "{}",
        out.stdout
    );
    assert!(lines.len() > 40);
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with("built-in ") && l.contains("https://"))
    );
    let err = fails(run(dir.path(), &["prices", "--budget", "3"]));
    assert!(err.contains("only to `keys add`"), "{err}");
}

#[test]
fn bad_prices_and_budgets_name_their_field() {
    let (dir, _) = initialised();
    let base = read(dir.path(), "noviqi.toml");
    for (extra, field) in [
        (
            "\n[[prices]]\nmatch = \"a/*\"\ninput = -1\noutput = 1\n",
            "prices[0].input",
        ),
        (
            "\n[[prices]]\nmatch = \"\"\ninput = 1\noutput = 1\n",
            "prices[0].match",
        ),
        ("\n[[prices]]\nmatch = \"a/*\"\ninput = 1\n", "prices"),
    ] {
        std::fs::write(dir.path().join("noviqi.toml"), format!("{base}{extra}")).unwrap();
        let err = fails(run(dir.path(), &["check"]));
        assert!(err.contains(field), "{field}: {err}");
    }
    let with_limits = base.replacen(
        "budget_period = \"month\"",
        "budget_period = \"fortnight\"",
        1,
    );
    assert_ne!(with_limits, base, "the init config sets a budget_period");
    std::fs::write(dir.path().join("noviqi.toml"), with_limits).unwrap();
    let err = fails(run(dir.path(), &["check"]));
    assert!(err.contains("limits.budget_period"), "{err}");
}
