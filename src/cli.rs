//! Command-line interface: `init`, `serve`, `check`, `keys`, `secret`, `admin`; the only writer
//! to stdout.
//!
//! What a script needs (a new key, an `enc:v1:` value, `keys list`) goes to stdout alone; advice
//! goes to stderr; any error exits non-zero. Every edit of the config goes through
//! `config::edit` (comments and layout kept), is re-validated with `config::load_str` before it
//! is written, and is written atomically, so the CLI never leaves an invalid or half-written
//! config.
//!
//! `secret rotate`, in order: (1) refuse if `NOVIQI_MASTER_KEY` is set (rotation writes the key
//! file); (2) recover from an interrupted rotation if `<key>.new` exists (see below);
//! (3) decrypt every secret with the current key and re-encrypt it under a fresh key, in memory,
//! and validate the new config — any failure stops here with nothing changed; (4) write the new
//! key to `<key>.new` (0600, fsync); (5) write the old key to `<key>.old` (0600, atomic);
//! (6) atomically replace the config; (7) rename `<key>.new` over `<key>` and fsync the folder.
//! A crash before (6) leaves the old config and old key in force (plus a stray `<key>.new`);
//! a crash between (6) and (7) leaves the new config with the new key still in `<key>.new`.
//! Both are repaired by running `noviqi secret rotate` again, which finishes the swap when the
//! config decrypts under `<key>.new` and discards `<key>.new` otherwise; `noviqi check` names
//! the file to move when it finds one. The old key always survives in `<key>.old` or `<key>`.

use std::ffi::OsString;
use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use zeroize::Zeroizing;

use crate::config::edit::{self, NewKey, UpdateError};
use crate::config::rotate::{self, Rotation, master_key_path};
use crate::config::{self, Secrets};
use crate::cost::{self, Period, Usd};
use crate::crypto::apikey;
use crate::crypto::secret::{self, MASTER_KEY_ENV, MasterKey};

const EXAMPLE_CONFIG: &str = include_str!("../noviqi.example.toml");
const CONFIG_ENV: &str = "NOVIQI_CONFIG";
const MAX_STDIN_SECRET: u64 = 1 << 20;

const USAGE: &str = "\
noviqi — a self-hosted AI gateway

Usage: noviqi <command> [--config PATH]

Commands:
  init                      write a commented config, a master key file and one key
  serve                     run the gateway
  check                     validate the config and decrypt every secret
  keys add NAME [--models GLOB…] [--rpm N] [--tpm N] [--expires RFC3339]
               [--budget USD] [--period day|week|month]
                            create a key; prints it once on stdout
  keys list                 one key per line: name, prefix, state
  keys revoke NAME          disable a key
  secret encrypt            read a secret from stdin, print its enc:v1: form
  secret set PROVIDER       read a secret from stdin, store it encrypted for PROVIDER
  secret rotate             new master key; re-encrypt every secret (old key kept as .old)
  admin passwd              read the admin password from stdin (or a prompt) and store its hash
  prices                    the price table in force ([[prices]], then built-in), one model a line

Options:
  -c, --config PATH         config file (else $NOVIQI_CONFIG, else ./noviqi.toml)
  -h, --help                this help
  -V, --version             the version
";

/// Runs the command named by the process arguments.
pub fn main() -> ExitCode {
    match parse_args(lexopt::Parser::from_env()).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("noviqi: {message}");
            ExitCode::FAILURE
        }
    }
}

type CliResult<T = ()> = Result<T, CliError>;

/// A command that failed: the one line `main` prints to stderr before exiting 1. The CLI's
/// errors are sentences for a person at a terminal, so this carries the sentence; typed errors
/// from below (config, edits, start-up) convert into it with their own `Display`.
#[derive(Debug)]
struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for CliError {
    fn from(message: String) -> CliError {
        CliError(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> CliError {
        CliError(message.to_owned())
    }
}

impl From<crate::gateway::StartError> for CliError {
    fn from(e: crate::gateway::StartError) -> CliError {
        CliError(e.to_string())
    }
}

/// The command line, parsed but not yet dispatched.
#[derive(Debug, Default)]
struct Args {
    config: Option<PathBuf>,
    words: Vec<String>,
    models: Vec<String>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    expires: Option<String>,
    budget: Option<f64>,
    period: Option<String>,
    help: bool,
    version: bool,
}

fn parse_args(mut parser: lexopt::Parser) -> CliResult<Args> {
    use lexopt::Arg::{Long, Short, Value};
    let mut args = Args::default();
    let num = |v: OsString, flag: &str| -> CliResult<u64> {
        Ok(v.to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{flag} needs a whole number"))?)
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('c') | Long("config") => {
                args.config = Some(parser.value().map_err(|e| e.to_string())?.into());
            }
            Long("models") => {
                for v in parser.values().map_err(|e| e.to_string())? {
                    let v = v.into_string().map_err(|_| "--models needs UTF-8 globs")?;
                    args.models
                        .extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
                }
            }
            Long("rpm") => {
                args.rpm = Some(num(parser.value().map_err(|e| e.to_string())?, "--rpm")?)
            }
            Long("tpm") => {
                args.tpm = Some(num(parser.value().map_err(|e| e.to_string())?, "--tpm")?)
            }
            Long("expires") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                args.expires = Some(
                    v.into_string()
                        .map_err(|_| "--expires needs an RFC 3339 time")?,
                );
            }
            Long("budget") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                let usd = v
                    .to_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|usd| Usd::from_f64(*usd).is_some())
                    .ok_or("--budget needs an amount of USD, like 20 or 7.5 (0 = no cap)")?;
                args.budget = Some(usd);
            }
            Long("period") => {
                let v = parser.value().map_err(|e| e.to_string())?;
                let period = v
                    .into_string()
                    .ok()
                    .filter(|p| Period::parse(p).is_some())
                    .ok_or("--period needs day, week or month")?;
                args.period = Some(period);
            }
            Short('h') | Long("help") => args.help = true,
            Short('V') | Long("version") => args.version = true,
            Value(v) => args
                .words
                .push(v.into_string().map_err(|_| "arguments must be UTF-8")?),
            other => return Err(format!("{}; see `noviqi --help`", other.unexpected()).into()),
        }
    }
    Ok(args)
}

fn run(args: Args) -> CliResult {
    if args.help {
        return out(USAGE.trim_end());
    }
    if args.version {
        return out(&format!("noviqi {}", env!("CARGO_PKG_VERSION")));
    }
    let words: Vec<&str> = args.words.iter().map(String::as_str).collect();
    let is_keys_add = words.starts_with(&["keys", "add"]);
    if !is_keys_add
        && (!args.models.is_empty()
            || args.rpm.is_some()
            || args.tpm.is_some()
            || args.expires.is_some()
            || args.budget.is_some()
            || args.period.is_some())
    {
        return Err(
            "--models, --rpm, --tpm, --expires, --budget and --period apply only to `keys add`"
                .into(),
        );
    }
    let path = config_path(args.config.clone());
    match words.as_slice() {
        ["init"] => init(&path),
        ["serve"] => serve(&path),
        ["check"] => check(&path),
        ["keys", "add", name] => keys_add(&path, name, &args),
        ["keys", "list"] => keys_list(&path),
        ["keys", "revoke", name] => keys_revoke(&path, name),
        ["secret", "encrypt"] => secret_encrypt(&path),
        ["secret", "set", provider] => secret_set(&path, provider),
        ["secret", "rotate"] => secret_rotate(&path),
        ["admin", "passwd"] => admin_passwd(&path),
        ["prices"] => prices(&path),
        [] => Err(format!("no command given\n\n{USAGE}").into()),
        _ => Err(format!("unknown command `{}`; see `noviqi --help`", words.join(" ")).into()),
    }
}

/// `--config`, else `$NOVIQI_CONFIG`, else `./noviqi.toml`.
fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from("noviqi.toml"))
}

/// Writes one line to stdout; a closed stdout is an error, not a panic.
fn out(line: &str) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    Ok(writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?)
}

fn read_config(path: &Path) -> CliResult<String> {
    Ok(std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{}: no such config file; create one with `noviqi init` or pass --config",
                path.display()
            )
        } else {
            format!("{}: cannot read the config file: {e}", path.display())
        }
    })?)
}

/// Locks the config, re-reads it, applies `change`, validates and atomically replaces it (the
/// same path the dashboard's key API takes, so neither loses the other's edit).
fn update_config(
    path: &Path,
    change: impl FnOnce(&str) -> Result<String, edit::EditError>,
) -> CliResult {
    edit::update(path, change).map(drop).map_err(|e| {
        let shown = path.display();
        match e {
            UpdateError::Lock(e) | UpdateError::Read(e)
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                format!(
                    "{shown}: no such config file; create one with `noviqi init` or pass --config"
                )
            }
            UpdateError::Invalid(_) => e.to_string(),
            e => format!("{shown}: {e}"),
        }
        .into()
    })
}

/// A secret from stdin (a prompt on a terminal), minus one trailing `\n` or `\r\n`.
fn read_secret(prompt: &str) -> CliResult<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let mut bytes = Zeroizing::new(Vec::new());
    if stdin.is_terminal() {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
        stdin
            .lock()
            .take(MAX_STDIN_SECRET + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
    } else {
        stdin
            .lock()
            .take(MAX_STDIN_SECRET + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
    }
    if bytes.len() as u64 > MAX_STDIN_SECRET {
        return Err("the secret on stdin is longer than 1 MiB".into());
    }
    let len = bytes.len();
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(len - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(len - 1);
    }
    if bytes.is_empty() {
        return Err(
            "nothing was read from stdin; pipe the secret in, e.g. `printf %s \"$KEY\" | noviqi …`"
                .into(),
        );
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| "the secret on stdin is not UTF-8")?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn init(path: &Path) -> CliResult {
    let key_path = master_key_path_from_template(path);
    for existing in [path, key_path.as_path()] {
        if existing.exists() {
            return Err(format!(
                "{} already exists; refusing to overwrite it",
                existing.display()
            )
            .into());
        }
    }
    let (key, hash) = apikey::generate();
    let text = edit::add_key(
        EXAMPLE_CONFIG,
        &NewKey {
            name: "default".into(),
            hash,
            prefix: apikey::prefix(&key),
            models: Vec::new(),
            requests_per_minute: None,
            tokens_per_minute: None,
            expires_at: None,
            budget_usd: None,
            budget_period: None,
        },
    )
    .map_err(|e| e.to_string())?;
    config::load_str(&text, path, Secrets::Skip)
        .map_err(|e| format!("internal error: the template does not load: {e}"))?;
    let master = MasterKey::generate();
    let key_text = Zeroizing::new(format!("{}\n", master.to_base64().as_str()));
    edit::create_private(&key_path, key_text.as_bytes(), 0o600).map_err(|e| {
        format!(
            "{}: cannot create the master key file: {e}",
            key_path.display()
        )
    })?;
    if let Err(e) = edit::create_private(path, text.as_bytes(), 0o600) {
        let _ = std::fs::remove_file(&key_path);
        return Err(format!("{}: cannot create the config: {e}", path.display()).into());
    }
    out(&key)?;
    eprintln!(
        "Wrote {} and {} (keep it secret, mode 0600).\nThe key above, named `default`, is shown only once. Next: `noviqi serve --config {}`",
        path.display(),
        key_path.display(),
        path.display()
    );
    Ok(())
}

fn master_key_path_from_template(path: &Path) -> PathBuf {
    config::load::config_dir(path).join(config::load::DEFAULT_MASTER_KEY_FILE)
}

fn serve(path: &Path) -> CliResult {
    crate::logging::init();
    Ok(crate::gateway::run(path)?)
}

fn check(path: &Path) -> CliResult {
    let config = config::load(path, Secrets::Decrypt).map_err(|e| e.to_string())?;
    eprintln!(
        "{}: OK ({} providers, {} models, {} keys; every secret decrypted)",
        path.display(),
        config.providers.len(),
        config.models.len(),
        config.keys.len()
    );
    let server = &config.server;
    eprintln!(
        "limits: max_body_bytes = {} ({}), max_buffered_bytes = {} ({}), max_connections = {}, \
         max_connections_per_ip = {}",
        server.max_body_bytes,
        mib(server.max_body_bytes),
        server.max_buffered_bytes,
        mib(server.max_buffered_bytes),
        server.max_connections,
        server
            .max_connections_per_ip
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
    );
    Ok(())
}

/// `n` bytes in MiB, for people.
fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

fn keys_add(path: &Path, name: &str, args: &Args) -> CliResult {
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err("a key name must be non-empty text without control characters".into());
    }
    if let Some(t) = &args.expires
        && config::load::parse_time(t).is_none()
    {
        return Err(
            format!("--expires `{t}` is not an RFC 3339 time like 2027-06-01T00:00:00Z").into(),
        );
    }
    let (key, hash) = apikey::generate();
    let new_key = NewKey {
        name: name.to_owned(),
        hash,
        prefix: apikey::prefix(&key),
        models: args.models.clone(),
        requests_per_minute: args.rpm,
        tokens_per_minute: args.tpm,
        expires_at: args.expires.clone(),
        budget_usd: args.budget,
        budget_period: args.period.clone(),
    };
    update_config(path, |text| edit::add_key(text, &new_key))?;
    out(&key)?;
    eprintln!(
        "Added key `{name}` to {}. It is shown only once; store it now.",
        path.display()
    );
    Ok(())
}

/// `noviqi prices`: every price in force, in matching order, one per line: where it comes
/// from, the glob, and USD per million tokens (input, output, cache read, cache write,
/// 1-hour cache write; then a tier's, if any). Unknown models cost `null`; `mock` is free.
fn prices(path: &Path) -> CliResult {
    let config = config::load(path, Secrets::Skip).map_err(|e| e.to_string())?;
    out(
        "# source    match    input output cache_read cache_write cache_write_1h  (USD per million tokens)",
    )?;
    for rule in &config.prices {
        out(&format!(
            "config  {}  {}",
            rule.pattern,
            rates_text(&rule.price)
        ))?;
    }
    for entry in cost::builtin::entries() {
        out(&format!(
            "built-in  {}  {}  # {} {} {}",
            entry.pattern,
            rates_text(&entry.price),
            entry.provider,
            entry.taken,
            entry.source
        ))?;
    }
    eprintln!(
        "[[prices]] entries (matched against provider/upstream_model) come first; then a cost \
         the upstream reports itself (OpenRouter); then the built-in list prices."
    );
    Ok(())
}

fn rates_text(price: &cost::Price) -> String {
    // Picos per token are USD per million tokens × 10⁶.
    let per_m = |picos: u64| Usd::from_picos(picos.saturating_mul(1_000_000)).to_string();
    let rates = |r: &cost::price::Rates| {
        format!(
            "{} {} {} {} {}",
            per_m(r.input),
            per_m(r.output),
            per_m(r.cache_read),
            per_m(r.cache_write),
            per_m(r.cache_write_1h)
        )
    };
    match &price.tier {
        Some(tier) => format!(
            "{}  above {} input tokens: {}",
            rates(&price.base),
            tier.above_input_tokens,
            rates(&tier.rates)
        ),
        None => rates(&price.base),
    }
}

fn keys_list(path: &Path) -> CliResult {
    let config = config::load(path, Secrets::Skip).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now();
    let width = config
        .keys
        .iter()
        .map(|k| k.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines = String::new();
    for key in &config.keys {
        let state = if key.disabled {
            "disabled"
        } else if key.is_expired(now) {
            "expired"
        } else {
            "active"
        };
        let prefix = if key.prefix.is_empty() {
            "-"
        } else {
            key.prefix.as_str()
        };
        lines.push_str(&format!("{:<width$}  {:<12}  {state}\n", key.name, prefix));
    }
    if lines.is_empty() {
        eprintln!("No keys; add one with `noviqi keys add NAME`.");
        return Ok(());
    }
    out(lines.trim_end_matches('\n'))
}

fn keys_revoke(path: &Path, name: &str) -> CliResult {
    update_config(path, |text| edit::revoke_key(text, name))?;
    eprintln!(
        "Key `{name}` is disabled; a running `noviqi serve` picks this up when it reloads the file."
    );
    Ok(())
}

fn secret_encrypt(path: &Path) -> CliResult {
    let master = MasterKey::load(&master_key_path(path)).map_err(|e| e.to_string())?;
    let plain = read_secret("Secret to encrypt")?;
    out(&secret::encrypt(&master, plain.as_bytes()))?;
    eprintln!("Put the line above in a provider's api_key, or use `noviqi secret set PROVIDER`.");
    Ok(())
}

fn secret_set(path: &Path, provider: &str) -> CliResult {
    let text = read_config(path)?;
    let master = MasterKey::load(&master_key_path(path)).map_err(|e| e.to_string())?;
    // Check the edit is possible before asking for the secret.
    edit::set_provider_api_key(&text, provider, "")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let plain = read_secret(&format!("API key for provider `{provider}`"))?;
    let enc = secret::encrypt(&master, plain.as_bytes());
    // Applied to the file as it is once locked, not to the text read before the prompt.
    update_config(path, |text| {
        edit::set_provider_api_key(text, provider, &enc)
    })?;
    eprintln!(
        "Stored the encrypted key for provider `{provider}` in {}.",
        path.display()
    );
    Ok(())
}

fn secret_rotate(path: &Path) -> CliResult {
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        return Err(format!(
            "{MASTER_KEY_ENV} is set; `secret rotate` rotates the key file. Unset it, rotate, then put the new key file's contents where you keep {MASTER_KEY_ENV}"
        ).into());
    }
    read_config(path)?;
    // Held across the rotation: no other writer may change the config between its re-read
    // and its replacement.
    let lock = edit::ConfigLock::acquire(path).map_err(|e| {
        format!(
            "{}: cannot lock the config for writing: {e}",
            path.display()
        )
    })?;
    let text = Zeroizing::new(read_config(lock.path())?);
    match rotate::rotate(path, &text).map_err(|e| e.to_string())? {
        Rotation::FinishedInterrupted { key_path } => eprintln!(
            "Finished an interrupted rotation: {} now holds the key {} is encrypted with. Run `noviqi secret rotate` again to rotate once more.",
            key_path.display(),
            path.display()
        ),
        Rotation::Rotated {
            count,
            key_path,
            old_path,
            removed_stale,
        } => {
            if let Some(stale) = removed_stale {
                eprintln!(
                    "Removed {} left by an interrupted rotation (the config did not use it).",
                    stale.display()
                );
            }
            eprintln!(
                "Rotated the master key: {count} secret(s) re-encrypted; new key in {}, old key kept in {}.",
                key_path.display(),
                old_path.display()
            );
        }
    }
    Ok(())
}

fn admin_passwd(path: &Path) -> CliResult {
    read_config(path)?;
    let password = read_secret("New admin password")?;
    let phc = crate::crypto::password::hash(&password).map_err(|e| e.to_string())?;
    update_config(path, |text| edit::set_admin_password_hash(text, &phc))?;
    eprintln!("Admin password set; the dashboard is at /admin once `noviqi serve` reloads.");
    Ok(())
}
