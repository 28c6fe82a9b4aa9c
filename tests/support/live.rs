//! Running `gatewatch run` as a real process for the live-ingestion tests:
//! free ports, reading incidents off its stdout, signals.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 for both TCP and UDP (syslog listens on both).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running `gatewatch run`, collecting the incident JSON lines it prints.
pub struct Running {
    child: Child,
    incidents: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    /// Starts `gatewatch run` in `dir` with `env` (and `args`), and waits
    /// until it logs that it is running.
    pub fn start(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
        cmd.current_dir(dir)
            .arg("run")
            .args(args)
            .env_remove("GATEWATCH_DATABASE_URL")
            .env("GATEWATCH_LOG", "info,gatewatch_alerting=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start gatewatch run");
        let incidents = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = incidents.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let err = child.stderr.take().expect("stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let running = Running {
            child,
            incidents,
            stderr,
        };
        running.wait_for_log("gatewatch is running", Duration::from_secs(60));
        running
    }

    /// Waits until stderr contains `needle`; panics with the log otherwise.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gatewatch never logged {needle:?}:\n{}", self.log());
    }

    /// Every incident line printed so far.
    pub fn incidents(&self) -> Vec<Value> {
        self.incidents.lock().unwrap().clone()
    }

    /// Waits until some printed incident satisfies `pred`.
    pub fn wait_for_incident(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(v) = self.incidents().into_iter().find(|v| pred(v)) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no incident {what} within {timeout:?}; printed: {:#?}\nlog:\n{}",
            self.incidents(),
            self.log()
        );
    }

    /// The stderr log so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then waits for the exit; returns whether it exited cleanly.
    pub fn terminate(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.success(), self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return (
                    false,
                    format!("did not exit within 60 s after SIGTERM\n{}", self.log()),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the process gets no chance to flush or commit anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `cond` holds, polling; panics with `what` otherwise.
pub fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
