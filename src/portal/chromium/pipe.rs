//! The DevTools connection without a port anyone else can use.
//!
//! `--remote-debugging-port` answers every local user: anyone on the machine
//! could read `/json/version`, connect, and take the portal session (its
//! cookies, the page with the new password). Chromium is therefore started
//! with `--remote-debugging-pipe`: it reads commands on its fd 3 and writes
//! answers on its fd 4, each message ended by a NUL byte. chromiumoxide only
//! speaks WebSocket, so a bridge in this process joins the two: a loopback
//! socket that upgrades one request only, at a path of 128 random bits that
//! never leaves this process, and then stops listening.

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Message, http};
use futures::StreamExt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;

/// The two pipes between this process and the browser.
pub struct Pipes {
    /// The browser's fd 3 (it reads commands there) and our end of it.
    commands: (OwnedFd, OwnedFd),
    /// The browser's fd 4 (it writes answers there) and our end of it.
    answers: (OwnedFd, OwnedFd),
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just opened and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Pipes {
    pub fn new() -> io::Result<Pipes> {
        // (read, write) each: the browser reads commands, writes answers.
        Ok(Pipes {
            commands: pipe_pair()?,
            answers: pipe_pair()?,
        })
    }

    /// Makes the child started by `command` find the pipes on fds 3 and 4.
    pub fn give_to(&self, command: &mut std::process::Command) {
        let reads = self.commands.0.as_raw_fd();
        let writes = self.answers.1.as_raw_fd();
        command.arg("--remote-debugging-pipe");
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between
        // fork and exec. Each end is first moved above 9, so that neither is
        // overwritten by the other's dup2; dup2 clears close-on-exec.
        unsafe {
            command.pre_exec(move || {
                let high_reads = libc::fcntl(reads, libc::F_DUPFD_CLOEXEC, 10);
                let high_writes = libc::fcntl(writes, libc::F_DUPFD_CLOEXEC, 10);
                if high_reads < 0
                    || high_writes < 0
                    || libc::dup2(high_reads, 3) < 0
                    || libc::dup2(high_writes, 4) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                libc::close(high_reads);
                libc::close(high_writes);
                Ok(())
            });
        }
    }

    /// Once the browser runs: closes its ends here (so that either side's
    /// exit reads as the end of the stream) and opens the bridge. Returns
    /// the one address chromiumoxide connects to.
    pub async fn bridge(self) -> io::Result<String> {
        let Pipes { commands, answers } = self;
        drop(commands.0);
        drop(answers.1);
        let to_browser = pipe::Sender::from_owned_fd(commands.1)?;
        let from_browser = pipe::Receiver::from_owned_fd(answers.0)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let secret: u128 = rand::random();
        let path = format!("/devtools/{secret:032x}");
        let address = format!("ws://{}{path}", listener.local_addr()?);
        tokio::spawn(serve(listener, Arc::from(path), to_browser, from_browser));
        Ok(address)
    }
}

/// No limit on a message's size: a DOM snapshot or a screenshot is large.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

/// Accepts connections until one asks for `path`, refusing the others, then
/// stops listening and carries messages both ways until either side ends.
async fn serve(
    listener: tokio::net::TcpListener,
    path: Arc<str>,
    to_browser: pipe::Sender,
    from_browser: pipe::Receiver,
) {
    let (found, mut ours) = tokio::sync::mpsc::channel(1);
    let socket = loop {
        tokio::select! {
            Some(socket) = ours.recv() => break socket,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Small messages both ways, each awaited: never held back
                // for a delayed acknowledgement.
                let _ = stream.set_nodelay(true);
                let path = path.clone();
                let found = found.clone();
                // Each handshake on its own, in bounded time: a local user
                // who connects and says nothing cannot hold ours up.
                tokio::spawn(async move {
                    // The callback's type is tungstenite's.
                    #[allow(clippy::result_large_err)]
                    let check = |request: &Request, response: Response| {
                        if request.uri().path() == &*path {
                            Ok(response)
                        } else {
                            let mut refused = ErrorResponse::new(None);
                            *refused.status_mut() = http::StatusCode::NOT_FOUND;
                            Err(refused)
                        }
                    };
                    let handshake = async_tungstenite::tokio::accept_hdr_async_with_config(
                        stream,
                        check,
                        Some(config()),
                    );
                    if let Ok(Ok(socket)) =
                        tokio::time::timeout(Duration::from_secs(10), handshake).await
                    {
                        let _ = found.send(socket).await;
                    }
                });
            }
        }
    };
    drop(listener);
    let (mut sink, mut stream) = socket.split();
    let commands = async move {
        let mut to_browser = to_browser;
        while let Some(Ok(message)) = stream.next().await {
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => break,
                _ => continue,
            };
            if to_browser.write_all(text.as_bytes()).await.is_err()
                || to_browser.write_all(b"\0").await.is_err()
            {
                break;
            }
        }
        // Dropping our end tells the browser the connection is over.
    };
    let answers = async move {
        let mut from_browser = BufReader::new(from_browser);
        let mut message = Vec::new();
        loop {
            message.clear();
            match from_browser.read_until(0, &mut message).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if message.last() == Some(&0) {
                message.pop();
            }
            let Ok(text) = String::from_utf8(std::mem::take(&mut message)) else {
                continue;
            };
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
        let _ = sink.close(None).await;
    };
    // Either side ending ends the bridge.
    tokio::select! {
        () = commands => {}
        () = answers => {}
    }
}
