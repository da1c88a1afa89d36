//! How `dirctl` proves itself to a director: TLS (the CA that signed the
//! director's certificate, and a client certificate when the director asks
//! for one) and a bearer token.
//!
//! The options may stand anywhere on the command line, before or after
//! the command (`dirctl --tls-ca ca.pem -Ln`, `dirctl status --token-file
//! t`); [`strip`] takes them out before the command is parsed, and the
//! environment fills in what the command line does not give:
//!
//! | option | environment | |
//! |---|---|---|
//! | `--tls-ca PEM` | `DIRCTL_TLS_CA` | verify the director with this CA (turns TLS on) |
//! | `--tls-cert PEM` | `DIRCTL_TLS_CERT` | client certificate |
//! | `--tls-key PEM` | `DIRCTL_TLS_KEY` | its key |
//! | `--tls-server-name NAME` | `DIRCTL_TLS_SERVER_NAME` | name to check the certificate against (default: the host of `--server`) |
//! | `--token TOKEN` | `DIRCTL_TOKEN` | bearer token |
//! | `--token-file FILE` | `DIRCTL_TOKEN_FILE` | bearer token, first line of FILE (keeps it out of `ps`) |

use std::path::PathBuf;
use std::sync::OnceLock;

use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::args::ArgError;

/// What `dirctl` connects with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// CA of the director's certificate; TLS is on when set.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate.
    pub tls_cert: Option<PathBuf>,
    /// Its key.
    pub tls_key: Option<PathBuf>,
    /// Name the director's certificate must carry.
    pub tls_server_name: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
}

static OPTIONS: OnceLock<ConnectOptions> = OnceLock::new();

/// Every option [`strip`] takes, with its environment variable.
const OPTS: &[(&str, &str)] = &[
    ("--tls-ca", "DIRCTL_TLS_CA"),
    ("--tls-cert", "DIRCTL_TLS_CERT"),
    ("--tls-key", "DIRCTL_TLS_KEY"),
    ("--tls-server-name", "DIRCTL_TLS_SERVER_NAME"),
    ("--token", "DIRCTL_TOKEN"),
    ("--token-file", "DIRCTL_TOKEN_FILE"),
];

/// The environment variable of the bearer token.
pub const TOKEN_ENV: &str = "DIRCTL_TOKEN";

fn read_token_file(path: &str) -> Result<String, ArgError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ArgError(format!("--token-file {path}: {e}")))?;
    let t = text.lines().next().unwrap_or("").trim().to_owned();
    if t.is_empty() {
        return Err(ArgError(format!(
            "--token-file {path}: the file holds no token"
        )));
    }
    Ok(t)
}

/// Take the connection options out of `argv` (without the program name);
/// return the rest and the options, completed from the environment.
pub fn strip(argv: Vec<String>) -> Result<(Vec<String>, ConnectOptions), ArgError> {
    strip_with_env(argv, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// [`strip`] with the environment given (tests).
pub fn strip_with_env(
    argv: Vec<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Vec<String>, ConnectOptions), ArgError> {
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut rest = Vec::with_capacity(argv.len());
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        let hit = OPTS.iter().find_map(|(flag, _)| {
            if a == *flag {
                Some((*flag, None))
            } else {
                a.strip_prefix(flag)
                    .and_then(|v| v.strip_prefix('='))
                    .map(|v| (*flag, Some(v.to_owned())))
            }
        });
        match hit {
            None => rest.push(a),
            Some((flag, Some(v))) => given.push((flag, v)),
            Some((flag, None)) => {
                let v = it
                    .next()
                    .ok_or_else(|| ArgError(format!("option '{flag}' needs a value")))?;
                given.push((flag, v));
            }
        }
    }
    let get = |flag: &str| -> Option<String> {
        given
            .iter()
            .rev()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.clone())
    };
    let pick = |flag: &str| -> Option<String> {
        get(flag).or_else(|| {
            let var = OPTS.iter().find(|(f, _)| *f == flag).map(|(_, e)| *e)?;
            env(var)
        })
    };
    let token = match (get("--token"), get("--token-file")) {
        (Some(t), _) => Some(t),
        (None, Some(f)) => Some(read_token_file(&f)?),
        (None, None) => match (env("DIRCTL_TOKEN"), env("DIRCTL_TOKEN_FILE")) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => Some(read_token_file(&f)?),
            (None, None) => None,
        },
    };
    let opts = ConnectOptions {
        tls_ca: pick("--tls-ca").map(PathBuf::from),
        tls_cert: pick("--tls-cert").map(PathBuf::from),
        tls_key: pick("--tls-key").map(PathBuf::from),
        tls_server_name: pick("--tls-server-name"),
        token: token.map(|t| t.trim().to_owned()),
    };
    opts.check()?;
    Ok((rest, opts))
}

impl ConnectOptions {
    fn check(&self) -> Result<(), ArgError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ArgError(
                "give both --tls-cert and --tls-key (the client certificate and its key)".into(),
            ));
        }
        if self.tls_cert.is_some() && self.tls_ca.is_none() {
            return Err(ArgError(
                "--tls-cert needs --tls-ca too: the CA that signed the director's certificate"
                    .into(),
            ));
        }
        if let Some(t) = &self.token
            && (t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ArgError(
                "the token must be printable ASCII without spaces".into(),
            ));
        }
        Ok(())
    }

    /// Whether TLS is on.
    pub fn tls(&self) -> bool {
        self.tls_ca.is_some()
    }

    /// What is tried, for error messages: "plaintext", "TLS (CA ca.pem,
    /// client certificate c.pem), bearer token".
    pub fn describe(&self) -> String {
        let mut s = match (&self.tls_ca, &self.tls_cert) {
            (None, _) => "plaintext".to_owned(),
            (Some(ca), None) => format!("TLS (CA {}, no client certificate)", ca.display()),
            (Some(ca), Some(c)) => format!(
                "TLS (CA {}, client certificate {})",
                ca.display(),
                c.display()
            ),
        };
        s.push_str(if self.token.is_some() {
            ", bearer token"
        } else {
            ", no token"
        });
        s
    }

    /// The client TLS configuration, the files read.
    pub fn client_tls(&self) -> Result<Option<ClientTlsConfig>, String> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let read = |what: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
        };
        let mut c =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?));
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            c = c.identity(Identity::from_pem(
                read("--tls-cert", cert)?,
                read("--tls-key", key)?,
            ));
        }
        if let Some(name) = &self.tls_server_name {
            c = c.domain_name(name.clone());
        }
        Ok(Some(c))
    }

    /// A hint for a connection that failed with these options.
    pub fn hint(&self) -> &'static str {
        match (self.tls(), self.tls_cert.is_some()) {
            (false, _) => {
                "if the director's [control] has tls_cert, give --tls-ca \
                 (and --tls-cert/--tls-key if it asks for client certificates)"
            }
            (true, false) => {
                "if the director's [control] has tls_ca, it wants a client certificate: \
                 give --tls-cert and --tls-key"
            }
            (true, true) => {
                "check that the client certificate is signed by the director's tls_ca and \
                 that --tls-ca signed the director's certificate"
            }
        }
    }
}

/// Set the options for this process (once, from `main`).
pub fn set(opts: ConnectOptions) {
    let _ = OPTIONS.set(opts);
}

/// The options in force: those [`set`], else the environment's.
pub fn options() -> ConnectOptions {
    OPTIONS
        .get_or_init(|| strip(Vec::new()).map(|(_, o)| o).unwrap_or_default())
        .clone()
}

/// Adds `authorization: Bearer <token>` to every call, when there is a
/// token.
#[derive(Debug, Clone, Default)]
pub struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl BearerToken {
    /// For `token` (`None`: add nothing).
    pub fn new(token: Option<&str>) -> BearerToken {
        BearerToken(token.and_then(|t| format!("Bearer {t}").parse().ok()))
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_are_taken_from_anywhere_and_the_rest_is_left() {
        let (rest, o) = strip_with_env(
            s(&["--tls-ca", "ca.pem", "-Ln", "--token=abc", "--stats"]),
            |_| None,
        )
        .unwrap();
        assert_eq!(rest, s(&["-Ln", "--stats"]));
        assert_eq!(o.tls_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(o.token.as_deref(), Some("abc"));
        assert!(
            o.describe()
                .contains("TLS (CA ca.pem, no client certificate)")
        );
    }

    #[test]
    fn the_environment_fills_in_and_the_command_line_wins() {
        let env = |k: &str| match k {
            "DIRCTL_TOKEN" => Some("from-env".to_string()),
            "DIRCTL_TLS_CA" => Some("env-ca.pem".to_string()),
            _ => None,
        };
        let (_, o) = strip_with_env(s(&["-Ln"]), env).unwrap();
        assert_eq!(o.token.as_deref(), Some("from-env"));
        assert_eq!(o.tls_ca, Some(PathBuf::from("env-ca.pem")));
        let (_, o) = strip_with_env(s(&["--token", "cli", "--tls-ca", "c.pem"]), env).unwrap();
        assert_eq!(o.token.as_deref(), Some("cli"));
        assert_eq!(o.tls_ca, Some(PathBuf::from("c.pem")));
    }

    #[test]
    fn incomplete_tls_options_are_refused_with_the_fix() {
        let e = strip_with_env(s(&["--tls-cert", "c.pem"]), |_| None).unwrap_err();
        assert!(e.0.contains("--tls-key"), "{e}");
        let e = strip_with_env(s(&["--tls-cert", "c", "--tls-key", "k"]), |_| None).unwrap_err();
        assert!(e.0.contains("--tls-ca"), "{e}");
        let e = strip_with_env(s(&["--token"]), |_| None).unwrap_err();
        assert!(e.0.contains("needs a value"), "{e}");
    }
}
