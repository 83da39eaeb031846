//! `kube-loopback [--port N] [--kubeconfig FILE] [--context NAME]...`: runs the loopback API
//! server until interrupted, writing a kubeconfig for it with the given contexts (default
//! `loopback`), all pointing at this server. For trying clients by hand (kubectl, helm,
//! harmony) and for the quickstart; tests start the server in-process instead.

use harmony_kube_loopback::{Options, Server};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let server = Server::bind(([127, 0, 0, 1], port).into(), Options::default()).await?;
    let mut contexts: Vec<&str> = args.windows(2).filter(|w| w[0] == "--context").map(|w| w[1].as_str()).collect();
    if contexts.is_empty() {
        contexts.push("loopback");
    }
    let pairs: Vec<(&str, &Server)> = contexts.iter().map(|c| (*c, &server)).collect();
    let kubeconfig = Server::kubeconfig(&pairs);
    match arg("--kubeconfig") {
        Some(path) => {
            std::fs::write(&path, kubeconfig)?;
            eprintln!("kube-loopback: serving {} (kubeconfig written to {path})", server.url());
        }
        None => {
            eprintln!("kube-loopback: serving {}", server.url());
            print!("{kubeconfig}");
        }
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
