//! The one typed configuration, read once at start from flags and the
//! environment. Nothing else in the crate reads environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args};

/// Settings shared by every subcommand. Each flag falls back to the
/// environment variable of the contract's settings table.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// MySQL 8 or MariaDB 10.6+ URL; the database is created when missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "mysql://root@127.0.0.1:3306/ticket_reservation",
        value_parser = parse_database_url,
        global = true
    )]
    pub database_url: DatabaseUrl,

    /// Connections the server keeps open to the database.
    #[arg(
        long,
        env = "DATABASE_POOL_SIZE",
        value_name = "DATABASE_POOL_SIZE",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..=1000),
        global = true
    )]
    pub database_pool_size: u32,

    /// Where to serve; port 0 picks a free one and the log says which.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        value_name = "LISTEN_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen_addr: SocketAddr,

    /// How many queue tokens may be ACTIVE at once.
    #[arg(
        long,
        env = "MAX_ACTIVE_TOKENS",
        value_name = "MAX_ACTIVE_TOKENS",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        global = true
    )]
    pub max_active_tokens: u32,

    /// An ACTIVE token lapses this many seconds after its admission.
    #[arg(
        long,
        env = "ACTIVE_TOKEN_SECONDS",
        value_name = "ACTIVE_TOKEN_SECONDS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u32).range(1..=86_400),
        global = true
    )]
    pub active_token_seconds: u32,

    /// How long a held seat stays held unpaid, in seconds.
    #[arg(
        long,
        env = "HOLD_SECONDS",
        value_name = "HOLD_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u32).range(1..=86_400),
        global = true
    )]
    pub hold_seconds: u32,

    /// The longest a free slot waits before the next in line is admitted.
    #[arg(
        long,
        env = "ADMIT_INTERVAL_MS",
        value_name = "ADMIT_INTERVAL_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(10..=600_000),
        global = true
    )]
    pub admit_interval_ms: u32,

    /// Live holds one user may have at once.
    #[arg(
        long,
        env = "MAX_HOLDS_PER_USER",
        value_name = "MAX_HOLDS_PER_USER",
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=50),
        global = true
    )]
    pub max_holds_per_user: u32,

    /// Seats of one date that one user may hold and own together.
    #[arg(
        long,
        env = "MAX_TICKETS_PER_USER",
        value_name = "MAX_TICKETS_PER_USER",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=1000),
        global = true
    )]
    pub max_tickets_per_user: u32,

    /// Requests (GraphQL and websocket upgrades) one process works on at
    /// once; more are refused at once with 503 OVERLOADED rather than queued.
    #[arg(
        long,
        env = "MAX_IN_FLIGHT",
        value_name = "MAX_IN_FLIGHT",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        global = true
    )]
    pub max_in_flight: u32,

    /// Websockets one process keeps open at once; an upgrade past it is
    /// refused with 503 OVERLOADED.
    #[arg(
        long,
        env = "MAX_WEBSOCKETS",
        value_name = "MAX_WEBSOCKETS",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        global = true
    )]
    pub max_websockets: u32,

    /// How long one request (over HTTP) or one operation's answer (over a
    /// websocket) may take before it is stopped, in milliseconds.
    #[arg(
        long,
        env = "REQUEST_TIMEOUT_MS",
        value_name = "REQUEST_TIMEOUT_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u32).range(100..=600_000),
        global = true
    )]
    pub request_timeout_ms: u32,

    /// Load the demo catalogue into an empty catalogue (`true` or `false`).
    #[arg(
        long,
        env = "SEED_DEMO",
        value_name = "SEED_DEMO",
        default_value_t = true,
        action = ArgAction::Set,
        value_parser = parse_bool,
        global = true
    )]
    pub seed_demo: bool,

    /// The key that signs queue tokens (at least 32 characters). When unset,
    /// one is generated on first start and kept in the database.
    #[arg(
        long,
        env = "TOKEN_SECRET",
        value_name = "TOKEN_SECRET",
        value_parser = parse_token_secret,
        hide_env_values = true,
        global = true
    )]
    pub token_secret: Option<TokenSecret>,

    /// Who may act for a user: `open` (a user's id is its credential; for
    /// demos and tests) or `jwt` (the subject of the site's own JWT).
    #[arg(
        long,
        env = "AUTH_MODE",
        value_name = "AUTH_MODE",
        default_value = "open",
        global = true
    )]
    pub auth_mode: AuthMode,

    /// HS256 key of the site's JWTs (at least 32 characters).
    #[arg(
        long,
        env = "AUTH_JWT_SECRET",
        value_name = "AUTH_JWT_SECRET",
        value_parser = parse_token_secret,
        hide_env_values = true,
        global = true
    )]
    pub auth_jwt_secret: Option<TokenSecret>,

    /// Path of the PEM public key (RSA for RS256, P-256 for ES256) of the
    /// site's JWTs.
    #[arg(
        long,
        env = "AUTH_JWT_PUBLIC_KEY",
        value_name = "AUTH_JWT_PUBLIC_KEY",
        global = true
    )]
    pub auth_jwt_public_key: Option<std::path::PathBuf>,

    /// When set, a JWT's `iss` must be this.
    #[arg(
        long,
        env = "AUTH_JWT_ISSUER",
        value_name = "AUTH_JWT_ISSUER",
        global = true
    )]
    pub auth_jwt_issuer: Option<String>,

    /// When set, a JWT's `aud` must name this.
    #[arg(
        long,
        env = "AUTH_JWT_AUDIENCE",
        value_name = "AUTH_JWT_AUDIENCE",
        global = true
    )]
    pub auth_jwt_audience: Option<String>,

    /// GraphQL requests and websocket upgrades one client address may send
    /// a minute; 0 turns the limit off.
    #[arg(
        long,
        env = "RATE_LIMIT_PER_MINUTE",
        value_name = "RATE_LIMIT_PER_MINUTE",
        default_value_t = 1200,
        global = true
    )]
    pub rate_limit_per_minute: u32,

    /// `registerUser`, `issueToken` and `chargeBalance` calls one client
    /// address may make a minute; 0 turns the limit off.
    #[arg(
        long,
        env = "ENTRY_LIMIT_PER_MINUTE",
        value_name = "ENTRY_LIMIT_PER_MINUTE",
        default_value_t = 60,
        global = true
    )]
    pub entry_limit_per_minute: u32,

    /// Comma-separated CIDRs of the proxies in front of the server, whose
    /// `X-Forwarded-For` is believed (e.g. `10.0.0.0/8,127.0.0.1/32`).
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_name = "TRUSTED_PROXIES",
        default_value = "",
        value_parser = parse_networks,
        global = true
    )]
    pub trusted_proxies: Networks,

    /// Comma-separated origins whose pages may call the API from a browser
    /// (e.g. `https://tickets.example.com`); none: no CORS headers at all.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        value_name = "CORS_ALLOWED_ORIGINS",
        default_value = "",
        value_parser = parse_origins,
        global = true
    )]
    pub cors_allowed_origins: Origins,

    /// When set, `/metrics` answers only `Authorization: Bearer <this>`.
    #[arg(
        long,
        env = "METRICS_TOKEN",
        value_name = "METRICS_TOKEN",
        value_parser = parse_metrics_token,
        hide_env_values = true,
        global = true
    )]
    pub metrics_token: Option<TokenSecret>,

    /// Comma-separated keys (32+ characters each) that organizers send as
    /// `Authorization: Bearer <key>`; none: nobody may run organizer
    /// operations.
    #[arg(
        long,
        env = "ORGANIZER_KEYS",
        value_name = "ORGANIZER_KEYS",
        default_value = "",
        value_parser = parse_organizer_keys,
        hide_env_values = true,
        hide_default_value = true,
        global = true
    )]
    pub organizer_keys: OrganizerKeys,

    /// Which log lines to write, as a tracing filter (e.g. `info,tower_http=debug`).
    #[arg(
        long,
        env = "RUST_LOG",
        value_name = "RUST_LOG",
        default_value = "info",
        global = true
    )]
    pub log_filter: String,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_name = "LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// Who may act for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    Open,
    Jwt,
}

/// Output format of the server's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A token signing key given by the operator. Its Debug never shows the key.
#[derive(Clone)]
pub struct TokenSecret(pub Vec<u8>);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

/// The database URL. Its Debug hides the password, so that printing the
/// settings never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl std::ops::Deref for DatabaseUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl std::fmt::Debug for DatabaseUrl {
    /// Each host's URL with its password masked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked: Option<Vec<String>> =
            crate::db::hosts::single_host_urls(&self.0)
                .ok()
                .map(|urls| {
                    urls.iter()
                        .filter_map(|one| url::Url::parse(one).ok())
                        .map(|mut url| {
                            if url.password().is_some() {
                                let _ = url.set_password(Some("********"));
                            }
                            url.to_string()
                        })
                        .collect()
                });
        match masked {
            Some(urls) if !urls.is_empty() => write!(f, "{:?}", urls.join(" ")),
            _ => f.write_str("\"(unreadable URL)\""),
        }
    }
}

/// The organizers' keys. Debug shows how many, never one.
#[derive(Clone, Default)]
pub struct OrganizerKeys(pub Vec<TokenSecret>);

impl std::fmt::Debug for OrganizerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OrganizerKeys({} keys)", self.0.len())
    }
}

/// A list of IP networks (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct Networks(pub Vec<ipnet::IpNet>);

/// A list of web origins (`CORS_ALLOWED_ORIGINS`), each `scheme://host[:port]`.
#[derive(Debug, Clone, Default)]
pub struct Origins(pub Vec<String>);

impl Config {
    /// Settings from these arguments (the first is the program name) and
    /// the environment, exactly as the binary reads them.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct SettingsOnly {
            #[command(flatten)]
            config: Config,
        }
        <SettingsOnly as clap::Parser>::try_parse_from(args).map(|parsed| parsed.config)
    }

    pub fn hold_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.hold_seconds))
    }

    pub fn active_token_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.active_token_seconds))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.into())
    }

    pub fn admit_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.admit_interval_ms))
    }
}

const MIN_TOKEN_SECRET_LEN: usize = 32;

fn parse_token_secret(value: &str) -> Result<TokenSecret, String> {
    if value.len() < MIN_TOKEN_SECRET_LEN {
        return Err(format!(
            "TOKEN_SECRET must be at least {MIN_TOKEN_SECRET_LEN} characters long"
        ));
    }
    Ok(TokenSecret(value.as_bytes().to_vec()))
}

const MIN_METRICS_TOKEN_LEN: usize = 16;

fn parse_metrics_token(value: &str) -> Result<TokenSecret, String> {
    if value.len() < MIN_METRICS_TOKEN_LEN {
        return Err(format!(
            "METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LEN} characters long"
        ));
    }
    Ok(TokenSecret(value.as_bytes().to_vec()))
}

fn parse_organizer_keys(value: &str) -> Result<OrganizerKeys, String> {
    items(value)
        .map(|key| {
            if key.len() < MIN_TOKEN_SECRET_LEN {
                return Err(format!(
                    "each of ORGANIZER_KEYS must be at least {MIN_TOKEN_SECRET_LEN} characters long"
                ));
            }
            Ok(TokenSecret(key.as_bytes().to_vec()))
        })
        .collect::<Result<_, _>>()
        .map(OrganizerKeys)
}

/// Comma-separated items, blanks ignored.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// CIDRs, or bare addresses meaning just themselves.
fn parse_networks(value: &str) -> Result<Networks, String> {
    items(value)
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{item:?} is not an address or a CIDR such as 10.0.0.0/8"))
        })
        .collect::<Result<_, _>>()
        .map(Networks)
}

/// Origins as a browser sends them: scheme, host and port only.
fn parse_origins(value: &str) -> Result<Origins, String> {
    items(value)
        .map(|item| {
            let url =
                url::Url::parse(item).map_err(|e| format!("{item:?} is not an origin: {e}"))?;
            let origin = url.origin();
            if !origin.is_tuple() || !matches!(url.scheme(), "http" | "https") {
                return Err(format!("{item:?} is not an http(s) origin"));
            }
            let serialized = origin.ascii_serialization();
            if serialized != item.trim_end_matches('/') {
                return Err(format!(
                    "{item:?} is not an origin: write it as {serialized} (no path)"
                ));
            }
            Ok(serialized)
        })
        .collect::<Result<_, _>>()
        .map(Origins)
}

/// Strict booleans: a typo such as `flase` must stop the server, not seed it.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// One `mysql://` URL, or several hosts of one cluster in one URL
/// (`mysql://user@node1:3306,node2:3306/db`, see `db::hosts`).
fn parse_database_url(value: &str) -> Result<DatabaseUrl, String> {
    for host_url in crate::db::hosts::single_host_urls(value)? {
        let url = url::Url::parse(&host_url).map_err(|e| format!("not a URL: {e}"))?;
        if url.scheme() != "mysql" {
            return Err(format!(
                "the scheme must be mysql://, got {}://",
                url.scheme()
            ));
        }
        crate::db::database_name(&url)?;
    }
    Ok(DatabaseUrl(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_strict() {
        assert_eq!(parse_bool("false"), Ok(false));
        assert_eq!(parse_bool(" TRUE "), Ok(true));
        assert!(parse_bool("flase").is_err());
    }

    #[test]
    fn database_url_needs_mysql_scheme_and_a_safe_name() {
        assert!(parse_database_url("mysql://root@127.0.0.1:3306/tickets").is_ok());
        assert!(parse_database_url("postgres://root@127.0.0.1/tickets").is_err());
        assert!(parse_database_url("mysql://root@127.0.0.1:3306/").is_err());
        assert!(parse_database_url("mysql://root@127.0.0.1:3306/a`b").is_err());
        assert!(parse_database_url("mysql://root@10.0.0.1:3306,10.0.0.2:3306/tickets").is_ok());
        assert!(parse_database_url("mysql://root@10.0.0.1:3306,/tickets").is_err());
    }

    #[test]
    fn debug_output_shows_no_password_or_secret() {
        let config = Config::from_args([
            "ticket-reservation",
            "--database-url",
            "mysql://app:hunter2-password@db.internal:3306/tickets",
            "--token-secret",
            "a-token-secret-of-at-least-32-characters",
            "--metrics-token",
            "a-metrics-token-0123",
            "--organizer-keys",
            "organizer-key-number-one-0123456789,organizer-key-number-two-0123456789",
        ])
        .expect("settings");
        let printed = format!("{config:?}");
        assert!(printed.contains("db.internal"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("a-token-secret"), "{printed}");
        assert!(!printed.contains("a-metrics-token"), "{printed}");
        assert!(!printed.contains("organizer-key"), "{printed}");
        assert_eq!(config.organizer_keys.0.len(), 2);
        assert!(parse_organizer_keys("short-key").is_err());
    }

    #[test]
    fn proxies_and_origins_are_checked_at_start() {
        let proxies = parse_networks("10.0.0.0/8, 127.0.0.1").expect("networks");
        assert_eq!(proxies.0.len(), 2);
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("proxy.internal").is_err());
        let origins =
            parse_origins("https://tickets.example.com, http://localhost:5173/").expect("origins");
        assert_eq!(
            origins.0,
            ["https://tickets.example.com", "http://localhost:5173"]
        );
        assert!(parse_origins("*").is_err());
        assert!(parse_origins("https://tickets.example.com/app").is_err());
        assert!(parse_origins("file:///tmp/page.html").is_err());
        assert!(parse_origins("").expect("none").0.is_empty());
    }

    #[test]
    fn short_token_secrets_are_refused() {
        assert!(parse_token_secret("short").is_err());
        assert!(parse_token_secret(&"k".repeat(32)).is_ok());
    }
}
