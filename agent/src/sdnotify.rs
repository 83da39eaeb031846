//! systemd's readiness protocol (`sd_notify(3)`): one datagram per message to the socket named
//! by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Used so that a unit with
//! `Type=notify` knows when the agent runs, and so that an upgrade hands the unit's main PID
//! over to the new agent (`MAINPID=`, which needs `NotifyAccess=all`) before the old one exits.
//! Without `$NOTIFY_SOCKET` every call is a no-op.
use std::os::unix::net::UnixDatagram;

/// Sends `message` (e.g. `READY=1`, `MAINPID=1234`) to `$NOTIFY_SOCKET`; false when there is
/// none or sending failed (logged).
pub fn notify(message: &str) -> bool {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(socket) if !socket.is_empty() => match notify_to(&socket, message) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("sd_notify to {socket}: {e}");
                false
            }
        },
        _ => false,
    }
}

/// Sends `message` to the notification socket `socket` (a path, or `@name`: abstract).
pub fn notify_to(socket: &str, message: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(message.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(message.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        notify_to(&path.to_string_lossy(), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("harmony-agent-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        notify_to(&format!("@{name}"), "MAINPID=42").expect("send");
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"MAINPID=42");
        assert!(notify_to(&dir.path().join("absent").to_string_lossy(), "READY=1").is_err());
    }
}
