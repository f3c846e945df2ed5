//! Where an example client's uploads go: a real service, a given base URL, or (without a
//! token) this emulator started in-process on 127.0.0.1. The adapters' `upload`
//! examples share this, so that their `--token`/`--base-url` semantics and their check
//! of what the embedded emulator stored are the same.
//!
//! # Examples
//! ```
//! use upload_session_emulator::embedded::Endpoint;
//! let ep = Endpoint::resolve(None, "NO_SUCH_TOKEN_VARIABLE", None).unwrap();
//! assert!(ep.embedded.is_some());
//! assert_eq!(ep.token, upload_session_emulator::DEFAULT_TOKEN);
//! assert!(ep.graph_base("https://graph.microsoft.com/v1.0").ends_with("/onedrive/v1.0"));
//!
//! let real = Endpoint::resolve(Some("t".into()), "NO_SUCH_TOKEN_VARIABLE", None).unwrap();
//! assert_eq!(real.graph_base("https://graph.microsoft.com/v1.0"), "https://graph.microsoft.com/v1.0");
//! assert_eq!(real.dropbox_hosts(), None);
//! ```

use crate::server::{EmulatorServer, RunningServer, ServerOptions};
use crate::{DEFAULT_TOKEN, FileRecord, Service};

/// Where the uploads go.
#[derive(Debug)]
pub struct Endpoint {
    /// `--base-url`, or the embedded emulator's origin; `None`: the real service.
    pub base: Option<String>,
    /// The bearer token to use.
    pub token: String,
    /// The in-process emulator, when no token was given.
    pub embedded: Option<RunningServer>,
}

impl Endpoint {
    /// Decides where uploads go from the `--token` flag (`token`), the environment
    /// variable `env_var` (when the flag is absent; empty counts as absent) and
    /// `--base-url`. No token and no base URL: the emulator is started in-process and its
    /// default token used.
    ///
    /// # Errors
    /// A message for the user: a base URL without a token, a base URL that is not a URL,
    /// or an emulator that cannot start.
    pub fn resolve(
        token: Option<String>,
        env_var: &str,
        base_url: Option<&str>,
    ) -> Result<Endpoint, String> {
        let token = token
            .or_else(|| std::env::var(env_var).ok())
            .filter(|t| !t.is_empty());
        match (token, base_url) {
            (None, None) => {
                let server = EmulatorServer::start(ServerOptions::default())
                    .map_err(|e| format!("cannot start the embedded emulator: {e}"))?;
                Ok(Endpoint {
                    base: Some(server.url().to_string()),
                    token: DEFAULT_TOKEN.to_string(),
                    embedded: Some(server),
                })
            }
            (None, Some(_)) => Err(format!("--base-url needs a token (--token or {env_var})")),
            (Some(token), base) => {
                if let Some(b) = base {
                    b.parse::<http::Uri>()
                        .map_err(|_| format!("--base-url {b:?} is not a URL"))?;
                }
                Ok(Endpoint {
                    base: base.map(str::to_string),
                    token,
                    embedded: None,
                })
            }
        }
    }

    /// `base` without trailing `/`, and whether it is a bare origin (an emulator).
    fn base(&self) -> Option<(String, bool)> {
        let base = self.base.as_deref()?.trim_end_matches('/').to_string();
        let bare = base
            .parse::<http::Uri>()
            .map(|u| u.path().is_empty() || u.path() == "/")
            .unwrap_or(false);
        Some((base, bare))
    }

    /// The Graph base URL: `real` without a base URL, the emulator's
    /// `<origin>/onedrive/v1.0` for a bare origin, else the base URL as given.
    pub fn graph_base(&self, real: &str) -> String {
        match self.base() {
            None => real.to_string(),
            // The emulator's Graph API lives under /onedrive/v1.0.
            Some((b, true)) => format!("{b}/onedrive/v1.0"),
            Some((b, false)) => b,
        }
    }

    /// The Dropbox content and API hosts (`None`: the real service's): for a bare origin
    /// the emulator's `<origin>/dropbox/{content,api}/2`, else `<base>/{content,api}/2`.
    pub fn dropbox_hosts(&self) -> Option<(String, String)> {
        let (b, bare) = self.base()?;
        let prefix = if bare { format!("{b}/dropbox") } else { b };
        Some((format!("{prefix}/content/2"), format!("{prefix}/api/2")))
    }

    /// The record the embedded emulator stored for `service` at `path` (`None` when not
    /// embedded or not stored).
    pub fn stored_at(&self, service: Service, path: &str) -> Option<FileRecord> {
        let server = self.embedded.as_ref()?;
        let emulator = server.emulator();
        let guard = emulator.lock().ok()?;
        guard.file(service, path)
    }

    /// The record the embedded emulator stored for `service` with item id `id`
    /// (`Ok(None)` when not embedded).
    ///
    /// # Errors
    /// The emulator has no such file, or its lock is poisoned.
    pub fn stored_by_id(&self, service: Service, id: &str) -> Result<Option<FileRecord>, String> {
        let Some(server) = &self.embedded else {
            return Ok(None);
        };
        let files = server
            .emulator()
            .lock()
            .map_err(|_| "the emulator lock is poisoned".to_string())?
            .files();
        files
            .into_iter()
            .find(|f| f.service == service && f.id == id)
            .map(Some)
            .ok_or_else(|| format!("the emulator has no file with id {id}"))
    }
}
