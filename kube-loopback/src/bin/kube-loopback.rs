//! `kube-loopback [--port N] [--kubeconfig FILE] [--context NAME]...`: runs one loopback API
//! server per context (default one, `loopback`) until interrupted, writing a kubeconfig with
//! the given contexts, each pointing at its own server: two contexts are two clusters, as
//! Harmony expects (it prunes per cluster). `--port` is the first server's port; the others
//! take free ones. For trying clients by hand (kubectl, helm, harmony) and for the quickstart;
//! tests start servers in-process instead.

use harmony_kube_loopback::{Options, Server};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut contexts: Vec<&str> = args.windows(2).filter(|w| w[0] == "--context").map(|w| w[1].as_str()).collect();
    if contexts.is_empty() {
        contexts.push("loopback");
    }
    let mut servers = Vec::new();
    for (i, _) in contexts.iter().enumerate() {
        servers.push(Server::bind(([127, 0, 0, 1], if i == 0 { port } else { 0 }).into(), Options::default()).await?);
    }
    let pairs: Vec<(&str, &Server)> = contexts.iter().copied().zip(servers.iter()).collect();
    let kubeconfig = Server::kubeconfig(&pairs);
    let urls: Vec<String> = pairs.iter().map(|(c, s)| format!("{c} at {}", s.url())).collect();
    match arg("--kubeconfig") {
        Some(path) => {
            std::fs::write(&path, kubeconfig)?;
            eprintln!("kube-loopback: serving {} (kubeconfig written to {path})", urls.join(", "));
        }
        None => {
            eprintln!("kube-loopback: serving {}", urls.join(", "));
            print!("{kubeconfig}");
        }
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
