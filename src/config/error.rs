//! `ConfigError`: why a config file was refused, as one sentence naming the file, the line and
//! column, and the field (`providers[1].name`). Locations come from the TOML parser's span when
//! it gives one, else from the span of the offending field found in a `toml_edit` parse of the
//! same text. Owns no state.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Item, Value};

/// A config that cannot be used, and why. `Display` is the sentence to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    /// The field path, like `providers[1].name`, when known.
    pub field: Option<String>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        match &self.field {
            Some(field) => write!(f, ": {field}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One step in a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A semantic problem found while lifting raw values, located later from its path.
#[derive(Debug)]
pub(crate) struct Problem {
    pub path: Vec<Seg>,
    pub message: String,
}

impl Problem {
    pub fn new(path: &[Seg], message: impl Into<String>) -> Problem {
        Problem {
            path: path.to_vec(),
            message: message.into(),
        }
    }
}

pub(crate) fn format_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl ConfigError {
    /// An error about the file as a whole (cannot read it, and so on).
    pub(crate) fn file(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            location: None,
            field: None,
            message: message.into(),
        }
    }

    /// Locates a semantic problem in `text` by its field path.
    pub(crate) fn from_problem(file: &Path, text: &str, problem: Problem) -> ConfigError {
        let span = toml_edit::Document::parse(text)
            .ok()
            .and_then(|doc| span_of(doc.as_item(), &problem.path));
        ConfigError {
            file: file.to_owned(),
            location: span.map(|s| line_col(text, s.start)),
            field: (!problem.path.is_empty()).then(|| format_path(&problem.path)),
            message: problem.message,
        }
    }

    /// Converts the TOML parser's error, finding the field at its span when the text parses.
    pub(crate) fn from_toml(file: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
        let span = err.span();
        let field = span.as_ref().and_then(|s| {
            let doc = toml_edit::Document::parse(text).ok()?;
            let mut path = Vec::new();
            path_at(doc.as_item(), s.start, &mut path).then(|| path.join(""))
        });
        let message = err.message().trim().replace('\n', " ");
        ConfigError {
            file: file.to_owned(),
            location: span.map(|s| line_col(text, s.start)),
            field: field.map(|f| f.trim_start_matches('.').to_owned()),
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The span of the deepest item along `path` that exists (the field itself when present,
/// else its table).
fn span_of(root: &Item, path: &[Seg]) -> Option<Range<usize>> {
    let mut item = root;
    let mut best = None;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => item.get(*k),
            Seg::Index(i) => item.get(*i),
        };
        let Some(next) = next else { break };
        if let Some(span) = next.span() {
            best = Some(span);
        }
        item = next;
    }
    best
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

/// Builds the path (`.providers`, `[1]`, `.name`) of the key or value containing `offset`.
fn path_at(item: &Item, offset: usize, path: &mut Vec<String>) -> bool {
    match item {
        Item::Table(table) => {
            for (name, _) in table.iter() {
                let Some((key, child)) = table.get_key_value(name) else {
                    continue;
                };
                path.push(format!(".{name}"));
                if contains(key.span(), offset) || path_at(child, offset, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
        Item::ArrayOfTables(tables) => {
            for (i, table) in tables.iter().enumerate() {
                path.push(format!("[{i}]"));
                let child = Item::Table(table.clone());
                if path_at(&child, offset, path) || contains(table.span(), offset) {
                    return true;
                }
                path.pop();
            }
            false
        }
        Item::Value(value) => path_in_value(value, offset, path),
        Item::None => false,
    }
}

fn path_in_value(value: &Value, offset: usize, path: &mut Vec<String>) -> bool {
    match value {
        Value::InlineTable(table) => {
            for (name, _) in table.iter() {
                let Some((key, child)) = table.get_key_value(name) else {
                    continue;
                };
                path.push(format!(".{name}"));
                if contains(key.span(), offset) || path_at(child, offset, path) {
                    return true;
                }
                path.pop();
            }
            contains(value.span(), offset)
        }
        Value::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                path.push(format!("[{i}]"));
                if path_in_value(element, offset, path) {
                    return true;
                }
                path.pop();
            }
            contains(value.span(), offset)
        }
        _ => contains(value.span(), offset),
    }
}
