//! Real HTTP in the lab: Debian's nginx as the real servers, curl as the
//! kernel-TCP client.
//!
//! Each server is one nginx process (`daemon off; master_process off;`) in
//! its host's namespace, with config, pid file, logs and temp paths in its
//! own directory under the lab dir, so servers never share state and the
//! whole thing disappears with the lab. It serves:
//! - `/` → `"<name>\n"` (which real server answered),
//! - `/client` → `"<client addr>:<port> <server addr>:<port>\n"` (what the
//!   server saw: shows whether the client address survived DR/TUN/NAT),
//! - `/big.bin` → a deterministic payload of N MiB with a known sha256,
//! - `/health` → 200 `ok`, or 500 while [`HttpServer::fail_health`] is on
//!   (a health-check path that can fail while the server serves on),
//!
//! and adds `X-Real-Server: <name>` to every response.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::lab::{Host, Lab, sha256_file};
use crate::process::LabChild;

/// Size of `/big.bin` that [`Lab::nginx`] serves.
pub const DEFAULT_BIG_MIB: u32 = 20;

/// How long a server may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for [`Lab::nginx_with`].
#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// Size of `/big.bin` in MiB; 0 serves none.
    pub big_mib: u32,
}

impl Default for NginxOptions {
    fn default() -> Self {
        Self {
            big_mib: DEFAULT_BIG_MIB,
        }
    }
}

/// A running nginx in a lab host; stopped (killed and reaped) on drop.
#[derive(Debug)]
pub struct HttpServer {
    child: LabChild,
    host: Host,
    name: String,
    listen: SocketAddrV4,
    dir: PathBuf,
    big: Option<(u64, String)>,
}

impl HttpServer {
    /// The name the server answers `/` with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host it runs in.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Its listen address.
    pub fn listen(&self) -> SocketAddrV4 {
        self.listen
    }

    /// `http://<listen addr>:<port><path>`; for a wildcard listener use
    /// [`http_url`] with a concrete address.
    pub fn url(&self, path: &str) -> String {
        http_url(*self.listen.ip(), self.listen.port(), path)
    }

    /// sha256 (hex) of `/big.bin`, if served.
    pub fn big_sha256(&self) -> Option<&str> {
        self.big.as_ref().map(|(_, sha)| sha.as_str())
    }

    /// Size in bytes of `/big.bin`, if served.
    pub fn big_len(&self) -> Option<u64> {
        self.big.as_ref().map(|(len, _)| *len)
    }

    /// Length and sha256 (hex) of the file a client PUT to
    /// `/upload/<name>` ([`Lab::upload`]).
    pub fn uploaded(&self, name: &str) -> Result<(u64, String)> {
        let path = self.dir.join("www/upload").join(name);
        let len = fs::metadata(&path)
            .with_context(|| format!("{}: no upload {name}", self.name))?
            .len();
        Ok((len, sha256_file(&path)?))
    }

    /// The server's directory (config, logs, document root).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The access log so far, one request a line:
    /// `client:port server:port "request" status bytes`.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// How many requests the server has logged (nginx writes each access
    /// log line as the request completes, unbuffered).
    pub fn requests_served(&self) -> usize {
        self.access_log().lines().count()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Whether the nginx process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// The process, e.g. to SIGSTOP it (a hung real server) or kill it.
    pub fn process(&mut self) -> &mut LabChild {
        &mut self.child
    }

    /// Make `/health` answer 500 (`true`) or 200 (`false`), at once and
    /// without touching connections in progress.
    pub fn fail_health(&self, failing: bool) -> Result<()> {
        let flag = self.dir.join("health-fail");
        if failing {
            fs::write(&flag, b"").context("writing the health-fail flag")
        } else {
            match fs::remove_file(&flag) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).context("removing the health-fail flag")
                }
                _ => Ok(()),
            }
        }
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&mut self) {
        self.child.kill();
    }
}

/// `http://addr:port/path`.
pub fn http_url(addr: Ipv4Addr, port: u16, path: &str) -> String {
    format!("http://{addr}:{port}{path}")
}

fn nginx_conf(dir: &Path, listen: SocketAddrV4, name: &str) -> String {
    let d = dir.display();
    format!(
        r#"# Generated by the lab harness for real server `{name}`.
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format lab '$remote_addr:$remote_port $server_addr:$server_port "$request" $status $body_bytes_sent';
    access_log {d}/access.log lab;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 5s;
    server_tokens off;
    server {{
        listen {listen};
        server_name _;
        root {d}/www;
        add_header X-Real-Server {name} always;
        location = / {{
            default_type text/plain;
            return 200 "{name}\n";
        }}
        location = /client {{
            default_type text/plain;
            return 200 "$remote_addr:$remote_port $server_addr:$server_port\n";
        }}
        # `curl -T` uploads land in www/upload/ (WebDAV PUT), so a test
        # can compare what arrived with what was sent.
        location /upload/ {{
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 256m;
        }}
        location = /health {{
            default_type text/plain;
            if (-f {d}/health-fail) {{
                return 500 "failing\n";
            }}
            return 200 "ok\n";
        }}
    }}
}}
"#
    )
}

impl Lab {
    /// Starts nginx in `host` listening on `listen`, answering `/` with
    /// `name` and serving a [`DEFAULT_BIG_MIB`] MiB `/big.bin`; returns once
    /// it listens.
    pub fn nginx(&self, host: &Host, listen: SocketAddrV4, name: &str) -> Result<HttpServer> {
        self.nginx_with(host, listen, name, &NginxOptions::default())
    }

    /// [`Lab::nginx`] with options.
    pub fn nginx_with(
        &self,
        host: &Host,
        listen: SocketAddrV4,
        name: &str,
        opts: &NginxOptions,
    ) -> Result<HttpServer> {
        ensure!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "server name `{name}`: letters, digits and '-' only (it goes into nginx.conf)"
        );
        let dir = self.unique_path(&format!("nginx-{name}"), "");
        for sub in ["www", "tmp"] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("{}", dir.display()))?;
        }
        let big = if opts.big_mib > 0 {
            let (path, sha) = self.big_file(opts.big_mib)?;
            // One payload per lab and size, linked into every document root.
            std::os::unix::fs::symlink(&path, dir.join("www/big.bin"))
                .context("linking big.bin")?;
            Some((u64::from(opts.big_mib) * 1024 * 1024, sha))
        } else {
            None
        };
        let conf = dir.join("nginx.conf");
        fs::write(&conf, nginx_conf(&dir, listen, name)).context("writing nginx.conf")?;
        let conf_s = conf.to_string_lossy().into_owned();
        let prefix_s = format!("{}/", dir.display());
        let startup_log = format!("{}/error.log", dir.display());
        // -e: nginx opens its error log before reading the config; without
        // it that would be the system-wide /var/log/nginx/error.log.
        let mut child = self.spawn(
            host,
            &["nginx", "-p", &prefix_s, "-e", &startup_log, "-c", &conf_s],
        )?;
        let ready = self.wait_listening(host, false, *listen.ip(), listen.port(), READY_TIMEOUT);
        if let Err(e) = ready {
            let exited = child.try_wait().ok().flatten();
            let log = fs::read_to_string(&startup_log).unwrap_or_default();
            bail!(
                "nginx `{name}` in `{}` not ready ({e:#}); exited: {exited:?}; error.log: {}; \
                 stderr: {}",
                host.name(),
                log.trim(),
                child.stderr_text().trim()
            );
        }
        Ok(HttpServer {
            child,
            host: host.clone(),
            name: name.to_owned(),
            listen,
            dir,
            big,
        })
    }

    /// `n` GETs of `url` from `host`, each of which must succeed with 200;
    /// the bodies (the lab's nginx answers with the server's name), in order.
    pub fn names_of_requests(&self, host: &Host, url: &str, n: usize) -> Result<Vec<String>> {
        (0..n)
            .map(|i| {
                let r = self
                    .curl(host, url)
                    .with_context(|| format!("request {i} to {url}"))?;
                ensure!(r.status == 200, "request {i} to {url}: HTTP {}", r.status);
                Ok(r.text().trim().to_string())
            })
            .collect()
    }

    /// `curl URL` from `host` with default options.
    pub fn curl(&self, host: &Host, url: &str) -> Result<HttpResponse> {
        self.curl_with(host, url, &CurlOptions::default())
    }

    /// `curl URL` from `host`: status, headers, body and timing. A transport
    /// failure (refused, reset, timeout) is an error quoting curl; any HTTP
    /// status is a response.
    pub fn curl_with(&self, host: &Host, url: &str, opts: &CurlOptions) -> Result<HttpResponse> {
        let body_path = self.unique_path("curl", ".body");
        let head_path = body_path.with_extension("head");
        let result = self.run_curl(host, url, opts, &body_path, &head_path);
        // curl creates no body file for an empty body, hence the defaults.
        let response = result.map(|meta| {
            let body = fs::read(&body_path).unwrap_or_default();
            let head = fs::read_to_string(&head_path).unwrap_or_default();
            HttpResponse {
                headers: parse_headers(&head),
                body,
                ..meta
            }
        });
        let _ = fs::remove_file(&body_path);
        let _ = fs::remove_file(&head_path);
        response
    }

    /// Downloads `url` from `host` to a file and returns its size and
    /// sha256 (the body is not kept in memory).
    pub fn download(&self, host: &Host, url: &str, max_time: Duration) -> Result<Download> {
        let opts = CurlOptions {
            max_time,
            ..CurlOptions::default()
        };
        self.download_with(host, url, &opts)
    }

    /// [`Lab::download`] with more curl options (e.g. `--limit-rate`, so
    /// that a download spans a failover).
    pub fn download_with(&self, host: &Host, url: &str, opts: &CurlOptions) -> Result<Download> {
        let body_path = self.unique_path("download", ".body");
        let head_path = body_path.with_extension("head");
        let result = self
            .run_curl(host, url, opts, &body_path, &head_path)
            .and_then(|meta| {
                Ok(Download {
                    status: meta.status,
                    len: fs::metadata(&body_path).map(|m| m.len()).unwrap_or(0),
                    sha256: sha256_file(&body_path)?,
                    timing: meta.timing,
                })
            });
        let _ = fs::remove_file(&body_path);
        let _ = fs::remove_file(&head_path);
        result
    }

    /// Uploads `file` from `host` with `curl -T` (an HTTP PUT) to `url`,
    /// e.g. `http://VIP/upload/name` (the lab's nginx stores it, see
    /// [`HttpServer::uploaded`]). Returns the response (201 when stored).
    pub fn upload(
        &self,
        host: &Host,
        url: &str,
        file: &Path,
        max_time: Duration,
    ) -> Result<HttpResponse> {
        let opts = CurlOptions {
            max_time,
            extra_args: vec!["-T".into(), file.to_string_lossy().into_owned()],
            ..CurlOptions::default()
        };
        self.curl_with(host, url, &opts)
    }

    /// A file of `mib` MiB of fixed pseudo-random bytes in the lab's
    /// directory, and its sha256 (made once per lab and size).
    pub fn test_file(&self, mib: u32) -> Result<(PathBuf, String)> {
        self.big_file(mib)
    }

    fn run_curl(
        &self,
        host: &Host,
        url: &str,
        opts: &CurlOptions,
        body: &Path,
        head: &Path,
    ) -> Result<HttpResponse> {
        let max = format!("{:.3}", opts.max_time.as_secs_f64());
        let connect = format!("{:.3}", opts.connect_timeout.as_secs_f64());
        let body_s = body.to_string_lossy();
        let head_s = head.to_string_lossy();
        let mut argv = vec![
            "curl",
            "-sS",
            // Never an outside proxy from the environment: lab traffic
            // stays between lab namespaces.
            "--noproxy",
            "*",
            "--max-time",
            &max,
            "--connect-timeout",
            &connect,
            "-D",
            &head_s,
            "-o",
            &body_s,
            "-w",
            CURL_WRITE_OUT,
        ];
        argv.extend(opts.extra_args.iter().map(String::as_str));
        argv.push(url);
        // The process deadline is curl's own plus a margin, so curl
        // normally reports the timeout itself.
        let deadline = opts.max_time + Duration::from_secs(5);
        let out = self.exec_timeout(host, &argv, deadline)?;
        if !out.status.success() {
            bail!(
                "curl {url} from `{}` failed ({}): {}",
                host.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse_write_out(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("curl {url} from `{}`", host.name()))
    }
}

/// `-w` format: one line the harness parses back.
const CURL_WRITE_OUT: &str = "%{http_code} %{size_download} %{time_connect} \
     %{time_starttransfer} %{time_total} %{remote_ip} %{remote_port} %{local_ip} %{local_port}";

/// Options for [`Lab::curl_with`].
#[derive(Debug, Clone)]
pub struct CurlOptions {
    /// Whole-transfer limit (`--max-time`).
    pub max_time: Duration,
    /// Connect limit (`--connect-timeout`).
    pub connect_timeout: Duration,
    /// More curl arguments, e.g. `["--local-port", "40000"]`, `["-H", "X: y"]`.
    pub extra_args: Vec<String>,
}

impl Default for CurlOptions {
    fn default() -> Self {
        Self {
            max_time: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            extra_args: Vec::new(),
        }
    }
}

/// Timings curl measured, from the start of the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CurlTiming {
    /// TCP connect done.
    pub connect: Duration,
    /// First response byte.
    pub start_transfer: Duration,
    /// Whole transfer.
    pub total: Duration,
}

/// One HTTP exchange as curl saw it.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers in order (names as sent).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
    /// Bytes downloaded (body).
    pub size: u64,
    /// curl's timings.
    pub timing: CurlTiming,
    /// Address and port curl connected to.
    pub remote: String,
    /// Local address and port curl used (the flow's client side).
    pub local: String,
}

impl HttpResponse {
    /// Body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Result of [`Lab::download`].
#[derive(Debug, Clone)]
pub struct Download {
    /// HTTP status code.
    pub status: u16,
    /// Bytes received.
    pub len: u64,
    /// sha256 (hex) of what was received.
    pub sha256: String,
    /// curl's timings.
    pub timing: CurlTiming,
}

fn parse_write_out(line: &str) -> Result<HttpResponse> {
    let f: Vec<&str> = line.split_whitespace().collect();
    ensure!(f.len() == 9, "unexpected curl -w output `{line}`");
    let secs = |s: &str| -> Result<Duration> {
        let v: f64 = s.parse().with_context(|| format!("time `{s}`"))?;
        Ok(Duration::from_secs_f64(v.max(0.0)))
    };
    Ok(HttpResponse {
        status: f[0].parse().with_context(|| format!("status `{}`", f[0]))?,
        size: f[1].parse().with_context(|| format!("size `{}`", f[1]))?,
        timing: CurlTiming {
            connect: secs(f[2])?,
            start_transfer: secs(f[3])?,
            total: secs(f[4])?,
        },
        remote: format!("{}:{}", f[5], f[6]),
        local: format!("{}:{}", f[7], f[8]),
        ..HttpResponse::default()
    })
}

fn parse_headers(head: &str) -> Vec<(String, String)> {
    head.lines()
        .skip(1) // status line
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_out_parses() {
        let r =
            parse_write_out("200 4 0.000123 0.001 0.0015 10.12.0.21 80 10.11.0.10 41234").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.size, 4);
        assert_eq!(r.remote, "10.12.0.21:80");
        assert_eq!(r.local, "10.11.0.10:41234");
        assert_eq!(r.timing.connect, Duration::from_micros(123));
        assert!(parse_write_out("200 4").is_err());
    }

    #[test]
    fn headers_parse() {
        let h = parse_headers("HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Real-Server: rs1\r\n\r\n");
        assert_eq!(h.len(), 2);
        let r = HttpResponse {
            headers: h,
            ..HttpResponse::default()
        };
        assert_eq!(r.header("x-real-server"), Some("rs1"));
    }

    #[test]
    fn conf_names_the_server() {
        let conf = nginx_conf(Path::new("/tmp/x"), "10.0.0.1:80".parse().unwrap(), "rs1");
        assert!(conf.contains("listen 10.0.0.1:80;"));
        assert!(conf.contains("return 200 \"rs1\\n\";"));
        assert!(conf.contains("pid /tmp/x/nginx.pid;"));
        assert!(conf.contains("if (-f /tmp/x/health-fail)"));
    }
}
