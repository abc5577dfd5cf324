//! The daemon's local socket as the tests speak it: raw frames (so tests
//! can also send what a well-behaved client never would) and one whole
//! call.

use extreg_shared::protocol::{self, Envelope, Request, Response};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Writes one request frame.
pub fn send_frame(s: &mut UnixStream, id: u64, body: Request) -> std::io::Result<()> {
    s.write_all(&protocol::encode(&Envelope { id, body }).unwrap())
}

/// Reads one frame; `None` on EOF, a timeout or a frame that does not decode.
pub fn read_frame<T: serde::de::DeserializeOwned>(s: &mut UnixStream) -> Option<Envelope<T>> {
    let mut h = [0u8; protocol::HEADER_LEN];
    s.read_exact(&mut h).ok()?;
    let len = protocol::frame_len(h).ok()?;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).ok()?;
    protocol::decode(&p).ok()
}

/// A hello with this protocol version, as client `client`.
pub fn hello(protocol: u32, client: &str) -> Request {
    Request::Hello {
        protocol,
        client: client.into(),
    }
}

/// One request over a new connection to `socket` after a hello of this
/// release; progress frames are skipped, the final answer returned.
pub fn call(socket: &std::path::Path, req: Request) -> Response {
    let mut s = UnixStream::connect(socket).expect("connect to the socket");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    send_frame(&mut s, 1, hello(protocol::PROTOCOL_VERSION, "e2e-test")).unwrap();
    let answer: Envelope<Response> = read_frame(&mut s).expect("an answer to hello");
    assert!(matches!(answer.body, Response::Hello { .. }), "{answer:?}");
    send_frame(&mut s, 2, req).unwrap();
    loop {
        let f: Envelope<Response> = read_frame(&mut s).expect("a frame");
        if !matches!(f.body, Response::Progress(_)) {
            return f.body;
        }
    }
}
