//! `RedisProcess`: a real `redis-server` child on a free 127.0.0.1 port, for one test.
//!
//! It runs with `--save "" --appendonly no` (or, durable, with an append-only file fsync'd on
//! every write), its directory and log in a temporary directory, and is killed and reaped on
//! drop. Readiness is awaited by polling `PING`.

// Each test crate uses a different part of the shared support code.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a starting server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` owned by one test.
#[derive(Debug)]
pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    /// Whether it keeps an append-only file (fsync'd on every write) in `dir`.
    durable: bool,
}

impl RedisProcess {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a server that keeps its data across [`kill`](Self::kill) and
    /// [`restart`](Self::restart): an append-only file, fsync'd on every write, as a
    /// production Redis would keep.
    pub fn start_durable() -> Self {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Self {
        // Another process may take the port between our probe and the server's bind: retry.
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = TempDir::new().expect("create a temp dir for redis");
            let port = free_port();
            match Self::spawn(dir, port, durable) {
                Ok(redis) => return redis,
                Err(err) => last_error = err,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Starts a server on `port` (e.g. one that another test process handed out).
    pub fn start_on(port: u16) -> Self {
        let dir = TempDir::new().expect("create a temp dir for redis");
        Self::spawn(dir, port, false).unwrap_or_else(|err| panic!("{err}"))
    }

    /// A free port on 127.0.0.1 with no server on it yet (for tests that start one later).
    pub fn free_port() -> u16 {
        free_port()
    }

    fn spawn(dir: TempDir, port: u16, durable: bool) -> Result<Self, String> {
        let mut redis = Self {
            child: None,
            port,
            dir,
            durable,
        };
        redis.launch()?;
        Ok(redis)
    }

    fn launch(&mut self) -> Result<(), String> {
        let log = self.log_path();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run redis-server ({err}); install it with the project's test script \
                     (scripts/test.sh) or `apt-get install redis-server`"
                )
            });
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited with {status}; log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and reaps it; its data is lost unless it is durable.
    pub fn kill(&mut self) {
        super::kill_and_reap(&mut self.child);
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        super::send_signal(
            self.child.as_ref().expect("redis-server is running"),
            signal,
        );
    }

    /// Starts the server again on the same port: empty, unless started with
    /// [`start_durable`](Self::start_durable).
    pub fn restart(&mut self) {
        self.kill();
        self.launch().unwrap_or_else(|err| panic!("{err}"));
    }

    /// Runs one command and returns its raw RESP reply (for checks and fault injection).
    pub fn command(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut stream = connect(self.port).expect("connect to the test redis");
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).expect("send to the test redis");
        read_reply(&mut stream)
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|err| format!("(no log: {err})"))
    }
}

/// Runs one command on the server at `port` and returns its raw RESP reply (for test
/// support code driving nodes it started itself).
pub fn command_on(port: u16, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    let mut stream = connect(port)?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request)?;
    let mut reply = Vec::new();
    let mut buf = [0; 4096];
    while complete(&reply).is_none() {
        let read = stream.read(&mut buf)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        reply.extend_from_slice(&buf[..read]);
    }
    Ok(reply)
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free port on 127.0.0.1")
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = connect(port) else {
        return false;
    };
    let mut reply = [0; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// Reads one complete RESP2 reply.
fn read_reply(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    let mut buf = [0; 4096];
    loop {
        if complete(&reply).is_some() {
            return reply;
        }
        let read = stream.read(&mut buf).expect("read from the test redis");
        assert!(read > 0, "the test redis closed the connection");
        reply.extend_from_slice(&buf[..read]);
    }
}

/// The length of the first complete RESP2 value in `data`, if complete.
fn complete(data: &[u8]) -> Option<usize> {
    let line_end = data.windows(2).position(|pair| pair == b"\r\n")?;
    let header = std::str::from_utf8(&data[1..line_end]).ok()?;
    let after = line_end + 2;
    match data.first()? {
        b'+' | b'-' | b':' => Some(after),
        b'$' => {
            let len: i64 = header.parse().ok()?;
            if len < 0 {
                return Some(after);
            }
            let end = after + usize::try_from(len).ok()? + 2;
            (data.len() >= end).then_some(end)
        }
        b'*' => {
            let count: i64 = header.parse().ok()?;
            let mut at = after;
            for _ in 0..count.max(0) {
                at += complete(&data[at..])?;
            }
            Some(at)
        }
        _ => Some(data.len()),
    }
}
