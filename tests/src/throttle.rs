//! A broker that delivers at most N messages a second to each connection, as AWS IoT Core
//! does (100 publishes/s per connection, not adjustable): a TCP proxy in front of a real broker
//! that reads the MQTT packets it forwards to the client and holds back PUBLISH packets past
//! the rate — never drops one, as a QoS 1 delivery is not dropped, only delayed. It records,
//! per connection, how many PUBLISH packets it delivered and the most in one second, so a test
//! can show the limit was respected and needed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one proxied connection saw.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    /// PUBLISH packets delivered to the client.
    pub publishes: u64,
    /// The most delivered in one second.
    pub peak_per_s: u32,
    /// How often a PUBLISH had to wait for the next second.
    pub held_back: u64,
}

pub struct ThrottleProxy {
    pub port: u16,
    conns: Arc<Mutex<Vec<Arc<Mutex<Delivered>>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl ThrottleProxy {
    /// Proxies 127.0.0.1:`upstream`, delivering at most `per_s` PUBLISH packets a second to
    /// each client connection.
    pub async fn start(upstream: u16, per_s: u32) -> ThrottleProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let conns: Arc<Mutex<Vec<Arc<Mutex<Delivered>>>>> = Arc::default();
        let cs = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let stats = Arc::new(Mutex::new(Delivered::default()));
                cs.lock().expect("proxy lock").push(stats.clone());
                tokio::spawn(relay(down, up, per_s, stats));
            }
        });
        ThrottleProxy {
            port,
            conns,
            accept,
        }
    }

    /// Every connection's record so far (in the order they were accepted).
    pub fn delivered(&self) -> Vec<Delivered> {
        self.conns
            .lock()
            .expect("proxy lock")
            .iter()
            .map(|d| d.lock().expect("stats lock").clone())
            .collect()
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(down: TcpStream, up: TcpStream, per_s: u32, stats: Arc<Mutex<Delivered>>) {
    let (mut down_r, mut down_w) = down.into_split();
    let (mut up_r, mut up_w) = up.into_split();
    let to_broker = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut down_r, &mut up_w).await;
        let _ = up_w.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut window = Instant::now();
    let mut in_window = 0u32;
    'read: loop {
        let n = match up_r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        // Forward every whole packet in the buffer, holding PUBLISH packets to the rate.
        while let Some(len) = packet_len(&buf) {
            let is_publish = buf[0] >> 4 == 3;
            if is_publish {
                if window.elapsed() >= Duration::from_secs(1) {
                    window = Instant::now();
                    in_window = 0;
                }
                if in_window >= per_s {
                    if let Ok(mut s) = stats.lock() {
                        s.held_back += 1;
                    }
                    tokio::time::sleep_until((window + Duration::from_secs(1)).into()).await;
                    window = Instant::now();
                    in_window = 0;
                }
                in_window += 1;
                if let Ok(mut s) = stats.lock() {
                    s.publishes += 1;
                    s.peak_per_s = s.peak_per_s.max(in_window);
                }
            }
            let packet: Vec<u8> = buf.drain(..len).collect();
            if down_w.write_all(&packet).await.is_err() {
                break 'read;
            }
        }
    }
    to_broker.abort();
}

/// The length of the whole MQTT packet at the start of `buf` (fixed header, remaining-length
/// varint, body), if all of it is there.
fn packet_len(buf: &[u8]) -> Option<usize> {
    let mut remaining: usize = 0;
    let mut shift = 0;
    for i in 1..=4 {
        let b = *buf.get(i)?;
        remaining |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            let total = 1 + i + remaining;
            return (buf.len() >= total).then_some(total);
        }
        shift += 7;
    }
    // A remaining length longer than 4 bytes is not MQTT: pass the byte on as it is.
    Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_framed_by_their_remaining_length() {
        // PUBLISH, remaining length 3; then PINGRESP (0xd0, 0).
        let buf = [0x30, 3, 0, 1, b'a', 0xd0, 0];
        assert_eq!(packet_len(&buf), Some(5));
        assert_eq!(packet_len(&buf[5..]), Some(2));
        assert_eq!(packet_len(&buf[..4]), None, "not all there yet");
        // Remaining length 200 takes two bytes (0xc8 0x01).
        let mut big = vec![0x30, 0xc8, 0x01];
        big.extend(vec![0u8; 200]);
        assert_eq!(packet_len(&big), Some(203));
    }
}
