//! `kube-loopback [--port N] [--kubeconfig FILE]`: runs the loopback API server until
//! interrupted, writing a kubeconfig for it (context `loopback`). For trying clients by hand
//! (kubectl, helm, harmony); tests start the server in-process instead.

use harmony_kube_loopback::{Options, Server};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let server = Server::bind(([127, 0, 0, 1], port).into(), Options::default()).await?;
    let kubeconfig = Server::kubeconfig(&[("loopback", &server)]);
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
