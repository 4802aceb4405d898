//! A mail sink: the least an SMTP server can do, which is to accept every
//! mail and note when. The link benchmark sends to it so that it measures
//! authledger's pipeline (relay, queue, worker, SMTP client), not a mail
//! catcher's speed; the tests keep MailDev, which reads the mails back.
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One mail the sink accepted: its recipients, its subject and when the
/// sink answered the end of its data.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub recipients: Vec<String>,
    pub subject: String,
    pub at: SystemTime,
}

pub struct MailSink {
    port: u16,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    listener: tokio::task::JoinHandle<()>,
}

impl MailSink {
    /// Listens on a free port of 127.0.0.1 until dropped.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let log = accepted.clone();
        let listener = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(session(stream, log.clone()));
                    }
                    // Out of file descriptors, say: the sink must outlive
                    // it, or every later mail would look lost.
                    Err(error) => {
                        eprintln!("mail sink: accept failed: {error}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Self {
            port,
            accepted,
            listener,
        })
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// One SMTP connection. Commands are answered in order, line by line, so a
/// client that pipelines them is served as well.
async fn session(stream: TcpStream, log: Arc<Mutex<Vec<Accepted>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    let mut recipients = Vec::new();
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let verb = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "HELO" | "NOOP" => b"250 OK\r\n",
            "MAIL" => {
                recipients.clear();
                b"250 OK\r\n"
            }
            "RSET" => {
                recipients.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                let address = text
                    .split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(address, _)| address.to_owned())
                    .unwrap_or_default();
                recipients.push(address);
                b"250 OK\r\n"
            }
            "DATA" => {
                if write.write_all(b"354 End data with .\r\n").await.is_err() {
                    return;
                }
                let Some(subject) = read_data(&mut lines).await else {
                    return;
                };
                if let Ok(mut log) = log.lock() {
                    log.push(Accepted {
                        recipients: std::mem::take(&mut recipients),
                        subject,
                        at: SystemTime::now(),
                    });
                }
                b"250 OK\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 Bye\r\n").await;
                return;
            }
            _ => b"502 Not implemented\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Reads a mail's data up to the line holding only a dot, and returns its
/// subject (empty if it has none); `None` if the connection ends first.
async fn read_data(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut line = Vec::new();
    let mut subject = String::new();
    let mut in_headers = true;
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" || line == b".\n" {
            return Some(subject);
        }
        if in_headers {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if text.is_empty() {
                in_headers = false;
            } else if let Some(value) = text
                .split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("subject"))
                .map(|(_, value)| value.trim())
            {
                subject = value.to_owned();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    /// What the mail worker does: lettre's pooled transport, many mails at
    /// once over connections it reuses. Every mail arrives once, with its
    /// recipient and subject.
    #[tokio::test]
    async fn takes_every_mail_a_pooled_lettre_transport_sends() -> anyhow::Result<()> {
        use lettre::transport::smtp::PoolConfig;
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let sink = MailSink::start().await?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())?
            .timeout(Some(std::time::Duration::from_secs(5)))
            .pool_config(PoolConfig::new().max_size(32))
            .build();
        let count = 300;
        let sends = (0..count).map(|n| {
            let transport = transport.clone();
            async move {
                let mail = Message::builder()
                    .from("authledger <no-reply@example.org>".parse()?)
                    .to(format!("user-{n}@example.com").parse()?)
                    .subject("Your sign-in link")
                    .body(format!("link {n}\n.\nnot the end\n"))?;
                transport.send(mail).await?;
                anyhow::Ok(())
            }
        });
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(sends)
            .buffer_unordered(64)
            .collect()
            .await;
        for result in results {
            result?;
        }
        let accepted = sink.accepted();
        assert_eq!(accepted.len(), count);
        let mut to: Vec<String> = accepted
            .iter()
            .filter(|m| m.subject == "Your sign-in link")
            .flat_map(|m| m.recipients.clone())
            .collect();
        to.sort();
        to.dedup();
        assert_eq!(to.len(), count);
        Ok(())
    }

    /// A mail whose commands come pipelined arrives whole: its recipient
    /// and subject are what was sent, and every command is answered.
    #[tokio::test]
    async fn accepts_what_an_smtp_client_sends() -> anyhow::Result<()> {
        let sink = MailSink::start().await?;
        let mut stream = TcpStream::connect(("127.0.0.1", sink.port)).await?;
        // Pipelined, as a client may send them.
        stream
            .write_all(
                b"EHLO client\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
            )
            .await?;
        stream
            .write_all(
                b"Subject: Your sign-in link\r\nTo: b@example.org\r\n\r\nbody\r\n.\r\nQUIT\r\n",
            )
            .await?;
        let mut replies = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut replies).await?;
        assert!(replies.ends_with("250 OK\r\n221 Bye\r\n"), "{replies}");
        let accepted = sink.accepted();
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].recipients, ["b@example.org"]);
        assert_eq!(accepted[0].subject, "Your sign-in link");
        Ok(())
    }
}
