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
    request: &Request,
) -> Result<u16, String> {
    let body = &request.body;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        request.content_type,
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

/// One prepared request: path with query, content type and body.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// Path and query, e.g. `/api/v1/write`.
    pub(crate) path: String,
    /// Content-Type header.
    pub(crate) content_type: &'static str,
    /// Body.
    pub(crate) body: Vec<u8>,
    /// Rows in the body.
    pub(crate) rows: usize,
}

/// Opens a keep-alive connection.
fn connect(host: &str) -> Result<BufReader<TcpStream>, String> {
    let tcp = TcpStream::connect(host).map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(BufReader::new(tcp))
}

/// POSTs every request to `url` from `clients` threads (to `path` instead of each request's
/// own path when given: the same bodies to another server's endpoint); returns the wall time.
pub(crate) fn post_all(
    url: &str,
    bodies: &[Request],
    clients: usize,
    path: Option<&str>,
) -> Result<Duration, String> {
    let host = host_port(url)?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients.max(1))
            .map(|_| {
                let (next, host) = (next.clone(), host.clone());
                scope.spawn(move || -> Result<(), String> {
                    let mut stream = connect(&host)?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else {
                            return Ok(());
                        };
                        post(&mut stream, &host, path.unwrap_or(&body.path), body)?;
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

/// A background writer sending requests at a steady rate of rows per second (cycling through
/// `bodies`) until stopped: the ingest load under which queries are measured.
pub(crate) struct Stream {
    stop: Arc<std::sync::atomic::AtomicBool>,
    rows: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
    started: Instant,
}

impl Stream {
    /// Starts sending `bodies` to `url` at `rows_per_s`.
    pub(crate) fn start(
        url: &str,
        bodies: Arc<Vec<Request>>,
        rows_per_s: f64,
    ) -> Result<Self, String> {
        let host = host_port(url)?;
        if bodies.is_empty() {
            return Err("nothing to stream".into());
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rows = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let handle = {
            let (stop, rows) = (stop.clone(), rows.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut stream = connect(&host)?;
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let sent = rows.load(Ordering::Relaxed);
                    let due = Duration::from_secs_f64(sent as f64 / rows_per_s.max(1.0));
                    let elapsed = started.elapsed();
                    if due > elapsed {
                        std::thread::sleep((due - elapsed).min(Duration::from_millis(50)));
                        continue;
                    }
                    let request = &bodies[i % bodies.len()];
                    post(&mut stream, &host, &request.path, request)?;
                    rows.fetch_add(request.rows, Ordering::Relaxed);
                    i += 1;
                }
                Ok(())
            })
        };
        Ok(Self {
            stop,
            rows,
            handle: Some(handle),
            started,
        })
    }

    /// Stops the writer; returns the rows it sent and the rate it kept.
    pub(crate) fn stop(mut self) -> Result<(usize, f64), String> {
        self.stop.store(true, Ordering::Relaxed);
        let result = self.handle.take().map_or(Ok(()), |h| {
            h.join().map_err(|_| "stream thread panicked".to_string())?
        });
        result?;
        let rows = self.rows.load(Ordering::Relaxed);
        Ok((rows, rows as f64 / self.started.elapsed().as_secs_f64()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
