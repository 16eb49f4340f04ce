//! A minimal HTTP/1.1 keep-alive client: the same for every server, cheap enough that the
//! server, not the client, is what is measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn host_port(url: &str) -> Result<String, String> {
    url.strip_prefix("http://")
        .map(|h| h.trim_end_matches('/').to_string())
        .ok_or_else(|| format!("unsupported URL {url}"))
}

/// Sends a POST and reads the answer; returns the status code.
fn post(
    stream: &mut BufReader<TcpStream>,
    host: &str,
    path: &str,
    body: &[u8],
) -> Result<u16, String> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let s = stream.get_mut();
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut line = String::new();
    stream.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut rest = vec![0; length];
    stream.read_exact(&mut rest).map_err(|e| e.to_string())?;
    if status >= 300 {
        return Err(format!(
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&rest)
        ));
    }
    Ok(status)
}

/// POSTs every body to `url` + `path` from `clients` threads; returns the wall time.
pub(crate) fn post_all(
    url: &str,
    path: &str,
    bodies: &[Vec<u8>],
    clients: usize,
) -> Result<Duration, String> {
    let host = host_port(url)?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|_| {
                let (next, host) = (next.clone(), host.clone());
                scope.spawn(move || -> Result<(), String> {
                    let tcp = TcpStream::connect(&host).map_err(|e| e.to_string())?;
                    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
                    let mut stream = BufReader::new(tcp);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else {
                            return Ok(());
                        };
                        post(&mut stream, &host, path, body)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "client thread panicked".to_string())?)
            .collect::<Result<Vec<()>, String>>()
    })?;
    Ok(started.elapsed())
}
