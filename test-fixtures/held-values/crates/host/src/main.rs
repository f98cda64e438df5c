//! A small HTTP server on std alone: one thread per connection, one line per answer.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

#[derive(Debug, Default)]
struct HostKey(u8);

fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let store: Arc<dyn logic::Describe> = Arc::from(logic::make_store());
    let token: Arc<Box<dyn std::any::Any + Send + Sync>> = Arc::new(logic::make_token());
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let store = store.clone();
        let token = token.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            if reader.read_line(&mut line).is_err() {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header.trim().is_empty() {
                    break;
                }
            }
            let body = match path.as_str() {
                "/pid" => std::process::id().to_string(),
                "/store" => store.describe(),
                "/answer" => logic::answer(),
                "/order" => logic::order(),
                "/macro" => logic::macro_hits(),
                "/ring" => logic::ring(),
                "/tally" => logic::tally(),
                "/token" => logic::read_token(&**token),
                "/direct" => logic::direct(),
                "/generic" => logic::generic_label::<HostKey>(),
                "/inline" => logic::inline_label(),
                "/greeting" => logic::GREETING.to_string(),
                "/drop" => {
                    drop(logic::make_guard());
                    logic::last_drop()
                }
                _ => "not found".to_string(),
            };
            let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        });
    }
}
