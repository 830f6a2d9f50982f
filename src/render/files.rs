//! The template sources as documents: relative path → text, and how each file is named in
//! messages. The shipped `templates/` folder is read into one; a published version of a
//! file (`crate::wording`) replaces its text and its name (`templates/PATH (version N)`),
//! so that a problem names the document people edit, wherever it lives.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::TemplateError;

/// The files a template set is compiled from (`KIND/LANG/*.hbs`, `_voice/LANG.toml`,
/// `_reasons/LANG.toml`, `_layout/email.html.hbs`), by path relative to the folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateFiles {
    texts: BTreeMap<String, String>,
    /// How messages name a file, where it differs from `{label}/{path}`.
    names: BTreeMap<String, String>,
    label: String,
}

impl TemplateFiles {
    /// Files under `label` (a folder's path, or `templates`): `delayed/nl/sms.txt.hbs` is
    /// named `{label}/delayed/nl/sms.txt.hbs` in messages.
    pub fn new(label: &str, texts: BTreeMap<String, String>) -> TemplateFiles {
        TemplateFiles { texts, names: BTreeMap::new(), label: label.to_string() }
    }

    /// Every `.hbs` and `.toml` file under `dir` (other files, like its README, are not
    /// templates). Paths use `/` whatever the platform.
    pub fn read(dir: &Path) -> Result<TemplateFiles, TemplateError> {
        if !dir.is_dir() {
            return Err(TemplateError::Io(format!("{}: not a folder with templates", dir.display())));
        }
        let mut texts = BTreeMap::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let here = dir.join(&rel);
            let entries = fs::read_dir(&here).map_err(|e| TemplateError::Io(format!("{}: {e}", here.display())))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                let path = entry.path();
                if path.is_dir() {
                    stack.push(child);
                } else if name.ends_with(".hbs") || name.ends_with(".toml") {
                    let text = fs::read_to_string(&path).map_err(|e| TemplateError::Io(format!("{}: {e}", path.display())))?;
                    texts.insert(child, text);
                }
            }
        }
        Ok(TemplateFiles::new(&dir.display().to_string(), texts))
    }

    /// Replace (or add) one file, named `name` in messages.
    pub fn put(&mut self, rel: &str, text: String, name: String) {
        self.texts.insert(rel.to_string(), text);
        self.names.insert(rel.to_string(), name);
    }

    /// The text of one file.
    pub fn get(&self, rel: &str) -> Option<&str> {
        self.texts.get(rel).map(String::as_str)
    }

    /// Every file, by path.
    pub fn texts(&self) -> &BTreeMap<String, String> {
        &self.texts
    }

    /// The name of a file in messages: `{label}/{rel}`, or the name given with [`put`].
    ///
    /// [`put`]: TemplateFiles::put
    pub fn name(&self, rel: &str) -> String {
        match self.names.get(rel) {
            Some(n) => n.clone(),
            None => Path::new(&self.label).join(rel).display().to_string(),
        }
    }

    /// What the set is called in messages about it as a whole (the folder).
    pub fn label(&self) -> &str {
        &self.label
    }
}
