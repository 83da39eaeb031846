//! The systemd unit `harmony fleet enroll` writes beside `agent.toml`: the agent runs from
//! `install_dir/current` as systemd's notify service, so that upgrades work (docs/operations.md,
//! "Installing the agent so that upgrades work").

use std::path::Path;

/// `harmony-agent.service` for an agent installed in `install_dir` with its config at `config`.
pub(crate) struct AgentUnit<'a> {
    /// `install_dir` of agent.toml: `current` is the version the service runs.
    pub install_dir: &'a Path,
    /// Where agent.toml lives on the device.
    pub config: &'a Path,
    /// The device, for the description.
    pub device: &'a str,
}

/// Why a path cannot go into a unit file.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path:?} cannot go into a systemd unit: {why}")]
pub struct UnitError {
    what: &'static str,
    path: String,
    why: &'static str,
}

/// One `ExecStart=` word, quoted as systemd.syntax(7) and systemd.service(5) read it: `%` is a
/// specifier (`%%`), `$` a variable (`$$`), `\` and `"` are escaped inside double quotes.
fn word(what: &'static str, p: &Path) -> Result<String, UnitError> {
    let s = p.to_str().ok_or(UnitError { what, path: p.display().to_string(), why: "not UTF-8" })?;
    if !p.is_absolute() {
        return Err(UnitError { what, path: s.to_owned(), why: "not an absolute path" });
    }
    if s.chars().any(char::is_control) {
        return Err(UnitError { what, path: s.escape_default().to_string(), why: "it holds control characters" });
    }
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%").replace('$', "$$");
    Ok(format!("\"{escaped}\""))
}

impl AgentUnit<'_> {
    /// The unit's text.
    pub(crate) fn render(&self) -> Result<String, UnitError> {
        let exe = word("--install-dir", &self.install_dir.join("current"))?;
        let config = word("--device-dir", self.config)?;
        let device: String = self.device.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        Ok(format!(
            "# Written by harmony fleet enroll: install as /etc/systemd/system/harmony-agent.service\n\
             [Unit]\n\
             Description=Harmony edge agent (device {device})\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=notify\n\
             # The old agent tells systemd the new agent's pid (MAINPID=) when an upgrade retires it.\n\
             NotifyAccess=all\n\
             ExecStart={exe} --config {config}\n\
             # An upgrade's new agent is started by the old one and must survive the old one's exit.\n\
             KillMode=process\n\
             Restart=on-failure\n\
             RestartSec=5\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_and_specifiers_escaped() {
        let u = AgentUnit { install_dir: Path::new("/opt/my harmony%d"), config: Path::new("/etc/h$ome/\"a\".toml"), device: "pi-001" };
        let text = u.render().unwrap();
        assert!(text.contains("ExecStart=\"/opt/my harmony%%d/current\" --config \"/etc/h$$ome/\\\"a\\\".toml\"\n"), "{text}");
    }

    #[test]
    fn relative_and_control_character_paths_are_refused() {
        let relative = AgentUnit { install_dir: Path::new("opt"), config: Path::new("/etc/a.toml"), device: "d" };
        assert!(relative.render().unwrap_err().to_string().contains("not an absolute path"));
        let newline = AgentUnit { install_dir: Path::new("/opt"), config: Path::new("/etc/a\nExecStartPre=/bin/evil"), device: "d" };
        assert!(newline.render().unwrap_err().to_string().contains("control characters"));
    }
}
