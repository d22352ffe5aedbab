//! A real `twotower serve` on a loopback port against hostile and careless clients:
//! amplifying and oversized requests, idle and slow sockets, a connection limit, SIGTERM
//! with a half-sent request, a model that cannot load and a damaged index. Every request
//! loop here is bounded in count and time and talks only to 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{scratch, tiny_model, twotower, Server};

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// True once the server has closed `s` (a read gives end of file or a reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an error answer before the close
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                )
            }
        }
    }
}

#[test]
fn hostile_clients_cannot_stall_the_server() {
    let tmp = scratch("abuse");
    let model = tiny_model(&tmp);
    let server = Server::start_with(&model, &["--header-timeout", "1"]);
    let addr = server.addr().to_string();
    // 300 idle sockets and 50 clients that stop in the middle of their headers.
    let mut idle: Vec<TcpStream> = (0..300).map(|_| connect(&addr)).collect();
    for _ in 0..50 {
        let mut s = connect(&addr);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        idle.push(s);
    }
    // Five over-budget requests at once, each refused before any work.
    let users: Vec<String> = (0..1000).map(|u| u.to_string()).collect();
    let huge = serde_json::json!({ "users": users, "k": 1000 }).to_string();
    let over: Vec<_> = (0..5)
        .map(|_| {
            let (base, body) = (server.base.clone(), huge.clone());
            std::thread::spawn(move || {
                let req = ureq::post(&format!("{base}/v1/recommend"))
                    .set("content-type", "application/json");
                match req.send_string(&body) {
                    Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
                    other => panic!("expected a 4xx, got {other:?}"),
                }
            })
        })
        .collect();
    // /healthz throughout.
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) && lat.len() < 200 {
        let t = Instant::now();
        let (code, _) = server.get_text("/healthz");
        lat.push(t.elapsed());
        assert_eq!(code, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in over {
        let (code, body) = h.join().unwrap();
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("over the limit of 20000 results"), "{body}");
    }
    lat.sort();
    let median = lat[lat.len() / 2];
    eprintln!(
        "/healthz with 350 idle or slow sockets: {} answers, median {:?}, max {:?}",
        lat.len(),
        median,
        lat[lat.len() - 1]
    );
    // A generous bound on the middle answer, not on the slowest: the host is shared.
    assert!(median < Duration::from_millis(100), "median {median:?}");
    // Past the header timeout every idle or slow socket has been closed by the server.
    for s in &mut idle {
        assert!(closed_by_server(s), "a socket was left open");
    }
    // Requests that fit the budget are answered; names over the cap are refused cheaply.
    let fit = serde_json::json!({ "users": &users, "k": 20 }).to_string();
    let (code, v) = server.post("/v1/recommend", &fit);
    assert_eq!(code, 200);
    assert_eq!(v["results"].as_array().unwrap().len(), 1000);
    let (code, v) = server.get(&format!("/v1/similar?item={}", "x".repeat(60_000)));
    assert_eq!(code, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("over the limit of 256"),
        "{v}"
    );
    let (code, v) = server.get("/v1/similar?item=Item%2099");
    assert_eq!(code, 404);
    assert!(v["suggestions"].is_array(), "{v}");
    let (status, err) = server.stop();
    assert!(status.success(), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn connections_past_the_limit_get_503_and_the_server_recovers() {
    let tmp = scratch("abuse-limit");
    let model = tiny_model(&tmp);
    let server = Server::start_with(
        &model,
        // A long header timeout: the held sockets must stay open however slow the host.
        &["--max-connections", "20", "--header-timeout", "60"],
    );
    let addr = server.addr().to_string();
    let held: Vec<TcpStream> = (0..20).map(|_| connect(&addr)).collect();
    // The server counts a connection once it has accepted it; on a busy host that can take
    // a while, so ask again until all 20 are counted (a 200 until then), well within the
    // header timeout that would close the held sockets.
    let start = Instant::now();
    let answer = loop {
        let mut extra = connect(&addr);
        extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok();
        let mut answer = String::new();
        let _ = extra.read_to_string(&mut answer);
        if !answer.starts_with("HTTP/1.1 200") || start.elapsed() > Duration::from_secs(30) {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Should it fail: were held sockets closed by the server (a bug), or never counted?
    let closed = held
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).ok();
            let gone = matches!(s.peek(&mut [0u8; 1]), Ok(0));
            s.set_nonblocking(false).ok();
            gone
        })
        .count();
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "after {:?}, {closed} of the 20 held sockets closed by the server: {answer:?}",
        start.elapsed()
    );
    assert!(answer.contains("too many open connections"), "{answer:?}");
    // Once the held sockets close, their slots are free and the server answers again.
    drop(held);
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = std::panic::catch_unwind(|| server.get_text("/healthz")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn sigterm_with_a_half_sent_request_ends_within_the_grace() {
    let tmp = scratch("abuse-term");
    let model = tiny_model(&tmp);
    let mut server = Server::start_with(&model, &["--shutdown-grace", "1"]);
    let mut half = connect(server.addr());
    half.write_all(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"us")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    // Bounded wait: the process must be gone well before this.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_model_that_cannot_load_ends_serve_and_a_damaged_index_falls_back() {
    let tmp = scratch("abuse-load");
    let model = tiny_model(&tmp);
    let m = model.to_str().unwrap();
    // A damaged approximate index: served exactly, with a warning.
    let out = twotower(&["index", "build", "--model", m]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes = model.join("index/codes.u8");
    let mut b = std::fs::read(&codes).unwrap();
    b[0] ^= 0xFF;
    std::fs::write(&codes, b).unwrap();
    let server = Server::start(&model);
    let (code, v) = server.get("/v1/recommend?user=3&k=5");
    assert_eq!(code, 200);
    assert_eq!(v["items"].as_array().unwrap().len(), 5);
    let (code, _) = server.get("/v1/recommend?user=3&k=5&approximate=true");
    assert_eq!(code, 400);
    let (_, err) = server.stop();
    assert!(err.contains("warning") && err.contains("codes.u8"), "{err}");
    // A model.json whose sizes were edited: serve stops with the reason, exit code 1.
    let card = model.join("model.json");
    let text = std::fs::read_to_string(&card).unwrap();
    std::fs::write(
        &card,
        text.replace("\"embedding_dim\": 16,", "\"embedding_dim\": 17,"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_twotower"))
        .args(["serve", "--model", m, "--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("serve kept running with a model it cannot load");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("embedding_dim is 17"), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
