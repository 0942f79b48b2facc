//! A node cut off from the database by the kernel. With `--cut-share`, each node runs in a
//! network namespace of its own, joined to the driver's by a veth pair; it reaches the
//! database through a forwarder on the driver's end of the pair (the database listens on the
//! driver's loopback only). A cut takes the driver's end of the link down: the node keeps
//! running — its server calls come over its pipes, not the network — but no packet reaches the
//! database: nothing answers and nothing closes, as when a network link goes down. The node
//! must stop its accounts by itself once it cannot renew their leases.
//!
//! Needs the right to make network namespaces (root, or `CAP_NET_ADMIN`): `ip netns add`,
//! from iproute2.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::str::FromStr;

use tokio::net::{TcpListener, TcpStream};

use crate::crash::CrashError;

/// One node's namespace, its link and the forwarder on the driver's side.
pub(super) struct NodeNet {
    /// The namespace (`ip netns exec NAME …`).
    pub(super) ns: Namespace,
    /// The driver's end of the veth pair (the one a cut takes down).
    host_if: String,
    /// The forwarder's address (the driver's end of the pair, the database's port).
    at: SocketAddr,
    forwarder: tokio::task::JoinHandle<()>,
}

fn ip(args: &[&str]) -> Result<(), CrashError> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        CrashError::BadOption(
            "--cut-share",
            format!("needs iproute2's `ip` for network namespaces: {e}"),
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CrashError::BadOption(
            "--cut-share",
            format!(
                "`ip {}` failed (network namespaces need root or CAP_NET_ADMIN): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

/// The database's TCP address in `url` (a `postgres://` URL or `key=value` settings).
fn database_addr(url: &str) -> Result<(String, u16), CrashError> {
    let bad = |why: String| CrashError::BadOption("--store", why);
    let config = tokio_postgres::Config::from_str(url).map_err(|e| bad(e.to_string()))?;
    let host = match config.get_hosts() {
        [tokio_postgres::config::Host::Tcp(h)] => h.clone(),
        [] => "localhost".to_owned(),
        _ => {
            return Err(bad(
                "a cut needs the database at one TCP address (not a socket, not a list)".into(),
            ));
        }
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok((host, port))
}

impl NodeNet {
    /// Makes node `n`'s namespace and link for a run (`run` tells runs apart), and starts the
    /// forwarder to the database of `url`.
    pub(super) async fn create(run: u32, n: usize, url: &str) -> Result<Self, CrashError> {
        let (db_host, db_port) = database_addr(url)?;
        let name = format!("sc{run}n{n}");
        let host_if = format!("sc{run}h{n}");
        let node_if = format!("sc{run}p{n}");
        // A /30 per node: .1 the driver's end, .2 the node's.
        let net = [10, 213, (run % 250) as u8, (n as u8) * 4];
        let host_ip = Ipv4Addr::new(net[0], net[1], net[2], net[3] + 1);
        let node_ip = Ipv4Addr::new(net[0], net[1], net[2], net[3] + 2);
        // Left by an earlier run that died: replaced.
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let ns = Namespace(name.clone());
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &node_if, "netns", &name,
        ])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        let inside = ["netns", "exec", &name, "ip"];
        let node_cidr = format!("{node_ip}/30");
        for args in [
            &["addr", "add", &node_cidr, "dev", &node_if][..],
            &["link", "set", &node_if, "up"],
            &["link", "set", "lo", "up"],
        ] {
            ip(&[&inside[..], args].concat())?;
        }
        let at = SocketAddr::new(IpAddr::V4(host_ip), db_port);
        let listener = TcpListener::bind(at).await?;
        Ok(NodeNet {
            ns,
            host_if,
            at,
            forwarder: tokio::spawn(forward(listener, db_host, db_port)),
        })
    }

    /// `url` for a node inside the namespace: the same database, reached at the forwarder
    /// (`hostaddr` overrides where the host name points; the port is the database's).
    pub(super) fn url(&self, url: &str) -> String {
        let ip = self.at.ip();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}hostaddr={ip}")
        } else {
            format!("{url} hostaddr={ip}")
        }
    }

    /// Takes the link down (`false`: the node is cut off) or up again.
    pub(super) fn set_link(&self, up: bool) -> Result<(), CrashError> {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }])
    }
}

impl Drop for NodeNet {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

/// A network namespace, deleted on drop (the veth pair with it: its node's end is inside, and
/// deleting one end deletes the other).
pub(super) struct Namespace(pub(super) String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// Carries each connection to the database and back.
async fn forward(listener: TcpListener, host: String, port: u16) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let host = host.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect((host.as_str(), port)).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_address_comes_from_either_form() {
        assert_eq!(
            database_addr("postgres://u@127.0.0.1:4567/db").unwrap(),
            ("127.0.0.1".to_owned(), 4567)
        );
        assert_eq!(
            database_addr("host=db.local user=u").unwrap(),
            ("db.local".to_owned(), 5432)
        );
        assert!(matches!(
            database_addr("host=/run/postgresql user=u"),
            Err(CrashError::BadOption("--store", _))
        ));
    }
}
