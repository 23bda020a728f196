//! The rust-cargo example: an HTTP server on the standard library alone, whose answer comes
//! from message.rs. Edit src/message.rs.
use std::io::{Read, Write};
use std::net::TcpListener;

mod message;

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8086".to_string());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))?;
    println!("hello-cargo listening on http://127.0.0.1:{port}");
    for stream in listener.incoming() {
        let mut stream = stream?;
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let body = format!("{}\n", message::MESSAGE);
        let _ = write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            body
        );
    }
    Ok(())
}
