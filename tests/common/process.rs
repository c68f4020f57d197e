//! The server binary as a child process, for what only a process shows:
//! several servers on one database, and stopping on a signal.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ServerProcess {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// `ticket-reservation serve` on a free port with these settings.
    pub fn start(database_url: &str, settings: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ticket-reservation"));
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            // Driven from one address: the per-address limits are off.
            .env("RATE_LIMIT_PER_MINUTE", "0")
            .env("ENTRY_LIMIT_PER_MINUTE", "0")
            .env("SEED_DEMO", "false")
            .env("TOKEN_SECRET", "test-processes-share-this-token-secret")
            .env("RUST_LOG", "info,ticket_reservation::jobs=debug")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        for (name, value) in settings {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start the server binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("GraphiQL at http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = port_tx.send(port.parse::<u16>().unwrap());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens");
        Self { child, port, log }
    }

    pub fn log_lines_containing(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    /// POSTs a GraphQL request to this server; the answer.
    pub async fn gql(&self, query: &str, variables: serde_json::Value) -> serde_json::Value {
        self.gql_as(query, variables, None).await
    }

    /// POSTs a GraphQL request with this bearer token, if any; the answer.
    pub async fn gql_as(
        &self,
        query: &str,
        variables: serde_json::Value,
        token: Option<&str>,
    ) -> serde_json::Value {
        let mut request = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/graphql", self.port))
            .json(&serde_json::json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// Registers a user and puts them in line; the `issueToken` answer.
    pub async fn newcomer(&self, name: &str) -> serde_json::Value {
        let registered = self
            .gql(
                "mutation($n: String!) { registerUser(name: $n) { id } }",
                serde_json::json!({"n": name}),
            )
            .await;
        let id = registered["data"]["registerUser"]["id"].clone();
        self.gql(
            "mutation($id: UUID!) { issueToken(userId: $id) { token status position } }",
            serde_json::json!({"id": id}),
        )
        .await
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status();
        assert!(
            sent.is_ok_and(|status| status.success()),
            "kill -{name} {pid}"
        );
    }

    /// Sends SIGTERM and waits for the process to end.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().ok()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
