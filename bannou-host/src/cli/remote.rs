//! What every client command shares: the `--api`/`--token`/`--json`/`--timeout` options
//! ([`ApiArgs`]), building the [`ApiClient`] from them, running the request on a small
//! runtime, and printing JSON or aligned fields.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::client::{ApiClient, DEFAULT_API_URL};

/// Options of every command that talks to a running host over HTTP.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the orchestrator API.
    #[arg(long = "api", value_name = "URL", env = "BANNOU_API_URL", default_value = DEFAULT_API_URL)]
    pub api: String,
    /// Bearer token sent as `Authorization: Bearer ...`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = crate::config::vars::API_TOKEN,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print the response as JSON (upstream field names) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Give up on the request after this many seconds.
    #[arg(long = "http-timeout", value_name = "SECONDS", default_value_t = 120)]
    pub http_timeout: u64,
}

impl ApiArgs {
    /// The client these options describe.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::new(&self.api)?
            .with_token(self.token.clone())
            .with_timeout(Duration::from_secs(self.http_timeout.max(1))))
    }
}

/// Runs a client command's future to completion on a current-thread runtime (the CLI's
/// entry point is synchronous). Must not be called from inside a tokio runtime.
pub fn block_on<F: Future<Output = anyhow::Result<()>>>(fut: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

/// Writes `value` as pretty JSON and a newline.
pub fn print_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Writes `label: value` lines with the values aligned.
pub fn write_fields(out: &mut dyn Write, fields: &[(&str, String)]) -> std::io::Result<()> {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in fields {
        let pad = width - k.chars().count();
        writeln!(out, "{k}:{:pad$} {v}", "", pad = pad)?;
    }
    Ok(())
}

/// `value` or `-` for an absent one.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A comma-separated list, or `-` when empty.
pub fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// Parses `KEY=VALUE` (repeatable `--env` options).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// Reads a YAML or JSON file (JSON is YAML, but serde_json gives better messages for
/// `.json` files) into `T`.
pub fn read_document<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<T> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    } else {
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_align_values() {
        let mut buf = Vec::new();
        write_fields(
            &mut buf,
            &[("lease", "x".into()), ("processor", "p".into())],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "lease:     x\nprocessor: p\n"
        );
    }

    #[test]
    fn key_values_and_dashes() {
        assert_eq!(
            parse_key_value("A=b=c").unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
        assert!(parse_key_value("=x").is_err());
        assert_eq!(or_dash(None::<i32>), "-");
        assert_eq!(list_or_dash(&[]), "-");
        assert_eq!(list_or_dash(&["a".into(), "b".into()]), "a, b");
    }
}
