//! The admin client commands: `revoke`, `unrevoke`, `get`, `list`, `status`, talking to a
//! running server's admin API with the admin token from `JWT_REVOKER_ADMIN_TOKEN`.

use super::output;
use crate::admin::pb::{
    self, GetRevocationRequest, GetStatusRequest, ListRevocationsRequest, RevokeRequest,
    UnrevokeRequest, revocation_admin_client::RevocationAdminClient, revoke_request,
    unrevoke_request,
};
use crate::report::error_chain;
use clap::Args;
use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// Where the admin API is and how to authenticate.
#[derive(Debug, Args)]
pub struct Connection {
    /// The admin API: a URL (`http://host:port`) or `host:port`.
    #[arg(
        long,
        env = "JWT_REVOKER_ADMIN_ADDR",
        default_value = "http://127.0.0.1:9192"
    )]
    pub admin_addr: String,
    /// The admin token (only from the environment).
    #[arg(
        long,
        env = "JWT_REVOKER_ADMIN_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// How long to wait for the server.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What to revoke or unrevoke: a raw token, or an identifier of one kind with its issuer.
#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "target")]
pub struct Target {
    /// The raw JWT (`-` reads it from standard input).
    #[arg(long)]
    pub token: Option<String>,
    /// A token's `jti` (with --issuer).
    #[arg(long)]
    pub jti: Option<String>,
    /// A session id, `sid` (with --issuer).
    #[arg(long)]
    pub session: Option<String>,
    /// A subject, `sub`: every token issued to it so far (with --issuer).
    #[arg(long)]
    pub subject: Option<String>,
    /// A client, `client_id`/`azp`: every token issued to it so far (with --issuer).
    #[arg(long)]
    pub client: Option<String>,
    /// A claim as `NAME=VALUE` (e.g. `email=alice@example.com`), NAME one of the issuer's
    /// `revocable_claims`: every token carrying it issued so far (with --issuer).
    #[arg(long, value_name = "NAME=VALUE")]
    pub claim: Option<String>,
}

/// What a command acts on, and where the admin API is.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    target: Target,
    /// The issuer (`iss`) of the identifier.
    #[arg(long)]
    issuer: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `revoke` flags.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    what: TargetArgs,
    /// Why (kept with the revocation).
    #[arg(long, default_value = "")]
    reason: String,
    /// When the revocation may expire (RFC 3339, or Unix seconds); only with an identifier.
    #[arg(long, value_parser = parse_time)]
    expires_at: Option<u64>,
}

/// `list` flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Revocations per page (1..=1000).
    #[arg(long, default_value_t = 100)]
    page_size: u32,
    /// Start after this page token (printed at the end of a page).
    #[arg(long)]
    page_token: Option<String>,
    /// Follow every page to the end.
    #[arg(long)]
    all: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

/// `status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

/// Why a client command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad flags.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached.
    #[error("cannot reach the admin API at {addr}: {detail}")]
    Unreachable {
        /// Where.
        addr: String,
        /// Why.
        detail: String,
    },
    /// The server refused the admin token.
    #[error(
        "the admin API refused the credentials: set JWT_REVOKER_ADMIN_TOKEN to the server's admin token"
    )]
    Unauthenticated,
    /// The connection broke during a call (the server died or restarted mid-call): the
    /// request may or may not have been carried out.
    #[error(
        "the admin API at {addr} could not be reached or the connection broke during the call \
         ({detail}): the change may or may not have been made; check with `list` and retry"
    )]
    Broken {
        /// Where.
        addr: String,
        /// Why.
        detail: String,
    },
    /// The server answered with an error.
    #[error("{0}")]
    Server(String),
    /// Reading standard input failed.
    #[error("cannot read the token from standard input: {0}")]
    Stdin(#[from] std::io::Error),
}

impl ClientError {
    fn from_status(status: Status, addr: &str) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::Unauthenticated => Self::Unauthenticated,
            Code::InvalidArgument => Self::Server(format!("invalid request: {message}")),
            Code::NotFound => Self::Server(message),
            // Answered by the server itself (a transport failure carries its cause as source).
            Code::Unavailable if std::error::Error::source(&status).is_none() => {
                Self::Server(format!("the server is unavailable for this: {message}"))
            }
            // Not the server's answer: the transport failed (a cause is attached) or the
            // call timed out, after the request may have reached the server.
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Self::Broken {
                addr: addr.to_owned(),
                detail: message,
            },
            _ if std::error::Error::source(&status).is_some() => Self::Broken {
                addr: addr.to_owned(),
                detail: error_chain(&status),
            },
            code => Self::Server(format!("the server answered {code:?}: {message}")),
        }
    }
}

type Client = RevocationAdminClient<InterceptedService<Channel, AuthHeader>>;

/// Adds the admin bearer token to every request.
#[derive(Clone)]
pub struct AuthHeader(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for AuthHeader {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

fn normalize_addr(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

async fn connect(connection: &Connection) -> Result<Client, ClientError> {
    let addr = normalize_addr(&connection.admin_addr);
    let endpoint = Endpoint::from_shared(addr.clone())
        .map_err(|e| ClientError::Usage(format!("--admin-addr {addr:?} is not a valid URL: {e}")))?
        .connect_timeout(connection.timeout)
        .timeout(connection.timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ClientError::Unreachable {
            addr: addr.clone(),
            detail: error_chain(&e),
        })?;
    let admin_token = std::env::var(super::serve::ADMIN_TOKEN_ENV).ok();
    let header = match admin_token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => {
            Some(format!("Bearer {token}").parse().map_err(|_| {
                ClientError::Usage("JWT_REVOKER_ADMIN_TOKEN holds invalid characters".into())
            })?)
        }
        _ => None,
    };
    Ok(RevocationAdminClient::with_interceptor(
        channel,
        AuthHeader(header),
    ))
}

fn parse_time(value: &str) -> Result<u64, String> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(seconds);
    }
    let time = humantime::parse_rfc3339_weak(value)
        .map_err(|e| format!("not RFC 3339 or Unix seconds: {e}"))?;
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| "before 1970".to_owned())
}

fn read_token(token: &str) -> Result<String, ClientError> {
    if token == "-" {
        let mut text = String::new();
        std::io::stdin().take(1 << 20).read_to_string(&mut text)?;
        Ok(text.trim().to_owned())
    } else {
        Ok(token.trim().to_owned())
    }
}

enum Resolved {
    Token(String),
    Key(pb::RevocationKey),
}

fn resolve(target: &Target, issuer: Option<&str>) -> Result<Resolved, ClientError> {
    if let Some(token) = &target.token {
        if issuer.is_some() {
            return Err(ClientError::Usage(
                "--issuer applies to --jti/--session/--subject/--client/--claim, not --token"
                    .into(),
            ));
        }
        return Ok(Resolved::Token(read_token(token)?));
    }
    let (kind, id) = match (
        &target.jti,
        &target.session,
        &target.subject,
        &target.client,
        &target.claim,
    ) {
        (Some(id), ..) => (pb::RevocationKind::Token, id),
        (_, Some(id), ..) => (pb::RevocationKind::Session, id),
        (_, _, Some(id), ..) => (pb::RevocationKind::Subject, id),
        (_, _, _, Some(id), _) => (pb::RevocationKind::Client, id),
        (.., Some(id)) => {
            if !id.contains('=') {
                return Err(ClientError::Usage(
                    "--claim takes NAME=VALUE, e.g. --claim email=alice@example.com".into(),
                ));
            }
            (pb::RevocationKind::Claim, id)
        }
        _ => {
            return Err(ClientError::Usage(
                "give one of --token, --jti, --session, --subject, --client, --claim".into(),
            ));
        }
    };
    let issuer = issuer.ok_or_else(|| {
        ClientError::Usage(format!(
            "--issuer is required with --{}",
            match kind {
                pb::RevocationKind::Token => "jti",
                pb::RevocationKind::Session => "session",
                pb::RevocationKind::Subject => "subject",
                pb::RevocationKind::Claim => "claim",
                _ => "client",
            }
        ))
    })?;
    Ok(Resolved::Key(pb::RevocationKey {
        issuer: issuer.to_owned(),
        kind: kind.into(),
        id: id.clone(),
    }))
}

/// Runs `revoke`.
pub async fn revoke(args: RevokeArgs) -> Result<(), ClientError> {
    let target = match resolve(&args.what.target, args.what.issuer.as_deref())? {
        Resolved::Token(token) => {
            if args.expires_at.is_some() {
                return Err(ClientError::Usage(
                    "--expires-at applies to an identifier, not --token (a token's revocation lasts until its exp)".into(),
                ));
            }
            revoke_request::Target::Token(token)
        }
        Resolved::Key(key) => revoke_request::Target::Key(key),
    };
    let expires_at = args.expires_at.map(|seconds| prost_types::Timestamp {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    });
    let mut client = connect(&args.what.connection).await?;
    let response = client
        .revoke(RevokeRequest {
            target: Some(target),
            reason: args.reason,
            expires_at,
        })
        .await
        .map_err(|s| ClientError::from_status(s, &args.what.connection.admin_addr))?
        .into_inner();
    println!("{}", output::revoke_outcome(&response));
    Ok(())
}

/// Runs `unrevoke`.
pub async fn unrevoke(args: TargetArgs) -> Result<(), ClientError> {
    let target = match resolve(&args.target, args.issuer.as_deref())? {
        Resolved::Token(token) => unrevoke_request::Target::Token(token),
        Resolved::Key(key) => unrevoke_request::Target::Key(key),
    };
    let mut client = connect(&args.connection).await?;
    let response = client
        .unrevoke(UnrevokeRequest {
            target: Some(target),
        })
        .await
        .map_err(|s| ClientError::from_status(s, &args.connection.admin_addr))?
        .into_inner();
    println!("{}", output::unrevoke_outcome(&response));
    Ok(())
}

/// Runs `get`.
pub async fn get(args: TargetArgs) -> Result<(), ClientError> {
    let key = match resolve(&args.target, args.issuer.as_deref())? {
        Resolved::Key(key) => key,
        Resolved::Token(_) => {
            return Err(ClientError::Usage(
                "get takes an identifier (--jti/--session/--subject/--client with --issuer)".into(),
            ));
        }
    };
    let mut client = connect(&args.connection).await?;
    let revocation = client
        .get_revocation(GetRevocationRequest { key: Some(key) })
        .await
        .map_err(|s| ClientError::from_status(s, &args.connection.admin_addr))?
        .into_inner();
    println!("{}", output::revocation_line(&revocation));
    Ok(())
}

/// Runs `list`.
pub async fn list(args: ListArgs) -> Result<(), ClientError> {
    let mut client = connect(&args.connection).await?;
    let mut page_token = args.page_token.clone().unwrap_or_default();
    loop {
        let page = client
            .list_revocations(ListRevocationsRequest {
                page_size: args.page_size,
                page_token: page_token.clone(),
            })
            .await
            .map_err(|s| ClientError::from_status(s, &args.connection.admin_addr))?
            .into_inner();
        for revocation in &page.revocations {
            if args.json {
                println!("{}", output::revocation_json(revocation));
            } else {
                println!("{}", output::revocation_line(revocation));
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        if !args.all {
            eprintln!("more: --page-token '{}' (or --all)", page.next_page_token);
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// Runs `status`.
pub async fn status(args: StatusArgs) -> Result<(), ClientError> {
    let mut client = connect(&args.connection).await?;
    let status = client
        .get_status(GetStatusRequest {})
        .await
        .map_err(|s| ClientError::from_status(s, &args.connection.admin_addr))?
        .into_inner();
    println!("{}", output::status(&status, args.json));
    Ok(())
}
