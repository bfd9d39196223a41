//! `bannou-host probe URL`: one HTTP GET, exit status 0 on a 2xx answer, 1 otherwise.
//!
//! Our node image is `FROM scratch`: no shell, no curl. A container healthcheck (a
//! compose file's `healthcheck.test`, a `docker run --health-cmd`) runs the binary itself:
//! `["CMD", "/bannou-host", "probe", "http://127.0.0.1:80/auth/ping"]`. Plain HTTP/1.1 over
//! a blocking socket, no runtime and no TLS, so a probe costs a few milliseconds.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

/// Arguments of `probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// `http://host[:port]/path` to GET.
    pub url: String,
    /// Give up after this many seconds (connect, send and answer together per phase).
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
}

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host name or address (brackets of an IPv6 literal removed).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path and query, `/` when absent.
    pub path: String,
}

/// Parses `http://host[:port][/path]`; anything else is an error.
pub fn parse_http_url(url: &str) -> anyhow::Result<HttpTarget> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("`{url}`: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("`{url}`: no host");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .with_context(|| format!("`{url}`: unclosed `[`"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().with_context(|| format!("`{url}`: bad port"))?,
            None => 80,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse().with_context(|| format!("`{url}`: bad port"))?,
            ),
            None => (authority.to_owned(), 80),
        }
    };
    Ok(HttpTarget {
        host,
        port,
        path: path.to_owned(),
    })
}

/// GETs `target` and returns the status code of the answer.
pub fn http_status(target: &HttpTarget, timeout: Duration) -> anyhow::Result<u16> {
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.host))?
        .next()
        .with_context(|| format!("{} has no address", target.host))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: bannou-host-probe\r\n\r\n",
        target.path, target.host, target.port
    );
    stream.write_all(request.as_bytes())?;
    // The status line is all we need: `HTTP/1.1 200 OK`.
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while head.len() < 256 {
        match stream.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => head.push(byte[0]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {:?}", line.trim()))
}

/// Runs the probe: `Ok` on a 2xx answer, an error naming the status or failure otherwise.
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    let target = parse_http_url(&args.url)?;
    let status = http_status(&target, Duration::from_secs_f64(args.timeout))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        bail!("{} answered {status}", args.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_path() {
        let t = parse_http_url("http://127.0.0.1:80/auth/ping").unwrap();
        assert_eq!(
            t,
            HttpTarget {
                host: "127.0.0.1".into(),
                port: 80,
                path: "/auth/ping".into()
            }
        );
        let t = parse_http_url("http://node-a").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("node-a", 80, "/")
        );
        let t = parse_http_url("http://[::1]:8080/x?y=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8080, "/x?y=1")
        );
        assert!(parse_http_url("https://a/").is_err());
        assert!(parse_http_url("http://a:notaport/").is_err());
        assert!(parse_http_url("http:///x").is_err());
    }

    #[test]
    fn a_2xx_passes_and_anything_else_fails() {
        use std::net::TcpListener;
        let serve = |answer: &'static str| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            });
            format!("http://127.0.0.1:{port}/auth/ping")
        };
        let ok = serve("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(
            run(ProbeArgs {
                url: ok,
                timeout: 5.0
            })
            .is_ok()
        );
        let bad = serve("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let err = run(ProbeArgs {
            url: bad,
            timeout: 5.0,
        })
        .unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            drop(l);
            format!("http://127.0.0.1:{port}/")
        };
        assert!(
            run(ProbeArgs {
                url: closed,
                timeout: 5.0
            })
            .is_err()
        );
    }
}
