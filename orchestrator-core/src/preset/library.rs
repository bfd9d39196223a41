//! The preset directory (docs/COMPATIBILITY.md#preset-directory): list `*.yaml` summaries
//! and load one preset by name. File I/O lives here only; parsing stays in
//! [`Preset::parse_with_catalog`].

use std::io;
use std::path::{Path, PathBuf};

use super::{ParsedPreset, Preset, PresetErrors};
use crate::catalog::Catalog;

/// A directory of preset files, validated against a catalog.
#[derive(Debug, Clone)]
pub struct PresetLibrary<'c> {
    dir: PathBuf,
    catalog: &'c Catalog,
}

/// What [`PresetLibrary::list`] shows for one preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetSummary {
    /// Preset name (from the YAML, else the file stem).
    pub name: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Free-text category, if any.
    pub category: Option<String>,
    /// Number of topology nodes.
    pub node_count: usize,
    /// Number of processing pools.
    pub pool_count: usize,
    /// The file it came from.
    pub file: PathBuf,
}

/// A file [`PresetLibrary::list`] could not use.
#[derive(Debug)]
pub struct SkippedPreset {
    /// The file.
    pub file: PathBuf,
    /// Why it was skipped.
    pub error: LibraryError,
}

/// The result of listing a directory.
#[derive(Debug, Default)]
pub struct PresetListing {
    /// Valid presets, sorted by file name.
    pub presets: Vec<PresetSummary>,
    /// Files that could not be read or did not validate, sorted by file name.
    pub skipped: Vec<SkippedPreset>,
}

/// Why a preset could not be listed or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The requested name is empty or contains `/`, `\` or `..`.
    #[error("invalid preset name `{name}`: must be non-empty without `/`, `\\` or `..`")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// No `{dir}/{name}.yaml`.
    #[error("preset `{name}` not found in {}", .dir.display())]
    NotFound {
        /// The requested name.
        name: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// Reading the directory or a file failed.
    // The cause is chained through `source()`, not repeated in the message.
    #[error("cannot read {}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a valid preset.
    #[error("{0}")]
    Invalid(PresetErrors),
}

impl PresetLibrary<'static> {
    /// A library over `dir` using the built-in catalog.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PresetLibrary::with_catalog(dir, Catalog::builtin())
    }
}

impl<'c> PresetLibrary<'c> {
    /// A library over `dir` validating against `catalog`.
    pub fn with_catalog(dir: impl Into<PathBuf>, catalog: &'c Catalog) -> Self {
        PresetLibrary {
            dir: dir.into(),
            catalog,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Summaries of every `*.yaml` file (not `.yml`). A missing directory is empty;
    /// unreadable or invalid files go to [`PresetListing::skipped`].
    pub fn list(&self) -> Result<PresetListing, LibraryError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PresetListing::default()),
            Err(source) => {
                return Err(LibraryError::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml") && p.is_file())
            .collect();
        files.sort();

        let mut listing = PresetListing::default();
        for file in files {
            match self.load_path(&file) {
                Ok(parsed) => {
                    let p = parsed.preset;
                    listing.presets.push(PresetSummary {
                        name: p.name,
                        description: p.description,
                        category: p.category,
                        node_count: p.nodes.len(),
                        pool_count: p.processing_pools.len(),
                        file,
                    });
                }
                Err(error) => listing.skipped.push(SkippedPreset { file, error }),
            }
        }
        Ok(listing)
    }

    /// Loads `{dir}/{name}.yaml`.
    pub fn load(&self, name: &str) -> Result<ParsedPreset, LibraryError> {
        if name.trim().is_empty()
            || name.contains('/')
            || name.contains('\\')
            || name.contains("..")
        {
            return Err(LibraryError::InvalidName {
                name: name.to_owned(),
            });
        }
        let path = self.dir.join(format!("{name}.yaml"));
        match self.load_path(&path) {
            Err(LibraryError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(LibraryError::NotFound {
                    name: name.to_owned(),
                    dir: self.dir.clone(),
                })
            }
            other => other,
        }
    }

    /// Loads and validates any file; messages name it by its file name.
    pub fn load_path(&self, path: &Path) -> Result<ParsedPreset, LibraryError> {
        let text = std::fs::read_to_string(path).map_err(|source| LibraryError::Io {
            path: path.to_owned(),
            source,
        })?;
        // Errors name the path as given, so a user can open the file from the message.
        let label = path.display().to_string();
        Preset::parse_with_catalog(&label, &text, self.catalog).map_err(LibraryError::Invalid)
    }
}
