//! Our node image: a `FROM scratch` image holding a static `bannou-host` binary, the host's
//! CA bundle and an `/etc/hosts`, built through the Docker API's build endpoint with a tar
//! context made here, so nothing is pulled from any registry.
//!
//! The binary must run in an empty root: build it statically (glibc with
//! `+crt-static`, see `scripts/build-image.sh` and `docs/IMAGE.md`). [`check_static`] refuses
//! a binary that asks for a dynamic loader (an ELF `PT_INTERP` header), because such a
//! binary fails in the image with a bare "no such file or directory".
//!
//! Layout of the image:
//!
//! ```text
//! /bannou-host                          the binary (ENTRYPOINT, CMD ["serve"])
//! /etc/hosts                            localhost entries (the runtime mounts its own too)
//! /etc/ssl/certs/ca-certificates.crt    the host's CA bundle, when one is found
//! /tmp                                  empty, mode 1777
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;

/// Default tag of the node image (`ORCHESTRATOR_DOCKER_IMAGE_NAME` default).
pub const DEFAULT_TAG: &str = "bannou:latest";

/// Where Debian (and most distributions) keep the CA bundle; copied to the same path.
pub const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Path of the binary inside the image.
pub const BINARY_PATH: &str = "/bannou-host";

/// Label naming what the image holds (`bannou-host`).
pub const IMAGE_COMPONENT_LABEL: &str = "bannou.component";

/// Marks images this orchestrator built (`true`); `clean` prunes dangling ones.
///
/// Deliberately not [`orchestrator_core::ports::backend::labels::MANAGED`]: a container inherits its image's labels, so an
/// image labelled `bannou.orchestrator-managed=true` would make every container anyone
/// starts from it look like ours, to be listed, cleaned and pruned.
pub const IMAGE_MANAGED_LABEL: &str = "bannou.orchestrator-image";

/// The Dockerfile of the build context.
pub const DOCKERFILE: &str = "FROM scratch\n\
COPY rootfs/ /\n\
ENTRYPOINT [\"/bannou-host\"]\n\
CMD [\"serve\"]\n";

/// The `/etc/hosts` written into the image.
pub const ETC_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Tag of the built image, e.g. `bannou:latest`.
    pub tag: String,
    /// The static `bannou-host` binary to copy in.
    pub binary: PathBuf,
    /// CA bundle to copy to [`DEFAULT_CA_BUNDLE`]; `None` builds without one (kube clients
    /// then cannot be built inside the container).
    pub ca_bundle: Option<PathBuf>,
    /// Extra image labels; [`image_labels`] are always added and win. Never put
    /// `bannou.orchestrator-managed` here (see [`IMAGE_MANAGED_LABEL`]).
    pub labels: BTreeMap<String, String>,
}

impl ImageSpec {
    /// `binary` tagged `tag`, with the host's CA bundle when [`DEFAULT_CA_BUNDLE`] exists.
    pub fn new(tag: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        let ca = Path::new(DEFAULT_CA_BUNDLE);
        ImageSpec {
            tag: tag.into(),
            binary: binary.into(),
            ca_bundle: ca.is_file().then(|| ca.to_path_buf()),
            labels: BTreeMap::new(),
        }
    }
}

/// The labels every image we build carries: `bannou.orchestrator-image=true` and
/// `bannou.component=bannou-host` (never `bannou.orchestrator-managed`, see
/// [`IMAGE_MANAGED_LABEL`]).
pub fn image_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (IMAGE_MANAGED_LABEL.to_owned(), "true".to_owned()),
        (IMAGE_COMPONENT_LABEL.to_owned(), "bannou-host".to_owned()),
    ])
}

/// A built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The tag it was built as.
    pub tag: String,
    /// Image id (`sha256:…`).
    pub id: String,
    /// Size reported by the engine, in bytes.
    pub size_bytes: u64,
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A local file (binary, CA bundle) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The binary is not a static executable and would not start in an empty image.
    #[error("{path} is not a static executable: {reason}; build it with scripts/build-image.sh")]
    NotStatic {
        /// The binary.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The Docker engine refused or failed the build.
    #[error("docker build failed: {0}")]
    Build(String),
}

/// Checks that `bytes` is an x86-64/aarch64 ELF executable without a `PT_INTERP` program
/// header (no dynamic loader needed), as `+crt-static` produces ("static-pie linked").
pub fn check_static(bytes: &[u8]) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".to_owned());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let e_type = u16_at(16);
    if e_type != 2 && e_type != 3 {
        return Err(format!("ELF type {e_type} is not an executable"));
    }
    let phoff = usize::try_from(u64_at(0x20)).map_err(|_| "bad program header offset")?;
    let phentsize = usize::from(u16_at(0x36));
    let phnum = usize::from(u16_at(0x38));
    if phentsize < 4 {
        return Err("bad program header size".to_owned());
    }
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(h) = bytes.get(at..at + 4) else {
            return Err("truncated program headers".to_owned());
        };
        if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == PT_INTERP {
            return Err("it needs a dynamic loader (PT_INTERP)".to_owned());
        }
    }
    Ok(())
}

/// Builds the tar build context: the [`DOCKERFILE`] and a `rootfs/` tree with the binary
/// (mode 0755), `/etc/hosts`, the CA bundle when given, and `/tmp` (mode 1777). Entries are
/// owned by root with mtime 0, so equal inputs give equal contexts (and a cached build).
pub fn build_context(binary: &[u8], ca_bundle: Option<&[u8]>) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        tar.append_data(&mut h, path, data)
    };
    file(&mut tar, "Dockerfile", 0o644, DOCKERFILE.as_bytes())?;
    file(&mut tar, "rootfs/bannou-host", 0o755, binary)?;
    file(&mut tar, "rootfs/etc/hosts", 0o644, ETC_HOSTS.as_bytes())?;
    if let Some(ca) = ca_bundle {
        file(
            &mut tar,
            "rootfs/etc/ssl/certs/ca-certificates.crt",
            0o644,
            ca,
        )?;
    }
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o1777);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_mtime(0);
    tar.append_data(&mut dir, "rootfs/tmp/", std::io::empty())?;
    tar.into_inner()
}

/// Builds `spec` on `docker`, calling `progress` with each line of build output (the
/// engine's `stream` and `status` messages, trimmed). Refuses a dynamic binary.
pub async fn build_image(
    docker: &Docker,
    spec: &ImageSpec,
    mut progress: impl FnMut(&str),
) -> Result<BuiltImage, ImageError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| ImageError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let binary = read(&spec.binary)?;
    check_static(&binary).map_err(|reason| ImageError::NotStatic {
        path: spec.binary.clone(),
        reason,
    })?;
    let ca = spec.ca_bundle.as_deref().map(read).transpose()?;
    let context = build_context(&binary, ca.as_deref()).map_err(|source| ImageError::Read {
        path: spec.binary.clone(),
        source,
    })?;
    drop(binary);

    let mut all_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    all_labels.extend(image_labels());
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_owned(),
        t: Some(spec.tag.clone()),
        rm: true,
        forcerm: true,
        labels: Some(all_labels),
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| ImageError::Build(e.to_string()))?;
        if let Some(detail) = info.error_detail {
            return Err(ImageError::Build(
                detail.message.unwrap_or_else(|| "unknown error".to_owned()),
            ));
        }
        for text in [info.stream, info.status].into_iter().flatten() {
            for line in text.lines() {
                let line = line.trim_end();
                if !line.is_empty() {
                    progress(line);
                }
            }
        }
    }
    let inspected = docker
        .inspect_image(&spec.tag)
        .await
        .map_err(|e| ImageError::Build(format!("built image {} not found: {e}", spec.tag)))?;
    Ok(BuiltImage {
        tag: spec.tag.clone(),
        id: inspected.id.unwrap_or_default(),
        size_bytes: inspected
            .size
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(interp: bool) -> Vec<u8> {
        // A minimal ELF64 header with two program headers at offset 64.
        let mut b = vec![0u8; 64 + 2 * 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16] = 3; // ET_DYN (static-pie)
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let second: u32 = if interp { 3 } else { 2 }; // PT_INTERP or PT_DYNAMIC
        b[120..124].copy_from_slice(&second.to_le_bytes());
        b
    }

    #[test]
    fn static_check_rejects_an_interpreter_and_non_elf() {
        assert_eq!(check_static(&elf(false)), Ok(()));
        assert!(check_static(&elf(true)).unwrap_err().contains("PT_INTERP"));
        assert!(check_static(b"#!/bin/sh\necho hi\n").is_err());
        let mut truncated = elf(false);
        truncated.truncate(100);
        assert!(check_static(&truncated).is_err());
    }

    #[test]
    fn context_holds_dockerfile_rootfs_and_modes() {
        let ctx = build_context(b"BIN", Some(b"CA")).unwrap();
        let mut archive = tar::Archive::new(ctx.as_slice());
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = entry.header().mode().unwrap();
            let mut data = String::new();
            std::io::Read::read_to_string(&mut entry, &mut data).unwrap();
            seen.insert(path, (mode, data));
        }
        assert_eq!(seen["Dockerfile"].1, DOCKERFILE);
        assert!(DOCKERFILE.starts_with("FROM scratch\n"));
        assert_eq!(seen["rootfs/bannou-host"], (0o755, "BIN".to_owned()));
        assert_eq!(seen["rootfs/etc/hosts"].1, ETC_HOSTS);
        assert_eq!(
            seen["rootfs/etc/ssl/certs/ca-certificates.crt"].1,
            "CA".to_owned()
        );
        assert_eq!(seen["rootfs/tmp/"].0, 0o1777);
        let without_ca = build_context(b"BIN", None).unwrap();
        assert!(without_ca.len() < ctx.len() || without_ca != ctx);
        assert_eq!(
            build_context(b"BIN", Some(b"CA")).unwrap(),
            ctx,
            "equal inputs give equal contexts"
        );
    }

    #[test]
    fn our_image_labels_do_not_make_its_containers_ours() {
        let l = image_labels();
        assert!(
            !orchestrator_core::ports::backend::is_managed(&l),
            "containers inherit image labels"
        );
        assert_eq!(l[IMAGE_MANAGED_LABEL], "true");
        assert_eq!(l[IMAGE_COMPONENT_LABEL], "bannou-host");
    }
}
