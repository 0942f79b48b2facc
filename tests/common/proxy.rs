//! A TCP proxy that can be cut, as a network partition between a node and its database.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to `target` that can be cut: while cut it carries no byte either way (what it
/// read is held until it heals) and connects nowhere, but closes nothing.
pub struct Proxy {
    pub port: u16,
    pub cut: watch::Sender<bool>,
    /// Armed by `cut_after`: the bytes after which the proxy cuts itself.
    trigger: Trigger,
}

/// A pattern in what a client sends: once it has passed, the client's next write passes too
/// (a statement's execution follows its parse), and then the proxy is cut.
/// (The pattern, and the connection it passed on.)
type Trigger = std::sync::Arc<std::sync::Mutex<Option<(&'static [u8], Option<usize>)>>>;

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = watch::channel(false);
        let cuts = cut.clone();
        let trigger = Trigger::default();
        let triggers = trigger.clone();
        tokio::spawn(async move {
            let mut connections = 0;
            while let Ok((inbound, _)) = listener.accept().await {
                let (target, mut cut) = (target.clone(), cuts.subscribe());
                connections += 1;
                let armed = (cuts.clone(), triggers.clone(), connections);
                tokio::spawn(async move {
                    if cut.wait_for(|c| !c).await.is_err() {
                        return;
                    }
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::spawn(pump(ir, ow, cut.clone(), Some(armed)));
                    tokio::spawn(pump(or, iw, cut, None));
                });
            }
        });
        Proxy { port, cut, trigger }
    }

    /// Cuts the proxy right after a client sent `pattern` and then one more write.
    pub fn cut_after(&self, pattern: &'static [u8]) {
        *self.trigger.lock().unwrap() = Some((pattern, None));
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
    armed: Option<(watch::Sender<bool>, Trigger, usize)>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if cut.wait_for(|c| !c).await.is_err() {
            return;
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cut.changed() => continue,
        };
        if cut.wait_for(|c| !c).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some((cuts, trigger, me)) = &armed {
            let mut t = trigger.lock().unwrap();
            match *t {
                Some((_, Some(on))) if on == *me => {
                    *t = None;
                    cuts.send_replace(true);
                }
                Some((p, None)) if buf[..n].windows(p.len()).any(|w| w == p) => {
                    *t = Some((p, Some(*me)));
                }
                _ => {}
            }
        }
    }
}

/// `postgres://user@host:port/db` with `host:port` replaced.
pub fn via(url: &str, port: u16) -> String {
    let (head, rest) = url.split_once('@').unwrap();
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    format!("{head}@127.0.0.1:{port}/{path}")
}

/// The `host:port` of a `postgres://user@host:port/db` URL.
pub fn target(url: &str) -> String {
    let rest = url.split_once('@').unwrap().1;
    rest.split_once('/').map_or(rest, |(h, _)| h).to_owned()
}
