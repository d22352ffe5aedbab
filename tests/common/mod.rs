//! Helpers shared by the end-to-end tests: the data folder, scratch folders, running the
//! binary, and a real server on an ephemeral loopback port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The folder holding `ml-100k/`: `TWOTOWER_DATA_DIR`, else `../shared/data`.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("TWOTOWER_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    assert!(
        dir.join("ml-100k/u.data").is_file(),
        "MovieLens 100K not found in {}: set TWOTOWER_DATA_DIR to a folder holding ml-100k/",
        dir.display()
    );
    dir
}

/// A fresh, empty temporary folder.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tt-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary (without TWOTOWER_DATA_DIR, so flags are what count).
pub fn twotower(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twotower"))
        .args(args)
        .env_remove("TWOTOWER_DATA_DIR")
        .output()
        .expect("the binary runs")
}

/// Runs the binary and expects success.
pub fn run_ok(args: &[&str]) -> Output {
    let out = twotower(args);
    assert!(
        out.status.success(),
        "twotower {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the binary, expects failure with every one of `needles` on stderr, and no panic.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = twotower(args);
    assert!(!out.status.success(), "twotower {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "stderr of {args:?} lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs the binary, expects success and one JSON object on stdout.
pub fn ok_json(args: &[&str]) -> Value {
    let out = run_ok(args);
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Training arguments of a quick run: the tfrs preset, one epoch, fold u1.
pub const QUICK_TFRS: [&str; 6] = ["--preset", "tfrs", "--epochs", "1", "--split", "u1"];

/// Trains a quick tfrs-preset model on u1 (one epoch) into `dir`.
pub fn quick_model(dir: &Path) {
    let data = data_dir();
    let mut args = vec!["train"];
    args.extend_from_slice(&QUICK_TFRS);
    args.extend_from_slice(&["--data-dir", data.to_str().unwrap()]);
    args.extend_from_slice(&["--out", dir.to_str().unwrap(), "--json"]);
    ok_json(&args);
}

/// A small interaction log (40 users, 30 items) and its catalogue, written into `dir`.
pub fn tiny_log(dir: &Path) -> (PathBuf, PathBuf) {
    let mut log = String::from("user_id,item_id,timestamp\n");
    for u in 0..40u32 {
        for j in 0..8u32 {
            log.push_str(&format!("{u},{},{}\n", (u * 7 + j * 3) % 30, u * 100 + j));
        }
    }
    let mut items = String::from("item_id,title,genres\n");
    for i in 0..30 {
        items.push_str(&format!("{i},Item {i},G{}\n", i % 4));
    }
    let (l, i) = (dir.join("log.csv"), dir.join("items.csv"));
    std::fs::write(&l, log).unwrap();
    std::fs::write(&i, items).unwrap();
    (l, i)
}

/// Arguments that train on the tiny log in well under a second (the default preset's
/// towers, or those a test adds with `--towers`).
pub fn tiny_train(log: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--interactions",
        log.to_str().unwrap(),
        "--split",
        "random",
        "--epochs",
        "2",
        "--show-user",
        "",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// [`tiny_train`] of id towers of dimension 16 (model folder format 1).
pub fn tiny_ids(log: &Path, out: &Path) -> Vec<String> {
    let mut args = tiny_train(log, out);
    args.extend(["--preset", "ids", "--dim", "16"].map(String::from));
    args
}

/// Trains id towers on the tiny log into `dir/m` and returns that folder.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let (log, _) = tiny_log(dir);
    let m = dir.join("m");
    let args = tiny_ids(&log, &m);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&refs);
    m
}

/// A running `twotower serve`, stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts the server on an ephemeral port and waits until `/healthz` says ready.
    pub fn start(model: &Path) -> Server {
        Self::start_with(model, &[])
    }

    /// [`Server::start`] with more `serve` flags.
    pub fn start_with(model: &Path, flags: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_twotower"))
            .args([
                "serve",
                "--model",
                model.to_str().unwrap(),
                "--addr",
                "127.0.0.1:0",
            ])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let server = Server { child, base };
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = server.try_get("/healthz") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "server never became ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Sends a request; 4xx/5xx answers are answers, not errors.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let req = ureq::request(method, &format!("{}{path}", self.base))
            .set("content-type", "application/json");
        let r = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        match r {
            Ok(r) => Ok((r.status(), r.into_string().map_err(|e| e.to_string())?)),
            Err(ureq::Error::Status(code, r)) => {
                Ok((code, r.into_string().map_err(|e| e.to_string())?))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn try_get(&self, path: &str) -> Result<(u16, String), String> {
        self.call("GET", path, None)
    }

    /// GET: status and body text.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        self.try_get(path).expect("the server answers")
    }

    /// GET: status and JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let (code, text) = self.get_text(path);
        (code, parse(path, &text))
    }

    /// POST a raw body: status and JSON body.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (code, text) = self
            .call("POST", path, Some(body))
            .expect("the server answers");
        (code, parse(path, &text))
    }

    /// POST that declares a `length`-byte body and sends none of it: the answer must come
    /// from the declared length alone (sending the body would race the server's close).
    pub fn post_declaring(&self, path: &str, length: usize) -> (u16, Value) {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let code = answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        (code, parse(path, body))
    }

    /// The `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Sends SIGTERM and returns the exit status and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        terminate(&self.child);
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        (status, err)
    }
}

fn parse(path: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&self.child);
            let _ = self.child.wait();
        }
    }
}

/// The ids of a JSON answer's `items`, in order.
pub fn item_ids(v: &serde_json::Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].to_string())
        .collect()
}

/// Trains a feature model (user id and history; item id and genres) on the tiny log into
/// `dir/m` and returns that folder.
pub fn tiny_feature_model(dir: &Path) -> PathBuf {
    let (log, items) = tiny_log(dir);
    let spec = dir.join("towers.toml");
    std::fs::write(
        &spec,
        "[query]\nfeatures = [\n  { kind = \"id\", column = \"user_id\", dim = 8 },\n  \
         { kind = \"history\", last = 5, dim = 8 },\n]\n[candidate]\nfeatures = [\n  \
         { kind = \"id\", column = \"item_id\", dim = 8 },\n  \
         { kind = \"multi\", column = \"genres\", dim = 8 },\n]\n",
    )
    .unwrap();
    let model = dir.join("m");
    let mut args = tiny_train(&log, &model);
    let extra = [
        "--items",
        items.to_str().unwrap(),
        "--towers",
        spec.to_str().unwrap(),
    ];
    args.extend(extra.map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&refs);
    model
}

/// Trains the tiny log into `dir/m` with the tower spec `spec` (written to
/// `dir/towers.toml`) and `extra` flags; the model's folder.
pub fn train_tiny_towers(dir: &Path, spec: &str, extra: &[&str]) -> PathBuf {
    let (log, _) = tiny_log(dir);
    let path = dir.join("towers.toml");
    std::fs::write(&path, spec).unwrap();
    let model = dir.join("m");
    let mut args = tiny_train(&log, &model);
    args.extend(["--towers", path.to_str().unwrap()].map(String::from));
    args.extend(extra.iter().map(|a| a.to_string()));
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    model
}

/// A feature model of the tiny log whose query tower reads the history and a numeric `age`
/// from `--user-features` (ages 20 to 49), in `dir/m`.
pub fn tiny_age_model(dir: &Path) -> PathBuf {
    let users = dir.join("user_features.csv");
    let mut text = String::from("user_id,age\n");
    for u in 0..40 {
        text.push_str(&format!("{u},{}\n", 20 + u % 30));
    }
    std::fs::write(&users, text).unwrap();
    train_tiny_towers(
        dir,
        "[user_columns]\nage = \"number\"\n[query]\nfeatures = [\n  \
         { kind = \"history\", last = 5, dim = 7 },\n  \
         { kind = \"numeric\", column = \"age\" },\n]\n[candidate]\nfeatures = [\n  \
         { kind = \"id\", column = \"item_id\", dim = 8 },\n]\n",
        &["--user-features", users.to_str().unwrap()],
    )
}
