//! Starts the real `noviqi serve` binary on 127.0.0.1:0 with a temp config, and talks to it.
//!
//! Each `TestEnv` owns a temp dir (config, master key file, usage log), a fresh gateway key,
//! and the child process; dropping it stops the process (SIGTERM, then kill) and removes the
//! files. Stderr is collected so tests can assert that no secret ever reaches it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::eventually;
use noviqi::crypto::apikey;
use noviqi::crypto::secret::{MasterKey, encrypt};

pub const BIN: &str = env!("CARGO_BIN_EXE_noviqi");

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub master: MasterKey,
    /// The gateway key of the key named `test`.
    pub key: String,
    pub key_hash: String,
    pub child: Option<Child>,
    pub addr: Option<SocketAddr>,
    /// `RUST_LOG` for `serve` (default `info`).
    pub rust_log: &'static str,
    stderr: Arc<Mutex<String>>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let key_file = dir.path().join("noviqi.key");
        std::fs::write(&key_file, format!("{}\n", &*master.to_base64())).unwrap();
        set_mode(&key_file, 0o600);
        let (key, hash) = apikey::generate();
        TestEnv {
            dir,
            master,
            key: key.to_string(),
            key_hash: hash.to_string(),
            child: None,
            addr: None,
            rust_log: "info",
            stderr: Arc::new(Mutex::new(String::new())),
        }
    }

    pub fn encrypt(&self, secret: &str) -> String {
        encrypt(&self.master, secret.as_bytes())
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("noviqi.toml")
    }

    pub fn usage_path(&self) -> PathBuf {
        self.dir.path().join("usage.jsonl")
    }

    /// The standard head of a test config (server on port 0, usage log on, the `test` key
    /// allowed every model) followed by `rest` (providers, models, more keys).
    pub fn config_text(&self, server_extra: &str, rest: &str) -> String {
        self.config_text_full(server_extra, "", "", rest)
    }

    /// [`TestEnv::config_text`] with extra lines in `[security]` and `[usage]` too.
    pub fn config_text_full(
        &self,
        server_extra: &str,
        security_extra: &str,
        usage_extra: &str,
        rest: &str,
    ) -> String {
        format!(
            r#"[server]
listen = "127.0.0.1:0"
header_timeout_secs = 5
{server_extra}

[security]
master_key_file = "noviqi.key"
{security_extra}

[usage]
path = "usage.jsonl"
{usage_extra}

{rest}

[[keys]]
name = "test"
hash = "{hash}"
prefix = "{prefix}"
"#,
            hash = self.key_hash,
            prefix = &self.key[..12],
        )
    }

    /// [`TestEnv::start`] with extra lines in `[security]` and `[usage]`.
    pub fn start_full(
        &mut self,
        server_extra: &str,
        security_extra: &str,
        usage_extra: &str,
        rest: &str,
    ) -> SocketAddr {
        let text = self.config_text_full(server_extra, security_extra, usage_extra, rest);
        self.write_config(&text);
        self.spawn()
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Writes the config and starts `noviqi serve`, waiting until it listens.
    pub fn start(&mut self, server_extra: &str, rest: &str) -> SocketAddr {
        let text = self.config_text(server_extra, rest);
        self.write_config(&text);
        self.spawn()
    }

    pub fn spawn(&mut self) -> SocketAddr {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.config_path())
            .env("RUST_LOG", self.rust_log)
            .env_remove("NOVIQI_MASTER_KEY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let sink = self.stderr.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                let listening = line
                    .split("listening on http://")
                    .nth(1)
                    .or_else(|| line.split("listening on https://").nth(1));
                if let Some(rest) = listening {
                    let _ = tx.send(rest.trim().to_owned());
                }
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("gateway did not start; stderr:\n{}", self.stderr());
            }
        };
        self.child = Some(child);
        self.addr = Some(addr);
        addr
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("started")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Usage log lines as JSON.
    pub fn usage(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.usage_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Usage log lines of the rotated files (oldest first) and the active one.
    pub fn usage_all(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = (1..)
            .map(|n| self.dir.path().join(format!("usage.jsonl.{n}")))
            .take_while(|p| p.exists())
            .collect();
        files.reverse();
        files.push(self.usage_path());
        files
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn usage_for(&self, request_id: &str) -> serde_json::Value {
        self.usage_all()
            .into_iter()
            .find(|v| v["request_id"] == request_id)
            .unwrap_or_else(|| panic!("no usage line for {request_id}"))
    }

    /// Runs a `noviqi` CLI command against this config.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let mut status = None;
        let exited = eventually(Duration::from_secs(10), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// An agent that does not follow redirects (to see a login's 303 and its cookie).
    pub fn agent_no_redirects(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .proxy(None)
            .build()
            .new_agent()
    }

    /// POSTs an urlencoded form without following redirects.
    pub fn post_form(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent_no_redirects().post(self.url(path));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = req
            .header("content-type", "application/x-www-form-urlencoded")
            .send(body)
            .unwrap();
        Reply::from(resp)
    }

    /// Logs in to `/admin` with `password`; the session cookie (`name=value`) on success.
    pub fn admin_login(&self, password: &str) -> Option<String> {
        let reply = self.post_form(
            "/admin/login",
            &format!("password={}", form_encode(password)),
            &[("sec-fetch-site", "same-origin")],
        );
        if reply.status != 303 {
            return None;
        }
        let cookie = reply.header("set-cookie")?;
        Some(cookie.split(';').next()?.to_owned())
    }

    pub fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .proxy(None)
            .build()
            .new_agent()
    }

    /// POSTs JSON with the test key; returns (status, headers, body).
    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.post_with(
            path,
            body,
            &[("authorization", &format!("Bearer {}", self.key))],
        )
    }

    pub fn post_with(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent().post(self.url(path));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = req
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        Reply::from(resp)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent().get(self.url(path));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        Reply::from(req.call().unwrap())
    }

    /// `/healthz` answers 200.
    pub fn assert_healthy(&self) {
        assert_eq!(self.get("/healthz", &[]).status, 200);
    }

    /// Nothing secret in stderr or the usage log.
    pub fn assert_no_leaks(&self, secrets: &[&str]) {
        let stderr = self.stderr();
        let usage = std::fs::read_to_string(self.usage_path()).unwrap_or_default();
        for secret in secrets.iter().chain([&self.key.as_str()]) {
            assert!(
                !stderr.contains(secret),
                "secret {secret:?} in stderr:\n{stderr}"
            );
            assert!(!usage.contains(secret), "secret {secret:?} in usage log");
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn request_id(&self) -> &str {
        self.header("x-request-id").expect("x-request-id")
    }
}

impl From<ureq::http::Response<ureq::Body>> for Reply {
    fn from(resp: ureq::http::Response<ureq::Body>) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let mut body = String::new();
        resp.into_body()
            .into_reader()
            .read_to_string(&mut body)
            .unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A raw streaming client: sends `request` and yields body bytes with their arrival times.
pub struct RawStream {
    pub stream: TcpStream,
}

impl RawStream {
    pub fn open(addr: SocketAddr, request: &str) -> RawStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        RawStream { stream }
    }

    /// Reads until `needle` has been seen `count` times in total, recording when each
    /// occurrence arrived.
    pub fn arrivals(&mut self, needle: &str, count: usize) -> (Vec<Instant>, String) {
        let mut text = String::new();
        let mut times = Vec::new();
        let mut buf = [0u8; 8192];
        while times.len() < count {
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed early; got:\n{text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let seen = text.matches(needle).count();
            while times.len() < seen {
                times.push(Instant::now());
            }
        }
        (times, text)
    }
}

/// A POST request as raw HTTP/1.1 text.
pub fn raw_post(path: &str, key: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An `[admin]` table whose password is `password` (hashed here with Argon2id).
pub fn admin_table(password: &str, session_ttl_secs: u64) -> String {
    let hash = noviqi::crypto::password::hash(password).unwrap();
    format!("[admin]\npassword_hash = \"{hash}\"\nsession_ttl_secs = {session_ttl_secs}\n\n")
}

/// The built-in mock provider and a model `mock` routed to it.
pub const MOCK_PROVIDER: &str = "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n\
                                 [[models]]\nname = \"mock\"\ntargets = [\"mock/echo\"]\n\n";

/// `application/x-www-form-urlencoded` form of `s`.
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
