//! Where a running server's config comes from, so that a reload reads it again as the start did:
//! the same file, in the same format, with the same command-line overrides.

use std::path::PathBuf;

use super::{default_listener, ConfigError, ConfigFormat, LoadedConfig, ServerConfig};

/// A config file (or none), its format, and what `midge serve`'s options put over it.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file; `None`: the defaults (`midge serve` without `-c`).
    path: Option<PathBuf>,
    /// Its format: given, or the one the first load detected, so later loads read it the same.
    format: Option<ConfigFormat>,
    /// `-p`: the default listener's port.
    port: Option<u16>,
    /// `--data-dir`: over `[store] data_dir`.
    data_dir: Option<PathBuf>,
}

impl ConfigSource {
    /// `path` read as `format` (or as its syntax says, the first time).
    pub fn new(path: Option<PathBuf>, format: Option<ConfigFormat>) -> Self {
        Self { path, format, port: None, data_dir: None }
    }

    /// With the default listener on `port` (`-p`): not with a file that defines listeners.
    pub fn with_port(self, port: Option<u16>) -> Self {
        Self { port, ..self }
    }

    /// With the store in `dir` whatever the file says (`--data-dir`).
    pub fn with_data_dir(self, data_dir: Option<PathBuf>) -> Self {
        Self { data_dir, ..self }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Reads and checks the config, with the overrides applied. The first load fixes the
    /// format for every later one.
    pub fn load(&mut self) -> Result<LoadedConfig, ConfigError> {
        let mut loaded = match &self.path {
            Some(path) => LoadedConfig::load(path, self.format)?,
            None => LoadedConfig { config: ServerConfig::default(), format: ConfigFormat::Toml, notes: Vec::new() },
        };
        self.format = Some(loaded.format);
        if let Some(port) = self.port {
            if !loaded.config.listener.is_empty() {
                return Err(ConfigError::PortWithListeners { path: self.path.clone().unwrap_or_default() });
            }
            loaded.config.listener = vec![default_listener(port)];
        }
        if let Some(dir) = &self.data_dir {
            loaded.config.store.data_dir = dir.clone();
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_load_fixes_the_format_and_overrides_apply_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.conf");
        std::fs::write(&path, "listener 1884\n").unwrap();
        let mut source = ConfigSource::new(Some(path.clone()), None).with_data_dir(Some("/d".into()));
        let loaded = source.load().unwrap();
        assert_eq!(loaded.format, ConfigFormat::Mosquitto);
        assert_eq!(loaded.config.store.data_dir, PathBuf::from("/d"));
        // Now valid TOML too: still read as a mosquitto.conf, as at the start.
        std::fs::write(&path, "").unwrap();
        assert_eq!(source.load().unwrap().format, ConfigFormat::Mosquitto);

        let mut defaults = ConfigSource::new(None, None).with_port(Some(1999));
        assert_eq!(defaults.load().unwrap().config.listener, [default_listener(1999)]);
        let mut both = ConfigSource::new(Some(path.clone()), Some(ConfigFormat::Toml)).with_port(Some(1));
        std::fs::write(&path, "[[listener]]\nbind = \"127.0.0.1:1\"\n").unwrap();
        assert!(both.load().unwrap_err().to_string().contains("-p/--port"));
    }
}
